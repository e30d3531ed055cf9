//! The slim binary the QEMU-hosted appliance carries (`vmm-appliance`) runs
//! the jobs `vmm` sends it: the same `run` command line, its errors and exit
//! codes. (Registered in the vmm crate, so that `cargo test` also rebuilds
//! it: `vmm` ships whatever `vmm-appliance` lies beside it.)

use std::process::Command;

fn slim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmm-appliance"))
}

#[test]
fn it_takes_the_run_command_line_and_its_usage_errors() {
    let o = slim().args(["run", "--workload", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = slim().args(["run", "--vcpus", "9"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = slim().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--workload", "--alias", "--pvmmu", "--kernel", "--vcpus"] {
        assert!(help.contains(flag), "vmm-appliance run has no {flag}: {help}");
    }
}

#[test]
fn it_is_only_the_runner() {
    let o = slim().args(["bench", "--list"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "the benchmark stays out of the appliance's binary");
    let o = slim().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("vmm-appliance 0."));
}

//! The command line. The guest's parameters (`--workload`, `--pte`, ...) are not
//! declared here: they come from the shared crate's table, so the flags, the boot
//! information and the reports cannot disagree.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use vmm::args::{BatchArgs, PinCostArgs, RunArgs};
use vmm::contract::ContractArgs;
use vmm_bench::args::BenchArgs;
use vmm_bench::highpte_matrix::MatrixArgs;

#[derive(Parser, Debug)]
#[command(
    name = "vmm",
    version = vmm::VERSION,
    about = "A minimal KVM VMM that boots a 32-bit PAE guest and acts as a Xen-style PV MMU",
    long_about = None,
    after_help = "Exit status: 0 success; 1 a guest check or a bench cell failed; 2 bad input; 3 a guest fault; \
                  4 the watchdog stopped the guest; 5 the host could not run the guest; 6 the guest broke the PV \
                  MMU contract; 130 interrupted. `vmm contract` follows xtf-runner instead (see vmm contract --help)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Boot the guest once and report how it went.
    Run(Box<RunArgs>),
    /// Run many `vmm run` commands (one QEMU-hosted boot for all of them).
    Batch(BatchArgs),
    /// Tell whether the local KVM can run a 32-bit PAE guest, and why not.
    Probe,
    /// Check what a run needs (the guest image, the local KVM, QEMU and the
    /// appliance's kernel), say where each was looked for, and how a run would
    /// go. Exit 0 when a run can go, 5 when something it needs is missing.
    Doctor,
    /// Run the PV MMU contract scenarios, each in its own VM (XTF's verdicts).
    ///
    /// Exit status as xtf-runner's, the worst verdict deciding: 0 SUCCESS, 3 SKIP,
    /// 4 ERROR (also: the host could not start), 5 FAILURE, 6 CRASH; 2 bad
    /// input or no scenario matches; 130 interrupted.
    Contract(ContractArgs),
    /// The 20 configurations of the 2002 highpte mail (nohighmem, 4GB, 4GB-highpte,
    /// 64GB, 64GB-highpte x UP/SMP x preempt on/off), each with a stress run.
    Matrix(MatrixArgs),
    /// Measure the host's alias check per pin for each --host-check, with lazy
    /// aliases in place (host work only: no guest is started).
    PinCost(PinCostArgs),
    /// The benchmark: every alias strategy (and with --full every sweep of the
    /// design notes), repeated, with tables, plots and verdicts.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `vmm completions bash > ~/.local/share/bash-completion/completions/vmm`;
    /// zsh: into a directory on `$fpath` as `_vmm`; fish: into
    /// `~/.config/fish/completions/vmm.fish`. `scripts/install.sh` installs all three.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (vmm.1 and one per command) into a directory.
    Man {
        /// Where to write them (created if missing).
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
    /// (Inside the QEMU-hosted appliance: run its jobs.)
    #[command(hide = true)]
    ApplianceInit { jobs: PathBuf },
}

/// Writes `vmm.1` and a `vmm-<command>.1` per visible command into `dir`;
/// how many pages it wrote.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let root = Cli::command();
    let mut pages = vec![("vmm".to_owned(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("vmm-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name).version(root.get_version().unwrap_or_default().to_owned())));
    }
    for (name, cmd) in &pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm::args::config_args;

    #[test]
    fn guest_flags_come_from_the_table_and_round_trip() {
        let cli = Cli::try_parse_from(["vmm", "run", "--workload", "ipi-pingpong", "--iterations", "7"]).unwrap();
        let Cmd::Run(a) = cli.cmd else { panic!() };
        assert_eq!(a.guest.0.workload(), shared::config::Workload::IpiPingpong);
        assert_eq!(a.guest.0.iterations, 7);
        let mut argv = vec!["vmm".to_owned(), "run".to_owned()];
        argv.extend(config_args(&a.guest.0));
        let again = Cli::try_parse_from(argv).unwrap();
        let Cmd::Run(b) = again.cmd else { panic!() };
        assert_eq!(a.guest.0, b.guest.0);
    }

    #[test]
    fn every_duration_flag_refuses_what_is_no_duration() {
        let cmds: [&[&str]; 5] = [&["run"], &["batch", "j.json"], &["matrix"], &["contract"], &["bench"]];
        for cmd in cmds {
            for bad in ["-1", "0", "nan", "inf", "1e20", "1.8e19", "soon"] {
                let mut argv = vec!["vmm"];
                argv.extend(cmd);
                argv.extend([format!("--timeout={bad}").leak() as &str]);
                let e = Cli::try_parse_from(&argv).expect_err(&format!("{argv:?}"));
                assert_eq!(e.exit_code(), 2, "{argv:?}");
            }
            let mut argv = vec!["vmm"];
            argv.extend(cmd);
            argv.push("--timeout=2.5");
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?}");
        }
    }

    #[test]
    fn bad_guest_values_are_usage_errors() {
        let e = Cli::try_parse_from(["vmm", "run", "--workload", "nope"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["vmm", "run", "--vcpus", "9"]).unwrap_err();
        assert_eq!(e.exit_code(), vmm::report::exit_code::USAGE);
        let e = Cli::try_parse_from(["vmm", "run", "--mem", "lots"]).unwrap_err();
        assert!(e.to_string().contains("not a size"));
    }
}

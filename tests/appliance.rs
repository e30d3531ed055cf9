//! `vmm batch` against an appliance that dies under a job: the finished jobs
//! keep their results, the job it died under is recorded and run again, and the
//! rest of the batch goes on in a fresh appliance. QEMU is a stand-in script
//! here (first on PATH), so the death happens on cue; the appliance's kernel and
//! modules must be in place (scripts/setup.sh), as for any QEMU-hosted run.

mod common;

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

/// A `qemu-system-x86_64` that frames job output as the appliance does. Its
/// first boot finishes job 0, starts job 1 and exits (the appliance's kernel
/// died); every later boot finishes all of its jobs.
const FAKE_QEMU: &str = r#"#!/bin/sh
n=$(cat "$FAKE_QEMU_STATE" 2>/dev/null || echo 0)
echo $((n + 1)) > "$FAKE_QEMU_STATE"
echo "@@vmm:ready 1"
if [ "$n" = 0 ]; then
  echo "@@vmm:0 out job ran"
  echo "@@vmm:0 exit 0"
  echo "@@vmm:1 out job started"
  echo "Kernel panic - not syncing: stand-in for the emulated SVM's damage"
  exit 0
fi
for i in 0 1; do
  echo "@@vmm:$i out job ran"
  echo "@@vmm:$i exit 0"
done
echo "@@vmm:done"
"#;

#[test]
fn a_batch_goes_on_after_the_appliance_dies_under_a_job() {
    common::guest();
    let dir = std::env::temp_dir().join(format!("vmm-appliance-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let qemu = bin.join("qemu-system-x86_64");
    std::fs::write(&qemu, FAKE_QEMU).unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.join("boots");
    let _ = std::fs::remove_file(&state);
    let jobs = dir.join("jobs.json");
    let job = ["run", "--workload", "boot"];
    std::fs::write(&jobs, serde_json::json!({ "jobs": [job, job, job] }).to_string()).unwrap();
    let out = dir.join("out.jsonl");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = common::run(
        &["batch", jobs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--host", "qemu"],
        &[("PATH", &path), ("FAKE_QEMU_STATE", state.to_str().unwrap())],
    );
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "every job finished in the end: {err}");
    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "2", "one fresh appliance after the death");
    let lines: Vec<Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let attempts: Vec<u64> = lines.iter().map(|l| l["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 1], "only the job it died under ran twice");
    let faults = lines[1]["emulator_faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1);
    let f = faults[0].as_str().unwrap();
    assert!(f.contains("the appliance died during the job") && f.contains("Kernel panic"), "{f}");
    assert!(lines[0]["emulator_faults"].as_array().unwrap().is_empty());
}

/// `vmm batch` writes each job's line as the job ends, so Ctrl-C (here a
/// SIGINT while the second job hangs) keeps what finished, and the batch ends
/// with exit status 130. The real guest, QEMU-hosted where the local KVM cannot
/// run it.
#[test]
fn a_batch_keeps_what_finished_across_ctrl_c() {
    common::guest();
    let dir = std::env::temp_dir().join(format!("vmm-batch-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jobs = dir.join("jobs.json");
    let (boot, hang) = (["run", "--workload", "boot"], ["run", "--workload", "hang", "--timeout", "120"]);
    std::fs::write(&jobs, serde_json::json!({ "jobs": [boot.to_vec(), hang.to_vec(), boot.to_vec()] }).to_string())
        .unwrap();
    let out = dir.join("out.jsonl");
    let child = std::process::Command::new(common::vmm())
        .args(["batch", jobs.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = || std::fs::read_to_string(&out).map(|t| t.lines().count()).unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while lines() < 1 {
        assert!(std::time::Instant::now() < deadline, "the first job's line never came");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The second job is hanging now (or about to): interrupt the batch.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("1 of 3 jobs finished and written"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!((first["job"].as_u64(), first["exit_code"].as_i64()), (Some(0), Some(0)));
    let _ = std::fs::remove_dir_all(dir);
}

/// A batch whose output cannot be written stops at the first line it cannot
/// keep, with one clear error, rather than running every other job for
/// nothing.
#[test]
fn a_batch_stops_when_its_results_cannot_be_kept() {
    common::guest();
    let dir = std::env::temp_dir().join(format!("vmm-batch-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jobs = dir.join("jobs.json");
    let boot = ["run", "--workload", "boot"];
    std::fs::write(&jobs, serde_json::json!({ "jobs": [boot, boot, boot] }).to_string()).unwrap();
    let o = common::run(&["batch", jobs.to_str().unwrap(), "--out", "/dev/full"], &[]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("vmm: error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("/dev/full"), "{err}");
    assert!(!err.contains("batch of 3 jobs"), "it stopped at the first line: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

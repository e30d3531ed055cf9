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

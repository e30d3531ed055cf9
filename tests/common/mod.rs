//! Helpers shared by the integration tests: the `vmm` binary, the checkout, and
//! running `vmm batch` once per test binary so that every VM of a test file shares
//! one QEMU-hosted appliance boot.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn vmm() -> &'static str {
    env!("CARGO_BIN_EXE_vmm")
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn guest() -> PathBuf {
    let g = root().join("guest/target/i686-none/release/guest");
    assert!(g.is_file(), "no guest image at {} (run scripts/build.sh)", g.display());
    g
}

/// Runs `vmm` with these arguments and environment.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(vmm());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("cannot run vmm")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One job's line of `vmm batch` output.
#[derive(Debug, Clone)]
pub struct JobLine(pub Value);

impl JobLine {
    pub fn exit_code(&self) -> i64 {
        self.0["exit_code"].as_i64().unwrap_or(-1)
    }
    pub fn report(&self) -> &Value {
        &self.0["report"]
    }
    pub fn outcome_kind(&self) -> &str {
        self.report()["outcome"]["kind"].as_str().unwrap_or("none")
    }
    pub fn stdout(&self) -> String {
        self.0["stdout"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
    pub fn result(&self, name: &str) -> u64 {
        self.report()["results"][name].as_u64().unwrap_or_else(|| panic!("no result {name} in {:#}", self.report()))
    }
    /// A counter summed over every CPU (0 if absent).
    pub fn total(&self, name: &str) -> u64 {
        self.report()["counter_totals"][name].as_u64().unwrap_or(0)
    }
    /// A counter of one CPU (0 if absent).
    pub fn counter(&self, cpu: usize, name: &str) -> u64 {
        self.report()["counters"][cpu][name].as_u64().unwrap_or(0)
    }
}

/// Runs named jobs (each the arguments of `vmm run`) in one `vmm batch`.
pub fn batch(jobs: &[(&str, Vec<&str>)]) -> HashMap<String, JobLine> {
    let dir = std::env::temp_dir().join(format!("vmm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jobs.json");
    let out = dir.join("out.jsonl");
    let list: Vec<Vec<&str>> = jobs.iter().map(|(_, a)| a.clone()).collect();
    std::fs::write(&file, serde_json::json!({ "jobs": list }).to_string()).unwrap();
    let o = Command::new(vmm())
        .args(["batch", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .expect("cannot run vmm batch");
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|_| panic!("vmm batch wrote no output: {}", String::from_utf8_lossy(&o.stderr)));
    let mut lines: Vec<JobLine> = text.lines().map(|l| JobLine(serde_json::from_str(l).unwrap())).collect();
    // Lines come as the jobs end (a job run again after the emulator's fault
    // may end later): matched by their job index.
    lines.sort_by_key(|l| l.0["job"].as_u64());
    assert_eq!(lines.len(), jobs.len(), "batch output: {}", String::from_utf8_lossy(&o.stderr));
    jobs.iter().zip(lines).map(|((name, _), l)| (name.to_string(), l)).collect()
}

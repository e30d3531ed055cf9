//! The test matrix of the 2002 highpte mail: nohighmem, 4GB, 4GB-highpte, 64GB,
//! 64GB-highpte x UP/SMP x preempt on/off, every configuration booting and passing
//! the short stress run (mm-all and vmap-churn, contents checked), through
//! `vmm matrix` itself.

mod common;

use common::{run, stderr};

#[test]
fn all_twenty_configurations_pass_their_stress_run() {
    common::guest();
    let json = std::env::temp_dir().join(format!("vmm-matrix-{}.jsonl", std::process::id()));
    let o = run(&["matrix", "--json", json.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let _ = std::fs::remove_file(&json);
    assert_eq!(lines.len(), 40, "{out}\n{}", stderr(&o));
    let mut configs: Vec<(String, bool, bool)> = lines
        .iter()
        .map(|l| {
            let c = &l["cell"];
            (c["memory"].as_str().unwrap_or("").to_owned(), c["smp"] == true, c["preempt"] == true)
        })
        .collect();
    configs.sort();
    configs.dedup();
    assert_eq!(configs.len(), 20, "{configs:?}");
    let failed: Vec<String> = lines
        .iter()
        .filter(|l| l["passed"] != true)
        .map(|l| format!("{} {}: {:?}", l["cell"]["memory"], l["cell"]["workload"], l["stdout"]))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(o.status.code(), Some(0), "{out}");
    // The highmem configurations had highmem, and the 64 GB ones their RAM.
    for l in &lines {
        let mem = l["report"]["mem_bytes"].as_u64().unwrap_or(0);
        match l["cell"]["memory"].as_str().unwrap_or("") {
            "nohighmem" => assert!(mem < 896 << 20),
            "64GB" | "64GB-highpte" => assert!(mem > 60 << 30, "{mem}"),
            _ => assert!(mem == 4 << 30, "{mem}"),
        }
    }
}

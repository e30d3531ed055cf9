//! `vmm bench` end to end through the real binary, on the smoke matrix (short
//! configurations that work without the PV guest): its outputs parse and hold
//! the expected cells, the figures agree with the counters they come from, a
//! failed cell is reported and the sweep goes on, a stopped sweep resumes with
//! only the missing jobs, and the merge of two shards is the whole sweep.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{run, stderr};
use serde_json::Value;

/// The tests that boot VMs take turns: each sweep is one appliance boot, and two
/// at once on a 2-core machine only slow each other down.
static VMS: Mutex<()> = Mutex::new(());

fn vms() -> std::sync::MutexGuard<'static, ()> {
    VMS.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmm-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bench(args: &[&str]) -> Output {
    let mut a = vec!["bench"];
    a.extend_from_slice(args);
    run(&a, &[])
}

fn lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("bench.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

fn pairs(lines: &[Value]) -> BTreeSet<(String, u64)> {
    lines.iter().map(|l| (l["cell"].as_str().unwrap().to_owned(), l["rep"].as_u64().unwrap())).collect()
}

fn cells_listed(extra: &[&str]) -> BTreeSet<String> {
    let mut a = vec!["--matrix", "smoke", "--list"];
    a.extend_from_slice(extra);
    let o = bench(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("cell ")).map(str::to_owned).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(str::to_owned)).collect()).collect()
}

/// Every file of a directory and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// The lines of a JSONL that parse, and the numbers (1-based) of those that do not.
fn parsed(dir: &Path) -> (Vec<Value>, Vec<usize>) {
    let text = std::fs::read_to_string(dir.join("bench.jsonl")).unwrap_or_default();
    let (mut good, mut bad) = (vec![], vec![]);
    for (n, l) in text.lines().enumerate() {
        match serde_json::from_str(l) {
            Ok(v) => good.push(v),
            Err(_) => bad.push(n + 1),
        }
    }
    (good, bad)
}

/// A sweep directory made by hand, without booting a VM: one experiment of two
/// cells without parameters ("one": 1 vCPU, "two": 2 vCPUs), 2 repetitions.
fn fabricated_sweep(dir: &Path, jsonl: &str) {
    let cell = |label: &str, vcpus: u32| serde_json::json!({"label": label, "vcpus": vcpus, "mem": "64m", "timeout": 10, "params": {}});
    let sweep = serde_json::json!({
        "schema": 1, "matrix": "spec fabricated", "full": false, "reps": 2, "shard": null, "only": [],
        "experiments": [{"id": "e", "title": "Fabricated", "question": "q", "columns": [],
                         "cells": [cell("one", 1), cell("two", 2)]}],
        "started_at": "2025-01-01T00:00:00Z", "command": ["vmm", "bench"],
        "machine": {"cores": 2, "cpu": "test", "mem_mib": 1024},
        "vmm_version": "0.1.0", "vmm_id": "fnv64:0 (0 bytes)", "guest_kernel": "fnv64:0 (0 bytes)"});
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("sweep.json"), serde_json::to_string_pretty(&sweep).unwrap()).unwrap();
    std::fs::write(dir.join("bench.jsonl"), jsonl).unwrap();
}

/// A line of [`fabricated_sweep`]'s cell with `vcpus` vCPUs (its key is
/// `vcpus=N mem=64m`: no parameter differs from the defaults).
fn fabricated_line(vcpus: u32, rep: u32, ok: bool) -> String {
    serde_json::json!({
        "schema": 1, "cell": format!("vcpus={vcpus} mem=64m"), "label": if vcpus == 1 { "one" } else { "two" },
        "experiments": ["e"], "rep": rep, "vcpus": vcpus, "mem": "64m", "args": [], "config": {},
        "vmm_version": "0.1.0", "vmm_id": "fnv64:0 (0 bytes)", "guest_kernel": "fnv64:0 (0 bytes)",
        "host_mode": "qemu", "ok": ok, "exit_code": if ok { 0 } else { 1 },
        "failure": if ok { Value::Null } else { "guest shut down with status 1".into() },
        "attempts": 1, "finished_at": "2025-01-01T00:00:01Z", "figures": {}})
    .to_string()
}

#[test]
fn resume_list_reads_a_damaged_jsonl_without_writing_and_counts_failed_runs_as_left() {
    let dir = tmp("damaged");
    let a = fabricated_line(1, 0, true);
    let garbage = format!("{}#garbage", &a[..a.len() / 2]);
    // A corrupt middle line, and the failed second run of "one".
    let text = format!("{a}\n{garbage}\n{}\n{}\n", fabricated_line(2, 0, true), fabricated_line(1, 1, false));
    fabricated_sweep(&dir, &text);
    let before = snapshot(&dir);
    let o = bench(&["--resume", dir.to_str().unwrap(), "--list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    // 4 runs; two done; the failed one and the one never run are left.
    assert!(out.contains("2 cells x 2 repetitions: 2 jobs to run (1 failed before: run again)"), "{out}");
    let warning = format!("{}:2: ignored a line that does not parse", dir.join("bench.jsonl").display());
    assert!(stderr(&o).contains(&warning), "{}", stderr(&o));
    assert_eq!(snapshot(&dir), before, "--list writes nothing: bench.jsonl as it was, no other file");

    // A last line cut by an interrupted write: read the same way, and left.
    let cut = format!("{a}\n{}", &fabricated_line(2, 0, true)[..40]);
    std::fs::write(dir.join("bench.jsonl"), &cut).unwrap();
    let before = snapshot(&dir);
    let o = bench(&["--resume", dir.to_str().unwrap(), "--list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(out.contains(": 3 jobs to run"), "{out}");
    assert!(stderr(&o).contains("bench.jsonl:2: ignored a line"), "{}", stderr(&o));
    assert_eq!(snapshot(&dir), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merge_leaves_its_inputs_as_they_were_and_prefers_runs_that_succeeded() {
    let (a, b, m) = (tmp("merge-a"), tmp("merge-b"), tmp("merge-out"));
    // A: "one" rep 1 failed, and a corrupt line between; B: "one" rep 1 run
    // again and succeeded, "two" rep 1 cut by an interrupted write.
    let bad = "{\"schema\": 1, \"cell\": ";
    fabricated_sweep(&a, &format!("{}\n{bad}\n{}\n", fabricated_line(1, 0, true), fabricated_line(1, 1, false)));
    let cut = fabricated_line(2, 1, true);
    fabricated_sweep(
        &b,
        &format!("{}\n{}\n{}", fabricated_line(1, 1, true), fabricated_line(2, 0, true), &cut[..cut.len() - 9]),
    );
    let (before_a, before_b) = (snapshot(&a), snapshot(&b));
    let o = bench(&["merge", a.to_str().unwrap(), b.to_str().unwrap(), "--out", m.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(snapshot(&a), before_a, "merge reads its inputs only");
    assert_eq!(snapshot(&b), before_b, "merge reads its inputs only");
    for (d, n) in [(&a, 2), (&b, 3)] {
        let w = format!("{}:{n}: ignored a line that does not parse", d.join("bench.jsonl").display());
        assert!(err.contains(&w), "{w}\n{err}");
    }
    // The merge: each run once, the one that succeeded over the one that failed.
    let l = lines(&m);
    let got: BTreeSet<(String, u64, bool)> = l
        .iter()
        .map(|x| (x["cell"].as_str().unwrap().to_owned(), x["rep"].as_u64().unwrap(), x["ok"].as_bool().unwrap()))
        .collect();
    let want: BTreeSet<(String, u64, bool)> = [("vcpus=1 mem=64m", 0), ("vcpus=1 mem=64m", 1), ("vcpus=2 mem=64m", 0)]
        .into_iter()
        .map(|(c, r)| (c.to_owned(), r, true))
        .collect();
    assert_eq!((l.len(), got), (3, want));
    // The lines that do not parse are kept in the output, with where they were.
    let kept: Vec<Value> = std::fs::read_to_string(m.join("bench.rejected.jsonl"))
        .unwrap()
        .lines()
        .map(|x| serde_json::from_str(x).unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!((kept[0]["line"].as_u64(), kept[0]["text"].as_str()), (Some(2), Some(bad)));
    assert_eq!((kept[1]["line"].as_u64(), kept[1]["text"].as_str()), (Some(3), Some(&cut[..cut.len() - 9])));
    let md = std::fs::read_to_string(m.join("report.md")).unwrap();
    assert!(md.contains("merged from") && md.contains("ignored a line that does not parse"), "{md}");
    for d in [a, b, m] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn bad_arguments_are_clear_errors_and_list_runs_nothing() {
    let o = bench(&["--shard", "0/2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("1 <= i <= n"), "{}", stderr(&o));
    let o = bench(&["--shard", "3/2"]);
    assert_eq!(o.status.code(), Some(2));
    let missing = tmp("missing");
    let o = bench(&["--resume", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "the user's directory: a usage error");
    assert!(stderr(&o).contains("not a bench results directory"), "{}", stderr(&o));
    let o = bench(&["merge", "--out", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(2));
    // --shard auto reads the batch system's slice from the environment.
    let listed = |env: &[(&str, &str)]| {
        let o = run(&["bench", "--matrix", "smoke", "--shard", "auto", "--list"], env);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.code(), out.lines().filter(|l| l.starts_with("cell ")).count(), stderr(&o))
    };
    let all = cells_listed(&[]).len();
    let (code, first, _) = listed(&[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "2")]);
    let (_, second, _) = listed(&[("JOB_COMPLETION_INDEX", "1"), ("VMM_SHARD_COUNT", "2")]);
    assert_eq!((code, first + second), (Some(0), all), "the two slices are the whole matrix");
    assert_eq!(first, all.div_ceil(2));
    let (code, _, err) = listed(&[]);
    assert_eq!(code, Some(2), "no batch system: a usage error");
    assert!(err.contains("no Slurm array") && err.contains("JOB_COMPLETION_INDEX"), "{err}");
    let o = bench(&["--only", "nope", "--list"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("vmm: error:")).count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("alias-strategies") && stderr(&o).contains("history"), "{}", stderr(&o));
    // --only picks from the full matrix: the four steps of the Linux history.
    let o = bench(&["--only", "history", "--list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 cells x 3 repetitions"), "{}", stderr(&o));
    let o = bench(&["--resume", "/tmp", "--reps", "2"]);
    assert_eq!(o.status.code(), Some(2), "--resume takes the sweep as it was asked");
    // alias-frequency chooses its repetitions from the spread it measures
    // (after the first 3); --reps is for every cell, none planned.
    let o = bench(&["--only", "alias-frequency", "--list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("35 cells x 3 repetitions: 105 jobs to run"), "{out}");
    assert!(out.contains("alias-frequency: more repetitions may follow, chosen from the spread measured"), "{out}");
    let o = bench(&["--only", "highpte-2002", "--list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("40 cells x 3 repetitions (highpte-2002 1): 40 jobs to run"), "{out}");
    let o = bench(&["--only", "alias-frequency,history", "--reps", "2", "--list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("39 cells x 2 repetitions: 78 jobs to run"), "{out}");
    let spec = tmp("bad-reps").with_extension("json");
    let exp = serde_json::json!({"experiments": [{"id": "e", "title": "t", "question": "q", "columns": [],
        "reps": 0, "cells": [{"label": "c", "vcpus": 1, "mem": "64m", "timeout": 10, "params": {}}]}]});
    std::fs::write(&spec, exp.to_string()).unwrap();
    let o = bench(&["--spec", spec.to_str().unwrap(), "--list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("reps 0 is not in 1..=1000"), "{}", stderr(&o));
    let o = bench(&["--spec", "/nonexistent/spec.json", "--list"]);
    assert_eq!(o.status.code(), Some(2), "a missing --spec file is the user's: {}", stderr(&o));
    assert!(stderr(&o).starts_with("vmm: error: cannot read /nonexistent/spec.json"), "{}", stderr(&o));
    // A cell field the spec misspells is an error that names it, not a default.
    let exp = serde_json::json!({"experiments": [{"id": "e", "title": "t", "question": "q", "columns": [],
        "cells": [{"label": "c", "vcpu": 2, "vcpus": 1, "mem": "64m", "timeout": 10, "params": {}}]}]});
    std::fs::write(&spec, exp.to_string()).unwrap();
    let o = bench(&["--spec", spec.to_str().unwrap(), "--list"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("unknown field `vcpu`"), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "nothing listed");
    let _ = std::fs::remove_file(&spec);

    // The default matrix is the main question: six strategies and the oracle,
    // fork-churn, 2 vCPUs, --pvmmu on.
    let o = bench(&["--list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let cells: Vec<&str> = out.lines().filter(|l| l.starts_with("cell ")).collect();
    assert_eq!(cells.len(), 9, "{out}");
    for s in ["none", "always-flush", "alias-bit", "runtime-switch", "clean-pool", "host-trap", "oracle"] {
        assert!(cells.iter().any(|c| c.contains(&format!("cell {s} "))), "{s}: {out}");
    }
    // ... and the calibration beside them, on the same VM shape, and the
    // native one (the kmap units) in pte-bench's.
    let pv: Vec<&&str> = cells.iter().filter(|c| c.contains("--pvmmu on")).collect();
    assert!(pv.iter().all(|c| c.contains("--vcpus 2")));
    let fork_churn = pv.iter().filter(|c| c.contains("--workload fork-churn")).count();
    let calibration = pv.iter().filter(|c| c.contains("--workload calibrate")).count();
    assert_eq!((fork_churn, calibration), (7, 1), "{out}");
    let native: Vec<&&str> = cells.iter().filter(|c| !c.contains("--pvmmu on")).collect();
    assert_eq!(native.len(), 1, "{out}");
    assert!(native[0].contains("--workload calibrate") && native[0].contains("--lowmem 67108864"), "{out}");
    assert!(out.contains("9 cells x 3 repetitions: 27 jobs to run"), "{out}");
    // Shards partition the cells.
    let all = cells_listed(&[]);
    let (a, b) = (cells_listed(&["--shard", "1/2"]), cells_listed(&["--shard", "2/2"]));
    assert!(a.is_disjoint(&b));
    assert_eq!(a.union(&b).cloned().collect::<BTreeSet<_>>(), all);
}

#[test]
fn a_sweep_runs_end_to_end_and_resumes() {
    common::guest();
    let _vm = vms();
    let dir = tmp("sweep");
    let started = Instant::now();
    let o = bench(&["--matrix", "smoke", "--reps", "2", "--out", dir.to_str().unwrap()]);
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    eprintln!("smoke sweep of 6 runs took {:.1} s", took.as_secs_f64());

    // JSON lines: 3 cells x 2 repetitions, every one complete.
    let l = lines(&dir);
    assert_eq!(l.len(), 6);
    assert_eq!(pairs(&l).len(), 6);
    let keys: BTreeSet<&str> = l.iter().map(|x| x["cell"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 3);
    for x in &l {
        assert_eq!(x["ok"], true, "{x}");
        assert!(["qemu", "local"].contains(&x["host_mode"].as_str().unwrap()), "{}", x["host_mode"]);
        assert!(x["guest_kernel"].as_str().unwrap().starts_with("fnv64:"));
        assert!(!x["vmm_version"].as_str().unwrap().is_empty());
        assert!(x["config"].as_object().unwrap().len() > 20, "the full configuration");
        assert_eq!(x["config"]["workload"], x["report"]["config"]["workload"]);
        // Figures agree with the counters they come from.
        let f = &x["figures"];
        let t = &x["report"]["counter_totals"];
        match x["config"]["workload"].as_str().unwrap() {
            "vmap-bench" => {
                let want = t["vmap_bench_cycles"].as_f64().unwrap() / t["vmap_bench_iters"].as_f64().unwrap();
                assert!((f["vmap_bench_cycles_per_iter"].as_f64().unwrap() - want).abs() < 1e-6 * want);
                assert_eq!(f["vmap_bench_ns"], x["report"]["results"]["vmap_bench_ns"].as_f64().unwrap());
            }
            "pte-bench" => {
                let want = t["pte_bench_cycles"].as_f64().unwrap() / t["pte_bench_accesses"].as_f64().unwrap();
                assert!((f["pte_cycles_per_access"].as_f64().unwrap() - want).abs() < 1e-6 * want);
            }
            w => panic!("unexpected workload {w}"),
        }
        let exits: f64 =
            x["report"]["exits"].as_array().unwrap().iter().map(|e| e["user"]["hypercall"].as_f64().unwrap()).sum();
        assert_eq!(f["exits_hypercall"].as_f64().unwrap(), exits);
    }

    // CSV: one row per run; the summary's statistics are those of the runs.
    let rows = csv_rows(&dir.join("bench.csv"));
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["ok"] == "true"));
    let summary = csv_rows(&dir.join("summary.csv"));
    assert!(!summary.is_empty());
    for s in &summary {
        let (min, med, max): (f64, f64, f64) =
            (s["min"].parse().unwrap(), s["median"].parse().unwrap(), s["max"].parse().unwrap());
        assert!(min <= med && med <= max, "{s:?}");
        let mut v: Vec<f64> = l
            .iter()
            .filter(|x| x["cell"] == s["cell"].as_str())
            .filter_map(|x| x["figures"][s["figure"].as_str()].as_f64())
            .collect();
        if !v.is_empty() {
            assert_eq!(s["n"], v.len().to_string());
            assert!((median(&mut v) - med).abs() <= 1e-9 * med.abs().max(1.0), "{s:?}");
        }
    }

    // The Markdown report: a section per experiment, every cell, the plot, a
    // verdict for claim 1 computed from the medians.
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for title in ["## Lazy vs eager vmap", "## Cost of one pte access", "## Verdicts", "## The oracle"] {
        assert!(md.contains(title), "{title}\n{md}");
    }
    for label in ["eager, 1 vCPU", "lazy-ptes, 1 vCPU", "atomic, 1 vCPU"] {
        assert!(md.contains(&format!("| {label} | ok 2/2 |")), "{label}\n{md}");
    }
    assert!(md.contains("](vmap-lazy-vs-eager.svg)"));
    let svg = std::fs::read_to_string(dir.join("vmap-lazy-vs-eager.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("lazy-ptes"));
    let med_of = |label: &str, fig: &str| -> f64 {
        summary.iter().find(|s| s["label"] == label && s["figure"] == fig).unwrap()["median"].parse().unwrap()
    };
    let one = med_of("lazy-ptes, 1 vCPU", "vmap_one_alias_ns");
    let eager_one = med_of("eager, 1 vCPU", "vmap_one_alias_ns");
    let eager = med_of("eager, 1 vCPU", "vmap_bench_ns");
    let lazy = med_of("lazy-ptes, 1 vCPU", "vmap_bench_ns");
    let claim1 = md.lines().find(|l| l.starts_with("- **claim 1**")).unwrap();
    assert!(claim1.contains(&format!("costs {:.2}x an eager", one / eager_one)), "{claim1}");
    assert!(claim1.contains(&format!("{:.1}x", eager / lazy)), "{claim1}");
    assert!(!claim1.contains("not measured"), "{claim1}");
    assert!(md.contains("**claim 2**") && md.contains("not measured: needs --full"));
    // The terminal got the summary table and the verdicts.
    assert!(out.contains("== verdicts ==") && out.contains("claim 1: "), "{out}");

    // A sweep stopped after two runs, its last line cut by the stop, started by
    // another build: --resume runs the four missing jobs and nothing else.
    let again = tmp("resume");
    std::fs::create_dir_all(&again).unwrap();
    let mut sweep: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("sweep.json")).unwrap()).unwrap();
    sweep["vmm_id"] = "fnv64:0123456789abcdef (1 bytes)".into();
    std::fs::write(again.join("sweep.json"), sweep.to_string()).unwrap();
    let text = std::fs::read_to_string(dir.join("bench.jsonl")).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    let cut = &kept[2][..kept[2].len() / 2];
    std::fs::write(again.join("bench.jsonl"), format!("{}\n{}\n{cut}", kept[0], kept[1])).unwrap();
    let o = bench(&["--resume", again.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("4 jobs to run"), "{err}");
    assert!(err.contains("bench.jsonl:3: ignored a line that does not parse"), "{err}");
    assert!(err.contains("another build than its start"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("bench: [")).count(), 4, "{err}");
    // Appended, never rewritten: the cut line stays, on a line of its own, and
    // a copy of it is kept aside.
    let text2 = std::fs::read_to_string(again.join("bench.jsonl")).unwrap();
    assert!(text2.starts_with(&format!("{}\n{}\n{cut}\n", kept[0], kept[1])), "the file is only appended to");
    let (l2, bad) = parsed(&again);
    assert_eq!(bad, [3]);
    assert_eq!(l2.len(), 6);
    assert_eq!(pairs(&l2), pairs(&l));
    let aside: Value =
        serde_json::from_str(std::fs::read_to_string(again.join("bench.rejected.jsonl")).unwrap().trim()).unwrap();
    assert_eq!((aside["line"].as_u64(), aside["text"].as_str()), (Some(3), Some(cut)));
    // The new runs record the build that ran them, not sweep.json's.
    for x in &l2[2..] {
        assert_eq!(x["vmm_id"], l[0]["vmm_id"], "{}", x["vmm_id"]);
        assert_eq!(x["guest_kernel"], l[0]["guest_kernel"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn shards_merge_into_the_whole_sweep() {
    common::guest();
    let _vm = vms();
    let (s1, s2, m) = (tmp("shard1"), tmp("shard2"), tmp("merged"));
    for (shard, dir) in [("1/2", &s1), ("2/2", &s2)] {
        let o = bench(&["--matrix", "smoke", "--reps", "1", "--shard", shard, "--out", dir.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let (a, b) = (pairs(&lines(&s1)), pairs(&lines(&s2)));
    assert!(!a.is_empty() && !b.is_empty() && a.is_disjoint(&b));
    let o = bench(&["merge", s1.to_str().unwrap(), s2.to_str().unwrap(), "--out", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let merged = pairs(&lines(&m));
    let whole: BTreeSet<(String, u64)> = a.union(&b).cloned().collect();
    assert_eq!(merged, whole);
    // ... which is the unsharded matrix's cell set.
    let listed = cells_listed(&[]);
    assert_eq!(merged.len(), listed.len());
    let md = std::fs::read_to_string(m.join("report.md")).unwrap();
    assert!(md.contains("merged from") && !md.contains("not run |"), "{md}");
    // Merging into a directory that holds a sweep is refused.
    let o = bench(&["merge", s1.to_str().unwrap(), "--out", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already holds a sweep"));
    for d in [s1, s2, m] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_failed_cell_is_reported_and_the_sweep_goes_on() {
    common::guest();
    let _vm = vms();
    let dir = tmp("failing");
    let spec = dir.with_extension("json");
    let exp = serde_json::json!({"experiments": [{
    "id": "mixed", "title": "One cell that works, one that faults", "question": "q",
    "columns": ["vmap_bench_ns"],
    "cells": [
        {"label": "faults", "vcpus": 1, "mem": "64m", "timeout": 30, "params": {"workload": "fault-page"}},
        {"label": "works", "vcpus": 1, "mem": "256m", "timeout": 60,
         "params": {"workload": "vmap-bench", "iterations": "500", "vmap": "eager"}}
    ]}]});
    std::fs::write(&spec, exp.to_string()).unwrap();
    let o = bench(&["--spec", spec.to_str().unwrap(), "--reps", "1", "--out", dir.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    let l = lines(&dir);
    assert_eq!(l.len(), 2, "the sweep went on past the failure");
    let failed = l.iter().find(|x| x["label"] == "faults").unwrap();
    assert_eq!(failed["ok"], false);
    let why = failed["failure"].as_str().unwrap();
    assert!(why.contains("fault"), "{why}");
    assert!(failed["figures"].as_object().unwrap().is_empty(), "no figures from a failed run");
    assert_eq!(l.iter().find(|x| x["label"] == "works").unwrap()["ok"], true);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| faults | FAILED 1/1 |") && md.contains("Failed runs:") && md.contains(why), "{md}");
    assert!(out.contains("faults failed (rep 1)"), "{out}");
    // A failed run is not done: --resume would run it again.
    let o = bench(&["--resume", dir.to_str().unwrap(), "--list"]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listed.contains(": 1 jobs to run (1 failed before: run again)"), "{listed}\n{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&spec);
}

/// An experiment that names the figure its verdict rests on runs more
/// repetitions when that figure varies, and no more when it does not; the
/// report says what each planned, and the runs are what it planned.
#[test]
fn repetitions_follow_the_spread_measured() {
    common::guest();
    let _vm = vms();
    let dir = tmp("adapt");
    let spec = dir.with_extension("json");
    let cell = |label: &str, form: &str| {
        serde_json::json!({"label": label, "vcpus": 1, "mem": "256m", "timeout": 60,
            "params": {"workload": "vmap-bench", "iterations": "300", "vmap": form}})
    };
    let exp = serde_json::json!({"experiments": [
        // The iterations done never vary: the first 2 repetitions are enough.
        {"id": "steady", "title": "t", "question": "q", "columns": ["vmap_bench_iters"], "reps": 2,
         "adapt": {"figure": "vmap_bench_iters", "resolve_pct": 1, "max_reps": 4},
         "cells": [cell("steady-eager", "eager")]},
        // Wall time varies by more than ±0.5% resolves in 2 repetitions, up to the cap.
        {"id": "noisy", "title": "t", "question": "q", "columns": ["run_ms"], "reps": 2,
         "adapt": {"figure": "run_ms", "resolve_pct": 1, "max_reps": 4},
         "cells": [cell("noisy-lazy", "lazy-ptes")]}
    ]});
    std::fs::write(&spec, exp.to_string()).unwrap();
    let o = bench(&["--spec", spec.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let l = lines(&dir);
    let runs = |label: &str| l.iter().filter(|x| x["label"] == label && x["ok"] == true).count();
    assert_eq!(runs("steady-eager"), 2, "a figure that does not vary asks for no more");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Repetitions chosen from the spread"), "{md}");
    assert!(
        md.contains("- steady: vmap_bench_iters varied by 0.0% between repetitions; ±1% needs about 1: 2 repetitions"),
        "{md}"
    );
    let noisy = md.lines().find(|x| x.starts_with("- noisy: run_ms varied by")).unwrap_or_else(|| panic!("{md}"));
    // "... needs about N: M repetitions ...": M is N within 2..=4, and what ran.
    let num_after = |key: &str| -> usize {
        let rest = &noisy[noisy.find(key).unwrap_or_else(|| panic!("{noisy}")) + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{noisy}"))
    };
    let need = num_after("needs about ");
    let planned = num_after(&format!("needs about {need}: "));
    assert_eq!(planned, need.clamp(2, 4), "{noisy}");
    assert_eq!(runs("noisy-lazy"), planned, "{noisy}");
    assert_eq!(noisy.contains("may not decide"), need > 4, "{noisy}");
    assert!(md.contains(&format!("| noisy-lazy | ok {planned}/{planned} |")), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&spec);
}

#[test]
fn ctrl_c_keeps_the_finished_runs_and_resume_completes_the_sweep() {
    common::guest();
    let _vm = vms();
    let dir = tmp("ctrlc");
    let child = Command::new(common::vmm())
        .args(["bench", "--matrix", "smoke", "--reps", "3", "--out", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(&dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!lines(&dir).is_empty(), "no run finished in time");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with the pid of our own child, which has not been waited
    // for yet (so the pid cannot have been reused), and a plain signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let done = lines(&dir);
    assert!(!done.is_empty() && done.len() < 9, "{} runs", done.len());
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("Interrupted"));
    let o = bench(&["--resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{} jobs to run", 9 - done.len())), "{}", stderr(&o));
    let all = lines(&dir);
    assert_eq!(all.len(), 9);
    assert_eq!(pairs(&all).len(), 9);
    assert_eq!(&all[..done.len()], &done[..]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vmm bench reprice`: a finished sweep's counts priced with a given table of
/// unit costs, into a new directory; the sweep read is left as it was, and a
/// table that is not one is a clear error.
#[test]
fn reprice_prices_the_counts_with_another_hosts_table_and_leaves_the_sweep_alone() {
    let (dir, out, bad_out) = (tmp("reprice-in"), tmp("reprice-out"), tmp("reprice-bad"));
    // "one" pinned 100 tables with 100 calls of vm_unmap_aliases, 40 of them
    // flushing; 2 traps back.
    let mut line: Value = serde_json::from_str(&fabricated_line(1, 0, true)).unwrap();
    line["figures"] = serde_json::json!({"pt_pins": 100.0, "vm_unmap_aliases": 100.0,
        "vm_unmap_aliases_flushed": 40.0, "traps_back": 2.0, "pt_pin_refused": 0.0, "pt_pin_cycles": 250000.0,
        "vm_unmap_aliases_cycles": 50000.0, "vm_unmap_aliases_in_pin_cycles": 50000.0});
    fabricated_sweep(&dir, &format!("{line}\n"));
    let table = dir.with_extension("cost-table.json");
    let units = serde_json::json!({"exit": 80.0, "hypercall": 100.0, "flush_global": 250.0,
        "vm_unmap_aliases_empty_call": 20.0, "vm_unmap_aliases_flush_call": 1000.0, "pin": 600.0, "trap_back": 400.0});
    let t = serde_json::json!({"schema": 1, "machine": {"cores": 8, "cpu": "another host", "mem_mib": 1},
        "host_mode": "local", "measured_at": "2026-01-01T00:00:00Z", "command": [], "reps": 3, "units": units});
    std::fs::write(&table, t.to_string()).unwrap();
    let before = snapshot(&dir);
    let o = bench(&[
        "reprice",
        dir.to_str().unwrap(),
        "--cost-table",
        table.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(snapshot(&dir), before, "reprice reads the sweep only");
    // 100 x 600 + 60 x 20 + 40 x 1000 + 2 x 400 = 102000 cycles; the pin path measured 250000.
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}: {csv}"))];
    assert_eq!(col("model_cycles"), "102000");
    assert_eq!(col("model_cycles_per_pin"), "1020");
    assert_eq!(col("model_explains"), "0.408");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("another host") && md.contains(&format!("repriced from {}", dir.display())), "{md}");
    assert_eq!(lines(&out).len(), 1, "the new directory is a sweep of its own");
    // A table with a negative unit cost is refused, and nothing is written.
    std::fs::write(&table, t.to_string().replace("\"pin\":600.0", "\"pin\":-1.0")).unwrap();
    let o = bench(&[
        "reprice",
        dir.to_str().unwrap(),
        "--cost-table",
        table.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("a unit cost is negative"), "{}", stderr(&o));
    assert!(!bad_out.exists());
    // --calibrate runs the calibration cell alone.
    let o = bench(&["--calibrate", "--list"]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listed.contains("2 cells x 3 repetitions: 6 jobs to run"), "{listed}");
    assert!(listed.contains("--workload calibrate") && listed.contains("--alias host-trap"), "{listed}");
    for d in [dir, out, bad_out] {
        let _ = std::fs::remove_dir_all(d);
    }
    let _ = std::fs::remove_file(table);
}

//! The experiments' cells and verdicts, from made-up figures.

use std::collections::BTreeMap;

use shared::config::{AliasStrategy, Config, PteVariant, Setting as S};

use super::cells::{fork_churn, frequency_cell, STRATEGIES};
use super::verdict::{is, status_noisy};
use super::*;
use crate::claim::Claim;
use crate::design::{cells, Cell, CellSpec, MatrixName, Want::Vcpus};
use crate::figures::named;
use crate::stats::Stat;

fn result(spec: CellSpec, experiment: &str, figs: &[(&str, f64)]) -> CellResult {
    let mut cell = spec.resolve(experiment).unwrap();
    cell.experiments = vec![experiment.to_owned()];
    CellResult {
        cell,
        reps: vec![(0, named(figs))],
        failures: vec![],
        stats: named(figs).into_iter().map(|(k, v)| (k, Stat::exact(v, v, v, 1))).collect::<BTreeMap<_, _>>(),
        warnings: vec![],
        host_modes: vec![],
    }
}

/// Gives `figure` these values, one per repetition (repetitions added as
/// needed, each with the cell's other figures), and its statistics.
fn spread(r: &mut CellResult, figure: &str, values: &[f64]) {
    let first = r.reps.first().map(|(_, f)| f.clone()).unwrap_or_default();
    while r.reps.len() < values.len() {
        r.reps.push((r.reps.len() as u32, first.clone()));
    }
    for ((_, f), v) in r.reps.iter_mut().zip(values) {
        f.insert(figure.into(), *v);
    }
    r.stats.insert(figure.into(), Stat::of(values).unwrap());
}

fn spec(vcpus: u32, params: &[(&str, &str)]) -> CellSpec {
    CellSpec::parsed(&format!("{params:?}"), vcpus, params).unwrap()
}

fn get<'a>(v: &'a [Verdict], id: &str) -> &'a Verdict {
    v.iter().find(|x| x.claim.id() == id).unwrap()
}

#[test]
fn nothing_ran_nothing_claimed() {
    let v = verdicts(&[], false);
    assert_eq!(v.len(), Claim::ALL.len());
    assert!(v.iter().all(|x| x.status == Status::NotMeasured && x.text.starts_with("needs")), "{v:?}");
    assert!(get(&v, "claim 7").text.contains("default matrix"));
    let v = verdicts(&[], true);
    assert!(v.iter().all(|x| x.text.contains("not in this run")));
}

#[test]
fn batching_from_the_exits_per_fault() {
    let run = |workload, batch, exits: f64, spread_by: f64| {
        let mut r = result(
            spec(2, &[("workload", workload), ("pvmmu", "on"), ("pv-batch", batch)]),
            "pv-batching",
            &[("hypercall_exits_per_kfault", exits), ("pv_updates_per_call", if batch == "on" { 1.5 } else { 1.0 })],
        );
        spread(&mut r, "hypercall_exits_per_kfault", &[exits - spread_by, exits, exits + spread_by]);
        r
    };
    let r = vec![
        run("fork-storm", "on", 19000.0, 100.0),
        run("fork-storm", "off", 32500.0, 100.0),
        run("mm-all", "on", 8800.0, 100.0),
        run("mm-all", "off", 11900.0, 100.0),
    ];
    let b = get(&verdicts(&r, true), "batching").clone();
    assert_eq!(b.status, Status::Confirmed, "{b}");
    assert!(b.text.contains("fork-storm: 19000 hypercall exits per 1000 page faults batched against 32500"), "{b}");
    assert!(b.text.contains("(42% fewer [0.58-0.59, 95% bootstrap, n 3]; 1.50 updates per mmu_update)"), "{b}");
    // Spreads that overlap decide nothing for that workload.
    let mut r = r;
    r[2] = run("mm-all", "on", 11000.0, 2000.0);
    let b = get(&verdicts(&r, true), "batching").clone();
    assert_eq!(b.status, Status::Partly, "{b}");
    assert!(b.text.contains("8% fewer, within the noise"), "{b}");
    // Batching that costs exits says so, and refutes.
    r[0] = run("fork-storm", "on", 40000.0, 100.0);
    let b = get(&verdicts(&r, true), "batching").clone();
    assert!(b.text.contains("(23% more [1.22-1.24"), "{b}");
    assert_eq!(b.status, Status::Refuted, "{b}");
    // One workload missing: not measured.
    let b = get(&verdicts(&r[..3], true), "batching").clone();
    assert_eq!(b.status, Status::NotMeasured, "{b}");
}

#[test]
fn claim1_from_vmap_bench() {
    let vb = |form, ns, one| {
        result(
            spec(1, &[("workload", "vmap-bench"), ("vmap", form)]),
            "vmap-bench",
            &[("vmap_bench_ns", ns), ("vmap_one_alias_ns", one)],
        )
    };
    let r = [vb("eager", 10000.0, 10000.0), vb("lazy-ptes", 2000.0, 11000.0)];
    let v = get(&verdicts(&r, false), "claim 1").clone();
    assert_eq!(v.status, Status::Confirmed, "{v}");
    assert!(v.text.contains("1.10x an eager") && v.text.contains("5.0x faster"), "{v}");
    let r = [vb("eager", 10000.0, 10000.0), vb("lazy-ptes", 2000.0, 100000.0)];
    assert_eq!(get(&verdicts(&r, false), "claim 1").status, Status::Partly);
    let r = [vb("eager", 1000.0, 10000.0), vb("lazy-ptes", 2000.0, 100000.0)];
    assert_eq!(get(&verdicts(&r, false), "claim 1").status, Status::Refuted);
}

#[test]
fn a_failed_cell_is_not_a_figure() {
    let mut failed = result(spec(1, &[("workload", "vmap-bench"), ("vmap", "eager")]), "vmap-bench", &[]);
    failed.reps.clear();
    failed.stats.clear();
    failed.failures.push((0, "guest shut down with status 1".into()));
    let v = verdicts(&[failed], false);
    let c1 = get(&v, "claim 1");
    assert_eq!(c1.status, Status::NotMeasured);
    assert!(c1.text.contains("failed") && c1.text.contains("status 1"), "{c1}");
}

#[test]
fn claim7_and_history_from_the_pin_figures() {
    let exps = builtin(MatrixName::Full);
    let all = cells(&exps).unwrap();
    let mut r = Vec::new();
    for c in &all {
        let in_exp = |e: &str| c.experiments.iter().any(|x| x == e);
        if !(in_exp("alias-strategies") || in_exp("alias-frequency") || in_exp("history")) {
            continue;
        }
        let alias = c.config["alias"].as_str();
        let every: f64 = c.config["churn-every"].parse().unwrap();
        // host-trap is cheap when aliases are rare, dear when frequent.
        let cpp = match alias {
            "host-trap" => 1000.0 + 4000.0 / every,
            "always-flush" => 3000.0,
            _ => 2000.0,
        };
        let mut figs = vec![
            ("cycles_per_pin", cpp),
            ("vm_unmap_aliases_flushed", 5.0),
            ("ratio_to_oracle", 1.5),
            ("workload_cycles_max", 1e9),
        ];
        figs.extend([("vm_unmap_aliases", if alias == "none" { 0.0 } else { 10.0 }), ("pt_pin_refused", 0.0)]);
        let reflushed = if c.config["vmap-flush"] == "6.5" { 0.0 } else { 3.0 };
        figs.push(("vm_unmap_aliases_reflushed", reflushed));
        let mut cr = result(spec(2, &[]), "x", &figs);
        cr.cell = c.clone();
        r.push(cr);
    }
    let v = verdicts(&r, true);
    let c7 = get(&v, "claim 7");
    assert_eq!(c7.status, Status::Confirmed, "{c7}");
    // host-trap 5000 at every fork, 1015.6 at every 256th, against
    // always-flush's 3000 (one repetition each: the interval is the ratio).
    assert!(c7.text.contains("cycles 1.67x [1.67-1.67"), "{c7}");
    assert!(c7.text.contains("cycles 0.34x [0.34-0.34"), "{c7}");
    assert!(c7.text.contains("rare: host-trap cheaper in cycles (no calibration)"), "{c7}");
    assert!(c7.text.contains("every fork: host-trap dearer"), "{c7}");
    // The oracle and none are listed, never the answer.
    assert!(c7.text.contains("cheapest alias-bit") && c7.text.contains("fewest flushing: always-flush"), "{c7}");
    let h = get(&v, "history");
    assert_eq!(h.status, Status::Confirmed, "{h}");
    // Only the default matrix: claim 7 measured, the rest needs --full.
    let default: Vec<CellResult> =
        r.into_iter().filter(|c| c.cell.experiments.iter().any(|e| e == "alias-strategies")).collect();
    let mut only_default = default.clone();
    for c in &mut only_default {
        c.cell.experiments = vec!["alias-strategies".into()];
    }
    let v = verdicts(&only_default, false);
    let c7 = get(&v, "claim 7");
    assert_eq!(c7.status, Status::Measured, "{c7}");
    assert!(c7.text.contains("needs --full"), "{c7}");
    assert_eq!(get(&v, "history").text, "needs --full");
}

#[test]
fn a_difference_within_the_repetitions_spread_decides_nothing() {
    assert_eq!(status_noisy(&[Some(true), Some(true)]), Status::Confirmed);
    assert_eq!(status_noisy(&[Some(true), None]), Status::Partly);
    assert_eq!(status_noisy(&[Some(false), None]), Status::Refuted);
    assert_eq!(status_noisy(&[None]), Status::Inconclusive);

    // Claim 7 at one alias source per 64 forks, judged on a bootstrap
    // interval of the ratio of the medians of cycles per pin.
    let claim7 = |host_trap: &[f64], always_flush: &[f64]| {
        let exps = builtin(MatrixName::Full);
        let all = cells(&exps).unwrap();
        let mut r = Vec::new();
        let of = |c: &&Cell, e: &str| c.experiments.iter().any(|x| x == e);
        for c in all.iter().filter(|c| of(c, "alias-frequency") || of(c, "alias-strategies")) {
            let (alias, every) = (c.config["alias"].as_str(), c.config["churn-every"].as_str());
            let v: &[f64] = match (alias, every) {
                ("host-trap", "256") => host_trap,
                ("always-flush", "256") => always_flush,
                _ => &[5e6, 6e6, 7e6],
            };
            let mut cr = result(spec(2, &[]), "x", &[]);
            cr.cell = c.clone();
            cr.reps = v.iter().enumerate().map(|(i, x)| (i as u32, named(&[("cycles_per_pin", *x)]))).collect();
            cr.stats.insert("cycles_per_pin".into(), Stat::of(v).unwrap());
            for count in ["vm_unmap_aliases", "vm_unmap_aliases_flushed"] {
                cr.stats.insert(count.into(), Stat::exact(10.0, 10.0, 10.0, v.len()));
            }
            r.push(cr);
        }
        get(&verdicts(&r, true), "claim 7").clone()
    };
    // The same spread for both, medians 10% apart: within the noise.
    let flush9 = [1.0e5, 1.3e5, 0.8e5, 1.6e5, 0.9e5, 1.2e5, 1.5e5, 0.7e5, 1.1e5];
    let trap9: Vec<f64> = flush9.iter().map(|x| x * 0.9).collect();
    let c7 = claim7(&trap9, &flush9);
    assert_eq!(c7.status, Status::Inconclusive, "{c7}");
    assert!(c7.text.contains("cycles 0.90x") && c7.text.contains("rare: within the noise"), "{c7}");
    // One wild repetition each does not hide a clear difference.
    let trap9 = [1.00e5, 1.05e5, 1.10e5, 1.15e5, 1.18e5, 1.20e5, 1.25e5, 1.30e5, 6.60e5];
    let flush9 = [0.5e5, 2.60e5, 2.70e5, 2.99e5, 3.20e5, 3.50e5, 3.81e5, 4.00e5, 4.96e5];
    let c7 = claim7(&trap9, &flush9);
    assert_eq!(c7.status, Status::Confirmed, "{c7}");
    assert!(c7.text.contains("rare: host-trap cheaper"), "{c7}");
    // Every fork (the same figures for both here) is reported, not judged.
    assert!(c7.text.contains("every fork: within the noise"), "{c7}");
}

/// Priced by the model, claim 7's comparisons must clear the model's own
/// precision: a ratio 1% from 1 with a tight interval (the counts barely
/// vary) decides nothing, one far from 1 does.
#[test]
fn a_priced_difference_within_the_models_precision_decides_nothing() {
    let exps = builtin(MatrixName::Full);
    let all = cells(&exps).unwrap();
    let of = |c: &&Cell, e: &str| c.experiments.iter().any(|x| x == e);
    let mut r = Vec::new();
    for c in all.iter().filter(|c| of(c, "alias-frequency") || of(c, "alias-strategies")) {
        let (alias, every) = (c.config["alias"].as_str(), c.config["churn-every"].as_str());
        // Priced: host-trap 1.01x always-flush at every fork, 0.40x at every 256th.
        let model = match (alias, every) {
            ("host-trap", "1") => 1.01e7,
            ("host-trap", _) => 4.0e6,
            _ => 1.0e7,
        };
        let v = [model * 0.999, model, model * 1.001];
        let mut cr = result(spec(2, &[]), "x", &[]);
        cr.cell = c.clone();
        cr.reps = v
            .iter()
            .enumerate()
            .map(|(i, x)| (i as u32, named(&[("cycles_per_pin", *x), ("model_cycles_per_pin", *x)])))
            .collect();
        for figure in ["cycles_per_pin", "model_cycles_per_pin"] {
            cr.stats.insert(figure.into(), Stat::of(&v).unwrap());
        }
        for count in ["vm_unmap_aliases", "vm_unmap_aliases_flushed"] {
            cr.stats.insert(count.into(), Stat::exact(10.0, 10.0, 10.0, v.len()));
        }
        r.push(cr);
    }
    let c7 = get(&verdicts(&r, true), "claim 7").clone();
    assert!(c7.text.contains("priced 1.01x [1.01-1.01"), "{c7}");
    assert!(c7.text.contains("every fork: within the noise (priced, the interval reaches within 5% of 1)"), "{c7}");
    assert!(c7.text.contains("rare: host-trap cheaper priced"), "{c7}");
    assert_eq!(c7.status, Status::Confirmed, "{c7}");
}

#[test]
fn which_strategy_names_the_cheapest_at_each_frequency_by_the_model_and_the_cycles() {
    let exps = builtin(MatrixName::Full);
    let all = cells(&exps).unwrap();
    let mut r = Vec::new();
    for c in all.iter().filter(|c| c.experiments.iter().any(|e| e == "which-strategy")) {
        let every: f64 = c.config["churn-every"].parse().unwrap();
        // Priced: always-flush pays a call per pin whatever the frequency;
        // host-trap pays per alias, so it wins once aliases are rare; none
        // is cheapest of all but is no answer. The cycles say otherwise at
        // every fork.
        let (model, cycles) = match c.config["alias"].as_str() {
            "always-flush" => (3000.0, 3000.0),
            "host-trap" => (1000.0 + 4000.0 / every, 1000.0 + 1000.0 / every),
            "none" => (10.0, 10.0),
            "oracle" => (900.0, 900.0),
            _ => (5000.0, 5000.0),
        };
        let figs = [
            ("model_cycles_per_pin", model),
            ("cycles_per_pin", cycles),
            ("vm_unmap_aliases", 10.0),
            ("vm_unmap_aliases_flushed", 5.0),
        ];
        let mut cr = result(spec(2, &[]), "x", &figs);
        cr.cell = c.clone();
        r.push(cr);
    }
    let v = verdicts(&r, true);
    let w = get(&v, "which strategy");
    assert_eq!(w.status, Status::Measured, "{w}");
    assert!(w.text.contains("every 1: always-flush by the model (3.000e3 per pin, 3.33x the oracle"), "{w}");
    assert!(w.text.contains(", host-trap by the cycles (2.000e3)"), "{w}");
    assert!(w.text.contains("every 4: host-trap by the model (2.000e3 per pin"), "{w}");
    assert!(w.text.contains("same strategy at 4 of 5 frequencies"), "{w}");
    assert!(!w.text.contains("none by"), "none is no answer: {w}");
    // Nothing of the sweep ran: not measured.
    let v = verdicts(&r[..0], true);
    assert_eq!(get(&v, "which strategy").status, Status::NotMeasured);
}

#[test]
fn claims_2_to_6() {
    let mut r = Vec::new();
    let mm = |n: &str, sleeps, flushes, hits| {
        result(
            spec(2, &[("workload", "mm-all"), ("pte", "persistent"), ("last-pkmap", n), ("tasks", "16")]),
            "pkmap-pool",
            &[
                ("kmap_sleeps", sleeps),
                ("pkmap_flushes_per_kfault", flushes),
                ("kmap_lock_waits_per_kfault", 3.0),
                ("kmap_cache_hits_per_kfault", hits),
            ],
        )
    };
    r.push(mm("256", 0.0, 2.0, 2000.0));
    r.push(mm("2048", 0.0, 0.5, 2100.0));
    let wrap = |n: &str, wraps, span| {
        result(
            spec(2, &[("workload", "task-capacity"), ("pte", "persistent"), ("last-pkmap", n)]),
            "pkmap-wrap",
            &[("pkmap_wrap_flushes", wraps), ("workload_cycles_max", span)],
        )
    };
    r.push(wrap("256", 32.0, 5e9));
    r.push(wrap("2048", 3.0, 4e9));
    let pb = |pte, v, cost, waits| {
        let mut c = result(
            spec(v, &[("workload", "pte-bench"), ("pte", pte)]),
            "pte-cost",
            &[("pte_cycles_per_access", cost), ("kmap_lock_waits", waits)],
        );
        c.cell.experiments.push("kmap-scaling".into());
        c
    };
    // A second vCPU doubles lowpte's cost (the emulator's share) and
    // atomic's; the pool's four times.
    r.extend([pb("atomic", 1, 120.0, 0.0), pb("atomic", 2, 250.0, 0.0), pb("persistent", 1, 300.0, 0.0)]);
    r.extend([pb("persistent", 2, 1200.0, 40.0), pb("lowpte", 1, 100.0, 0.0), pb("per-task", 1, 150.0, 0.0)]);
    r.push(pb("lowpte", 2, 200.0, 0.0));
    // Claim 6's own, longer pte-bench cells.
    for (pte, v, cost) in
        [("per-task", 1, 350.0), ("persistent", 1, 300.0), ("per-task", 2, 360.0), ("persistent", 2, 600.0)]
    {
        r.push(result(
            spec(v, &[("workload", "pte-bench"), ("pte", pte), ("rounds", "20000")]),
            "per-task-kmaps",
            &[("pte_cycles_per_access", cost)],
        ));
    }
    let tc = |low, pte, n| {
        result(
            spec(2, &[("workload", "task-capacity"), ("pte", pte), ("lowmem", low)]),
            "task-capacity",
            &[("tasks_started", n)],
        )
    };
    r.extend([tc("16m", "lowpte", 30.0), tc("16m", "atomic", 200.0)]);
    let m6 = |pte, v, span| {
        result(
            spec(v, &[("workload", "mm-all"), ("pte", pte), ("tasks", "8")]),
            "per-task-kmaps",
            &[("workload_cycles_max", span)],
        )
    };
    r.extend([m6("per-task", 1, 11.0), m6("persistent", 1, 10.0), m6("per-task", 2, 8.0), m6("persistent", 2, 10.0)]);
    let v = verdicts(&r, true);
    for id in ["claim 2", "claim 3", "claim 4", "claim 5", "claim 6"] {
        assert_eq!(get(&v, id).status, Status::Confirmed, "{}", get(&v, id));
    }
    assert!(get(&v, "claim 5").text.contains("1.20x"), "{}", get(&v, "claim 5"));
    assert!(get(&v, "claim 2").text.contains("wraps 32 -> 3"), "{}", get(&v, "claim 2"));
    // The wrapping load slower with 2048 entries (the longer scan), or
    // without its cells: only part of claim 2 holds.
    let mut slower = r.clone();
    slower.retain(|c| !c.cell.experiments.iter().any(|e| e == "pkmap-wrap"));
    slower.extend([wrap("256", 32.0, 4e9), wrap("2048", 3.0, 5e9)]);
    let c2 = get(&verdicts(&slower, true), "claim 2").clone();
    assert_eq!(c2.status, Status::Partly, "{c2}");
    assert!(c2.text.contains("(2048 slower)") && c2.text.contains("caches better but flushes no less"), "{c2}");
    assert!(get(&v, "claim 4").text.contains("30 tasks with lowpte, 200 with highpte"));
    let c3 = get(&v, "claim 3");
    assert!(c3.text.contains("beyond that, atomic 1.04x [1.04-1.04") && c3.text.contains("persistent 2.00x"), "{c3}");
    // Atomic slowing by more than the emulator's share does not scale.
    let mut slow = r.clone();
    slow.retain(|c| !(c.matches(&[is(S::Pte(PteVariant::Atomic)), Vcpus(2)]) && c.cell.experiments.len() == 2));
    slow.push(pb("atomic", 2, 400.0, 0.0));
    let c3 = get(&verdicts(&slow, true), "claim 3").clone();
    assert_eq!(c3.status, Status::Partly, "{c3}");
    assert!(c3.text.contains("beyond that, atomic 1.67x") && c3.text.contains("atomic's cycles disagree"), "{c3}");
    // The counts decide: atomic waiting on kmap_lock does not scale, whatever
    // its cycles say.
    let atomic2 = |c: &CellResult| c.matches(&[is(S::Pte(PteVariant::Atomic)), Vcpus(2)]);
    let mut waits = r.clone();
    waits.retain(|c| !(atomic2(c) && c.cell.experiments.len() == 2));
    waits.push(pb("atomic", 2, 250.0, 5.0));
    let c3 = get(&verdicts(&waits, true), "claim 3").clone();
    assert_eq!(c3.status, Status::Partly, "{c3}");
    assert!(c3.text.contains("atomic 5 kmap_lock waits"), "{c3}");
    // Cycles whose interval holds the threshold decide nothing: no waits,
    // confirmed by the counts.
    let mut noisy = r.clone();
    for c in noisy.iter_mut().filter(|c| atomic2(c)) {
        spread(c, "pte_cycles_per_access", &[200.0, 250.0, 330.0]);
    }
    let c3 = get(&verdicts(&noisy, true), "claim 3").clone();
    assert_eq!(c3.status, Status::Confirmed, "{c3}");
    assert!(c3.text.contains("atomic's cycles within the noise"), "{c3}");
}

/// Claims 3 and 6 model a pte access as lowpte's measured access, the kmaps
/// priced (scaled by lowpte's slowdown on 2 vCPUs), the wraps priced and the
/// kmap_lock wait measured; without the wait (an older report) no model line.
#[test]
fn a_modelled_pte_access_adds_the_measured_lock_wait() {
    // (pte, vCPUs, measured access, kmaps and wraps priced, wraps' part, the
    // wraps priced with the other vCPU halted, wait)
    let rows = [
        ("lowpte", 1, 100.0, 0.0, 0.0, 0.0, 0.0),
        ("lowpte", 2, 200.0, 0.0, 0.0, 0.0, 0.0),
        ("per-task", 1, 150.0, 40.0, 0.0, 0.0, 0.0),
        ("per-task", 2, 290.0, 40.0, 0.0, 0.0, 0.0),
        ("persistent", 1, 160.0, 50.0, 10.0, 10.0, 0.0),
        ("persistent", 2, 500.0, 60.0, 20.0, 5.0, 300.0),
        ("atomic", 1, 130.0, 30.0, 0.0, 0.0, 0.0),
        ("atomic", 2, 260.0, 30.0, 0.0, 0.0, 0.0),
    ];
    let cells = |with_wait: bool| -> Vec<CellResult> {
        rows.iter()
            .map(|&(pte, v, access, model, wraps, halted, wait)| {
                let mut figs = vec![
                    ("pte_cycles_per_access", access),
                    ("kmap_model_cycles_per_access", model),
                    ("kmap_wrap_model_cycles_per_access", wraps),
                    ("kmap_wrap_halted_model_cycles_per_access", halted),
                    ("kmap_lock_waits", if wait > 0.0 { 9.0 } else { 0.0 }),
                ];
                if with_wait {
                    figs.push(("kmap_lock_wait_cycles_per_access", wait));
                }
                let mut c = result(spec(v, &[("workload", "pte-bench"), ("pte", pte)]), "per-task-kmaps", &figs);
                c.cell.experiments.push("kmap-scaling".into());
                c
            })
            .collect()
    };
    let v = verdicts(&cells(true), true);
    let c6 = get(&v, "claim 6");
    // UP: 100 + 40 against 100 + 40 + 10; SMP: 200 + 2 x 40 against
    // 200 + 2 x (60 - 20) + 20 + 300.
    assert!(c6.text.contains("per-task 140 against the pool's 150 cycles a pte access on UP (0.93x"), "{c6}");
    assert!(c6.text.contains("280 against 600 on SMP (0.47x, as the cycles"), "{c6}");
    assert!(c6.text.contains("80 of kmaps, 20 of wraps and 300 of lock wait; the model gives 1.20x"), "{c6}");
    // With the wraps priced with the other vCPU halted: 600 - 20 + 5.
    assert!(c6.text.contains("access with each wrap's flush priced with the other vCPU busy, 1.17x with it halted"));
    // Claim 3, beyond lowpte's 2x: atomic (200 + 60) / 130 / 2, the pool 600 / 150 / 2.
    let c3 = get(&v, "claim 3");
    assert!(c3.text.contains("beyond lowpte's: atomic 1.00x, persistent 2.00x, or 1.95x with each wrap"), "{c3}");
    assert!(c3.text.contains("300 of kmap_lock wait, atomic's 0 of wait"), "{c3}");
    let v = verdicts(&cells(false), true);
    assert!(!get(&v, "claim 6").text.contains("by the model"), "no wait timed, no model");
    assert!(!get(&v, "claim 3").text.contains("by the model"), "no wait timed, no model");
}

/// Claim 6 is decided on the kmap (pte-bench); mm-all's span only rides along.
#[test]
fn claim_6_is_decided_per_access() {
    let pb = |pte, v, cost: [f64; 3], hits, invlpg| {
        let mut c = result(
            spec(v, &[("workload", "pte-bench"), ("pte", pte)]),
            "per-task-kmaps",
            &[
                ("pte_cycles_per_access", cost[1]),
                ("kmap_cache_hits_per_access", hits),
                ("tlb_invlpg_per_access", invlpg),
                ("kmap_lock_waits", if pte == "persistent" && v == 2 { 300.0 } else { 0.0 }),
            ],
        );
        spread(&mut c, "pte_cycles_per_access", &cost);
        c
    };
    let mm = |pte, v, span| {
        result(
            spec(v, &[("workload", "mm-all"), ("pte", pte), ("tasks", "8")]),
            "per-task-kmaps",
            &[("workload_cycles_max", span)],
        )
    };
    // Per-task faster on both: SMP holds, UP does not (as measured QEMU-hosted).
    let mut r = vec![
        pb("per-task", 1, [1800.0, 1900.0, 2000.0], 0.0, 1.0),
        pb("persistent", 1, [2400.0, 2500.0, 2600.0], 1.0, 0.0),
        pb("per-task", 2, [1800.0, 1850.0, 1900.0], 0.0, 1.0),
        pb("persistent", 2, [4800.0, 5000.0, 5200.0], 1.0, 0.0),
    ];
    // pte-cost's shorter cells of the same variants are not claim 6's.
    let short = result(
        spec(2, &[("workload", "pte-bench"), ("pte", "per-task")]),
        "pte-cost",
        &[("pte_cycles_per_access", 9000.0)],
    );
    let c6 = get(&verdicts(&[vec![short], r.clone()].concat(), true), "claim 6").clone();
    assert_eq!(c6.status, Status::Partly, "{c6}");
    assert!(
        c6.text.contains(
            "1850 against 5000 cycles on SMP (0.37x [0.35-0.40, 95% bootstrap, n 3], 2 vCPUs, per-task faster)"
        ),
        "{c6}"
    );
    assert!(c6.text.contains("on UP (0.76x [0.69-0.83, 95% bootstrap, n 3], per-task faster)"), "{c6}");
    assert!(c6.text.contains("cache served 1.00 maps per access on UP") && c6.text.contains("300 kmap_lock"));
    assert!(!c6.text.contains("mm-all span"), "{c6}");
    // mm-all within its noise does not decide, but is reported.
    r.extend([mm("per-task", 1, 10.0), mm("persistent", 1, 10.0), mm("per-task", 2, 9.0), mm("persistent", 2, 9.0)]);
    let c6 = get(&verdicts(&r, true), "claim 6").clone();
    assert_eq!(c6.status, Status::Partly, "{c6}");
    assert!(
        c6.text.contains(
            "whole mm-all span, per-task / pool: 1.00x, within the noise on SMP, 1.00x, within the noise on UP"
        ),
        "{c6}"
    );
    // The UP pool within per-task's range: that half is undecided.
    r[1] = pb("persistent", 1, [1700.0, 1950.0, 2600.0], 1.0, 0.0);
    let c6 = get(&verdicts(&r, true), "claim 6").clone();
    assert_eq!(c6.status, Status::Partly, "{c6}");
    assert!(c6.text.contains("UP (0.97x [0.69-1.18, 95% bootstrap, n 3], within the noise)"), "{c6}");
    // Without pte-bench the claim is not measured, whatever mm-all says.
    r.drain(..4);
    assert_eq!(get(&verdicts(&r, true), "claim 6").status, Status::NotMeasured);
}

#[test]
fn every_builtin_cell_resolves_and_keys_are_unique_per_configuration() {
    for name in [MatrixName::Default, MatrixName::Full, MatrixName::Smoke, MatrixName::LinuxShort] {
        let exps = builtin(name);
        crate::design::check_experiments(&exps).unwrap();
        let cells = cells(&exps).unwrap();
        let mut keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), cells.len());
        for c in &cells {
            // A Linux cell's configuration is its own (what it boots and runs).
            if c.linux.is_none() {
                assert_eq!(c.config.len(), Config::PARAMS.len());
            }
            assert!(c.args.windows(2).any(|w| w[0] == "--vcpus"));
        }
    }
}

#[test]
fn the_default_matrix_asks_the_main_question() {
    let cells = cells(&builtin(MatrixName::Default)).unwrap();
    assert_eq!(cells.len(), 9, "six strategies, the oracle and the two calibrations");
    let (native, cells) = cells.split_last().unwrap();
    let (calibration, cells) = cells.split_last().unwrap();
    assert_eq!(calibration.config["workload"], "calibrate");
    assert_eq!(calibration.config["alias"], "host-trap", "the trapped pin is a unit");
    assert_eq!(native.config["workload"], "calibrate");
    assert_eq!(native.config["pvmmu"], "off", "the kmap units price native pte-bench cells");
    let pte_bench = super::cells::pte_bench(PteVariant::Atomic, 2, 2048, 1).resolve("x").unwrap();
    for k in ["lowmem", "debug", "pvmmu"] {
        assert_eq!(native.config[k], pte_bench.config[k], "{k}: the native calibration has pte-bench's shape");
    }
    let strategies: Vec<AliasStrategy> = cells.iter().map(|c| c.alias()).collect();
    assert_eq!(strategies, STRATEGIES);
    for c in cells {
        assert_eq!(c.config["workload"], "fork-churn");
        assert_eq!(c.config["pvmmu"], "on");
        assert_eq!(c.vcpus, 2);
    }
}

#[test]
fn shared_configurations_are_one_cell_with_every_experiment() {
    let cells = cells(&builtin(MatrixName::Full)).unwrap();
    let key = fork_churn(AliasStrategy::AlwaysFlush).resolve("x").unwrap().key;
    assert!(!key.contains("churn-every"), "the default --churn-every stays out of the key: {key}");
    let c = cells.iter().find(|c| c.key == key).expect("the default always-flush cell");
    for e in ["alias-strategies", "history", "vcpus"] {
        assert!(c.experiments.iter().any(|x| x == e), "{e}: {:?} {}", c.experiments, c.key);
    }
    // The frequency sweep's cells (256 forks) are shared by the two
    // experiments that read them, and run once.
    let f = frequency_cell(AliasStrategy::HostTrap, 64).resolve("x").unwrap().key;
    let c = cells.iter().find(|c| c.key == f).expect("a frequency cell");
    assert_eq!(c.experiments, ["alias-frequency", "which-strategy"]);
}

#[test]
fn highpte_2002_passes_when_every_configuration_passes_with_its_tables_where_it_says() {
    let mail = highpte_2002::cells(true);
    assert_eq!(mail.len(), 40);
    let mut configs: Vec<(&str, bool, bool)> = mail.iter().map(|c| (c.memory, c.smp, c.preempt)).collect();
    configs.dedup();
    assert_eq!(configs.len(), 20, "the mail's 20 configurations");
    let exps = builtin(MatrixName::Full);
    let all = cells(&exps).unwrap();
    let run = |high_in_lowpte: f64| -> Vec<CellResult> {
        all.iter()
            .filter(|c| c.experiments.iter().any(|e| e == highpte_2002::ID))
            .map(|c| {
                let highpte = c.is(S::Pte(PteVariant::Atomic));
                let high = if highpte { 120.0 } else { high_in_lowpte };
                let mut r = result(spec(1, &[]), "x", &[("pt_pages_highmem", high), ("pt_pages_lowmem", 40.0)]);
                r.cell = c.clone();
                r
            })
            .collect()
    };
    assert_eq!(run(0.0).len(), 40);
    let v = get(&verdicts(&run(0.0), true), "highpte 2002").clone();
    assert_eq!(v.status, Status::Confirmed, "{v}");
    assert!(v.text.starts_with("40 of 40 runs passed"), "{v}");
    // A lowpte configuration with pagetables in highmem is not what it says.
    let v = get(&verdicts(&run(3.0), true), "highpte 2002").clone();
    assert_eq!(v.status, Status::Refuted, "{v}");
    assert!(v.text.contains("4GB, UP, preempt on, mm-all: 3 pte pages in highmem"), "{v}");
    // One failed run refutes, and says which.
    let mut r = run(0.0);
    r[5].reps.clear();
    r[5].failures.push((0, "guest shut down with status 1".into()));
    let v = get(&verdicts(&r, true), "highpte 2002").clone();
    assert_eq!(v.status, Status::Refuted, "{v}");
    assert!(v.text.contains("39 of 40") && v.text.contains("status 1"), "{v}");
    // Part of it run: measured, not confirmed.
    let v = get(
        &verdicts(&r[..10].iter().filter(|c| !c.reps.is_empty()).cloned().collect::<Vec<_>>(), true),
        "highpte 2002",
    )
    .clone();
    assert_eq!(v.status, Status::Measured, "{v}");
    assert_eq!(get(&verdicts(&[], true), "highpte 2002").status, Status::NotMeasured);
}

#[test]
fn linux_highpte_from_the_probes_figures() {
    use crate::linux_cell::{LinuxCell, LowmemProbe, PteCostProbe, UserPte};
    let cell = |userpte, v, cap: bool| {
        let linux = LinuxCell {
            userpte,
            vmalloc_mib: cap.then_some(900),
            pte_cost: (!cap).then_some(PteCostProbe { sparse_pte_pages: 64, dense_pte_pages: 16, rounds: 5 }),
            lowmem: Some(LowmemProbe { tasks: if cap { 8192 } else { 16 }, pte_pages: if cap { 64 } else { 16 } }),
        };
        CellSpec::linux(format!("{userpte:?} {v} {cap}"), v, if cap { "512m" } else { "1g" }, 300, linux)
    };
    let pte = |userpte, v, cycles: &[f64], drop_kb: &[f64]| {
        let mut r = result(
            cell(userpte, v, false),
            linux_highpte::PTE_EXPERIMENT,
            &[("lowmem_tasks", 16.0), ("lowmem_pte_pages_per_task", 16.0)],
        );
        spread(&mut r, "dense_fork_exit_cycles_per_pte", cycles);
        spread(&mut r, "lowfree_drop_kb_per_task", drop_kb);
        r
    };
    let mut r = vec![
        pte(UserPte::Highpte, 1, &[6980.0, 6500.0, 7400.0], &[16.0, 16.5, 15.5]),
        pte(UserPte::Nohigh, 1, &[2802.0, 2700.0, 2900.0], &[79.0, 79.5, 78.5]),
    ];
    let v = get(&verdicts(&r, false), "linux highpte").clone();
    assert_eq!(v.status, Status::Confirmed, "{v}");
    assert!(v.text.contains("6980 cycles per pte with highpte, 2802 with nohigh, 2.49x"), "{v}");
    assert!(v.text.contains("(slightly dearer), 1 vCPU"), "{v}");
    assert!(v.text.contains("highpte keeps 63.0 kB a task out of lowmem (its 16 pte pages are 64 kB)"), "{v}");
    assert!(v.text.contains("the cap at 16 pte pages a task is not in this run (linux-lowmem-cap)"), "{v}");
    // A LowFree drop of about 0 a task with highpte still decides (a difference, not a ratio).
    r[0] = pte(UserPte::Highpte, 1, &[6980.0, 6500.0, 7400.0], &[0.0, 0.0, 0.0]);
    assert_eq!(get(&verdicts(&r, false), "linux highpte").status, Status::Confirmed);
    // Much dearer on 2 vCPUs: partly.
    r.push(pte(UserPte::Highpte, 2, &[40000.0, 41000.0, 42000.0], &[16.0]));
    r.push(pte(UserPte::Nohigh, 2, &[4000.0, 4100.0, 4200.0], &[79.0]));
    let v = get(&verdicts(&r, false), "linux highpte").clone();
    assert_eq!(v.status, Status::Partly, "{v}");
    assert!(v.text.contains("(much dearer), 2 vCPUs"), "{v}");
    r.truncate(2);
    // The cap: more tasks in every run with highpte, and why each stopped.
    let cap = |userpte, tasks: &[f64]| {
        let mut r = result(
            cell(userpte, 1, true),
            linux_highpte::CAP_EXPERIMENT,
            &[("lowmem_stop_killed", 1.0), ("lowmem_stop_errno", 0.0)],
        );
        spread(&mut r, "lowmem_tasks", tasks);
        r
    };
    r.push(cap(UserPte::Highpte, &[2164.0, 2409.0]));
    r.push(cap(UserPte::Nohigh, &[647.0, 660.0]));
    let v = get(&verdicts(&r, true), "linux highpte").clone();
    assert_eq!(v.status, Status::Confirmed, "{v}");
    assert!(
        v.text.contains(
            "the cap in 80 MiB of lowmem, 64 pte pages a task: 2286 tasks with highpte (the OOM killer took a task)"
        ),
        "{v}"
    );
    assert!(v.text.contains("the cap at 16 pte pages a task is not in this run"), "{v}");
    r[3] = cap(UserPte::Nohigh, &[647.0, 2200.0]);
    let v = get(&verdicts(&r, true), "linux highpte").clone();
    assert_eq!(v.status, Status::Partly, "{v}");
    assert!(v.text.contains("(the runs overlap)"), "{v}");
    // Nothing of Linux ran: not measured.
    assert_eq!(get(&verdicts(&[], true), "linux highpte").status, Status::NotMeasured);
}

#[test]
fn a_linux_cell_resolves_to_a_linux_boot_and_a_spec_file_may_name_one() {
    let text = r#"{"experiments": [{"id": "e", "title": "t", "question": "q", "columns": ["lowmem_tasks"],
        "cells": [{"label": "x", "vcpus": 1, "mem": "1g", "timeout": 60, "params": {},
                   "linux": {"userpte": "nohigh", "lowmem": {"tasks": 4, "pte_pages": 2}}}]}]}"#;
    let spec: crate::design::SpecFile = serde_json::from_str(text).unwrap();
    let c = &cells(&spec.experiments).unwrap()[0];
    assert_eq!(c.key, "linux vcpus=1 mem=1g userpte=nohigh lowmem=4x2");
    assert!(
        c.args.windows(2).any(|w| w[0] == "--cmdline" && w[1] == "quiet rdinit=/init userpte=nohigh"),
        "{:?}",
        c.args
    );
    assert!(c.args.iter().any(|a| a == "--linux") && c.args.iter().any(|a| a == "--initrd"));
    assert!(c.matches(&[crate::design::Want::UserPte(crate::linux_cell::UserPte::Nohigh)]));
    assert!(!c.matches(&[is(S::Pte(PteVariant::Atomic))]));
    // Our guest's params do not go with Linux.
    let bad = text.replace(r#""params": {}"#, r#""params": {"alias": "oracle"}"#);
    let spec: crate::design::SpecFile = serde_json::from_str(&bad).unwrap();
    assert!(cells(&spec.experiments).unwrap_err().to_string().contains("takes no params"));
    // Both matrices that hold the experiment resolve.
    assert!(cells(&builtin(MatrixName::LinuxShort)).is_ok());
    assert!(cells(&builtin(MatrixName::Full)).unwrap().iter().filter(|c| c.linux.is_some()).count() == 8);
}

//! The figures of one run, taken from its report (`vmm run --json`): counters
//! summed over the vCPUs, the guest's results, exits by kind, the host's PV MMU
//! section, and figures derived from them within the same run (cycles per pin,
//! alias work). Figures that compare a run with another cell (the oracle's,
//! always-flush's) are added where the cells are gathered. Every figure is a number some run produced; a figure the run did
//! not produce is absent, never zero by default.

use std::collections::BTreeMap;

use serde_json::Value;

/// A run's figures by name.
pub type Figures = BTreeMap<String, f64>;

/// What a figure is, for the report's glossary.
pub struct FigureDef {
    pub name: &'static str,
    pub what: &'static str,
}

/// Counters copied as they are (summed over the vCPUs).
pub const COUNTERS: &[&str] = &[
    "workload_cycles",
    "pt_pins",
    "pt_pins_aliased",
    "pt_pins_alias_pte",
    "pt_pin_cycles",
    "pt_pin_refused",
    "pt_pin_refused_after_purge",
    "vm_unmap_aliases",
    "vm_unmap_aliases_reflushed",
    "vm_unmap_aliases_flushed",
    "vm_unmap_aliases_cycles",
    "vm_unmap_aliases_flush_cycles",
    "vm_unmap_aliases_lock_cycles",
    "vm_unmap_aliases_empty_lock_cycles",
    "vm_unmap_aliases_in_pin_cycles",
    "tlb_flush_global",
    "tlb_flush_local",
    "tlb_invlpg",
    "ipis_sent",
    "ipis_received",
    "vmap_flush_ipis",
    "vmap_purged_pages",
    "vmap_block_purges",
    "kmap_atomic",
    "pte_maps",
    "kmap_lock_taken",
    "kmap_lock_waits",
    "kmap_lock_spins",
    "kmap_sleeps",
    "kmap_cache_hits",
    "pkmap_flushes",
    "tlb_shootdown_kernel",
    "page_faults",
    "forks",
    "churn_steps",
    "alias_fixups",
    "alias_fixup_retry_cycles",
    "clean_pool_refills",
    "pv_updates",
    "pv_update_calls",
    "vmap_flushes",
    "vmap_purges",
    "pt_pages_lowmem",
    "pt_pages_highmem",
];

/// Guest results copied as they are.
pub const RESULTS: &[&str] = &[
    "vmap_bench_ns",
    "vmap_bench_iters",
    "vmap_bench_flushes",
    "vmap_one_alias_ns",
    "tasks_started",
    "pkmap_wrap_flushes",
];

/// The unit costs the `calibrate` workload reports (guest results, medians of
/// 64 rounds each), in [`super::model::Units`]' order and the trapped pin last.
pub const UNIT_FIGURES: [&str; 7] = [
    "unit_exit_cycles",
    "unit_hypercall_cycles",
    "unit_flush_global_cycles",
    "unit_vm_unmap_aliases_empty_cycles",
    "unit_vm_unmap_aliases_flush_cycles",
    "unit_pin_cycles",
    "unit_pin_trapped_cycles",
];

/// The exit kinds of `exits[].user`, summed over the vCPUs, as `exits_<kind>`.
pub const EXIT_KINDS: &[&str] = &["hypercall", "nop_exit", "other_io", "mmio", "hlt", "intr", "shutdown"];

/// The host PV MMU's figures (`pvmmu`).
pub const PVMMU: &[&str] = &["traps_back", "trap_back_failures", "alias_refusals", "alias_checks", "alias_check_ns"];

/// The derived figures, and the glossary of the less obvious ones.
pub const GLOSSARY: &[FigureDef] = &[
    FigureDef { name: "workload_cycles", what: "guest TSC cycles of the workload, summed over the vCPUs" },
    FigureDef { name: "workload_cycles_max", what: "the longest vCPU's workload cycles (the workload's span)" },
    FigureDef {
        name: "cycles_per_pin",
        what: "pt_pin_cycles / pt_pins: decision to pin to pin done, alias work included",
    },
    FigureDef { name: "pt_pins_aliased", what: "pins whose frame had a live lazy alias before the strategy acted" },
    FigureDef {
        name: "pt_pin_refused",
        what: "pins the host refused; each is purged and retried, a benchmark device (Linux BUGs on a refused pin)",
    },
    FigureDef {
        name: "pt_pin_refused_after_purge",
        what: "aliases 2.6.28's vm_unmap_aliases missed (in a full vmap block, which it skips): a pin refused \
               again after the retry's purge, a second trap back for one frame in one pin (host-trap), or a \
               clean-pool refill left with no clean page; the benchmark then purges every block (6.5's walk)",
    },
    FigureDef {
        name: "vm_unmap_aliases_reflushed",
        what: "vm_unmap_aliases calls that flushed only ranges already flushed before (2.6.28 never forgets a \
               block's dirty range; --vmap-flush 6.5 does)",
    },
    FigureDef {
        name: "pt_pins_alias_pte",
        what: "of those, pins whose alias was a present PTE (lazy-ptes), the kind the host refuses: what the oracle flushes for",
    },
    FigureDef {
        name: "alias_cycles",
        what: "vm_unmap_aliases_cycles + alias_fixup_retry_cycles over the whole workload: the strategy's alias \
               work wherever it happened (in a pin, a clean-pool refill at allocation, a trap-back's fixup and retry)",
    },
    FigureDef { name: "alias_cycles_per_pin", what: "alias_cycles / pt_pins (whole-workload alias work per pin)" },
    FigureDef {
        name: "alias_fixup_retry_cycles",
        what: "cycles of the trap-back's retried hypercalls (host-trap's exit per trap back)",
    },
    FigureDef {
        name: "vm_unmap_aliases_empty",
        what: "vm_unmap_aliases - vm_unmap_aliases_flushed: calls that found nothing to flush",
    },
    FigureDef {
        name: "ratio_to_oracle",
        what: "cycles_per_pin / the oracle cell's median (--alias oracle, same configuration and seed otherwise)",
    },
    FigureDef {
        name: "workload_ratio_to_oracle",
        what: "workload_cycles (whole workload, every vCPU) / the oracle cell's median",
    },
    FigureDef {
        name: "excess_cycles_per_pin",
        what: "cycles_per_pin - the oracle cell's median: what the strategy pays per pin above the oracle",
    },
    FigureDef {
        name: "model_cycles",
        what: "the run's counts priced by the sweep's cost table (\"The cost model\"): pins, calls that found \
               nothing, flushing calls, traps back, refusals",
    },
    FigureDef { name: "model_cycles_per_pin", what: "model_cycles / pt_pins" },
    FigureDef { name: "model_ratio_to_oracle", what: "model_cycles_per_pin / the oracle cell's median" },
    FigureDef {
        name: "pin_path_cycles",
        what: "pt_pin_cycles + the vm_unmap_aliases cycles spent outside pins: what the model prices, as measured",
    },
    FigureDef { name: "model_explains", what: "model_cycles / pin_path_cycles (1: the model accounts for it all)" },
    FigureDef { name: "unit_<event>_cycles", what: "the calibrate workload's median cycles of one event (64 rounds)" },
    FigureDef {
        name: "<count>_over_oracle",
        what: "a count (vm_unmap_aliases, vm_unmap_aliases_flushed, tlb_flush_global, ipis_sent, exits_hypercall) \
               minus the oracle cell's median of it",
    },
    FigureDef {
        name: "ratio_to_always_flush",
        what: "median cycles_per_pin / the always-flush cell's (same configuration otherwise)",
    },
    FigureDef { name: "alias_check_ns", what: "host ns in the selected alias check (report.pvmmu)" },
    FigureDef { name: "alias_check_ns_per_check", what: "alias_check_ns / alias_checks" },
    FigureDef { name: "traps_back", what: "pins the host trapped back into the guest's alias fixup (report.pvmmu)" },
    FigureDef { name: "traps_back_per_kpin", what: "traps_back per 1000 pt_pins" },
    FigureDef { name: "hypercall_exits_per_kfault", what: "exits_hypercall per 1000 page faults" },
    FigureDef { name: "pv_updates_per_call", what: "pv_updates / pv_update_calls: pagetable entries per mmu_update" },
    FigureDef {
        name: "pvmmu_audit_errors",
        what: "end-of-run audit: RW entries mapping pagetables + type count mismatches + tables whose memory differs \
               from what the host validated (must be 0)",
    },
    FigureDef { name: "exits_<kind>", what: "exits to the VMM by kind, summed over the vCPUs (report.exits[].user)" },
    FigureDef {
        name: "vmap_bench_ns",
        what: "ns per vmap-bench iteration of one vCPU's loop (map 4 pages, touch, unmap)",
    },
    FigureDef { name: "vmap_bench_cycles_per_iter", what: "vmap_bench_cycles / vmap_bench_iters" },
    FigureDef { name: "vmap_one_alias_ns", what: "ns of map, write, unmap, vm_unmap_aliases with one lazy mapping" },
    FigureDef { name: "pte_cycles_per_access", what: "pte_bench_cycles / pte_bench_accesses (map, read, unmap)" },
    FigureDef {
        name: "kmap_cache_hits_per_access",
        what: "kmap_cache_hits / pte_bench_accesses (maps served from page->virtual; the faults that filled the pages count too, so every access a hit is above 1)",
    },
    FigureDef {
        name: "tlb_invlpg_per_access",
        what: "tlb_invlpg / pte_bench_accesses (single-page TLB flushes, the filling faults' included)",
    },
    FigureDef { name: "<counter>_per_kfault", what: "a counter per 1000 page faults" },
    FigureDef { name: "flush_ipis_per_kfault", what: "tlb_shootdown_kernel per 1000 page faults" },
    FigureDef {
        name: "pkmap_wrap_flushes",
        what: "times the persistent kmap pool wrapped (each a scan of LAST_PKMAP entries and a global flush)",
    },
    FigureDef { name: "run_ms", what: "the run's wall time in the VMM, boot included" },
];

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The figures of one run's report.
pub fn extract(report: &Value) -> Figures {
    let mut f = Figures::new();
    let totals = &report["counter_totals"];
    // The report lists only non-zero counters: a counter is zero when the guest
    // kept counters (there are some) and it is not among them.
    let kept_counters = totals.as_object().is_some_and(|m| !m.is_empty());
    for &c in COUNTERS {
        match num(&totals[c]) {
            Some(v) => {
                f.insert(c.to_owned(), v);
            }
            None if kept_counters => {
                f.insert(c.to_owned(), 0.0);
            }
            None => {}
        }
    }
    for &r in RESULTS.iter().chain(&UNIT_FIGURES) {
        if let Some(v) = num(&report["results"][r]) {
            f.insert(r.to_owned(), v);
        }
    }
    if let Some(cpus) = report["counters"].as_array() {
        let max = cpus
            .iter()
            .filter_map(|c| num(&c["workload_cycles"]))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        if let Some(m) = max {
            f.insert("workload_cycles_max".into(), m);
        }
    }
    if let Some(exits) = report["exits"].as_array() {
        for &k in EXIT_KINDS {
            let sum: f64 = exits.iter().filter_map(|e| num(&e["user"][k])).sum();
            f.insert(format!("exits_{}", k.trim_end_matches("_exit")), sum);
        }
    }
    let pv = &report["pvmmu"];
    if pv.is_object() {
        for &k in PVMMU {
            if let Some(v) = num(&pv[k]) {
                f.insert(k.to_owned(), v);
            }
        }
        let audit = [&pv["audit_rw_pagetables"], &pv["audit_count_mismatches"]];
        let diverged = [&pv["audit_tables_diverged"], &pv["audit_l3_diverged"]];
        if audit.iter().all(|v| v.is_number()) {
            let sum = audit.iter().chain(&diverged).filter_map(|v| num(v)).sum();
            f.insert("pvmmu_audit_errors".into(), sum);
        }
    }
    if let Some(ms) = num(&report["timing"]["to_end_ms"]) {
        f.insert("run_ms".into(), ms);
    }
    derive(&mut f, totals);
    f
}

/// `a / b` when both were measured and b is not zero.
pub fn ratio(f: &Figures, a: &str, b: &str) -> Option<f64> {
    let (a, b) = (f.get(a)?, f.get(b)?);
    (*b != 0.0).then(|| a / b)
}

fn derive(f: &mut Figures, totals: &Value) {
    let put = |f: &mut Figures, name: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            f.insert(name.to_owned(), v);
        }
    };
    put(f, "cycles_per_pin", ratio(f, "pt_pin_cycles", "pt_pins"));
    put(f, "alias_check_ns_per_check", ratio(f, "alias_check_ns", "alias_checks"));
    put(f, "traps_back_per_kpin", ratio(f, "traps_back", "pt_pins").map(|r| r * 1000.0));
    put(f, "pv_updates_per_call", ratio(f, "pv_updates", "pv_update_calls"));
    let raw = |k: &str| num(&totals[k]);
    if let (Some(c), Some(n)) = (raw("vmap_bench_cycles"), raw("vmap_bench_iters")) {
        put(f, "vmap_bench_cycles_per_iter", (n > 0.0).then(|| c / n));
    }
    if let (Some(c), Some(n)) = (raw("pte_bench_cycles"), raw("pte_bench_accesses")) {
        put(f, "pte_cycles_per_access", (n > 0.0).then(|| c / n));
        for (name, counter) in
            [("kmap_cache_hits_per_access", "kmap_cache_hits"), ("tlb_invlpg_per_access", "tlb_invlpg")]
        {
            let v = f.get(counter).filter(|_| n > 0.0).map(|c| c / n);
            put(f, name, v);
        }
    }
    if let Some(faults) = f.get("page_faults").copied().filter(|&p| p > 0.0) {
        for (name, counter) in [
            ("kmap_lock_taken_per_kfault", "kmap_lock_taken"),
            ("kmap_lock_waits_per_kfault", "kmap_lock_waits"),
            ("pkmap_flushes_per_kfault", "pkmap_flushes"),
            ("flush_ipis_per_kfault", "tlb_shootdown_kernel"),
            ("kmap_sleeps_per_kfault", "kmap_sleeps"),
            ("kmap_cache_hits_per_kfault", "kmap_cache_hits"),
            ("hypercall_exits_per_kfault", "exits_hypercall"),
        ] {
            let v = f.get(counter).map(|c| c * 1000.0 / faults);
            put(f, name, v);
        }
    }
    if let (Some(v), Some(r)) = (f.get("vm_unmap_aliases_cycles").copied(), f.get("alias_fixup_retry_cycles").copied())
    {
        f.insert("alias_cycles".into(), v + r);
    }
    put(f, "alias_cycles_per_pin", ratio(f, "alias_cycles", "pt_pins"));
    if let (Some(c), Some(x)) = (f.get("vm_unmap_aliases").copied(), f.get("vm_unmap_aliases_flushed").copied()) {
        f.insert("vm_unmap_aliases_empty".into(), c - x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({
            "counter_totals": {"pt_pins": 100, "pt_pin_cycles": 500000, "pt_pins_aliased": 10, "pt_pins_alias_pte": 10,
                "vm_unmap_aliases": 100, "vm_unmap_aliases_flushed": 20, "vm_unmap_aliases_cycles": 200000,
                "vm_unmap_aliases_flush_cycles": 150000, "workload_cycles": 9000000, "page_faults": 2000, "kmap_lock_waits": 5,
                "pte_bench_cycles": 3000, "pte_bench_accesses": 10, "kmap_cache_hits": 12},
            "counters": [{"workload_cycles": 5000000}, {"workload_cycles": 4000000}],
            "results": {"vmap_bench_ns": 1234},
            "exits": [{"user": {"hypercall": 3, "nop_exit": 0, "other_io": 1, "mmio": 0, "hlt": 0, "intr": 0, "shutdown": 1}},
                      {"user": {"hypercall": 4, "nop_exit": 0, "other_io": 0, "mmio": 0, "hlt": 2, "intr": 1, "shutdown": 0}}],
            "pvmmu": {"traps_back": 7, "alias_checks": 50, "alias_check_ns": 1000, "audit_rw_pagetables": 0, "audit_count_mismatches": 0},
            "timing": {"to_end_ms": 1500.0}
        })
    }

    #[test]
    fn figures_come_from_the_counters_and_agree_with_them() {
        let f = extract(&report());
        assert_eq!(f["cycles_per_pin"], 5000.0);
        assert_eq!(f["cycles_per_pin"], f["pt_pin_cycles"] / f["pt_pins"]);
        assert_eq!(f["workload_cycles_max"], 5000000.0);
        assert_eq!(f["exits_hypercall"], 7.0);
        assert_eq!(f["exits_nop"], 0.0);
        assert_eq!(f["traps_back"], 7.0);
        assert_eq!(f["alias_check_ns_per_check"], 20.0);
        assert_eq!(f["pte_cycles_per_access"], 300.0);
        assert_eq!(f["kmap_cache_hits_per_access"], 1.2);
        // A listed counter that is not in the report is zero, and so its rate.
        assert_eq!(f["tlb_invlpg_per_access"], 0.0);
        assert_eq!(f["kmap_lock_waits_per_kfault"], 2.5);
        assert_eq!(f["vmap_bench_ns"], 1234.0);
        assert_eq!(f["pvmmu_audit_errors"], 0.0);
        // Counters the guest did not list are zero; results it did not give are absent.
        assert_eq!(f["ipis_sent"], 0.0);
        assert!(!f.contains_key("tasks_started"));
        // Alias work over the whole workload (no retries: a listed counter, zero).
        assert_eq!(f["alias_cycles"], 200000.0);
        assert_eq!(f["alias_cycles_per_pin"], 2000.0);
        assert_eq!(f["vm_unmap_aliases_empty"], 80.0);
        // Nothing in one run compares it with the oracle.
        assert!(!f.contains_key("ratio_to_oracle"));
    }

    #[test]
    fn a_report_without_counters_gives_no_invented_zeros() {
        let f = extract(&json!({"outcome": {"kind": "shutdown", "code": 1}}));
        assert!(f.is_empty(), "{f:?}");
    }
}

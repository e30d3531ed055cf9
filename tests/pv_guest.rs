//! The guest's pv-ops (`--pvmmu on`): the memory and vmap workloads on validated,
//! pinned, read-only pagetables under every `--pte` variant, and the fork-heavy
//! workload with vmap churn under every `--alias` strategy. All in one `vmm batch`.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::JobLine;

const PTES: [&str; 5] = ["lowpte", "atomic", "persistent", "percpu-pool", "per-task"];
const STRATEGIES: [&str; 7] =
    ["none", "always-flush", "alias-bit", "runtime-switch", "clean-pool", "host-trap", "oracle"];
/// Highmem, so that pte pages, user pages and vmalloc pages share a zone.
const MEM: [&str; 4] = ["--mem", "512m", "--lowmem", "128m"];

fn jobs() -> &'static HashMap<String, JobLine> {
    static JOBS: OnceLock<HashMap<String, JobLine>> = OnceLock::new();
    JOBS.get_or_init(|| {
        common::guest();
        let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |name: String, extra: &[&str]| {
            let mut args: Vec<String> = ["run", "--pvmmu", "on"].map(String::from).to_vec();
            if !extra.contains(&"--vcpus") {
                args.extend(["--vcpus", "2"].map(String::from));
            }
            args.extend(MEM.map(String::from));
            args.extend(extra.iter().map(|s| s.to_string()));
            jobs.push((name, args));
        };
        for pte in PTES {
            add(format!("mm-{pte}"), &["--workload", "mm-all", "--pte", pte, "--alias", "alias-bit"]);
        }
        add("vmap-churn".into(), &["--workload", "vmap-churn", "--alias", "host-trap"]);
        add("unbatched".into(), &["--workload", "fork-storm", "--pv-batch", "off"]);
        add("batched".into(), &["--workload", "fork-storm", "--pv-batch", "on"]);
        for s in STRATEGIES {
            add(format!("churn-{s}"), &["--workload", "fork-churn", "--alias", s, "--vmap-max-pages", "64"]);
        }
        add("calibrate".into(), &["--workload", "calibrate", "--alias", "host-trap"]);
        // On one vCPU a purge serves one pin at a time, so every pin that
        // found a live alias PTE needed a flush of its own.
        for s in STRATEGIES {
            let one = ["--vcpus", "1", "--workload", "fork-churn", "--alias", s, "--vmap-max-pages", "64"];
            add(format!("one-{s}"), &one);
        }
        let refs: Vec<(&str, Vec<&str>)> =
            jobs.iter().map(|(n, a)| (n.as_str(), a.iter().map(String::as_str).collect())).collect();
        common::batch(&refs)
    })
}

fn pv(j: &JobLine, key: &str) -> u64 {
    j.report()["pvmmu"][key].as_u64().unwrap_or(0)
}

fn refused(j: &JobLine) -> u64 {
    j.report()["pvmmu"]["refused"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0)
}

/// Passed its own checks, and the host saw no violation, no table it validated
/// mapped writable and none changed behind its back.
fn clean(name: &str) -> &'static JobLine {
    let j = &jobs()[name];
    assert_eq!(j.exit_code(), 0, "{name}: {}\n{}", j.report()["outcome"], j.stdout());
    assert_eq!(pv(j, "violations_total"), 0, "{name}: violations");
    assert_eq!(pv(j, "audit_rw_pagetables"), 0, "{name}: a pagetable mapped writable at the end");
    assert_eq!(pv(j, "audit_count_mismatches"), 0, "{name}: the frame table's counts");
    // The guest changed its tables only through the host: the dirty log, read at
    // every hypercall, found no direct write (QEMU-hosted, the tables it runs on
    // are in no read-only memslot), and at the end memory says what was validated.
    let log = &j.report()["pvmmu"]["write_protect"]["dirty_log"];
    assert!(log["on"] == true && log["harvests"].as_u64() > Some(0), "{name}: the dirty log did not watch: {log}");
    assert_eq!(pv(j, "writes_found"), 0, "{name}: direct writes to validated tables");
    let diverged = (pv(j, "audit_tables_diverged"), pv(j, "audit_l3_diverged"));
    assert_eq!(diverged, (0, 0), "{name}: tables in memory differ from what the host validated");
    j
}

#[test]
fn every_memory_workload_runs_on_validated_tables_under_every_pte_variant() {
    for pte in PTES {
        let j = clean(&format!("mm-{pte}"));
        assert!(j.total("pt_pins") > 0, "{pte}: the kernel pinned its new tables");
        assert_eq!(refused(j), 0, "{pte}: alias-bit leaves nothing for the host to refuse");
        assert!(j.total("pv_updates") > 0, "{pte}: pagetable writes went through mmu_update");
    }
    clean("vmap-churn");
}

#[test]
fn batching_puts_many_updates_in_one_exit() {
    let (b, u) = (clean("batched"), clean("unbatched"));
    assert_eq!(u.total("pv_updates"), u.total("pv_update_calls"), "--pv-batch off: one hypercall per update");
    // Single-entry faults dominate fork-storm. As under 2.6.28's Xen code, a
    // fork's copy and an exit's teardown write unpinned tables directly (no
    // hypercall at all), and a vmap's PTEs are one update_va_mapping each;
    // what still batches is the direct map's protection changes at every pin
    // and unpin, munmap, and the vmap purges.
    let (calls, updates) = (b.total("pv_update_calls"), b.total("pv_updates"));
    assert!(calls < updates, "batched: {updates} updates in {calls} calls");
    assert!(
        calls < u.total("pv_update_calls"),
        "batched: {calls} calls against {} unbatched",
        u.total("pv_update_calls")
    );
}

#[test]
fn each_alias_strategy_keeps_aliases_from_pins_as_it_claims() {
    for s in STRATEGIES {
        let j = clean(&format!("churn-{s}"));
        let (pins, vua) = (j.total("pt_pins"), j.total("vm_unmap_aliases"));
        assert!(pins > 0 && j.total("churn_steps") > 0, "{s}: pins and churn");
        match s {
            "none" => {
                assert!(j.total("pt_pin_refused") > 0, "none with lazy-ptes: the host refuses aliased pins");
                assert_eq!(
                    j.total("pt_pin_refused"),
                    refused(j),
                    "none: every refusal the host reports is one the guest saw"
                );
            }
            "always-flush" => assert_eq!(vua, pins, "always-flush: one vm_unmap_aliases per pin"),
            "alias-bit" | "runtime-switch" => {
                assert_eq!(vua, j.total("pt_pins_aliased"), "{s}: a purge exactly for the pins with an alias")
            }
            "clean-pool" => assert_eq!(vua, j.total("clean_pool_refills"), "clean-pool: one purge per refill"),
            "oracle" => {
                assert_eq!(vua, j.total("pt_pins_alias_pte"), "oracle: a purge exactly for the pins with an alias PTE")
            }
            "host-trap" => {
                assert!(pv(j, "traps_back") > 0, "host-trap: the host trapped back");
                assert_eq!(vua, pv(j, "traps_back"), "host-trap: one vm_unmap_aliases per trap back");
            }
            _ => unreachable!(),
        }
        if s != "none" && s != "host-trap" {
            assert_eq!(refused(j), 0, "{s}: no pin reached the host with an alias");
        }
        // Alias work is counted where it happened: clean-pool's purges at
        // allocation, every other strategy's inside its pins.
        let (all, in_pin) = (j.total("vm_unmap_aliases_cycles"), j.total("vm_unmap_aliases_in_pin_cycles"));
        assert!(all > 0, "{s}: vm_unmap_aliases was timed");
        if s == "clean-pool" {
            assert_eq!(in_pin, 0, "clean-pool purges when its pool refills, not in a pin");
        } else {
            assert_eq!(in_pin, all, "{s}: every vm_unmap_aliases ran inside a pin");
        }
    }
}

/// The oracle is the floor: on one vCPU it flushes exactly once per pin whose
/// frame had a live lazy alias PTE (fewer and the host would refuse a pin:
/// it refuses none), and every strategy that takes the frame it is given
/// flushes at least that often in its own run. Across runs the aliased pins
/// themselves vary (5 to 8 of 80 pins on one vCPU, whatever the strategy), so
/// the runs are compared with always-flush, whose flushes are far above that
/// spread, and each other strategy with the pins it aliased.
#[test]
fn the_oracle_flushes_no_more_than_any_strategy_and_no_less_than_its_aliased_pins() {
    let o = clean("one-oracle");
    let (aliased, flushed) = (o.total("pt_pins_alias_pte"), o.total("vm_unmap_aliases_flushed"));
    assert!(aliased > 0, "oracle: the churn left aliases for the pins to meet");
    assert_eq!(flushed, aliased, "oracle: one flush per pin with a live alias PTE");
    assert_eq!(o.total("vm_unmap_aliases"), aliased, "oracle: no call that finds nothing");
    assert_eq!(refused(o), 0, "oracle: the host refused a pin, so the oracle missed an alias");
    for s in STRATEGIES.iter().filter(|s| **s != "oracle") {
        let j = clean(&format!("one-{s}"));
        let (a, f) = (j.total("pt_pins_alias_pte"), j.total("vm_unmap_aliases_flushed"));
        match *s {
            // It pins only frames without an alias: nothing to flush for.
            "clean-pool" => assert_eq!(a, 0, "clean-pool pinned {a} frames with a live alias PTE"),
            // Its purge before each fork's first pin leaves the others clean.
            "always-flush" => assert!(f >= a, "{s}: {f} flushes for {a} pins with a live alias PTE"),
            _ => assert!(a > 0 && f >= a, "{s}: {f} flushes for {a} pins with a live alias PTE"),
        }
    }
    let af = clean("one-always-flush").total("vm_unmap_aliases_flushed");
    assert!(flushed < af, "the oracle flushed {flushed} times, always-flush {af}");
}

/// The calibration measures every unit the cost model prices, each the
/// median of 64 rounds, once with the other CPU halted and once with it busy:
/// a trapped pin costs more than a pin (it holds one, and a flushing
/// vm_unmap_aliases), a flushing call more than one that finds nothing, and
/// the many-page purge clears every page it counts.
#[test]
fn the_calibration_measures_every_unit() {
    let j = clean("calibrate");
    let r = |k: &str| j.report()["results"][k].as_u64().unwrap_or_else(|| panic!("{k}: {}", j.report()["results"]));
    for pass in ["", "_busy"] {
        for k in ["exit", "hypercall", "flush_global", "vm_unmap_aliases_empty", "flush_pages", "pin", "pin_tree"] {
            let k = if k == "flush_pages" {
                format!("unit_vm_unmap_aliases_flush_pages{pass}_cycles")
            } else {
                format!("unit_{k}{pass}_cycles")
            };
            assert!(r(&k) > 0, "{k}");
        }
    }
    assert_eq!((r("unit_rounds"), r("unit_cpus"), r("unit_flush_pages")), (64, 2, 16));
    assert_eq!(pv(j, "traps_back"), 2 * 64, "one trap back per trapped pin, in each pass");
    // Each pass purges 64 one-page areas, 64 of 16 pages, and 64 trapped frames.
    let purged = j.total("vm_unmap_aliases_purged_pages");
    assert!(purged >= 2 * 64 * (1 + 16 + 1), "vm_unmap_aliases cleared {purged} pages");
    assert!(r("unit_vm_unmap_aliases_flush_cycles") > r("unit_vm_unmap_aliases_empty_cycles"));
    let (trapped, pin, flush) =
        (r("unit_pin_trapped_cycles"), r("unit_pin_cycles"), r("unit_vm_unmap_aliases_flush_cycles"));
    // Against a pin alone: the flush inside a trapped pin is the margin.
    // (Against a pin plus a flushing call, three medians timed apart, it
    // failed once in CI on 6043a8f: an ordering of emulated cycles, which
    // move by a third between runs, not a property of the host.)
    assert!(trapped > pin, "a trapped pin {trapped} cycles, a pin {pin}, a flushing call {flush}");
    // The parts timed within a round: each round's flush (or fixup and
    // retry) subtracted, so each part is smaller than its whole, and not
    // nothing. (Whether a 16-page purge's part exceeds a one-page purge's is
    // not asserted: the pages add about 1e5 cycles to about 1e6 that vary by
    // a third between runs; the count of pages purged is asserted above.)
    for pass in ["", "_busy"] {
        let u = |k: &str| r(&format!("unit_{k}{pass}_cycles"));
        let all = &j.report()["results"];
        assert!(u("trap_back") > 0 && u("trap_back") < u("pin_trapped"), "{pass}: {all}");
        assert!(u("purge_one") > 0 && u("purge_one") < u("vm_unmap_aliases_flush"), "{pass}: {all}");
        let pages = u("purge_pages");
        assert!(pages > 0 && pages < u("vm_unmap_aliases_flush_pages"), "{pass}: {all}");
    }
}

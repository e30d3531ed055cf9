//! The PV MMU issue's guest-side tests: the `pvmmu-selftest` workload (every
//! contract scenario that expects to pass, in one VM) drives the host's PV MMU
//! through real hypercalls from a real guest (pins, validated
//! updates, refusals with their errors, batches, a multicall, a root and
//! update_va_mapping, the trap-back into the guest's alias fixup, TLB flushes of
//! one and every vCPU, write protection and the writable-pagetables assist), under
//! each host check
//! with all three cross-checked, on 1 and 2 vCPUs. All VMs share one `vmm batch`.
//! (The contract rule by rule and the million-request property test are the host's
//! unit tests, in pvmmu/src/tests.rs.)

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use common::JobLine;

const CHECKS: [&str; 3] = ["typecount", "scan", "rmap"];

fn jobs() -> &'static HashMap<String, JobLine> {
    static JOBS: OnceLock<HashMap<String, JobLine>> = OnceLock::new();
    JOBS.get_or_init(|| {
        common::guest();
        let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
        for check in CHECKS {
            for vcpus in ["1", "2"] {
                let args = [
                    "run",
                    "--workload",
                    "pvmmu-selftest",
                    "--vcpus",
                    vcpus,
                    "--host-check",
                    check,
                    "--host-cross-check",
                    "on",
                ];
                jobs.push((format!("{check}-{vcpus}"), args.iter().map(|s| s.to_string()).collect()));
            }
        }
        // The adversarial guest: seed 7 twice on one vCPU (it must reproduce),
        // three seeds on two.
        let chaos = ["run", "--workload", "chaos", "--host-on-violation", "continue", "--host-cross-check", "on"];
        for (name, vcpus, seed) in [
            ("chaos-a", "1", "7"),
            ("chaos-b", "1", "7"),
            ("chaos-1", "2", "1"),
            ("chaos-2", "2", "2"),
            ("chaos-3", "2", "3"),
        ] {
            let mut args: Vec<String> = chaos.iter().map(|s| s.to_string()).collect();
            args.extend(["--vcpus", vcpus, "--seed", seed].map(String::from));
            jobs.push((name.into(), args));
        }
        // The contract scenario that writes a pinned table directly, assist off.
        let list = common::run(&["contract", "--list"], &[]);
        let index = String::from_utf8_lossy(&list.stdout)
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("direct-write-no-assist"))
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .expect("the image has the direct-write-no-assist scenario");
        let args = ["run", "--workload", "contract", "--scenario", &index, "--vcpus", "2"];
        jobs.push(("direct-write".into(), args.iter().map(|s| s.to_string()).collect()));
        // A host call that never ends (test only: the first mmuext_op, the
        // kernel's own pin at boot, holding the PV MMU's lock).
        let stuck = ["run", "--workload", "mm-all", "--pvmmu", "on", "--vcpus", "2"];
        let mut args: Vec<String> = stuck.iter().map(|s| s.to_string()).collect();
        args.extend(["--host-weaken", "stuck-call", "--timeout", "3"].map(String::from));
        jobs.push(("stuck".into(), args));
        let refs: Vec<(&str, Vec<&str>)> =
            jobs.iter().map(|(n, a)| (n.as_str(), a.iter().map(String::as_str).collect())).collect();
        common::batch(&refs)
    })
}

fn map(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect()).unwrap_or_default()
}

#[test]
fn the_guest_sees_the_contract_under_every_host_check() {
    for check in CHECKS {
        for vcpus in ["1", "2"] {
            let name = format!("{check}-{vcpus}");
            let j = &jobs()[&name];
            assert_eq!(j.exit_code(), 0, "{name}: {}", j.stdout());
            assert!(j.stdout().contains("all checks passed"), "{name}: {}", j.stdout());
            let pv = &j.report()["pvmmu"];
            assert_eq!(pv["host_check"], check, "{name}");
            assert_eq!(pv["check_disagreements"], 0, "{name}: the three host checks disagreed");
            // Every rule the scenarios break was refused, under its own name.
            let refused = map(&pv["refused"]);
            for rule in ["T1", "T4", "V1", "V3", "V4", "V5", "V6", "V7", "Request"] {
                assert!(refused.get(rule).copied().unwrap_or(0) > 0, "{name}: no {rule} refusal: {refused:?}");
            }
            // Two traps back (trap-back, trap-back-fixup-fails), one of which still
            // failed after its fixup; the guest ran both fixups.
            assert_eq!((pv["traps_back"].as_u64(), pv["trap_back_failures"].as_u64()), (Some(2), Some(1)), "{name}");
            assert_eq!(j.total("alias_fixups"), 2, "{name}: fixups the guest ran");
            // Pinned tables were write-protected (read-only memslots), and the two
            // direct writes with the assist on to a pinned L1 arrived as 4-byte halves.
            let wp = &pv["write_protect"];
            assert_eq!(wp["available"], true, "{name}");
            assert!(wp["protected_max"].as_u64() >= Some(3) && wp["chunk_updates"].as_u64() >= Some(2), "{name}: {wp}");
            // And the one with the assist on to a pinned L3 (never read-only) was
            // found by the dirty log at the next hypercall and applied.
            assert_eq!((pv["emulated_writes"].as_u64(), pv["writes_found"].as_u64()), (Some(5), Some(1)), "{name}");
            let flushes = map(&pv["flushes"]);
            assert!(flushes["tlb_flush_all"] >= 1 && flushes["tlb_flush_local"] >= 1, "{name}: {flushes:?}");
            if vcpus == "2" {
                assert_eq!(flushes["invlpg_multi"], 1, "{name}");
            }
        }
    }
}

/// `--timeout` ends a run whose vCPU is inside a host call that will not
/// end: the vCPU is left behind, the report says so, and the report is written
/// without the PV MMU's figures, whose lock that vCPU holds.
#[test]
fn the_watchdog_ends_a_run_stuck_in_a_host_call() {
    let j = &jobs()["stuck"];
    assert_eq!(j.exit_code(), 4, "{}", j.stdout());
    let o = &j.report()["outcome"];
    assert_eq!(o["kind"], "timeout", "{o}");
    assert_eq!(o["stuck_in_host"], serde_json::json!([0]), "{o}");
    assert!(j.report()["pvmmu"].is_null(), "{}", j.report()["pvmmu"]);
}

#[test]
fn a_direct_write_to_a_pinned_table_stops_the_guest_with_a_report() {
    let j = &jobs()["direct-write"];
    assert_eq!(j.exit_code(), 6, "{}", j.stdout());
    let o = &j.report()["outcome"];
    assert_eq!(
        (o["kind"].as_str(), o["rule"].as_str(), o["vcpu"].as_u64()),
        (Some("violation"), Some("direct write"), Some(0))
    );
    let detail = o["detail"].as_str().unwrap_or("");
    // The guest printed the frame it wrote; the report names the same frame and entry.
    let frame =
        j.stdout().split("writing pinned L1 ").nth(1).and_then(|s| s.split_whitespace().next()).map(str::to_owned);
    let frame = frame.unwrap_or_default();
    let pfn = u64::from_str_radix(frame.trim_start_matches("0x"), 16).unwrap_or(0) >> 12;
    assert!(detail.contains(&format!("frame {pfn:#x} entry 9")), "{detail} (guest wrote {frame})");
}

#[test]
fn the_host_survives_a_chaotic_guest_and_keeps_its_invariant() {
    for name in ["chaos-a", "chaos-b", "chaos-1", "chaos-2", "chaos-3"] {
        let j = &jobs()[name];
        assert_eq!(j.exit_code(), 0, "{name}: {}", j.stdout());
        let pv = &j.report()["pvmmu"];
        assert_eq!(pv["check_disagreements"], 0, "{name}");
        assert_eq!(
            (pv["audit_rw_pagetables"].as_u64(), pv["audit_count_mismatches"].as_u64()),
            (Some(0), Some(0)),
            "{name}"
        );
        // Direct writes into validated tables never stick: those that raced the
        // protection were undone, and those into L3s (never in a read-only
        // memslot: the chaos guest, on its own tables, can write them) were found
        // by the dirty log at the next hypercall and undone or applied.
        assert_eq!(pv["audit_tables_diverged"], 0, "{name}: a protected table changed behind the host's back");
        assert_eq!(pv["audit_l3_diverged"], 0, "{name}: an L3 changed behind the host's back");
        assert_eq!(pv["write_protect"]["dirty_log"]["on"], true, "{name}");
        let refused = map(&pv["refused"]);
        assert!(refused.len() >= 6, "{name}: too few kinds of refusal: {refused:?}");
        assert!(map(&pv["applied"]).values().sum::<u64>() > 500, "{name}: too little accepted");
        assert!(pv["violations_total"].as_u64() > Some(0) && pv["emulated_writes"].as_u64() > Some(0), "{name}");
        let v = &pv["violations"][0];
        assert!(v["rule"].is_string() && v["frame"].is_u64() && v["vcpu"].is_u64(), "{name}: {v}");
    }
    // One vCPU: the seed reproduces the run, request for request.
    let (a, b) = (&jobs()["chaos-a"].report()["pvmmu"], &jobs()["chaos-b"].report()["pvmmu"]);
    for key in ["applied", "refused", "violations_total", "traps_back", "emulated_writes"] {
        assert_eq!(a[key], b[key], "seed 7 twice: {key}");
    }
}

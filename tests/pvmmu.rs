//! The PV MMU issue's guest-side tests: the `pvmmu-selftest` workload drives the
//! host's PV MMU through real hypercalls from a real guest (pins, validated
//! updates, refusals with their errors, batches, a multicall, a root and
//! update_va_mapping, the trap-back into the guest's alias fixup, TLB flushes of
//! one and every vCPU, write protection and the writable-pagetables assist), under
//! each host check
//! with all three cross-checked, on 1 and 2 vCPUs. All VMs share one `vmm batch`.
//! (The contract rule by rule and the million-request property test are the host's
//! unit tests, in vmm/src/pvmmu/tests.rs.)

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
        let args = ["run", "--workload", "pvmmu-selftest", "--vcpus", "2", "--inject", "pv-direct-write"];
        jobs.push(("direct-write".into(), args.iter().map(|s| s.to_string()).collect()));
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
            // What the guest's script breaks, rule by rule (see guest/src/work/pvmmu.rs).
            let want: BTreeMap<String, u64> = [("T1", 4), ("T4", 2), ("V1", 2), ("V3", 1), ("V5", 2), ("Request", 1)]
                .map(|(k, v)| (k.to_owned(), v))
                .into_iter()
                .collect();
            assert_eq!(map(&pv["refused"]), want, "{name}");
            // Four alias refusals: one pin with no fixup, one trapped back and
            // completed by the fixup, one trapped back whose fixup left the alias
            // (refused again on the retry, and that error reached the caller).
            assert_eq!(pv["alias_refusals"], 4, "{name}");
            assert_eq!((pv["traps_back"].as_u64(), pv["trap_back_failures"].as_u64()), (Some(2), Some(1)), "{name}");
            assert_eq!(j.total("alias_fixups"), 2, "{name}: fixups the guest ran");
            // The root (L3 -> L2 -> L1) is still the vCPU's at the end; nothing else.
            assert_eq!((pv["frames"]["l3"].as_u64(), pv["frames"]["l2"].as_u64()), (Some(1), Some(1)), "{name}");
            assert_eq!((pv["frames"]["l1"].as_u64(), pv["frames"]["pinned"].as_u64()), (Some(1), Some(0)), "{name}");
            // Pinned tables were write-protected (read-only memslots), and the two
            // direct writes with the assist on arrived as 4-byte halves.
            let wp = &pv["write_protect"];
            assert_eq!(wp["available"], true, "{name}");
            assert!(wp["protected_max"].as_u64() >= Some(3) && wp["chunk_updates"].as_u64() >= Some(2), "{name}: {wp}");
            assert_eq!(pv["emulated_writes"], 4, "{name}");
            let flushes = map(&pv["flushes"]);
            assert!(flushes["tlb_flush_all"] >= 1 && flushes["tlb_flush_local"] >= 1, "{name}: {flushes:?}");
            if vcpus == "2" {
                assert_eq!(flushes["invlpg_multi"], 1, "{name}");
            }
        }
    }
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

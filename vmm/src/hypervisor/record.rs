//! What the run report reads from the hypervisor (milestones, results, call
//! counts, the PV MMU's figures), and the bounds on the maps a guest fills.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use shared::abi::{errno, nr};

use super::*;

/// The most milestones a run report keeps (the guest decides how many it sends).
pub(super) const MAX_MILESTONES: usize = 1024;
/// The most distinct result names a run report keeps.
pub(super) const MAX_RESULTS: usize = 256;
/// The result that counts the names past [`MAX_RESULTS`].
pub(super) const RESULTS_DROPPED: &str = "vmm.results_dropped";
/// Distinct unknown call numbers counted by number; the rest share one key.
pub(super) const MAX_UNKNOWN_CALLS: usize = 16;
/// The key of the unknown call numbers past [`MAX_UNKNOWN_CALLS`].
pub(super) const UNKNOWN_OTHERS: u32 = u32::MAX;

/// Where a call is counted: by its number, unless it is one more unknown
/// number than the report keeps (the map is keyed by what the guest chose).
pub(super) fn bounded_call_key(calls: &BTreeMap<(u32, i32), u64>, op: u32, rc: i32) -> (u32, i32) {
    if nr::name(op).is_some() || calls.contains_key(&(op, rc)) {
        return (op, rc);
    }
    let mut unknown: Vec<u32> = calls.keys().map(|k| k.0).filter(|o| nr::name(*o).is_none()).collect();
    unknown.dedup();
    if unknown.contains(&op) || unknown.len() < MAX_UNKNOWN_CALLS {
        (op, rc)
    } else {
        (UNKNOWN_OTHERS, rc)
    }
}

impl Hypervisor {
    /// A vCPU was left inside a host call when the run ended
    /// (`kvm::vm::RunEnd`): from now on the report's readers skip what is
    /// locked rather than wait.
    pub fn vcpus_left_behind(&self) {
        self.left_behind.store(true, Ordering::Release);
    }

    /// `m` locked for the run report, or None if a vCPU left behind holds it.
    fn for_report<'a, T>(&self, m: &'a Mutex<T>) -> Option<MutexGuard<'a, T>> {
        crate::kvm::vm::lock_or_skip(m, !self.left_behind.load(Ordering::Acquire))
    }

    /// The write protection's figures for the run report.
    pub fn protect_stats(&self) -> Option<ProtectStats> {
        self.for_report(&self.protect).and_then(|p| p.as_ref().map(|wp| wp.stats.clone()))
    }

    /// The PV MMU's figures for the run report (None if a vCPU left behind
    /// holds the PV MMU).
    pub fn pvmmu_report(&self) -> Option<PvMmuReport> {
        let mut r = self.for_report(&self.pvmmu).map(|pv| {
            let mut r = pv.report();
            let audit = pv.audit(&self.mem);
            r.stats.audit_rw_pagetables = audit.rw_pagetables;
            r.stats.audit_count_mismatches = audit.count_mismatches;
            r.stats.audit_tables_diverged = audit.tables_diverged;
            r.stats.audit_l3_diverged = audit.l3_diverged;
            r
        })?;
        r.write_protect = self.protect_stats();
        Some(r)
    }

    pub fn milestones(&self) -> Vec<MilestoneRecord> {
        self.for_report(&self.milestones).map(|m| m.clone()).unwrap_or_default()
    }

    pub fn results(&self) -> BTreeMap<String, u64> {
        self.for_report(&self.results).map(|r| r.clone()).unwrap_or_default()
    }

    /// Hypercall name -> result code name -> count.
    pub fn call_counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        if let Some(calls) = self.for_report(&self.calls) {
            for (&(op, rc), &n) in calls.iter() {
                let name = match (op, nr::name(op)) {
                    (_, Some(name)) => name.to_owned(),
                    (UNKNOWN_OTHERS, None) => "unknown_others".to_owned(),
                    (op, None) => format!("unknown_{op:#x}"),
                };
                *out.entry(name).or_default().entry(errno::name(rc).to_owned()).or_insert(0) += n;
            }
        }
        out
    }
}

//! The host as a Xen-style paravirtual MMU (../shared/reference/pv-mmu-contract.md):
//! a frame table, validated pagetable updates (`mmu_update`), pins, roots and
//! flushes (`mmuext_op`), `update_va_mapping`, `multicall`, and the alias check with
//! its trap-back into the guest.
//!
//! One lock (the caller's) covers the whole state: a batch runs under it as one
//! exit. Nothing a guest sends can make this code panic; every refusal names the
//! contract rule it enforces.

pub mod alias;
pub mod frame_table;
pub mod ops;
pub mod pin_cost;
#[cfg(test)]
mod tests;
pub mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use shared::boot::MAX_VCPUS;

pub use alias::HostCheck;
pub use frame_table::{FrameCensus, FrameTable};

/// The contract's rules a request can break, as named in pv-mmu-contract.md (T2,
/// T3 and V2 say what the host does, not what it refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Rule {
    T1,
    T4,
    V1,
    V3,
    V4,
    V5,
    V6,
    V7,
    /// A malformed batch or command (count, buffer, unknown command).
    Request,
}

/// Why a request was refused: the rule, the negative errno the guest gets, the
/// frame concerned, and whether the only problem was writable mappings of a frame
/// that was to become a pagetable (what the trap-back can fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub errno: i32,
    pub pfn: u64,
    pub alias: bool,
    pub why: &'static str,
}

/// How the host is set up.
#[derive(Clone, Copy, Debug)]
pub struct PvMmuConfig {
    pub check: HostCheck,
    /// Ask all three alias checks every time and count disagreements.
    pub cross_check: bool,
}

impl PvMmuConfig {
    pub fn from_config(c: &shared::config::Config) -> Self {
        PvMmuConfig { check: c.host_check(), cross_check: c.host_cross_check() }
    }
}

/// The PV MMU's part of the run report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PvMmuReport {
    pub host_check: String,
    pub cross_check: bool,
    /// Frames by type at the end of the run.
    pub frames: FrameCensus,
    #[serde(flatten)]
    pub stats: PvMmuStats,
}

/// What the PV MMU did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PvMmuStats {
    /// Applied requests by kind (`mmu_update`, `pin_l1_table`, ...).
    pub applied: BTreeMap<String, u64>,
    /// Refused requests by rule.
    pub refused: BTreeMap<String, u64>,
    pub validations: u64,
    pub devalidations: u64,
    pub alias_checks: u64,
    /// Host time in the selected alias check.
    pub alias_check_ns: u64,
    /// Pins or type changes refused because the frame had writable mappings.
    pub alias_refusals: u64,
    /// The three checks disagreed (only counted with cross-checking on).
    pub check_disagreements: u64,
    /// Pins that trapped back into the guest, and those that still failed after it.
    pub traps_back: u64,
    pub trap_back_failures: u64,
    /// Flushes of guest TLBs the host carried out, by reason.
    pub flushes: BTreeMap<String, u64>,
}

/// A pin that trapped back into the guest: the batch resumes at `done` when the
/// guest re-issues the same block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub block_gpa: u64,
    pub args: [u64; 4],
    pub done: u64,
    pub pfn: u64,
}

pub struct PvMmu {
    frames: FrameTable,
    check: HostCheck,
    cross_check: bool,
    /// Kept when the rmap check is selected or cross-checking is on.
    keep_rmap: bool,
    rmap: alias::Rmap,
    /// Validated L1 tables (what the scan check reads).
    l1s: HashSet<u64>,
    /// Linear L2 entries: table -> (linear entries it holds, linear entries at it).
    linear: HashMap<u64, (u32, u32)>,
    /// Each vCPU's root (an L3 frame) announced with NEW_BASEPTR.
    roots: [Option<u64>; MAX_VCPUS],
    /// Where the guest wants alias fixups delivered (`set_callbacks`).
    fixup_entry: Option<u64>,
    pending: [Option<Continuation>; MAX_VCPUS],
    pub stats: PvMmuStats,
}

impl PvMmu {
    pub fn new(regions: &[shared::boot::MemRegion], config: PvMmuConfig) -> Self {
        PvMmu {
            frames: FrameTable::new(regions),
            check: config.check,
            cross_check: config.cross_check,
            keep_rmap: config.check == HostCheck::Rmap || config.cross_check,
            rmap: alias::Rmap::default(),
            l1s: HashSet::new(),
            linear: HashMap::new(),
            roots: [None; MAX_VCPUS],
            fixup_entry: None,
            pending: [None; MAX_VCPUS],
            stats: PvMmuStats::default(),
        }
    }

    /// Where the guest registered its alias fixup.
    pub fn fixup_entry(&self) -> Option<u64> {
        self.fixup_entry
    }

    /// The root vCPU `vcpu` announced last.
    pub fn root(&self, vcpu: u32) -> Option<u64> {
        self.roots.get(vcpu as usize).copied().flatten()
    }

    pub fn report(&self) -> PvMmuReport {
        PvMmuReport {
            host_check: self.check.as_str().to_owned(),
            cross_check: self.cross_check,
            frames: self.frames.census(),
            stats: self.stats.clone(),
        }
    }

    fn applied(&mut self, what: &str) {
        *self.stats.applied.entry(what.to_owned()).or_insert(0) += 1;
    }

    fn refused(&mut self, r: &Refusal) {
        *self.stats.refused.entry(format!("{:?}", r.rule)).or_insert(0) += 1;
    }

    fn flushed(&mut self, why: &str) {
        *self.stats.flushes.entry(why.to_owned()).or_insert(0) += 1;
    }
}

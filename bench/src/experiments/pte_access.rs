//! One native pte access as the model sees it, for claims 3 and 6.

use shared::config::{PteVariant, Setting as S, Workload};

use super::verdict::*;
use crate::design::Want::Vcpus;
use crate::figures::Derived as D;

/// The parts of one pte-bench access on `vcpus` vCPUs, in cycles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Access {
    /// lowpte's access, measured: the same reads with no kmap, and the
    /// emulator's share of them.
    pub base: f64,
    /// The kmaps, priced by this host's native kmap units and scaled by
    /// lowpte's slowdown from 1 vCPU (below).
    pub kmaps: f64,
    /// The series' wraps, each priced as a global flush with the other
    /// vCPUs busy (on 1 vCPU, halted).
    pub wraps: f64,
    /// The same wraps priced with the other vCPUs halted: the other bound,
    /// for a flush whose other vCPUs wait for the kmap_lock it holds.
    pub wraps_halted: f64,
    /// The kmap_lock's contended acquisitions' wait, measured.
    pub wait: f64,
}

impl Access {
    pub fn total(&self) -> f64 {
        self.base + self.kmaps + self.wraps + self.wait
    }

    /// The total with the wraps' flushes priced with the other vCPUs halted.
    pub fn total_halted(&self) -> f64 {
        self.total() - self.wraps + self.wraps_halted
    }
}

/// The modelled access of the variant `pte`, None without a native
/// calibration, lowpte's cells, or a wait the guest timed (older reports).
///
/// Why the scale: a kmap unit is timed in a few thousand cycles, less than
/// the emulator's turn, so it barely moves with the other vCPU busy (per-task
/// 1160 against 1168 with it halted, docs/bench/2026-12-06-pge-full), while a
/// pte-bench access is a mean over the whole run, the other vCPU's turns
/// included: lowpte's own went from 395 to 674 cycles on 2 vCPUs in that run.
/// The wraps' unit is the flush timed with the other vCPU busy, which waits
/// for its turn already, and the wait is measured: neither is scaled.
pub(super) fn modelled(l: &Lookup, exp: Option<&str>, pte: PteVariant, vcpus: u32) -> Option<Access> {
    let cell = |pte: PteVariant, v: u32| [is(S::Workload(Workload::PteBench)), is(S::Pte(pte)), Vcpus(v)];
    let access = |pte, v| l.fig(&cell(pte, v), exp, D::PteCyclesPerAccess).ok();
    let base = access(PteVariant::Lowpte, vcpus)?;
    let slowdown = base / access(PteVariant::Lowpte, 1).filter(|b| *b > 0.0)?;
    let fig = |d: D| l.fig(&cell(pte, vcpus), exp, d).ok();
    let (model, wraps) = (fig(D::KmapModelCyclesPerAccess)?, fig(D::KmapWrapModelCyclesPerAccess)?);
    Some(Access {
        base,
        kmaps: (model - wraps) * slowdown,
        wraps,
        wraps_halted: fig(D::KmapWrapHaltedModelCyclesPerAccess)?,
        wait: fig(D::KmapLockWaitCyclesPerAccess)?,
    })
}

/// Two variants' modelled accesses on 1 and on 2 vCPUs, as
/// `[a on 1, a on 2, b on 1, b on 2]`; None unless all four are modelled.
pub(super) fn modelled_up_smp(l: &Lookup, exp: Option<&str>, a: PteVariant, b: PteVariant) -> Option<[Access; 4]> {
    Some([modelled(l, exp, a, 1)?, modelled(l, exp, a, 2)?, modelled(l, exp, b, 1)?, modelled(l, exp, b, 2)?])
}

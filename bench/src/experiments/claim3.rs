//! Claim 3: atomic kmaps against the global kmap_lock as CPUs are added.

use shared::config::{PteVariant, Setting as S, Workload};
use shared::counters::Counter as C;

use super::cells::*;
use super::pte_access;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, Experiment, Want::Vcpus};
use crate::figures::Derived as D;

/// Claim 3. lowpte maps nothing and is the control: under one TCG thread a
/// second busy vCPU halves each one's speed, so lowpte's per-access cycles
/// double from 1 to 2 vCPUs with no lock at all; a variant scales when it
/// slows no more than lowpte.
pub(super) fn experiment() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2, 4] {
        for pte in [PteVariant::Lowpte, PteVariant::Atomic, PteVariant::Persistent, PteVariant::PercpuPool] {
            cells.push(pte_bench(pte, v, 2048, PTE_BENCH_ROUNDS));
        }
    }
    let mut e = new_experiment(
        "kmap-scaling",
        "Atomic kmaps against the global kmap_lock as CPUs are added (claim 3)",
        "pte-bench per --pte variant on 1, 2 and 4 vCPUs: the cost of one pte access and the kmap_lock waits, \
         with lowpte (no kmap) as the control for what adding vCPUs costs the emulator.",
        cells,
        PTE_COLUMNS,
    );
    e.note = Some(
        "QEMU-hosted, one TCG thread runs every vCPU: each busy vCPU slows the others, so per-access cycles grow \
         with vCPUs even with no lock (see lowpte). 4 vCPUs on this 2-core machine are overcommitted as well."
            .into(),
    );
    e.claims = vec![Claim::Claim3];
    // Under one TCG thread the 2-vCPU figures depend on how the two vCPUs'
    // turns interleave: lowpte's, the yardstick, moved from 2.05x to 1.60x its
    // 1-vCPU figure between two 3-repetition runs. The verdict's threshold is
    // 1.25x: resolve about ±10%, at most 9 repetitions.
    e.adapt = Some(Adapt { figure: D::PteCyclesPerAccess.into(), resolve_pct: 10, max_reps: 9 });
    e
}

/// Claim 3, decided on the counts: atomic kmaps take no kmap_lock (no wait
/// on 2 vCPUs), the persistent pool's lock is contended (waits). The cycles
/// inform: what a second vCPU costs the emulator itself (one TCG thread runs
/// both) is lowpte's slowdown, pte-bench with no kmap at all, and a variant
/// scales when it slows by no more than that (within 25%), on the interval
/// of (variant 2 / variant 1) / (lowpte 2 / lowpte 1). They overrule the
/// counts only when their interval lies wholly on the other side of 1.25x;
/// one that holds it decides nothing. (On the cycles alone, atomic's verdict
/// did not hold from run to run: 1.20x [1.02-1.39] in one full run, 1.01x
/// [0.85-1.15] in the next.)
pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let cell = |pte: PteVariant, v: u32| [is(S::Workload(Workload::PteBench)), is(S::Pte(pte)), Vcpus(v)];
    let exp = Some("kmap-scaling");
    let fig = |pte: PteVariant, v: u32| l.sample(&cell(pte, v), exp, D::PteCyclesPerAccess);
    let (l1, l2) = (fig(PteVariant::Lowpte, 1)?, fig(PteVariant::Lowpte, 2)?);
    let (a1, a2) = (fig(PteVariant::Atomic, 1)?, fig(PteVariant::Atomic, 2)?);
    let (p1, p2) = (fig(PteVariant::Persistent, 1)?, fig(PteVariant::Persistent, 2)?);
    let wa = l.fig(&cell(PteVariant::Atomic, 2), exp, C::KmapLockWaits)?;
    let wp = l.fig(&cell(PteVariant::Persistent, 2), exp, C::KmapLockWaits)?;
    // (x2 / x1) / (l2 / l1) over the four cells' medians.
    let beyond = |x1: &[f64], x2: &[f64]| interval(&[x2, x1, &l2, &l1], |m| (m[0] / m[1]) / (m[2] / m[3]));
    let (Some(ba), Some(bp)) = (beyond(&a1, &a2), beyond(&p1, &p2)) else {
        return Err(Missing::NoFigure("pte-bench".into(), D::PteCyclesPerAccess.into()));
    };
    let atomic_scales = wa == 0.0 && below(&ba, 1.25) != Some(false);
    let lock_does_not = wp > 0.0 && above(&bp, 1.25) != Some(false);
    let say = |cycles: Option<bool>| match cycles {
        Some(true) => "cycles agree",
        Some(false) => "cycles disagree",
        None => "cycles within the noise",
    };
    let m = |x: &[f64]| median(x);
    let (sl, sa, sp) = (m(&l2) / m(&l1), m(&a2) / m(&a1), m(&p2) / m(&p1));
    let mut text = format!(
        "by the counts, on 2 vCPUs: atomic {wa:.0} kmap_lock waits, persistent {wp:.0} (atomic's {}, \
             persistent's {}); pte \
             access 1 -> 2 vCPUs: atomic {:.0} -> {:.0} cycles ({sa:.2}x), persistent {:.0} -> {:.0} \
             ({sp:.2}x), against lowpte's {:.0} -> {:.0} ({sl:.2}x: what a second vCPU costs with no kmap at \
             all, one TCG thread running both); beyond that, atomic {:.2}x {}, persistent {:.2}x {} (a variant \
             scales at most 1.25x)",
        say(below(&ba, 1.25)),
        say(above(&bp, 1.25)),
        m(&a1),
        m(&a2),
        m(&p1),
        m(&p2),
        m(&l1),
        m(&l2),
        ba.value,
        ci_range(&ba),
        bp.value,
        ci_range(&bp)
    );
    // The model's figure for the same ratio: lowpte's access as measured, the
    // kmaps priced, the wraps priced as global flushes, the lock wait measured.
    if let Some([ma1, ma2, mp1, mp2]) = pte_access::modelled_up_smp(l, exp, PteVariant::Atomic, PteVariant::Persistent)
    {
        let beyond = |x1: f64, x2: f64| (x2 / x1) / sl;
        text += &format!(
            "; by the model (lowpte's access as measured, the kmaps priced by this host's native kmap units, the \
             wraps as global flushes, the kmap_lock wait as measured), beyond lowpte's: atomic {:.2}x, persistent \
             {:.2}x, or {:.2}x with each wrap's flush priced with the other vCPU halted (on 2 vCPUs the pool's \
             access is {:.0} of kmaps, {:.0} of wraps and {:.0} of kmap_lock wait, atomic's {:.0} of wait)",
            beyond(ma1.total(), ma2.total()),
            beyond(mp1.total(), mp2.total()),
            beyond(mp1.total_halted(), mp2.total_halted()),
            mp2.kmaps,
            mp2.wraps,
            mp2.wait,
            ma2.wait
        );
    }
    Ok((status_noisy(&[Some(atomic_scales), Some(lock_does_not)]), text))
}

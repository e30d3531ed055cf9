//! Claim 5: what a pte access costs with highpte, a map per pte read and a
//! map per pte page.

use shared::config::{PteVariant, Setting as S, Workload};

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, Experiment, Want::Vcpus};
use crate::figures::Derived as D;

pub(super) fn experiment() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2] {
        for pte in [
            PteVariant::Lowpte,
            PteVariant::Atomic,
            PteVariant::Persistent,
            PteVariant::PercpuPool,
            PteVariant::PerTask,
        ] {
            cells.push(pte_bench(pte, v, 2048, PTE_BENCH_ROUNDS));
        }
    }
    for pte in
        [PteVariant::Lowpte, PteVariant::Atomic, PteVariant::Persistent, PteVariant::PercpuPool, PteVariant::PerTask]
    {
        cells.push(
            pte_bench(pte, 1, 2048, PTE_BENCH_PAGE_ROUNDS)
                .with(S::PteReads(512))
                .label(format!("{pte}, 1 vCPU, 512 ptes per map")),
        );
    }
    let mut e = new_experiment(
        "pte-cost",
        "Cost of a pte access per --pte variant (claim 5)",
        "pte-bench per variant: one map per pte read (map, read, unmap) on 1 and 2 vCPUs, and one map per pte \
         page with all 512 of its ptes read, the shape of Linux's zap_pte_range and copy_pte_range, on 1 vCPU.",
        cells,
        PTE_COLUMNS,
    );
    e.claims = vec![Claim::Claim5];
    // The thresholds are 1x and 3x: resolve ±10%.
    e.adapt = Some(Adapt { figure: D::PteCyclesPerAccess.into(), resolve_pct: 10, max_reps: 9 });
    e
}

/// Claim 5, measured two ways: a map per pte read, and a map per pte page
/// with every pte of it read (Linux's shape, which decides when measured).
pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    match (claim5_at(l, 1), claim5_at(l, 512)) {
        (Ok((_, t1)), Ok((s512, t512))) => Ok((
            s512,
            format!("a whole pte page per map (Linux's zap and copy loops, which decides): {t512}; a map per pte read: {t1}"),
        )),
        (Ok((s, t)), Err(_)) => Ok((s, format!("a map per pte read: {t} (one map per pte page not measured)"))),
        (Err(_), Ok((s, t))) => Ok((s, format!("a whole pte page per map: {t}"))),
        (Err(m), Err(_)) => Err(m),
    }
}

/// Claim 5 at `reads` pte reads per map: atomic kmaps against lowmem.
/// "Slightly more expensive": the interval of atomic's median over lowpte's
/// lies above 1 and at most at 3; one holding 1, or reaching past 3, decides
/// nothing.
fn claim5_at(l: &Lookup, reads: u64) -> Result<(Status, String), Missing> {
    let mut last = Missing::NotRun;
    for v in [1, 2] {
        let cell =
            |pte: PteVariant| [is(S::Workload(Workload::PteBench)), is(S::Pte(pte)), Vcpus(v), is(S::PteReads(reads))];
        match (
            l.sample(&cell(PteVariant::Lowpte), None, D::PteCyclesPerAccess),
            l.sample(&cell(PteVariant::Atomic), None, D::PteCyclesPerAccess),
        ) {
            (Ok(lo_s), Ok(at_s)) => {
                let (lo, at) = (median(&lo_s), median(&at_s));
                let Some(ci) = interval(&[&at_s, &lo_s], ratio) else {
                    return Err(Missing::NoFigure("pte-bench".into(), D::PteCyclesPerAccess.into()));
                };
                let r = ci.value;
                let mut others = Vec::new();
                for pte in [PteVariant::Persistent, PteVariant::PercpuPool, PteVariant::PerTask] {
                    if let Ok(c) = l.fig(&cell(pte), None, D::PteCyclesPerAccess) {
                        others.push(format!("{pte} {c:.1} ({:.1}x)", c / lo));
                    }
                }
                let (status, how) = match (above(&ci, 1.0), above(&ci, 3.0)) {
                    (Some(true), Some(false)) => (Status::Confirmed, ", slightly more"),
                    (_, Some(true)) => (Status::Refuted, ", much more expensive"),
                    (Some(true), None) => (Status::Inconclusive, ", dearer; slightly or much, within the noise"),
                    (Some(false), _) => (Status::Refuted, ", not more expensive"),
                    (None, _) => (Status::Inconclusive, ", within the noise"),
                };
                let mut how = format!("{how} {}", ci_range(&ci));
                // The model: lowpte's measured access plus atomic's kmaps
                // priced by the native kmap unit.
                if let Ok(k) = l.fig(&cell(PteVariant::Atomic), None, D::KmapModelCyclesPerAccess) {
                    how += &format!("; by the model, lowpte's {lo:.1} and a kmap priced {k:.1}: {:.2}x", (lo + k) / lo);
                }
                return Ok((
                    status,
                    format!(
                        "one pte read costs {at:.1} cycles with atomic kmaps against {lo:.1} in lowmem ({r:.2}x{how}){}; \
                         {v} vCPU{}",
                        if others.is_empty() { String::new() } else { format!("; {}", others.join(", ")) },
                        plural(v)
                    ),
                ));
            }
            (Err(m), _) | (_, Err(m)) => keep_worst(&mut last, m),
        }
    }
    Err(last)
}

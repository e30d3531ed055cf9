//! Claim 2: the persistent kmap pool's size (LAST_PKMAP), under mm-all and
//! under a load that wraps it.

use shared::config::{PtCache, PteVariant, Setting as S, Switch, Workload};
use shared::counters::Counter as C;
use shared::results::GuestResult as R;

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, CellSpec, Experiment, PlotKind, Want::Vcpus};
use crate::figures::{Derived as D, Figure};

fn mm_all_persistent(last_pkmap: u64) -> CellSpec {
    CellSpec::new(
        format!("last-pkmap {last_pkmap}"),
        2,
        "256m",
        300,
        &[
            S::Workload(Workload::MmAll),
            S::Pte(PteVariant::Persistent),
            S::LastPkmap(last_pkmap),
            S::Tasks(16),
            S::Pages(32),
            S::Rounds(3),
            S::Ptcache(PtCache::None),
            S::Lowmem(64 << 20),
            S::Debug(Switch::Off),
        ],
    )
}

pub(super) fn pkmap_pool() -> Experiment {
    let mut e = new_experiment(
        "pkmap-pool",
        "The persistent kmap pool: LAST_PKMAP 128..2048 (claim 2)",
        "mm-all with --pte persistent on 2 vCPUs: kmap_lock, pool flushes, flush IPIs \
         and sleeps per 1000 page faults.",
        [128, 256, 512, 1024, 2048].into_iter().map(mm_all_persistent).collect(),
        &[
            Figure::Derived(D::KmapLockTakenPerKfault),
            Figure::Derived(D::KmapLockWaitsPerKfault),
            Figure::Derived(D::PkmapFlushesPerKfault),
            Figure::Derived(D::FlushIpisPerKfault),
            Figure::Derived(D::KmapSleepsPerKfault),
            Figure::Derived(D::KmapCacheHitsPerKfault),
            Figure::Derived(D::WorkloadCyclesMax),
        ],
    );
    e.plot = Some(PlotKind::PkmapSweep);
    e.claims = vec![Claim::Claim2];
    e
}

/// The pool under a load that wraps it: claim 2's flushing half. mm-all's
/// tasks touch too few pte pages to wrap even 256 entries; here 64 tasks fault
/// in 64 sparse pages each, 4096 pte pages each mapped once through the pool.
pub(super) fn pkmap_wrap() -> Experiment {
    let cells = [128u64, 256, 512, 1024, 2048]
        .into_iter()
        .map(|n| {
            CellSpec::new(
                format!("wrapping, last-pkmap {n}"),
                2,
                "512m",
                300,
                &[
                    S::Workload(Workload::TaskCapacity),
                    S::Pte(PteVariant::Persistent),
                    S::LastPkmap(n),
                    S::Tasks(64),
                    S::Pages(64),
                    S::Ptcache(PtCache::None),
                    S::Lowmem(64 << 20),
                    S::Debug(Switch::Off),
                ],
            )
        })
        .collect();
    let mut e = new_experiment(
        "pkmap-wrap",
        "The persistent kmap pool when it wraps: LAST_PKMAP 128..2048 (claim 2)",
        "task-capacity with --pte persistent on 2 vCPUs, 64 tasks of 64 sparse pages (4096 pte pages, each \
         mapped once through the pool): wrap flushes, kmap_lock waits and the workload's span as the pool grows.",
        cells,
        &[
            Figure::Result(R::PkmapWrapFlushes),
            Figure::Derived(D::PkmapFlushesPerKfault),
            Figure::Derived(D::KmapLockTakenPerKfault),
            Figure::Derived(D::KmapLockWaitsPerKfault),
            Figure::Derived(D::KmapCacheHitsPerKfault),
            Figure::Derived(D::WorkloadCyclesMax),
        ],
    );
    e.plot = Some(PlotKind::PkmapWrap);
    e.claims = vec![Claim::Claim2];
    // The span decides the flushing half: resolve ±5%.
    e.adapt = Some(Adapt { figure: D::WorkloadCyclesMax.into(), resolve_pct: 5, max_reps: 9 });
    e
}

pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let cell =
        |n: u64| [is(S::Workload(Workload::MmAll)), is(S::Pte(PteVariant::Persistent)), is(S::LastPkmap(n)), Vcpus(2)];
    let sleeps = l.fig(&cell(256), None, C::KmapSleeps)?;
    let f256 = l.fig(&cell(256), None, D::PkmapFlushesPerKfault)?;
    let f2048 = l.fig(&cell(2048), None, D::PkmapFlushesPerKfault)?;
    let h256 = l.fig(&cell(256), None, D::KmapCacheHitsPerKfault)?;
    let h2048 = l.fig(&cell(2048), None, D::KmapCacheHitsPerKfault)?;
    let small_enough = sleeps == 0.0;
    let mut text = format!(
        "at 256 entries {} (median {sleeps:.0} sleeps on a full pool); mm-all from 256 to 2048 entries, per 1000 \
         faults: pool flushes {f256:.2} -> {f2048:.2}, cache hits {h256:.0} -> {h2048:.0}",
        if small_enough { "no task slept" } else { "tasks slept" }
    );
    // The flushing half needs a load that wraps the pool (pkmap-wrap).
    let wrap =
        |n: u64| [is(S::Workload(Workload::TaskCapacity)), is(S::Pte(PteVariant::Persistent)), is(S::LastPkmap(n))];
    let wrapping = Some("pkmap-wrap");
    let flushes_better = match (
        l.fig(&wrap(256), wrapping, R::PkmapWrapFlushes),
        l.fig(&wrap(2048), wrapping, R::PkmapWrapFlushes),
        l.sample(&wrap(256), wrapping, D::WorkloadCyclesMax),
        l.sample(&wrap(2048), wrapping, D::WorkloadCyclesMax),
    ) {
        (Ok(w256), Ok(w2048), Ok(s256), Ok(s2048)) => {
            // The longer O(N) scan of 2048 entries must not cost the span more
            // than the flushes it save: refuted only when the interval of the
            // ratio of the spans lies wholly above 1.
            let span = interval(&[&s2048, &s256], ratio);
            let slower = span.as_ref().and_then(|ci| above(ci, 1.0)) == Some(true);
            text += &format!(
                "; a load that wraps the pool (4096 pte pages): wraps {w256:.0} -> {w2048:.0}, span {:.3e} -> \
                 {:.3e} cycles{}{}",
                median(&s256),
                median(&s2048),
                span.map(|ci| format!(" ({:.2}x {})", ci.value, ci_range(&ci))).unwrap_or_default(),
                if slower { " (2048 slower)" } else { "" }
            );
            w2048 < w256 && !slower
        }
        (Err(m), ..) | (_, Err(m), ..) | (.., Err(m), _) | (.., Err(m)) => {
            let (_, why) = not_measured(m, true);
            text += &format!("; the wrapping load not measured ({why})");
            f2048 < f256
        }
    };
    // More than 1% more page->virtual cache hits.
    let caches_better = h2048 > h256 * 1.01;
    text += match (flushes_better, caches_better) {
        (true, true) => "",
        (true, false) => " (2048 flushes less but caches no better)",
        (false, true) => " (2048 caches better but flushes no less)",
        (false, false) => " (2048 neither flushes less nor caches better)",
    };
    Ok((status(&[small_enough, flushes_better, caches_better]), text))
}

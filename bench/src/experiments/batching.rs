//! Batching a lazy-MMU section's pagetable writes into one mmu_update.

use shared::config::{Setting as S, Switch, Workload};
use shared::counters::Counter as C;

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, CellSpec, Experiment};
use crate::figures::{Derived as D, Exits, Figure};

/// What batching the lazy-MMU sections' pagetable writes saves (issue 5's exits
/// per 1000 page faults): fork-storm (copies and teardowns, which batch) and
/// mm-all (every workload, single-entry faults among them), each with
/// `--pv-batch on` and `off`. The dirty log stays on (the default): these
/// figures are counts, and its cost is in no exit.
pub(super) fn experiment() -> Experiment {
    let mut cells = Vec::new();
    for workload in [Workload::ForkStorm, Workload::MmAll] {
        for batch in [Switch::On, Switch::Off] {
            cells.push(CellSpec::new(
                format!("{workload}, --pv-batch {batch}"),
                2,
                "512m",
                120,
                &[S::Workload(workload), S::Pvmmu(Switch::On), S::Lowmem(128 << 20), S::PvBatch(batch)],
            ));
        }
    }
    let mut e = new_experiment(
        "pv-batching",
        "Hypercall exits per 1000 page faults, with and without batching",
        "Under --pvmmu on every pagetable write is an mmu_update; in a lazy-MMU section (fork's copy, exit's \
         teardown, mremap's move) the guest queues them and sends a batch in one hypercall. How many exits does \
         that save per 1000 page faults?",
        cells,
        &[
            Figure::Derived(D::HypercallExitsPerKfault),
            Figure::Count(C::PageFaults),
            Figure::Exits(Exits::Hypercall),
            Figure::Count(C::PvUpdates),
            Figure::Count(C::PvUpdateCalls),
            Figure::Derived(D::PvUpdatesPerCall),
            Figure::Count(C::PtPins),
            Figure::Derived(D::WorkloadCyclesMax),
        ],
    );
    e.claims = vec![Claim::Batching];
    e.adapt = Some(Adapt { figure: D::HypercallExitsPerKfault.into(), resolve_pct: 5, max_reps: 9 });
    e
}

pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let exp = Some("pv-batching");
    let mut parts = Vec::new();
    let mut text = Vec::new();
    for workload in [Workload::ForkStorm, Workload::MmAll] {
        let at = |batch| l.sample(&[is(S::Workload(workload)), is(S::PvBatch(batch))], exp, D::HypercallExitsPerKfault);
        let (on, off) = (at(Switch::On)?, at(Switch::Off)?);
        let per_call = l.fig(&[is(S::Workload(workload)), is(S::PvBatch(Switch::On))], exp, D::PvUpdatesPerCall)?;
        // Fewer exits batched: the interval of on / off wholly below 1.
        let ci = interval(&[&on, &off], ratio);
        let fewer = ci.as_ref().and_then(|ci| below(ci, 1.0));
        parts.push(fewer);
        let (on, off) = (median(&on), median(&off));
        let saved = if off > 0.0 { 100.0 * (1.0 - on / off) } else { 0.0 };
        let change = if saved >= 0.0 { format!("{saved:.0}% fewer") } else { format!("{:.0}% more", -saved) };
        text.push(format!(
            "{workload}: {on:.0} hypercall exits per 1000 page faults batched against {off:.0} unbatched ({change}{} \
             {}; {per_call:.2} updates per mmu_update)",
            noise_suffix(fewer),
            ci.map(|ci| ci_range(&ci)).unwrap_or_default()
        ));
    }
    Ok((status_noisy(&parts), text.join("; ")))
}

//! Claim 4: highpte lifts the lowmem cap on pagetables (task-capacity).

use shared::config::{PteVariant, Setting as S, Workload};
use shared::counters::Counter as C;
use shared::results::GuestResult as R;

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{size_text, CellSpec, Experiment};
use crate::figures::Figure;

pub(super) fn experiment() -> Experiment {
    let mut cells = Vec::new();
    for low in [16u64 << 20, 32 << 20] {
        for pte in [PteVariant::Lowpte, PteVariant::Atomic] {
            cells.push(CellSpec::new(
                format!("lowmem {}, {pte}", size_text(low)),
                2,
                "512m",
                300,
                &[S::Workload(Workload::TaskCapacity), S::Pte(pte), S::Lowmem(low), S::Tasks(512), S::Pages(64)],
            ));
        }
    }
    let mut e = new_experiment(
        "task-capacity",
        "Tasks that fit in lowmem: lowpte vs highpte (claim 4)",
        "task-capacity with 64 pagetable pages per task, 512 MiB of RAM, at several --lowmem sizes.",
        cells,
        &[Figure::Result(R::TasksStarted), Figure::Count(C::PtPagesLowmem), Figure::Count(C::PtPagesHighmem)],
    );
    e.claims = vec![Claim::Claim4];
    e
}

pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let mut last = Missing::NotRun;
    for low in [8u64, 16, 32, 64, 128, 256].map(|m| m << 20) {
        let cell = |pte: PteVariant| [is(S::Workload(Workload::TaskCapacity)), is(S::Pte(pte)), is(S::Lowmem(low))];
        match (
            l.fig(&cell(PteVariant::Lowpte), None, R::TasksStarted),
            l.fig(&cell(PteVariant::Atomic), None, R::TasksStarted),
        ) {
            (Ok(lo), Ok(hi)) => {
                parts.push(hi > lo);
                text.push(format!("lowmem {}: {lo:.0} tasks with lowpte, {hi:.0} with highpte", size_text(low)));
            }
            (Err(m), _) | (_, Err(m)) => keep_worst(&mut last, m),
        }
    }
    if parts.is_empty() {
        return Err(last);
    }
    Ok((status(&parts), text.join("; ")))
}

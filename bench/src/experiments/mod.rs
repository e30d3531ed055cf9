//! The benchmark's experiments: one module per claim, each declaring its cells
//! (typed configurations) and computing its verdict from typed figures, and the
//! built-in matrices made of them.

mod batching;
mod cells;
mod claim1;
mod claim2;
mod claim3;
mod claim4;
mod claim5;
mod claim6;
mod claim7;
pub mod highpte_2002;
mod history;
mod linux_highpte;
mod pte_access;
mod sweeps;
mod verdict;
mod which_strategy;

#[cfg(test)]
mod tests;

use shared::config::{PteVariant, VmapVariant};

pub use sweeps::CALIBRATION;
pub use verdict::{Status, Verdict};

use super::claim::Claim;
use super::design::{Experiment, MatrixName, PlotKind};
use super::results::CellResult;
use cells::{new_experiment, pte_bench, vmap_bench, PTE_COLUMNS, VMAP_COLUMNS};
use verdict::{not_measured, Lookup, Missing};

/// The smoke matrix's experiments: configurations that work today without the
/// PV guest, small enough for CI.
fn smoke() -> Vec<Experiment> {
    let mut vmap = new_experiment(
        "vmap-bench",
        "Lazy vs eager vmap (smoke: 2000 iterations, 1 vCPU)",
        "Nick Piggin's benchmark, eager against lazy-ptes, short.",
        vec![vmap_bench(VmapVariant::Eager, 1, 2000), vmap_bench(VmapVariant::LazyPtes, 1, 2000)],
        VMAP_COLUMNS,
    );
    vmap.plot = Some(PlotKind::VmapForms);
    vmap.claims = vec![Claim::Claim1];
    let pte = new_experiment(
        "pte-cost",
        "Cost of one pte access (smoke)",
        "pte-bench, atomic kmaps, short.",
        vec![pte_bench(PteVariant::Atomic, 1, 256, 200)],
        PTE_COLUMNS,
    );
    vec![vmap, pte]
}

/// A built-in matrix.
pub fn builtin(name: MatrixName) -> Vec<Experiment> {
    match name {
        MatrixName::Default => vec![claim7::alias_strategies(), sweeps::calibration()],
        MatrixName::Full => vec![
            claim7::alias_strategies(),
            sweeps::calibration(),
            history::experiment(),
            claim7::alias_frequency(),
            which_strategy::experiment(),
            batching::experiment(),
            sweeps::vcpu_sweep(),
            sweeps::lazy_areas(),
            sweeps::host_check(),
            sweeps::vmap_forms_pv(),
            sweeps::highpte_ram(),
            claim1::experiment(),
            claim2::pkmap_pool(),
            claim2::pkmap_wrap(),
            claim3::experiment(),
            claim4::experiment(),
            claim5::experiment(),
            claim6::experiment(),
            highpte_2002::experiment(),
            linux_highpte::pte_experiment(),
            linux_highpte::cap_experiment(),
        ],
        MatrixName::Smoke => smoke(),
        MatrixName::LinuxShort => vec![linux_highpte::short_experiment()],
    }
}

/// Every claim's verdict. `full`: whether the full matrix ran (for what a
/// missing figure means).
pub fn verdicts(results: &[CellResult], full: bool) -> Vec<Verdict> {
    let l = Lookup { results };
    Claim::ALL
        .iter()
        .map(|&claim| {
            let r = match claim {
                Claim::Claim1 => claim1::verdict(&l),
                Claim::Claim2 => claim2::verdict(&l),
                Claim::Claim3 => claim3::verdict(&l),
                Claim::Claim4 => claim4::verdict(&l),
                Claim::Claim5 => claim5::verdict(&l),
                Claim::Claim6 => claim6::verdict(&l),
                Claim::Claim7 => claim7::verdict(&l, full),
                Claim::History => history::verdict(&l),
                Claim::WhichStrategy => which_strategy::verdict(&l),
                Claim::Batching => batching::verdict(&l),
                Claim::Highpte2002 => highpte_2002::verdict(&l),
                Claim::LinuxHighpte => linux_highpte::verdict(&l),
            };
            let (status, text) = r.unwrap_or_else(|m| match m {
                // The main question is the default matrix's, not only --full's.
                Missing::NotRun if claim == Claim::Claim7 && !full => {
                    (Status::NotMeasured, "needs the default matrix (vmm bench) or --full".to_owned())
                }
                m => not_measured(m, full),
            });
            Verdict { claim, status, text }
        })
        .collect()
}

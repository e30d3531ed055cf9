//! The cells the experiments share: the benchmark's fork-churn cell, the
//! frequency sweep, vmap-bench and pte-bench, and their table columns.

use shared::config::{AliasStrategy, PteVariant, Setting as S, Switch, VmapVariant, Workload, WriteWatch};
use shared::counters::Counter as C;
use shared::results::GuestResult as R;

use crate::design::{CellSpec, Experiment};
use crate::figures::{Derived as D, Exits, Figure, Host};

/// The alias strategies, in the design notes' order, and the oracle they are
/// measured against (a strategy that runs: `--alias oracle`).
pub const STRATEGIES: [AliasStrategy; 7] = [
    AliasStrategy::None,
    AliasStrategy::AlwaysFlush,
    AliasStrategy::AliasBit,
    AliasStrategy::RuntimeSwitch,
    AliasStrategy::CleanPool,
    AliasStrategy::HostTrap,
    AliasStrategy::Oracle,
];

/// Columns of the alias-strategy tables: the counts first (they decide), then
/// the cycles (they inform).
pub(super) fn pin_columns() -> Vec<Figure> {
    vec![
        Figure::Count(C::PtPins),
        Figure::Count(C::PtPinsAliasPte),
        Figure::Count(C::VmUnmapAliases),
        Figure::Count(C::VmUnmapAliasesFlushed),
        Figure::Count(C::VmUnmapAliasesReflushed),
        Figure::Derived(D::VmUnmapAliasesEmpty),
        Figure::Derived(D::VmUnmapAliasesFlushedOverOracle),
        Figure::Count(C::TlbFlushGlobal),
        Figure::Count(C::IpisSent),
        Figure::Exits(Exits::Hypercall),
        Figure::Derived(D::ExitsHypercallOverOracle),
        Figure::Host(Host::TrapsBack),
        Figure::Count(C::PtPinRefused),
        Figure::Count(C::PtPinRefusedAfterPurge),
        Figure::Count(C::CleanPoolRefills),
        Figure::Derived(D::ModelCyclesPerPin),
        Figure::Derived(D::ModelRatioToOracle),
        Figure::Derived(D::ModelExplains),
        Figure::Derived(D::CyclesPerPin),
        Figure::Derived(D::RatioToOracle),
        Figure::Derived(D::ExcessCyclesPerPin),
        Figure::Derived(D::RatioToAlwaysFlush),
        Figure::Derived(D::AliasCyclesPerPin),
        Figure::Count(C::WorkloadCycles),
        Figure::Derived(D::WorkloadRatioToOracle),
        Figure::Host(Host::AliasCheckNs),
        Figure::Count(C::PvUpdates),
        Figure::Count(C::PvUpdateCalls),
        Figure::Derived(D::TrapsBackPerKpin),
        Figure::Count(C::PtPinsAliased),
        Figure::Host(Host::MaxExitNs),
        Figure::Host(Host::MaxExitEntries),
    ]
}

/// The fork-heavy workload with vmap churn on 2 vCPUs under the PV MMU: the
/// default matrix's cell for one strategy. Sized so that the six strategies with
/// three repetitions each stay well under two minutes QEMU-hosted.
///
/// The host watches no unprotected tables with the dirty log
/// (`--host-write-watch memslot`): this guest's kernel runs on validated tables
/// only (the CR3 check at every exit), so it cannot write one directly, and
/// the end-of-run audit, which must find nothing (`pvmmu_audit_errors`), would
/// show it if it did. On a QEMU TCG host the watch costs every hypercall exit a
/// read of the log and a refault of every table walked since (docs/pvmmu.md),
/// the same for every strategy, which would only bury the differences measured.
pub(super) fn fork_churn(alias: AliasStrategy) -> CellSpec {
    CellSpec::new(
        alias.as_str(),
        2,
        "256m",
        60,
        &[
            S::Workload(Workload::ForkChurn),
            S::Pvmmu(Switch::On),
            S::Alias(alias),
            S::Tasks(4),
            S::Rounds(16),
            S::Pages(16),
            S::ChurnEvery(1),
            S::HostWriteWatch(WriteWatch::Memslot),
        ],
    )
}

pub(super) fn new_experiment(
    id: &str,
    title: &str,
    question: &str,
    cells: Vec<CellSpec>,
    columns: &[Figure],
) -> Experiment {
    Experiment {
        id: id.into(),
        title: title.into(),
        question: question.into(),
        cells,
        columns: columns.to_vec(),
        plot: None,
        claims: vec![],
        note: None,
        reps: None,
        adapt: None,
    }
}

/// The alias frequencies of the sweep: an alias source before every Nth fork.
pub const FREQUENCIES: [u64; 5] = [1, 4, 16, 64, 256];

/// fork-churn long enough (256 forks) for one alias source in 256 forks.
pub(super) fn frequency_cell(strategy: AliasStrategy, every: u64) -> CellSpec {
    fork_churn(strategy)
        .with(S::Rounds(64))
        .with(S::ChurnEvery(every))
        .label(format!("{strategy}, churn every {every}"))
}

pub(super) fn frequency_cells() -> Vec<CellSpec> {
    STRATEGIES.into_iter().flat_map(|s| FREQUENCIES.map(move |every| frequency_cell(s, every))).collect()
}

pub(super) fn vmap_bench(form: VmapVariant, vcpus: u32, iterations: u64) -> CellSpec {
    CellSpec::new(
        format!("{form}, {vcpus} vCPU{}", if vcpus > 1 { "s" } else { "" }),
        vcpus,
        "256m",
        300,
        &[
            S::Workload(Workload::VmapBench),
            S::Vmap(form),
            S::Iterations(iterations),
            S::Lowmem(64 << 20),
            S::Debug(Switch::Off),
        ],
    )
}

pub(super) const VMAP_COLUMNS: &[Figure] = &[
    Figure::Result(R::VmapBenchNs),
    Figure::Derived(D::VmapBenchCyclesPerIter),
    Figure::Result(R::VmapOneAliasNs),
    Figure::Count(C::VmapFlushes),
    Figure::Count(C::IpisSent),
];

pub(super) fn pte_bench(pte: PteVariant, vcpus: u32, pages: u64, rounds: u64) -> CellSpec {
    CellSpec::new(
        format!("{pte}, {vcpus} vCPU{}", if vcpus > 1 { "s" } else { "" }),
        vcpus,
        "256m",
        300,
        &[
            S::Workload(Workload::PteBench),
            S::Pte(pte),
            S::Pages(pages),
            S::Rounds(rounds),
            S::Lowmem(64 << 20),
            S::Debug(Switch::Off),
        ],
    )
}

pub(super) const PTE_COLUMNS: &[Figure] = &[
    Figure::Derived(D::PteCyclesPerAccess),
    Figure::Count(C::KmapLockWaits),
    Figure::Count(C::KmapLockSpins),
    Figure::Count(C::TlbFlushGlobal),
    Figure::Count(C::IpisSent),
];

/// pte-bench's rounds in the full matrix. Long enough that the tasks of a
/// multi-vCPU run overlap: with 2000 the first task started was half done
/// before the second ran (one TCG thread runs every vCPU), so the kmap_lock
/// was seldom contended (171 waits a run against 204712 at 20000).
pub(super) const PTE_BENCH_ROUNDS: u64 = 20000;

/// pte-bench's rounds when each map reads a whole page of ptes: a tenth of the
/// maps of [`PTE_BENCH_ROUNDS`], 51 times its pte reads.
pub(super) const PTE_BENCH_PAGE_ROUNDS: u64 = 2000;

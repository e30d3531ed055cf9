//! The experiments that inform the main question without a verdict of their
//! own: the calibration (the cost model's unit costs), and the alias
//! strategies across vCPUs, lazy areas, host checks, vmap forms and guest RAM.

use shared::config::{AliasStrategy, HostCheck, PteVariant, Setting as S, Switch, VmapVariant, Workload};
use shared::counters::Counter as C;

use super::cells::*;
use crate::design::{CellSpec, Experiment};
use crate::figures::{Derived as D, Figure, Host};

/// The id of the calibration experiment (`vmm bench --calibrate` runs it alone).
pub const CALIBRATION: &str = "calibration";

/// The unit cost of each counted event on this host, measured beside the
/// strategies (the same VM shape and host settings as their cells) so that
/// their counts can be priced: the cost model.
pub(super) fn calibration() -> Experiment {
    let cell = fork_churn(AliasStrategy::HostTrap).with(S::Workload(Workload::Calibrate)).label("calibration");
    // The native kmaps, in pte-bench's VM shape (which is native): 64 MiB of
    // lowmem leaves highmem to map, and no debug checker (whose unmaps clear).
    let native = CellSpec::new(
        "kmap calibration (native)",
        2,
        "256m",
        60,
        &[S::Workload(Workload::Calibrate), S::Lowmem(64 << 20), S::Debug(Switch::Off)],
    );
    new_experiment(
        CALIBRATION,
        "Calibration: the unit cost of each counted event on this host",
        "The guest's calibrate workload times each event alone, 64 rounds each on the boot CPU: a bare exit, a \
         hypercall, a global TLB flush, a vm_unmap_aliases that finds nothing, one that flushes a lazy area of one \
         page and one of 16 pages (the price of each page more, from the two less their flushes), a pin with no \
         alias work, host-trap's trapped pin (and its trap back: the pin less its fixup and retry), and a fork's \
         pin of its child's whole tree; and, in a second, native cell (pte-bench's shape), a map and unmap of a \
         highmem pte page through each --pte variant and a native global flush. It times them twice: with the other vCPU halted, then busy, as \
         a workload's are. The busy medians price every run's counts (\"The cost model\"); under one TCG thread \
         a busy vCPU takes turns, and an event that waits for it costs several times more.",
        vec![cell, native],
        &crate::figures::UNIT_FIGURES.map(Figure::Result),
    )
}

pub(super) fn vcpu_sweep() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2, 4] {
        for s in STRATEGIES {
            cells.push(fork_churn(s).vcpus(v).label(format!("{s}, {v} vCPU{}", if v > 1 { "s" } else { "" })));
        }
    }
    let mut e = new_experiment(
        "vcpus",
        "vCPUs: 1, 2 and 4",
        "The alias strategies on 1, 2 and 4 vCPUs: flushes become IPIs with more than one.",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

pub(super) fn lazy_areas() -> Experiment {
    let mut cells = Vec::new();
    for s in [AliasStrategy::AlwaysFlush, AliasStrategy::AliasBit, AliasStrategy::HostTrap, AliasStrategy::Oracle] {
        for live in [1, 8, 64, 512] {
            cells.push(fork_churn(s).with(S::VmapLive(live)).label(format!("{s}, vmap-live {live}")));
        }
    }
    let mut e = new_experiment(
        "lazy-areas",
        "Number of lazy areas (--vmap-live)",
        "How many live vmap areas each CPU keeps, and what that does to vm_unmap_aliases and the pins.",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

pub(super) fn host_check() -> Experiment {
    let mut cells = Vec::new();
    for s in [AliasStrategy::HostTrap, AliasStrategy::None] {
        for c in [HostCheck::Typecount, HostCheck::Scan, HostCheck::Rmap] {
            cells.push(fork_churn(s).with(S::HostCheck(c)).label(format!("{s}, host-check {c}")));
        }
    }
    new_experiment(
        "host-check",
        "The host's alias check (--host-check)",
        "Host time in the alias check per pin for each way the host finds writable mappings.",
        cells,
        &[
            Figure::Host(Host::AliasCheckNs),
            Figure::Host(Host::AliasChecks),
            Figure::Derived(D::AliasCheckNsPerCheck),
            Figure::Host(Host::TrapsBack),
            Figure::Derived(D::CyclesPerPin),
            Figure::Count(C::PtPins),
        ],
    )
}

pub(super) fn highpte_ram() -> Experiment {
    let mut cells = Vec::new();
    for mem in ["256m", "4g", "16g", "64g"] {
        for pte in [PteVariant::Lowpte, PteVariant::Atomic, PteVariant::Persistent, PteVariant::PerTask] {
            cells.push(
                fork_churn(AliasStrategy::AlwaysFlush).mem(mem).with(S::Pte(pte)).label(format!("{mem}, --pte {pte}")),
            );
        }
    }
    let mut e = new_experiment(
        "highpte-ram",
        "Guest RAM up to 64 GiB with highpte",
        "The always-flush strategy as guest RAM grows and pagetables move to highmem (--pte).",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

pub(super) fn vmap_forms_pv() -> Experiment {
    let mut cells = Vec::new();
    for v in [VmapVariant::Eager, VmapVariant::LazyPtes, VmapVariant::LazyTlb] {
        for s in [
            AliasStrategy::None,
            AliasStrategy::AlwaysFlush,
            AliasStrategy::AliasBit,
            AliasStrategy::HostTrap,
            AliasStrategy::Oracle,
        ] {
            cells.push(fork_churn(s).with(S::Vmap(v)).label(format!("--vmap {v}, {s}")));
        }
    }
    let mut e = new_experiment(
        "vmap-forms",
        "--vmap eager | lazy-ptes | lazy-tlb under the PV MMU",
        "Each vmap form with the strategies that matter for it.",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

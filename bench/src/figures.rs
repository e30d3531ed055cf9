//! The figures of one run, taken from its report (`vmm run --json`): counters
//! summed over the vCPUs, the guest's results, exits by kind, the host's PV MMU
//! section, and figures derived from them within the same run (cycles per pin,
//! alias work). Figures that compare a run with another cell (the oracle's,
//! always-flush's) are added where the cells are gathered. Every figure is a number some run produced; a figure the run did
//! not produce is absent, never zero by default.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use shared::counters::Counter;
use shared::linux_probe::ProbeResult;
use shared::results::{GuestResult, UnitResults};

/// Declares a flat enum of figure names.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $var:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $var,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var,)+];
            pub const fn name(self) -> &'static str {
                match self { $($name::$var => $text,)+ }
            }
        }
    };
}

named! {
    /// Exits to the VMM by kind, summed over the vCPUs (`exits[].user`).
    Exits {
        Hypercall = "exits_hypercall",
        Nop = "exits_nop",
        OtherIo = "exits_other_io",
        Mmio = "exits_mmio",
        Hlt = "exits_hlt",
        Intr = "exits_intr",
        Shutdown = "exits_shutdown",
    }
}

impl Exits {
    /// The kind's key in the report's `exits[].user`.
    fn report_key(self) -> &'static str {
        match self {
            Exits::Nop => "nop_exit",
            k => k.name().trim_start_matches("exits_"),
        }
    }
}

named! {
    /// What the VMM itself measured: its PV MMU section and the run's time.
    Host {
        TrapsBack = "traps_back",
        TrapBackFailures = "trap_back_failures",
        AliasRefusals = "alias_refusals",
        AliasChecks = "alias_checks",
        AliasCheckNs = "alias_check_ns",
        PvmmuAuditErrors = "pvmmu_audit_errors",
        RunMs = "run_ms",
        ExitRestarts = "exit_restarts",
        MaxExitNs = "max_exit_ns",
        MaxExitEntries = "max_exit_entries",
    }
}

impl Host {
    /// The figures taken as they are from the report's `pvmmu` section.
    const PVMMU: [Host; 8] = [
        Host::TrapsBack,
        Host::TrapBackFailures,
        Host::AliasRefusals,
        Host::AliasChecks,
        Host::AliasCheckNs,
        Host::ExitRestarts,
        Host::MaxExitNs,
        Host::MaxExitEntries,
    ];
}

named! {
    /// Figures computed from others: within one run, from the cost model, or
    /// against another cell (the oracle's, always-flush's).
    Derived {
        WorkloadCyclesMax = "workload_cycles_max",
        CyclesPerPin = "cycles_per_pin",
        AliasCheckNsPerCheck = "alias_check_ns_per_check",
        TrapsBackPerKpin = "traps_back_per_kpin",
        PvUpdatesPerCall = "pv_updates_per_call",
        VmapBenchCyclesPerIter = "vmap_bench_cycles_per_iter",
        PteCyclesPerAccess = "pte_cycles_per_access",
        KmapCacheHitsPerAccess = "kmap_cache_hits_per_access",
        TlbInvlpgPerAccess = "tlb_invlpg_per_access",
        KmapLockWaitCyclesPerAccess = "kmap_lock_wait_cycles_per_access",
        KmapLockTakenPerKfault = "kmap_lock_taken_per_kfault",
        KmapLockWaitsPerKfault = "kmap_lock_waits_per_kfault",
        PkmapFlushesPerKfault = "pkmap_flushes_per_kfault",
        FlushIpisPerKfault = "flush_ipis_per_kfault",
        KmapSleepsPerKfault = "kmap_sleeps_per_kfault",
        KmapCacheHitsPerKfault = "kmap_cache_hits_per_kfault",
        HypercallExitsPerKfault = "hypercall_exits_per_kfault",
        AliasCycles = "alias_cycles",
        AliasCyclesPerPin = "alias_cycles_per_pin",
        VmUnmapAliasesEmpty = "vm_unmap_aliases_empty",
        // The cost model (`super::model`).
        ModelCycles = "model_cycles",
        ModelCyclesPerPin = "model_cycles_per_pin",
        PinPathCycles = "pin_path_cycles",
        PinPathCyclesPerPin = "pin_path_cycles_per_pin",
        ModelExplains = "model_explains",
        KmapModelCyclesPerAccess = "kmap_model_cycles_per_access",
        KmapWrapModelCyclesPerAccess = "kmap_wrap_model_cycles_per_access",
        KmapWrapHaltedModelCyclesPerAccess = "kmap_wrap_halted_model_cycles_per_access",
        // Against the oracle cell (`super::results`).
        RatioToOracle = "ratio_to_oracle",
        WorkloadRatioToOracle = "workload_ratio_to_oracle",
        ModelRatioToOracle = "model_ratio_to_oracle",
        ExcessCyclesPerPin = "excess_cycles_per_pin",
        VmUnmapAliasesOverOracle = "vm_unmap_aliases_over_oracle",
        VmUnmapAliasesFlushedOverOracle = "vm_unmap_aliases_flushed_over_oracle",
        TlbFlushGlobalOverOracle = "tlb_flush_global_over_oracle",
        IpisSentOverOracle = "ipis_sent_over_oracle",
        ExitsHypercallOverOracle = "exits_hypercall_over_oracle",
        // Against the always-flush cell.
        RatioToAlwaysFlush = "ratio_to_always_flush",
        // A Linux cell's lowmem probe, per task that got there.
        LowfreeDropKbPerTask = "lowfree_drop_kb_per_task",
        PagetablesKbPerTask = "pagetables_kb_per_task",
        WorkloadRatioToAlwaysFlush = "workload_ratio_to_always_flush",
    }
}

/// A figure: what a table column, a plot or a verdict asks of a cell. Typed, so
/// a renamed counter, result or figure is a compile error, not a figure that
/// reads as absent; it becomes a name only in files (`bench.jsonl`, `--spec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Figure {
    /// A guest counter, summed over the vCPUs.
    Count(Counter),
    /// A guest result.
    Result(GuestResult),
    /// What highpte-probe reported, on a stock Linux (a Linux cell).
    Linux(ProbeResult),
    Exits(Exits),
    Host(Host),
    Derived(Derived),
}

impl Figure {
    pub const fn name(self) -> &'static str {
        match self {
            Figure::Count(c) => c.name(),
            Figure::Result(r) => r.name(),
            Figure::Linux(r) => r.name(),
            Figure::Exits(e) => e.name(),
            Figure::Host(h) => h.name(),
            Figure::Derived(d) => d.name(),
        }
    }

    /// Every figure a run can have, each once ([`COUNTERS`] and [`RESULTS`]
    /// are the guest's that [`extract`] takes).
    pub fn all() -> impl Iterator<Item = Figure> {
        let c = COUNTERS.iter().map(|&c| Figure::Count(c));
        let r = RESULTS.iter().chain(&UNIT_FIGURES).map(|&r| Figure::Result(r));
        let l = ProbeResult::ALL.iter().map(|&r| Figure::Linux(r));
        let e = Exits::ALL.iter().map(|&e| Figure::Exits(e));
        let h = Host::ALL.iter().map(|&h| Figure::Host(h));
        c.chain(r).chain(l).chain(e).chain(h).chain(Derived::ALL.iter().map(|&d| Figure::Derived(d)))
    }

    /// The figure of this name (one a run can have).
    pub fn from_name(name: &str) -> Option<Figure> {
        Figure::all().find(|f| f.name() == name)
    }
}

/// The counts each strategy is compared with the oracle on, and the figure
/// that holds each one's excess.
pub const OVER_ORACLE: [(Figure, Derived); 5] = [
    (Figure::Count(Counter::VmUnmapAliases), Derived::VmUnmapAliasesOverOracle),
    (Figure::Count(Counter::VmUnmapAliasesFlushed), Derived::VmUnmapAliasesFlushedOverOracle),
    (Figure::Count(Counter::TlbFlushGlobal), Derived::TlbFlushGlobalOverOracle),
    (Figure::Count(Counter::IpisSent), Derived::IpisSentOverOracle),
    (Figure::Exits(Exits::Hypercall), Derived::ExitsHypercallOverOracle),
];

impl From<Counter> for Figure {
    fn from(c: Counter) -> Self {
        Figure::Count(c)
    }
}

impl From<GuestResult> for Figure {
    fn from(r: GuestResult) -> Self {
        Figure::Result(r)
    }
}

impl From<ProbeResult> for Figure {
    fn from(r: ProbeResult) -> Self {
        Figure::Linux(r)
    }
}

impl From<Exits> for Figure {
    fn from(e: Exits) -> Self {
        Figure::Exits(e)
    }
}

impl From<Host> for Figure {
    fn from(h: Host) -> Self {
        Figure::Host(h)
    }
}

impl From<Derived> for Figure {
    fn from(d: Derived) -> Self {
        Figure::Derived(d)
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Figure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Figure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Figure::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("no figure is called {name:?}")))
    }
}

/// A run's figures.
pub type Figures = BTreeMap<Figure, f64>;

/// Tests write figures as reports name them (only tests: the code names them
/// by type).
#[cfg(test)]
impl From<&str> for Figure {
    fn from(name: &str) -> Self {
        Figure::from_name(name).unwrap_or_else(|| panic!("{name}: no such figure"))
    }
}

/// Figures given by name (tests write them as reports name them).
#[cfg(test)]
pub fn named(pairs: &[(&str, f64)]) -> Figures {
    pairs.iter().map(|(k, v)| (Figure::from_name(k).unwrap_or_else(|| panic!("{k}: no such figure")), *v)).collect()
}

/// Reads stored figures by name, leaving out names this vmm does not know
/// (a line written by another version keeps its other figures; its report,
/// when stored, is read again anyway).
pub fn deserialize_known<'de, D: Deserializer<'de>>(d: D) -> Result<Figures, D::Error> {
    let named = BTreeMap::<String, f64>::deserialize(d)?;
    Ok(named.into_iter().filter_map(|(k, v)| Some((Figure::from_name(&k)?, v))).collect())
}

/// What a figure is, for the report's glossary.
pub struct FigureDef {
    pub name: &'static str,
    pub what: &'static str,
}

/// Counters copied as they are (summed over the vCPUs).
pub const COUNTERS: &[Counter] = &[
    Counter::WorkloadCycles,
    Counter::PtPins,
    Counter::PtPinsAliased,
    Counter::PtPinsAliasPte,
    Counter::PtPinCycles,
    Counter::PtPinRefused,
    Counter::PtPinRefusedAfterPurge,
    Counter::PtPinsRoot,
    Counter::PtPinsKernel,
    Counter::VmUnmapAliasesPurgedPages,
    Counter::VmUnmapAliases,
    Counter::VmUnmapAliasesReflushed,
    Counter::VmUnmapAliasesFlushed,
    Counter::VmUnmapAliasesCycles,
    Counter::VmUnmapAliasesFlushCycles,
    Counter::VmUnmapAliasesLockCycles,
    Counter::VmUnmapAliasesEmptyLockCycles,
    Counter::VmUnmapAliasesInPinCycles,
    Counter::TlbFlushGlobal,
    Counter::TlbFlushLocal,
    Counter::TlbInvlpg,
    Counter::IpisSent,
    Counter::IpisReceived,
    Counter::VmapFlushIpis,
    Counter::VmapPurgedPages,
    Counter::VmapBlockPurges,
    Counter::KmapAtomic,
    Counter::KmapPersistent,
    Counter::KmapPercpuPool,
    Counter::KmapPerTask,
    Counter::PteBenchAccesses,
    Counter::PteMaps,
    Counter::KmapLockTaken,
    Counter::KmapLockWaits,
    Counter::KmapLockSpins,
    Counter::KmapSleeps,
    Counter::KmapCacheHits,
    Counter::PkmapFlushes,
    Counter::TlbShootdownKernel,
    Counter::PageFaults,
    Counter::Forks,
    Counter::ChurnSteps,
    Counter::AliasFixups,
    Counter::AliasFixupRetryCycles,
    Counter::CleanPoolRefills,
    Counter::PvUpdates,
    Counter::PvUpdateCalls,
    Counter::VmapFlushes,
    Counter::VmapPurges,
    Counter::PtPagesLowmem,
    Counter::PtPagesHighmem,
];

/// Guest results copied as they are.
pub const RESULTS: &[GuestResult] = &[
    GuestResult::VmapBenchNs,
    GuestResult::VmapBenchIters,
    GuestResult::VmapBenchFlushes,
    GuestResult::VmapOneAliasNs,
    GuestResult::TasksStarted,
    GuestResult::PkmapWrapFlushes,
];

/// The unit costs the `calibrate` workload reports (guest results, medians of
/// 64 rounds each): the pass with the other CPUs halted, the pass with them
/// busy, then the many-page purge's number of pages.
pub const UNIT_FIGURES: [GuestResult; 33] = {
    let (idle, busy) = (UnitResults::IDLE.all(), UnitResults::BUSY.all());
    let mut all = [GuestResult::UnitFlushPages; 33];
    let mut i = 0;
    while i < idle.len() {
        all[i] = idle[i];
        all[idle.len() + i] = busy[i];
        i += 1;
    }
    all
};

/// The derived figures, and the glossary of the less obvious ones.
pub const GLOSSARY: &[FigureDef] = &[
    FigureDef { name: "workload_cycles", what: "guest TSC cycles of the workload, summed over the vCPUs" },
    FigureDef { name: "workload_cycles_max", what: "the longest vCPU's workload cycles (the workload's span)" },
    FigureDef {
        name: "cycles_per_pin",
        what: "pt_pin_cycles / pt_pins: decision to pin to pin done, alias work included",
    },
    FigureDef { name: "pt_pins_aliased", what: "pins whose frame had a live lazy alias before the strategy acted" },
    FigureDef {
        name: "pt_pins_root",
        what: "of pt_pins, pins of a root with its whole tree (fork's, exec's); the model prices them as tree pins",
    },
    FigureDef {
        name: "pt_pin_refused",
        what: "pins the host refused; each is purged and retried, a benchmark device (Linux BUGs on a refused pin)",
    },
    FigureDef {
        name: "pt_pin_refused_after_purge",
        what: "aliases 2.6.28's vm_unmap_aliases missed (in a full vmap block, which it skips): a pin refused \
               again after the retry's purge, a second trap back for one frame in one pin (host-trap), or a \
               clean-pool refill left with no clean page; the benchmark then purges every block (6.5's walk)",
    },
    FigureDef {
        name: "vm_unmap_aliases_reflushed",
        what: "vm_unmap_aliases calls that flushed only ranges already flushed before (2.6.28 never forgets a \
               block's dirty range; --vmap-flush 6.5 does)",
    },
    FigureDef {
        name: "pt_pins_alias_pte",
        what: "of those, pins whose alias was a present PTE (lazy-ptes), the kind the host refuses: what the oracle flushes for",
    },
    FigureDef {
        name: "alias_cycles",
        what: "vm_unmap_aliases_cycles + alias_fixup_retry_cycles over the whole workload: the strategy's alias \
               work wherever it happened (in a pin, a clean-pool refill at allocation, a trap-back's fixup and retry)",
    },
    FigureDef { name: "alias_cycles_per_pin", what: "alias_cycles / pt_pins (whole-workload alias work per pin)" },
    FigureDef {
        name: "alias_fixup_retry_cycles",
        what: "cycles of the trap-back's retried hypercalls (host-trap's exit per trap back)",
    },
    FigureDef {
        name: "vm_unmap_aliases_empty",
        what: "vm_unmap_aliases - vm_unmap_aliases_flushed: calls that found nothing to flush",
    },
    FigureDef {
        name: "ratio_to_oracle",
        what: "cycles_per_pin / the oracle cell's median (--alias oracle, same configuration and seed otherwise)",
    },
    FigureDef {
        name: "workload_ratio_to_oracle",
        what: "workload_cycles (whole workload, every vCPU) / the oracle cell's median",
    },
    FigureDef {
        name: "excess_cycles_per_pin",
        what: "cycles_per_pin - the oracle cell's median: what the strategy pays per pin above the oracle",
    },
    FigureDef {
        name: "model_cycles",
        what: "the run's counts priced by the sweep's cost table (\"The cost model\"): pins, calls that found \
               nothing, flushing calls, traps back, refusals",
    },
    FigureDef { name: "model_cycles_per_pin", what: "model_cycles / pt_pins" },
    FigureDef { name: "model_ratio_to_oracle", what: "model_cycles_per_pin / the oracle cell's median" },
    FigureDef {
        name: "pin_path_cycles",
        what: "pt_pin_cycles + the vm_unmap_aliases cycles spent outside pins: what the model prices, as measured",
    },
    FigureDef { name: "model_explains", what: "model_cycles / pin_path_cycles (1: the model accounts for it all)" },
    FigureDef {
        name: "kmap_model_cycles_per_access",
        what: "a native pte-bench run's kmaps priced by the calibration's native kmap units (each variant's kmaps x \
               its unit, each series wrap x a global flush), per pte access: the model of what a pte access costs \
               beyond lowpte's",
    },
    FigureDef {
        name: "kmap_wrap_model_cycles_per_access",
        what: "the part of kmap_model_cycles_per_access that prices the series' wraps (each a global flush)",
    },
    FigureDef {
        name: "kmap_wrap_halted_model_cycles_per_access",
        what: "the same wraps priced as global flushes with the other CPUs halted (on 1 vCPU, the same figure)",
    },
    FigureDef { name: "unit_<event>_cycles", what: "the calibrate workload's median cycles of one event (64 rounds)" },
    FigureDef {
        name: "<count>_over_oracle",
        what: "a count (vm_unmap_aliases, vm_unmap_aliases_flushed, tlb_flush_global, ipis_sent, exits_hypercall) \
               minus the oracle cell's median of it",
    },
    FigureDef {
        name: "ratio_to_always_flush",
        what: "median cycles_per_pin / the always-flush cell's (same configuration otherwise)",
    },
    FigureDef { name: "alias_check_ns", what: "host ns in the selected alias check (report.pvmmu)" },
    FigureDef { name: "alias_check_ns_per_check", what: "alias_check_ns / alias_checks" },
    FigureDef { name: "traps_back", what: "pins the host trapped back into the guest's alias fixup (report.pvmmu)" },
    FigureDef { name: "traps_back_per_kpin", what: "traps_back per 1000 pt_pins" },
    FigureDef { name: "hypercall_exits_per_kfault", what: "exits_hypercall per 1000 page faults" },
    FigureDef { name: "pv_updates_per_call", what: "pv_updates / pv_update_calls: pagetable entries per mmu_update" },
    FigureDef {
        name: "pvmmu_audit_errors",
        what: "end-of-run audit: RW entries mapping pagetables + type count mismatches + tables whose memory differs \
               from what the host validated (must be 0)",
    },
    FigureDef { name: "exits_<kind>", what: "exits to the VMM by kind, summed over the vCPUs (report.exits[].user)" },
    FigureDef {
        name: "vmap_bench_ns",
        what: "ns per vmap-bench iteration of one vCPU's loop (map 4 pages, touch, unmap)",
    },
    FigureDef { name: "vmap_bench_cycles_per_iter", what: "vmap_bench_cycles / vmap_bench_iters" },
    FigureDef { name: "vmap_one_alias_ns", what: "ns of map, write, unmap, vm_unmap_aliases with one lazy mapping" },
    FigureDef { name: "pte_cycles_per_access", what: "pte_bench_cycles / pte_bench_accesses (map, read, unmap)" },
    FigureDef {
        name: "kmap_cache_hits_per_access",
        what: "kmap_cache_hits / pte_bench_accesses (maps served from page->virtual; the faults that filled the pages count too, so every access a hit is above 1)",
    },
    FigureDef {
        name: "tlb_invlpg_per_access",
        what: "tlb_invlpg / pte_bench_accesses (single-page TLB flushes, the filling faults' included)",
    },
    FigureDef {
        name: "kmap_lock_wait_cycles_per_access",
        what: "kmap_lock_wait_cycles / pte_bench_accesses: the cycles contended kmap_lock acquisitions waited \
               (spins and halts), per pte access; contention, measured, not priced by a unit",
    },
    FigureDef { name: "<counter>_per_kfault", what: "a counter per 1000 page faults" },
    FigureDef { name: "flush_ipis_per_kfault", what: "tlb_shootdown_kernel per 1000 page faults" },
    FigureDef {
        name: "pkmap_wrap_flushes",
        what: "times the persistent kmap pool wrapped (each a scan of LAST_PKMAP entries and a global flush)",
    },
    FigureDef { name: "run_ms", what: "the run's wall time in the VMM, boot included" },
    FigureDef {
        name: "max_exit_ns",
        what: "the longest PV MMU exit of the run, host ns (report.pvmmu.max_exit_call says which call)",
    },
    FigureDef { name: "max_exit_entries", what: "pagetable entries that longest exit validated or dropped" },
    FigureDef { name: "exit_restarts", what: "batches cut at the exit budget (-ERESTART), issued again by the guest" },
];

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The figures of one run's report.
pub fn extract(report: &Value) -> Figures {
    let mut f = Figures::new();
    let totals = &report["counter_totals"];
    // The report lists only non-zero counters: a counter is zero when the guest
    // kept counters (there are some) and it is not among them.
    let kept_counters = totals.as_object().is_some_and(|m| !m.is_empty());
    for &c in COUNTERS {
        match num(&totals[c.name()]) {
            Some(v) => {
                f.insert(c.into(), v);
            }
            None if kept_counters => {
                f.insert(c.into(), 0.0);
            }
            None => {}
        }
    }
    for &r in RESULTS.iter().chain(&UNIT_FIGURES) {
        if let Some(v) = num(&report["results"][r.name()]) {
            f.insert(r.into(), v);
        }
    }
    // A Linux cell's report: highpte-probe's results.
    if report["config"].get("linux").is_some() {
        for &r in ProbeResult::ALL {
            if let Some(v) = num(&report["results"][r.name()]) {
                f.insert(r.into(), v);
            }
        }
    }
    if let Some(cpus) = report["counters"].as_array() {
        let max = cpus
            .iter()
            .filter_map(|c| num(&c[Counter::WorkloadCycles.name()]))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        if let Some(m) = max {
            f.insert(Derived::WorkloadCyclesMax.into(), m);
        }
    }
    if let Some(exits) = report["exits"].as_array() {
        for &k in Exits::ALL {
            let sum: f64 = exits.iter().filter_map(|e| num(&e["user"][k.report_key()])).sum();
            f.insert(k.into(), sum);
        }
    }
    let pv = &report["pvmmu"];
    if pv.is_object() {
        for k in Host::PVMMU {
            if let Some(v) = num(&pv[k.name()]) {
                f.insert(k.into(), v);
            }
        }
        let audit = [&pv["audit_rw_pagetables"], &pv["audit_count_mismatches"]];
        let diverged = [&pv["audit_tables_diverged"], &pv["audit_l3_diverged"]];
        if audit.iter().all(|v| v.is_number()) {
            let sum = audit.iter().chain(&diverged).filter_map(|v| num(v)).sum();
            f.insert(Host::PvmmuAuditErrors.into(), sum);
        }
    }
    if let Some(ms) = num(&report["timing"]["to_end_ms"]) {
        f.insert(Host::RunMs.into(), ms);
    }
    derive(&mut f, totals);
    f
}

/// `a / b` when both were measured and b is not zero.
pub fn ratio(f: &Figures, a: impl Into<Figure>, b: impl Into<Figure>) -> Option<f64> {
    let (a, b) = (f.get(&a.into())?, f.get(&b.into())?);
    (*b != 0.0).then(|| a / b)
}

fn derive(f: &mut Figures, totals: &Value) {
    use Counter as C;
    use Derived as D;
    let put = |f: &mut Figures, d: Derived, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            f.insert(d.into(), v);
        }
    };
    put(f, D::CyclesPerPin, ratio(f, C::PtPinCycles, C::PtPins));
    put(f, D::AliasCheckNsPerCheck, ratio(f, Host::AliasCheckNs, Host::AliasChecks));
    put(f, D::TrapsBackPerKpin, ratio(f, Host::TrapsBack, C::PtPins).map(|r| r * 1000.0));
    put(f, D::PvUpdatesPerCall, ratio(f, C::PvUpdates, C::PvUpdateCalls));
    put(f, D::LowfreeDropKbPerTask, ratio(f, ProbeResult::LowfreeDropKb, ProbeResult::LowmemTasks));
    put(f, D::PagetablesKbPerTask, ratio(f, ProbeResult::PagetablesKbGrown, ProbeResult::LowmemTasks));
    // Counters the table does not copy, read from the report itself.
    let raw = |c: Counter| num(&totals[c.name()]);
    if let (Some(c), Some(n)) = (raw(C::VmapBenchCycles), raw(C::VmapBenchIters)) {
        put(f, D::VmapBenchCyclesPerIter, (n > 0.0).then(|| c / n));
    }
    if let (Some(c), Some(n)) = (raw(C::PteBenchCycles), raw(C::PteBenchAccesses)) {
        put(f, D::PteCyclesPerAccess, (n > 0.0).then(|| c / n));
        for (d, counter) in [(D::KmapCacheHitsPerAccess, C::KmapCacheHits), (D::TlbInvlpgPerAccess, C::TlbInvlpg)] {
            let v = f.get(&counter.into()).filter(|_| n > 0.0).map(|c| c / n);
            put(f, d, v);
        }
        // Read from the report itself, which leaves out counters at zero: no
        // waits, no wait time; waits without their time are a report from
        // before the guest timed them, which has no figure, not a zero.
        let waits = raw(C::KmapLockWaits).unwrap_or(0.0);
        let wait = raw(C::KmapLockWaitCycles).or((waits == 0.0).then_some(0.0));
        put(f, D::KmapLockWaitCyclesPerAccess, wait.filter(|_| n > 0.0).map(|c| c / n));
    }
    if let Some(faults) = f.get(&C::PageFaults.into()).copied().filter(|&p| p > 0.0) {
        for (d, counter) in [
            (D::KmapLockTakenPerKfault, Figure::from(C::KmapLockTaken)),
            (D::KmapLockWaitsPerKfault, C::KmapLockWaits.into()),
            (D::PkmapFlushesPerKfault, C::PkmapFlushes.into()),
            (D::FlushIpisPerKfault, C::TlbShootdownKernel.into()),
            (D::KmapSleepsPerKfault, C::KmapSleeps.into()),
            (D::KmapCacheHitsPerKfault, C::KmapCacheHits.into()),
            (D::HypercallExitsPerKfault, Exits::Hypercall.into()),
        ] {
            let v = f.get(&counter).map(|c| c * 1000.0 / faults);
            put(f, d, v);
        }
    }
    let get = |f: &Figures, c: Counter| f.get(&c.into()).copied();
    if let (Some(v), Some(r)) = (get(f, C::VmUnmapAliasesCycles), get(f, C::AliasFixupRetryCycles)) {
        f.insert(D::AliasCycles.into(), v + r);
    }
    put(f, D::AliasCyclesPerPin, ratio(f, D::AliasCycles, C::PtPins));
    if let (Some(c), Some(x)) = (get(f, C::VmUnmapAliases), get(f, C::VmUnmapAliasesFlushed)) {
        f.insert(D::VmUnmapAliasesEmpty.into(), c - x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The figure of this name (the tests read figures as reports name them).
    fn by_name(f: &Figures, name: &str) -> Option<f64> {
        f.get(&Figure::from_name(name).unwrap_or_else(|| panic!("{name}: no such figure"))).copied()
    }

    fn report() -> Value {
        json!({
            "counter_totals": {"pt_pins": 100, "pt_pin_cycles": 500000, "pt_pins_aliased": 10, "pt_pins_alias_pte": 10,
                "vm_unmap_aliases": 100, "vm_unmap_aliases_flushed": 20, "vm_unmap_aliases_cycles": 200000,
                "vm_unmap_aliases_flush_cycles": 150000, "workload_cycles": 9000000, "page_faults": 2000, "kmap_lock_waits": 5,
                "pte_bench_cycles": 3000, "pte_bench_accesses": 10, "kmap_cache_hits": 12, "kmap_lock_wait_cycles": 450},
            "counters": [{"workload_cycles": 5000000}, {"workload_cycles": 4000000}],
            "results": {"vmap_bench_ns": 1234},
            "exits": [{"user": {"hypercall": 3, "nop_exit": 0, "other_io": 1, "mmio": 0, "hlt": 0, "intr": 0, "shutdown": 1}},
                      {"user": {"hypercall": 4, "nop_exit": 0, "other_io": 0, "mmio": 0, "hlt": 2, "intr": 1, "shutdown": 0}}],
            "pvmmu": {"traps_back": 7, "alias_checks": 50, "alias_check_ns": 1000, "audit_rw_pagetables": 0, "audit_count_mismatches": 0},
            "timing": {"to_end_ms": 1500.0}
        })
    }

    #[test]
    fn a_report_that_did_not_time_the_lock_wait_has_no_wait_figure() {
        let mut r = report();
        r["counter_totals"].as_object_mut().unwrap().remove("kmap_lock_wait_cycles");
        let f = extract(&r);
        assert!(by_name(&f, "kmap_lock_wait_cycles_per_access").is_none(), "absent, not zero");
        assert_eq!(by_name(&f, "pte_cycles_per_access").unwrap(), 300.0);
        // A report leaves out counters at zero: no waits, no wait time.
        r["counter_totals"].as_object_mut().unwrap().remove("kmap_lock_waits");
        assert_eq!(by_name(&extract(&r), "kmap_lock_wait_cycles_per_access"), Some(0.0));
    }

    #[test]
    fn figures_come_from_the_counters_and_agree_with_them() {
        let f = extract(&report());
        assert_eq!(by_name(&f, "cycles_per_pin").unwrap(), 5000.0);
        assert_eq!(
            by_name(&f, "cycles_per_pin").unwrap(),
            by_name(&f, "pt_pin_cycles").unwrap() / by_name(&f, "pt_pins").unwrap()
        );
        assert_eq!(by_name(&f, "workload_cycles_max").unwrap(), 5000000.0);
        assert_eq!(by_name(&f, "exits_hypercall").unwrap(), 7.0);
        assert_eq!(by_name(&f, "exits_nop").unwrap(), 0.0);
        assert_eq!(by_name(&f, "traps_back").unwrap(), 7.0);
        assert_eq!(by_name(&f, "alias_check_ns_per_check").unwrap(), 20.0);
        assert_eq!(by_name(&f, "pte_cycles_per_access").unwrap(), 300.0);
        assert_eq!(by_name(&f, "kmap_cache_hits_per_access").unwrap(), 1.2);
        // A listed counter that is not in the report is zero, and so its rate.
        assert_eq!(by_name(&f, "tlb_invlpg_per_access").unwrap(), 0.0);
        assert_eq!(by_name(&f, "kmap_lock_waits_per_kfault").unwrap(), 2.5);
        assert_eq!(by_name(&f, "kmap_lock_wait_cycles_per_access").unwrap(), 45.0);
        assert_eq!(by_name(&f, "vmap_bench_ns").unwrap(), 1234.0);
        assert_eq!(by_name(&f, "pvmmu_audit_errors").unwrap(), 0.0);
        // Counters the guest did not list are zero; results it did not give are absent.
        assert_eq!(by_name(&f, "ipis_sent").unwrap(), 0.0);
        assert!(by_name(&f, "tasks_started").is_none());
        // Alias work over the whole workload (no retries: a listed counter, zero).
        assert_eq!(by_name(&f, "alias_cycles").unwrap(), 200000.0);
        assert_eq!(by_name(&f, "alias_cycles_per_pin").unwrap(), 2000.0);
        assert_eq!(by_name(&f, "vm_unmap_aliases_empty").unwrap(), 80.0);
        // Nothing in one run compares it with the oracle.
        assert!(by_name(&f, "ratio_to_oracle").is_none());
    }

    #[test]
    fn every_figure_has_one_name_and_is_found_by_it() {
        let all: Vec<Figure> = Figure::all().collect();
        for (i, f) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|o| o.name() != f.name()), "{f} twice");
            assert_eq!(Figure::from_name(f.name()), Some(*f));
        }
        // The glossary explains figures that exist (or a family of them).
        for d in GLOSSARY {
            assert!(d.name.contains('<') || Figure::from_name(d.name).is_some(), "glossary: {}", d.name);
        }
        let stored = serde_json::to_string(&extract(&report())).unwrap();
        let back: Figures = deserialize_known(&mut serde_json::Deserializer::from_str(&stored)).unwrap();
        assert_eq!(back, extract(&report()));
        let other: Figures =
            deserialize_known(&mut serde_json::Deserializer::from_str(r#"{"pt_pins": 3, "renamed_since": 1}"#))
                .unwrap();
        assert_eq!(other, Figures::from([(Counter::PtPins.into(), 3.0)]));
    }

    #[test]
    fn a_report_without_counters_gives_no_invented_zeros() {
        let f = extract(&json!({"outcome": {"kind": "shutdown", "code": 1}}));
        assert!(f.is_empty(), "{f:?}");
    }
}

//! The named results a guest workload reports (`hv::result`), one figure each.
//!
//! The guest sends a result's name as text (it lies in the image) and the host
//! keeps it under that name in the run's report; both sides take the name from
//! here, so a renamed result is a compile error, not a figure that silently
//! reads as absent.

macro_rules! results {
    ($($(#[$meta:meta])* $var:ident = $name:literal,)+) => {
        /// A result the guest reports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum GuestResult { $($(#[$meta])* $var,)+ }

        impl GuestResult {
            pub const ALL: &'static [GuestResult] = &[$(GuestResult::$var,)+];
            /// The result's name in reports.
            pub const fn name(self) -> &'static str {
                match self { $(GuestResult::$var => $name,)+ }
            }
            /// The result named `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

results! {
    // boot
    BootCpus = "boot_cpus",
    SpinlockTotal = "spinlock_total",
    RamMib = "ram_mib",
    LowmemMib = "lowmem_mib",
    /// The vmalloc space, in MiB: from 8 to 16 MiB above lowmem to two guard
    /// pages below the kmap window (vmap-test).
    VmallocMib = "vmalloc_mib",
    // hypercall-bench, hypercall-smp, ipi-pingpong
    PioExitNs = "pio_exit_ns",
    HypercallNs = "hypercall_ns",
    HypercallPerPioPermille = "hypercall_per_pio_permille",
    Calls = "calls",
    CallsPerCpu = "calls_per_cpu",
    IpiRoundtripNs = "ipi_roundtrip_ns",
    RoundTrips = "round_trips",
    DuplicatePongs = "duplicate_pongs",
    // the mm workloads: each phase's cycles, then what the run left
    FaultStorm = "fault-storm",
    ForkStorm = "fork-storm",
    ForkChurn = "fork-churn",
    MremapStorm = "mremap-storm",
    Walker = "walker",
    Exec = "exec",
    PteBench = "pte-bench",
    ProbeKernelPages = "probe-kernel-pages",
    KmapHold = "kmap-hold",
    PkmapWrapFlushes = "pkmap_wrap_flushes",
    MremapEnomem = "mremap_enomem",
    TaskMigrations = "task_migrations",
    LowmemPagesFree = "lowmem_pages_free",
    HighmemPagesFree = "highmem_pages_free",
    TasksStarted = "tasks_started",
    NestedMapOnFullSeries = "nested_map_on_full_series",
    // the calibrate workload: median cycles of one event over unit_rounds
    // rounds, with the other CPUs halted (these names) and busy (`_busy_`)
    UnitExitCycles = "unit_exit_cycles",
    UnitHypercallCycles = "unit_hypercall_cycles",
    UnitFlushGlobalCycles = "unit_flush_global_cycles",
    UnitVmUnmapAliasesEmptyCycles = "unit_vm_unmap_aliases_empty_cycles",
    UnitVmUnmapAliasesFlushCycles = "unit_vm_unmap_aliases_flush_cycles",
    /// A vm_unmap_aliases that purges one lazy area of `unit_flush_pages` pages.
    UnitVmUnmapAliasesFlushPagesCycles = "unit_vm_unmap_aliases_flush_pages_cycles",
    UnitPinCycles = "unit_pin_cycles",
    UnitPinTrappedCycles = "unit_pin_trapped_cycles",
    UnitPinTreeCycles = "unit_pin_tree_cycles",
    UnitExitBusyCycles = "unit_exit_busy_cycles",
    UnitHypercallBusyCycles = "unit_hypercall_busy_cycles",
    UnitFlushGlobalBusyCycles = "unit_flush_global_busy_cycles",
    UnitVmUnmapAliasesEmptyBusyCycles = "unit_vm_unmap_aliases_empty_busy_cycles",
    UnitVmUnmapAliasesFlushBusyCycles = "unit_vm_unmap_aliases_flush_busy_cycles",
    UnitVmUnmapAliasesFlushPagesBusyCycles = "unit_vm_unmap_aliases_flush_pages_busy_cycles",
    UnitPinBusyCycles = "unit_pin_busy_cycles",
    UnitPinTrappedBusyCycles = "unit_pin_trapped_busy_cycles",
    /// (Before 2026-12-05's busy suite this was the only busy unit, timed
    /// with the other CPUs spinning on `pause`, which a nested SVM host takes
    /// as a hint to yield: it came out as cheap as the halted one.)
    UnitPinTreeBusyCycles = "unit_pin_tree_busy_cycles",
    /// A trapped pin less, in the same round, its fixup's action and its
    /// retry: the refusal and the trap into the fixup, timed directly.
    UnitTrapBackCycles = "unit_trap_back_cycles",
    UnitTrapBackBusyCycles = "unit_trap_back_busy_cycles",
    /// A purging vm_unmap_aliases less, in the same round, its flush of every
    /// CPU: of one page, and of `unit_flush_pages` pages.
    UnitPurgeOneCycles = "unit_purge_one_cycles",
    UnitPurgeOneBusyCycles = "unit_purge_one_busy_cycles",
    UnitPurgePagesCycles = "unit_purge_pages_cycles",
    UnitPurgePagesBusyCycles = "unit_purge_pages_busy_cycles",
    /// A map and unmap of one highmem pte page through each `--pte` variant's
    /// own functions (the pagetable series for persistent: a fresh entry).
    UnitKmapAtomicCycles = "unit_kmap_atomic_cycles",
    UnitKmapAtomicBusyCycles = "unit_kmap_atomic_busy_cycles",
    UnitKmapPersistentCycles = "unit_kmap_persistent_cycles",
    UnitKmapPersistentBusyCycles = "unit_kmap_persistent_busy_cycles",
    UnitKmapPercpuPoolCycles = "unit_kmap_percpu_pool_cycles",
    UnitKmapPercpuPoolBusyCycles = "unit_kmap_percpu_pool_busy_cycles",
    UnitKmapPerTaskCycles = "unit_kmap_per_task_cycles",
    UnitKmapPerTaskBusyCycles = "unit_kmap_per_task_busy_cycles",
    UnitFlushPages = "unit_flush_pages",
    UnitRounds = "unit_rounds",
    UnitCpus = "unit_cpus",
    // the vmap workloads
    VmapLiveAreas = "vmap_live_areas",
    VmapLazyAreas = "vmap_lazy_areas",
    VmapLazyPages = "vmap_lazy_pages",
    FullBlockAliasesKept = "full_block_aliases_kept",
    VmapBusyListVisitsEmpty = "vmap_busy_list_visits_empty",
    VmapBusyListVisitsBusy = "vmap_busy_list_visits_busy",
    VmapBusyListNsEmpty = "vmap_busy_list_ns_empty",
    VmapBusyListNsBusy = "vmap_busy_list_ns_busy",
    VmapPurgeAtPages = "vmap_purge_at_pages",
    VmapLazyMaxPages = "vmap_lazy_max_pages",
    VmapChurnNsPerOp = "vmap_churn_ns_per_op",
    VmapBenchFlushes = "vmap_bench_flushes",
    VmapBenchFlushIpis = "vmap_bench_flush_ipis",
    VmapOneAliasNs = "vmap_one_alias_ns",
    VmapBenchNs = "vmap_bench_ns",
    VmapBenchIters = "vmap_bench_iters",
    // chaos and the contract scenarios
    ChaosAcceptedCpu0 = "chaos_accepted_cpu0",
    ChaosRefusedCpu0 = "chaos_refused_cpu0",
    PvStaleSeen = "pv_stale_seen",
    StaleAliasWriteIssued = "stale_alias_write_issued",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_again() {
        for (i, r) in GuestResult::ALL.iter().enumerate() {
            assert_eq!(GuestResult::from_name(r.name()), Some(*r));
            assert!(GuestResult::ALL[..i].iter().all(|o| o.name() != r.name()), "{r:?}");
        }
        assert_eq!(GuestResult::from_name("nope"), None);
    }
}

/// The results one pass of the calibrate workload reports, one per unit: the
/// pass with the other CPUs halted ([`UnitResults::IDLE`]) and the pass with
/// them busy, as a workload's are ([`UnitResults::BUSY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitResults {
    pub exit: GuestResult,
    pub hypercall: GuestResult,
    pub flush_global: GuestResult,
    pub vm_unmap_aliases_empty: GuestResult,
    pub vm_unmap_aliases_flush: GuestResult,
    pub vm_unmap_aliases_flush_pages: GuestResult,
    pub pin: GuestResult,
    pub pin_trapped: GuestResult,
    pub pin_tree: GuestResult,
    pub trap_back: GuestResult,
    pub purge_one: GuestResult,
    pub purge_pages: GuestResult,
    pub kmap_atomic: GuestResult,
    pub kmap_persistent: GuestResult,
    pub kmap_percpu_pool: GuestResult,
    pub kmap_per_task: GuestResult,
}

impl UnitResults {
    pub const IDLE: UnitResults = UnitResults {
        exit: GuestResult::UnitExitCycles,
        hypercall: GuestResult::UnitHypercallCycles,
        flush_global: GuestResult::UnitFlushGlobalCycles,
        vm_unmap_aliases_empty: GuestResult::UnitVmUnmapAliasesEmptyCycles,
        vm_unmap_aliases_flush: GuestResult::UnitVmUnmapAliasesFlushCycles,
        vm_unmap_aliases_flush_pages: GuestResult::UnitVmUnmapAliasesFlushPagesCycles,
        pin: GuestResult::UnitPinCycles,
        pin_trapped: GuestResult::UnitPinTrappedCycles,
        pin_tree: GuestResult::UnitPinTreeCycles,
        trap_back: GuestResult::UnitTrapBackCycles,
        purge_one: GuestResult::UnitPurgeOneCycles,
        purge_pages: GuestResult::UnitPurgePagesCycles,
        kmap_atomic: GuestResult::UnitKmapAtomicCycles,
        kmap_persistent: GuestResult::UnitKmapPersistentCycles,
        kmap_percpu_pool: GuestResult::UnitKmapPercpuPoolCycles,
        kmap_per_task: GuestResult::UnitKmapPerTaskCycles,
    };
    pub const BUSY: UnitResults = UnitResults {
        exit: GuestResult::UnitExitBusyCycles,
        hypercall: GuestResult::UnitHypercallBusyCycles,
        flush_global: GuestResult::UnitFlushGlobalBusyCycles,
        vm_unmap_aliases_empty: GuestResult::UnitVmUnmapAliasesEmptyBusyCycles,
        vm_unmap_aliases_flush: GuestResult::UnitVmUnmapAliasesFlushBusyCycles,
        vm_unmap_aliases_flush_pages: GuestResult::UnitVmUnmapAliasesFlushPagesBusyCycles,
        pin: GuestResult::UnitPinBusyCycles,
        pin_trapped: GuestResult::UnitPinTrappedBusyCycles,
        pin_tree: GuestResult::UnitPinTreeBusyCycles,
        trap_back: GuestResult::UnitTrapBackBusyCycles,
        purge_one: GuestResult::UnitPurgeOneBusyCycles,
        purge_pages: GuestResult::UnitPurgePagesBusyCycles,
        kmap_atomic: GuestResult::UnitKmapAtomicBusyCycles,
        kmap_persistent: GuestResult::UnitKmapPersistentBusyCycles,
        kmap_percpu_pool: GuestResult::UnitKmapPercpuPoolBusyCycles,
        kmap_per_task: GuestResult::UnitKmapPerTaskBusyCycles,
    };

    /// The results in declaration order.
    pub const fn all(&self) -> [GuestResult; 16] {
        [
            self.exit,
            self.hypercall,
            self.flush_global,
            self.vm_unmap_aliases_empty,
            self.vm_unmap_aliases_flush,
            self.vm_unmap_aliases_flush_pages,
            self.pin,
            self.pin_trapped,
            self.pin_tree,
            self.trap_back,
            self.purge_one,
            self.purge_pages,
            self.kmap_atomic,
            self.kmap_persistent,
            self.kmap_percpu_pool,
            self.kmap_per_task,
        ]
    }
}

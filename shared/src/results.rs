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
    // the calibrate workload: median cycles of one event over unit_rounds rounds
    UnitExitCycles = "unit_exit_cycles",
    UnitHypercallCycles = "unit_hypercall_cycles",
    UnitFlushGlobalCycles = "unit_flush_global_cycles",
    UnitVmUnmapAliasesEmptyCycles = "unit_vm_unmap_aliases_empty_cycles",
    UnitVmUnmapAliasesFlushCycles = "unit_vm_unmap_aliases_flush_cycles",
    UnitPinCycles = "unit_pin_cycles",
    UnitPinTrappedCycles = "unit_pin_trapped_cycles",
    UnitPinTreeCycles = "unit_pin_tree_cycles",
    UnitPinTreeBusyCycles = "unit_pin_tree_busy_cycles",
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

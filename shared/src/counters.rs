//! Per-CPU counters the guest keeps in memory the host reads.
//!
//! Each CPU writes only its own [`PerCpuCounters`] (no atomics needed); the host
//! reads all of them when the guest shuts down. The array lives at
//! [`crate::boot::COUNTERS_GPA`]. A counter's index is its ABI: append, never reorder.

/// Room for this many counters per CPU (the ABI's fixed size).
pub const MAX_COUNTERS: usize = 128;

macro_rules! counters {
    ($($(#[$meta:meta])* $var:ident = $name:literal,)+) => {
        /// A counter's index in [`PerCpuCounters::v`].
        #[repr(usize)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Counter { $($(#[$meta])* $var,)+ }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$var,)+];
            /// The counter's name in reports.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$var => $name,)+ }
            }
        }
    };
}

counters! {
    /// TSC cycles from the workload's start to its end on this CPU.
    WorkloadCycles = "workload_cycles",
    /// TSC cycles spent halted (idle) during the workload.
    IdleCycles = "idle_cycles",
    /// LAPIC timer interrupts taken.
    TimerTicks = "timer_ticks",
    /// IPIs sent / received.
    IpisSent = "ipis_sent",
    IpisReceived = "ipis_received",
    /// Hypercalls issued (each is one exit).
    Hypercalls = "hypercalls",
    /// Exceptions taken (all vectors below 32).
    Exceptions = "exceptions",
    /// `int 0x80` system calls from ring 3.
    Syscalls = "syscalls",
    /// Spinlock acquisitions that had to wait, and the spin iterations they took.
    LockContended = "lock_contended",
    LockSpins = "lock_spins",
    /// Waits that halted the CPU, and the IPIs that woke halted waiters.
    LockHalts = "lock_halts",
    LockKicks = "lock_kicks",
    /// kmaps by kind: lowmem pages need none (direct), the rest by variant.
    KmapDirect = "kmap_direct",
    KmapAtomic = "kmap_atomic",
    KmapPersistent = "kmap_persistent",
    KmapPercpuPool = "kmap_percpu_pool",
    KmapPerTask = "kmap_per_task",
    /// Persistent kmaps found already mapped (the page->virtual cache).
    KmapCacheHits = "kmap_cache_hits",
    /// kmap_lock: acquisitions, those that had to wait, and the spins they took.
    KmapLockTaken = "kmap_lock_taken",
    KmapLockWaits = "kmap_lock_waits",
    KmapLockSpins = "kmap_lock_spins",
    /// Sleeps because the persistent pool (or a CPU's pool) was full.
    KmapSleeps = "kmap_sleeps",
    /// flush_all_zero_pkmaps passes (the pool wrapped), and entries they freed.
    PkmapFlushes = "pkmap_flushes",
    PkmapFreed = "pkmap_freed",
    /// TLB flushes: one entry here, this CPU's whole TLB, every CPU's (by IPI).
    TlbInvlpg = "tlb_invlpg",
    TlbFlushLocal = "tlb_flush_local",
    TlbFlushGlobal = "tlb_flush_global",
    /// Shootdown IPIs sent for user ranges and for kernel ranges.
    TlbShootdownUser = "tlb_shootdown_user",
    TlbShootdownKernel = "tlb_shootdown_kernel",
    /// pte pages mapped through the pte API (pte_offset_map and its forms).
    PteMaps = "pte_maps",
    /// Pagetable pages allocated, by zone (L1s; L2s and L3s always lowmem).
    PtPagesLowmem = "pt_pages_lowmem",
    PtPagesHighmem = "pt_pages_highmem",
    /// Pagetable page cache hits and misses.
    PtCacheHits = "ptcache_hits",
    PtCacheMisses = "ptcache_misses",
    /// Page faults resolved (demand zero), forks, exits, execs, mremaps.
    PageFaults = "page_faults",
    Forks = "forks",
    Exits = "exits",
    Execs = "execs",
    Mremaps = "mremaps",
    /// Context switches, and those forced by preemption.
    ContextSwitches = "context_switches",
    Preemptions = "preemptions",
    /// Pages allocated, by zone.
    PagesLowmem = "pages_lowmem",
    PagesHighmem = "pages_highmem",
    /// Cycles of pte accesses in the pte benchmark, and how many (pte reads:
    /// `--pte-reads` per map).
    PteBenchCycles = "pte_bench_cycles",
    PteBenchAccesses = "pte_bench_accesses",
    /// vmap areas allocated, and removed from the tree (eagerly or by a purge).
    VmapAreaAllocs = "vmap_area_allocs",
    VmapAreaFrees = "vmap_area_frees",
    /// Areas vunmapped lazily, and the pages they covered.
    VmapLazyAreas = "vmap_lazy_areas",
    VmapLazyPages = "vmap_lazy_pages",
    /// Areas the first-fit search looked at.
    VmapSearchVisits = "vmap_search_visits",
    /// Allocations that found no room: a purge and a retry, and those that
    /// failed even then.
    VmapAllocRetries = "vmap_alloc_retries",
    VmapAllocFailures = "vmap_alloc_failures",
    /// Lazy purges (threshold, allocation failure, vm_unmap_aliases) and the
    /// pages they released.
    VmapPurges = "vmap_purges",
    VmapPurgedPages = "vmap_purged_pages",
    /// Every-CPU TLB flushes the vmap layer did (eager vunmaps and purges), and
    /// the IPIs they sent.
    VmapFlushes = "vmap_flushes",
    VmapFlushIpis = "vmap_flush_ipis",
    /// vm_unmap_aliases calls, and those that had something to flush.
    VmUnmapAliases = "vm_unmap_aliases",
    VmUnmapAliasesFlushed = "vm_unmap_aliases_flushed",
    /// Per-CPU vmap blocks carved, freed when fully dirty, and purged as
    /// fragmented.
    VmapBlockAllocs = "vmap_block_allocs",
    VmapBlockFrees = "vmap_block_frees",
    VmapBlockPurges = "vmap_block_purges",
    /// Alias fixups the host delivered into this CPU (the trap-back).
    AliasFixups = "alias_fixups",
    /// Cycles and iterations of the vmap benchmark.
    VmapBenchCycles = "vmap_bench_cycles",
    VmapBenchIters = "vmap_bench_iters",
    /// Pagetable pages the kernel pinned (L1, L2 and L3 pins; `--pvmmu on`).
    PtPins = "pt_pins",
    /// Pins whose frame had a live lazy vmap alias when the kernel came to pin
    /// it, before the alias strategy did anything (what alias-bit flushes for).
    PtPinsAliased = "pt_pins_aliased",
    /// Of those, the pins whose alias was a present PTE (`--vmap lazy-ptes`), the
    /// kind the host refuses a pin for: the pins an oracle flushes for. Under
    /// `--vmap lazy-tlb` an alias is only a stale TLB entry, which this host
    /// revokes itself when the frame changes type (T3), so no flush is owed.
    PtPinsAliasPte = "pt_pins_alias_pte",
    /// Cycles from the decision to pin to the pin done, the alias strategy's
    /// work (checks, vm_unmap_aliases, refills, traps back) included.
    PtPinCycles = "pt_pin_cycles",
    /// Pins the host refused (only `--alias none` should see any).
    PtPinRefused = "pt_pin_refused",
    /// Cycles spent in vm_unmap_aliases (every caller).
    VmUnmapAliasesCycles = "vm_unmap_aliases_cycles",
    /// The part of those cycles spent in the calls that flushed.
    VmUnmapAliasesFlushCycles = "vm_unmap_aliases_flush_cycles",
    /// clean-pool: refills (one vm_unmap_aliases each), and pages they took.
    CleanPoolRefills = "clean_pool_refills",
    CleanPoolPages = "clean_pool_pages",
    /// Pagetable entries sent to the host through mmu_update, and the
    /// hypercalls that carried them.
    PvUpdates = "pv_updates",
    PvUpdateCalls = "pv_update_calls",
    /// fork-churn: vmap churn steps taken.
    ChurnSteps = "churn_steps",
    /// Cycles of the trap-back's retries: from the end of a fixup's action to
    /// the re-issued hypercall's answer (its exit and the resumed batch). With
    /// `vm_unmap_aliases_cycles` this is all the alias work host-trap adds to a pin.
    AliasFixupRetryCycles = "alias_fixup_retry_cycles",
    /// Cycles vm_unmap_aliases waited for the purge lock (another CPU purging),
    /// and the part of them spent by calls that then found nothing to flush.
    VmUnmapAliasesLockCycles = "vm_unmap_aliases_lock_cycles",
    VmUnmapAliasesEmptyLockCycles = "vm_unmap_aliases_empty_lock_cycles",
    /// The part of vm_unmap_aliases_cycles spent inside a pin (the strategy's
    /// call, a refused pin's purge, host-trap's fixup): the rest happened
    /// elsewhere, such as clean-pool's refills when pages are allocated.
    VmUnmapAliasesInPinCycles = "vm_unmap_aliases_in_pin_cycles",
    /// vm_unmap_aliases calls that flushed although every dirty range they
    /// found had been flushed before (`--vmap-flush 2.6.28` never forgets one).
    VmUnmapAliasesReflushed = "vm_unmap_aliases_reflushed",
    /// Aliases 2.6.28's vm_unmap_aliases missed (they sat in a full vmap block,
    /// which it skips): a pin the host refused again after the
    /// purge-and-retry, a second trap back for one frame in one pin
    /// (host-trap), or a clean-pool refill left with no clean page. Linux BUGs
    /// on such a pin; the benchmark then purges every block (the 6.5 walk).
    PtPinRefusedAfterPurge = "pt_pin_refused_after_purge",
    /// Of `pt_pins`, pins of a root (an L3 with its whole tree: fork's and
    /// exec's); the rest pin one pte page alone.
    PtPinsRoot = "pt_pins_root",
    /// Of `pt_pins`, pins of a kernel pte page: an L1 of the vmalloc space,
    /// added when a part of it is first mapped (2.6.28's `xen_alloc_ptpage`
    /// for init_mm). The rest of the non-root pins are user pte pages.
    PtPinsKernel = "pt_pins_kernel",
    /// Mapped pages whose lazy PTEs vm_unmap_aliases calls cleared after their
    /// flush (lazy areas' and vmap blocks' freed ranges; not the threshold's or
    /// an allocation's purges): priced per page beyond a flushing call's first.
    VmUnmapAliasesPurgedPages = "vm_unmap_aliases_purged_pages",
    /// Cycles of the trap-back fixups' actions (the `vm_unmap_aliases()` each
    /// runs before its retry): with `alias_fixup_retry_cycles`, what a trapped
    /// pin spends outside the refusal and the trap itself.
    AliasFixupActionCycles = "alias_fixup_action_cycles",
    /// Cycles of the vmap layer's flushes of every CPU's TLB (the part of a
    /// purge that waits for the other CPUs).
    VmapFlushCycles = "vmap_flush_cycles",
    /// TSC cycles the kmap_lock's contended acquisitions waited (spins and
    /// halts): contention, measured where it happens, not priced by a unit.
    KmapLockWaitCycles = "kmap_lock_wait_cycles",
}

const _: () = assert!(Counter::ALL.len() <= MAX_COUNTERS);

/// One CPU's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerCpuCounters {
    pub v: [u64; MAX_COUNTERS],
}

impl PerCpuCounters {
    pub const fn zeroed() -> Self {
        PerCpuCounters { v: [0; MAX_COUNTERS] }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.v[c as usize]
    }
}

impl Default for PerCpuCounters {
    fn default() -> Self {
        Self::zeroed()
    }
}

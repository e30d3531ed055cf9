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
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

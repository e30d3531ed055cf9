//! The results `highpte-probe` (guest/linux-probe, a static i386 program run
//! by a stock Linux under `vmm run --linux`) prints as `vmm-result: NAME
//! VALUE` lines, which the host keeps in the run's report. Both the probe and
//! the benchmark take the names from here.

macro_rules! probe_results {
    ($($(#[$meta:meta])* $var:ident = $name:literal,)+) => {
        /// A figure highpte-probe reports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ProbeResult { $($(#[$meta])* $var,)+ }

        impl ProbeResult {
            pub const ALL: &'static [ProbeResult] = &[$(ProbeResult::$var,)+];
            /// The result's name in reports.
            pub const fn name(self) -> &'static str {
                match self { $(ProbeResult::$var => $name,)+ }
            }
            /// The result named `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

probe_results! {
    // pte-cost mode: medians over the rounds, TSC cycles per pte
    /// A fault that allocates and fills a pte page, one pte each.
    SparseFaultCyclesPerPte = "sparse_fault_cycles_per_pte",
    /// munmap of one pte per pte page.
    SparseZapCyclesPerPte = "sparse_zap_cycles_per_pte",
    /// fork and exit of a child over full pte pages (copy_pte_range and
    /// zap_pte_range: one map of a pte page for its 512 entries).
    DenseForkExitCyclesPerPte = "dense_fork_exit_cycles_per_pte",
    /// /proc/meminfo's PageTables with the dense region mapped.
    PagetablesKb = "pagetables_kb",
    ProbeRounds = "probe_rounds",
    // lowmem mode: what each task's pagetables take of lowmem
    /// The tasks that got there.
    LowmemTasks = "lowmem_tasks",
    LowmemPtePagesPerTask = "lowmem_pte_pages_per_task",
    LowfreeBeforeKb = "lowfree_before_kb",
    /// How much LowFree fell with every task alive.
    LowfreeDropKb = "lowfree_drop_kb",
    /// How much PageTables grew meanwhile.
    PagetablesKbGrown = "pagetables_kb_grown",
    LowfreeAfterKb = "lowfree_after_kb",
    /// The failing fork's errno (0: the fork worked).
    LowmemStopErrno = "lowmem_stop_errno",
    /// 1 when a child died instead of reaching its wait (the OOM killer).
    LowmemStopKilled = "lowmem_stop_killed",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_again() {
        for (i, r) in ProbeResult::ALL.iter().enumerate() {
            assert_eq!(ProbeResult::from_name(r.name()), Some(*r));
            assert!(ProbeResult::ALL[..i].iter().all(|o| o.name() != r.name()), "{r:?}");
        }
        assert_eq!(ProbeResult::from_name("nope"), None);
    }
}

//! The run's configuration: every strategy, variant, workload and size the guest can
//! be told to use, chosen at run time. One guest image runs every configuration.
//!
//! The parameters are declared once, in the table at the bottom of this file. From
//! that table come: the [`Config`] struct carried in the boot information, the
//! VMM's command-line flags (`--<key> <value>`), the bare-QEMU kernel command line
//! (`key=value ...`), and the configuration printed in every report.

/// Declares a configuration enum whose variants have stable command-line names.
macro_rules! config_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $var:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $var,)+ }

        impl $name {
            /// Every variant, in declaration order (its index is its ABI value).
            pub const ALL: &'static [$name] = &[$($name::$var,)+];
            /// The command-line names, in the same order as [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The command-line name.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$var => $text,)+ }
            }

            /// Parses a command-line name.
            pub fn from_name(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// Decodes the ABI value (the variant's index).
            pub fn from_index(v: u64) -> Option<Self> {
                Self::ALL.get(usize::try_from(v).ok()?).copied()
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

config_enum! {
    /// What the guest does once every CPU is up.
    pub enum Workload {
        /// Bring every CPU up, run the boot self-checks (ring 3 and `int 0x80`, the
        /// timer, a spinlock across CPUs), report and shut down.
        Boot = "boot",
        /// Round trip of a hypercall next to a bare port-I/O exit, on the boot CPU.
        HypercallBench = "hypercall-bench",
        /// Every CPU issues hypercalls at once and checks every result.
        HypercallSmp = "hypercall-smp",
        /// Timed IPI ping-pong between CPU 0 and CPU 1.
        IpiPingpong = "ipi-pingpong",
        /// Touches an unmapped address: the host must report the page fault.
        FaultPage = "fault-page",
        /// Takes an exception with no IDT: the host must report the triple fault.
        FaultTriple = "fault-triple",
        /// Loses its kernel stack: the double-fault task must report it.
        FaultStack = "fault-stack",
        /// Spins forever with interrupts off: the host's watchdog must stop it.
        Hang = "hang",
        /// `--tasks` ring-3 tasks each fault `--pages` demand-zero pages in, verify
        /// them, unmap and do it again, `--rounds` times.
        FaultStorm = "fault-storm",
        /// Each task forks children that check the memory they inherited, dirty
        /// it, and exit; the parent checks its own memory is untouched.
        ForkStorm = "fork-storm",
        /// Each task moves its pages back and forth with mremap, checking contents.
        MremapStorm = "mremap-storm",
        /// Resident tasks hold pages; a walker reads their pagetables like /proc,
        /// with scheduling points, and checks what every pte maps.
        Walker = "walker",
        /// fault-storm, fork-storm, mremap-storm, walker, and an exec, in turn.
        MmAll = "mm-all",
        /// Starts as many tasks as fit (up to `--tasks`), each with `--pages`
        /// pagetable pages' worth of sparse mappings: how many fit in lowmem.
        TaskCapacity = "task-capacity",
        /// Cost of pte accesses through the `--pte` variant: each map of a pte
        /// page reads `--pte-reads` of its ptes, then unmaps (1: a map per pte
        /// read; 512: a whole page per map, Linux's zap and copy loops).
        PteBench = "pte-bench",
        /// `--tasks` tasks each take kmaps of `--pages` highmem pages through the
        /// `--pte` variant's form (persistent: the `--last-pkmap` pool; percpu-pool:
        /// the `--pool-size` pool of its CPU; per-task: its two pages) and hold them
        /// across yields until their pool runs full and later takers sleep; then
        /// they check every page through its map and release it, `--rounds` times.
        /// atomic and lowpte have no form that may be held across a sleep: their
        /// tasks only write and check each page through an atomic kmap.
        KmapHold = "kmap-hold",
        /// The vmap layer's self-tests (those of Linux's lib/test_vmalloc.c, the
        /// lazy purge threshold, stale TLB entries), on every CPU at once.
        VmapTest = "vmap-test",
        /// Every CPU maps and unmaps vmalloc, vmap and vm_map_ram areas of random
        /// sizes (`--vmap-max-pages`, `--vmap-ram-pct`), keeping `--vmap-live` of
        /// them live, and checks their contents.
        VmapChurn = "vmap-churn",
        /// Nick Piggin's benchmark: on every CPU, map 4 pages, touch them, unmap,
        /// `--iterations` times.
        VmapBench = "vmap-bench",
        /// Every contract scenario that expects to pass, one after the other: the
        /// host's PV MMU through real hypercalls.
        PvmmuSelftest = "pvmmu-selftest",
        /// One contract scenario (`--scenario`, its index in the image): what
        /// `vmm contract` runs, one VM per scenario.
        Contract = "contract",
        /// Every CPU throws `--iterations` random PV MMU requests and direct
        /// pagetable writes at the host, valid and not, from `--seed`.
        Chaos = "chaos",
        /// The benchmark's workload: `--tasks` tasks each fork `--rounds` children
        /// that touch `--pages` pages and exit, and before every `--churn-every`th
        /// fork ask the kernel for a vmap churn step (vmalloc, touch, vfree of
        /// `--vmap-max-pages` pages), whose lazily freed pages come back as the
        /// children's pagetables: fork-heavy with vmap churn.
        ForkChurn = "fork-churn",
        /// The unit cost of each event the benchmark counts (a bare exit, a
        /// hypercall, a global flush, a vm_unmap_aliases that finds nothing and
        /// one that flushes, a pin, host-trap's trapped pin), each the median of
        /// 64 timed rounds on the boot CPU: `vmm bench`'s calibration. Needs
        /// `--pvmmu on`; `--alias host-trap` adds the trapped pin.
        Calibrate = "calibrate",
    }
}

config_enum! {
    /// When the vmap layer unmaps and flushes (`--vmap`).
    pub enum VmapVariant {
        /// Unmap and flush every CPU's TLB at every vunmap (before 2.6.28).
        Eager = "eager",
        /// PTEs stay until the lazy purge: a real pagetable alias (2.6.28).
        LazyPtes = "lazy-ptes",
        /// PTEs cleared at vunmap; only the TLB flush is deferred (2.6.37).
        LazyTlb = "lazy-tlb",
    }
}

config_enum! {
    /// Which Linux's `vm_unmap_aliases()` the vmap layer has (`--vmap-flush`).
    pub enum VmapFlush {
        /// Linux 2.6.28: only the blocks on each CPU's free list are walked (a
        /// block with no never-used page left is skipped, its freed ranges and
        /// their lazy PTEs with it), and a block's dirty ranges are never
        /// forgotten, so every later call flushes them again.
        Linux2628 = "2.6.28",
        /// Linux 6.5 (Gleixner's vmalloc fixes): every block is walked, full ones
        /// too, and a range once flushed is not flushed again.
        Linux65 = "6.5",
    }
}

config_enum! {
    /// Where pagetable pages live and how the kernel maps them (`--pte`).
    pub enum PteVariant {
        /// In lowmem, directly mapped (before 2.5.5).
        Lowpte = "lowpte",
        /// In highmem, mapped with per-CPU atomic kmaps (Molnar/van de Ven).
        Atomic = "atomic",
        /// In highmem, mapped with persistent kmaps from the global pool
        /// (Arcangeli's pte-highmem).
        Persistent = "persistent",
        /// In highmem, mapped from a per-CPU pool of atomic kmaps with the task
        /// pinned to its CPU (Arcangeli's idea).
        PercpuPool = "percpu-pool",
        /// In highmem, mapped through two virtual pages of each task below its
        /// stack (Bligh/Arcangeli's per-task kmaps).
        PerTask = "per-task",
    }
}

config_enum! {
    /// How the kernel makes sure a page it pins as a pagetable has no writable
    /// lazy vmap alias (`--alias`, under `--pvmmu on`; design notes section 3).
    pub enum AliasStrategy {
        /// No care at all: the host refuses the pin; the kernel then purges and
        /// retries (counted), so what the host refuses shows.
        None = "none",
        /// `vm_unmap_aliases()` before every pin (Linux's Xen code, 2.6.28).
        AlwaysFlush = "always-flush",
        /// The vmap layer's per-frame "may have a lazy alias" count: purge only
        /// when it is set (Piggin's p->v bit).
        AliasBit = "alias-bit",
        /// alias-bit, with the bookkeeping done only when a hypervisor is present
        /// (`--pvmmu on`); none at all on native.
        RuntimeSwitch = "runtime-switch",
        /// A pool of pagetable pages known to be unaliased, refilled
        /// `--clean-pool-batch` pages at a time with one `vm_unmap_aliases()`.
        CleanPool = "clean-pool",
        /// No guest-side check: the host finds the alias at the pin and traps
        /// back into the guest, which purges and has the pin retried.
        HostTrap = "host-trap",
        /// The benchmark's yardstick, not a design anyone proposed: knowing
        /// each frame's lazy aliases exactly (the counts alias-bit keeps), it
        /// runs `vm_unmap_aliases()` only before a pin the host would refuse,
        /// one whose frame still has a present lazy alias PTE (`--vmap
        /// lazy-ptes`). A stale TLB entry alone (`lazy-tlb`) costs it nothing:
        /// the host revokes those itself at the type change (T3).
        Oracle = "oracle",
    }
}

config_enum! {
    /// Where freed pagetable pages go (`--ptcache`).
    pub enum PtCache {
        /// 2.4's quicklists: per CPU, no lock, bounded (2.4 trimmed them to
        /// `pgt_cache_water`; here at most 32 pages a CPU, the rest go back).
        Quicklist = "quicklist",
        /// One list of zeroed pagetable pages shared by every CPU, under a
        /// lock (at most 256 pages): what sharing the cache costs.
        Global = "global",
        /// Straight back to the page allocator.
        None = "none",
    }
}

config_enum! {
    /// On or off.
    pub enum Switch {
        Off = "off",
        On = "on",
    }
}

config_enum! {
    /// How the host's PV MMU finds writable mappings of a frame that is to become a
    /// pagetable (`--host-check`; the host's choice, the guest ignores it).
    pub enum HostCheck {
        /// Xen's type count: a `writable` frame's count is its RW mappings (O(1)).
        Typecount = "typecount",
        /// Read every validated L1 and count (O(L1 tables)).
        Scan = "scan",
        /// A reverse map kept on every entry change (O(1) to ask).
        Rmap = "rmap",
    }
}

config_enum! {
    /// How the host finds direct guest writes to validated tables that no
    /// read-only memslot covers (`--host-write-watch`): L3s always (the CPU
    /// writes accessed bits into a live PDPT), and every table on a QEMU TCG host
    /// once the guest runs on them (docs/pvmmu.md).
    pub enum WriteWatch {
        /// KVM's dirty log over those tables, read at every hypercall exit: a
        /// direct write is found at the vCPU's next hypercall and then emulated
        /// (writable-pagetables assist) or reported and undone.
        DirtyLog = "dirty-log",
        /// Read-only memslots only: a write to a table they do not cover is found
        /// by the end-of-run audit alone.
        Memslot = "memslot",
    }
}

config_enum! {
    /// What the host does when the guest breaks the contract with a direct write
    /// (`--host-on-violation`).
    pub enum OnViolation {
        /// Stop the guest with a violation report (the contract's rule).
        Stop = "stop",
        /// Drop the write, record the violation in the report, let the guest go
        /// on (for the chaos workload: the host must survive a stream of them).
        Continue = "continue",
    }
}

config_enum! {
    /// A deliberately weakened host check (`--host-weaken`, test only): the
    /// contract suite must report FAILURE for the scenarios it guards.
    pub enum HostWeaken {
        None = "none",
        /// An L1 entry may map a pagetable writable (no V1 check).
        V1 = "v1",
        /// A frame whose type count is above zero takes another reference of
        /// the type it has when a request asks for another (no "bad type"
        /// check, T1): the request succeeds, the frame keeps its type.
        T1 = "t1",
        /// Frames that become pagetables keep the guest's write access (no
        /// revocation at the type change, T3): direct writes land unseen.
        T3 = "t3",
        /// A pinned frame may be pinned again (no T4 check).
        T4 = "t4",
        /// A table whose type count drops to zero keeps the references its
        /// entries took (no devalidation, T2): what it mapped writable stays so.
        T2 = "t2",
        /// A linear L2 entry may be writable (V4's read-only rule unchecked).
        V4 = "v4",
        /// An L1 entry may map a frame beyond guest RAM (no V6 check on entries).
        V6 = "v6",
        /// L1 entries may set PWT, PCD, PAT and G (no V3 check).
        V3 = "v3",
        /// PAE L3s may have any flags in entries 0..3 and lie above 4 GiB (no V5 check).
        V5 = "v5",
        /// A misaligned entry address is rounded down to its entry instead of
        /// refused (V7's alignment check).
        V7 = "v7",
        /// A pin refused for writable aliases fails even with a fixup registered
        /// (no trap-back).
        TrapBack = "trap-back",
        /// Direct writes to protected tables are ignored instead of reported.
        DirectWrite = "direct-write",
        /// CR3 may select any 32-byte PDPT slot of a validated L3, not only the
        /// first (whose four entries are the ones the host validated).
        Cr3Slot = "cr3-slot",
        /// The trap-back frame goes wherever the guest's tables map the stack,
        /// read-only pages too (the walk's RW check skipped, as trusting
        /// KVM_TRANSLATE's `writeable` did).
        StackWalk = "stack-walk",
        /// An `mmu_update` into a frame of no type is applied as a plain write.
        UntypedWrite = "untyped-write",
        /// Batches run to their end whatever their work (no exit budget).
        Budget = "budget",
        /// The host writes its answers into validated pagetables too (no
        /// check of the target frame's type: the original hole).
        HostWrite = "host-write",
        /// The end-of-run audit compares only an L3's four PDPTEs, as it did
        /// before it compared all 512 entries: a direct write to entries
        /// 4..511 that nothing else sees goes unreported.
        L3Audit = "l3-audit",
        /// The dirty log's reconcile and the audit take bits 5 and 6 of an L3
        /// entry as the CPU's, as they did before bit 6 (reserved in a PDPTE)
        /// was found to be the guest's: a direct write of bit 6 goes unseen.
        L3HardwareBits = "l3-hardware-bits",
        /// Not a check: the first `mmuext_op` never returns, and holds the PV
        /// MMU's lock, so that `--timeout` is shown to end a run stuck in the
        /// host.
        StuckCall = "stuck-call",
    }
}

config_enum! {
    /// A historic bug to reproduce (`--inject`).
    pub enum Inject {
        None = "none",
        /// 2.5.7: mremap allocates a pagetable page (and sleeps) while an atomic
        /// pte map is live. The debug checker must catch it.
        MremapSleepInAtomic = "mremap-sleep-in-atomic",
        /// The 2.4 backport: mremap's pagetable allocation fails. The kernel must
        /// fail the call, not oops.
        MremapAllocFail = "mremap-alloc-fail",
        /// kmap-hold: a task maps its CPU's atomic kmap slot KM_USER0 a second
        /// time, to another page, without unmapping it first. The debug checker
        /// must catch it; without the checker, the first map's reads go to the
        /// second page and the content check fails.
        KmapSlotReuse = "kmap-slot-reuse",
        /// kmap-hold: a task returns from its system call still holding one kmap
        /// (the last of its set). The debug checker must catch it on the way back
        /// to ring 3.
        KmapUnbalanced = "kmap-unbalanced",
        /// The vmap purge flushes only this CPU's TLB, not the others': the
        /// stale-TLB self-test must notice.
        VmapLocalFlush = "vmap-local-flush",
    }
}

/// How a parameter's value is written on a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// One of these names.
    Enum(&'static [&'static str]),
    /// An unsigned integer in `min..=max`.
    Int { min: u64, max: u64 },
}

/// One configuration parameter, as the table declares it.
#[derive(Clone, Copy, Debug)]
pub struct ParamInfo {
    /// The key: `--key` on the VMM's command line, `key=` on the bare one.
    pub key: &'static str,
    pub kind: ParamKind,
    /// The default, as it would be written on the command line.
    pub default: &'static str,
    pub help: &'static str,
}

/// A parameter's current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamValue {
    Enum(&'static str),
    Int(u64),
}

impl core::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParamValue::Enum(s) => f.write_str(s),
            ParamValue::Int(v) => write!(f, "{v}"),
        }
    }
}

/// Why a `key=value` could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamError {
    UnknownKey,
    /// Not one of the enum's names.
    BadName,
    /// Not a number, or outside the allowed range.
    BadNumber {
        min: u64,
        max: u64,
    },
}

impl core::fmt::Display for ParamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParamError::UnknownKey => f.write_str("unknown parameter"),
            ParamError::BadName => f.write_str("not one of the allowed names"),
            ParamError::BadNumber { min, max } => {
                write!(f, "expected a whole number in {min}..={max}")
            }
        }
    }
}

/// Parses an unsigned integer, decimal or `0x` hexadecimal, with an optional
/// binary-size suffix (`k`, `m`, `g`, meaning KiB, MiB, GiB).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1u64 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1u64 << 30),
        _ => (s, 1),
    };
    let v = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    v.checked_mul(mult)
}

/// Declares the parameter table and the [`Config`] struct that carries it.
macro_rules! params {
    ($(
        $(#[$meta:meta])*
        $field:ident / $var:ident : $kind:tt = $default:literal, $key:literal, $help:literal;
    )+) => {
        /// The run's configuration as it travels in the boot information. Every field
        /// is a `u64` (so that any bit pattern is a valid struct, and the layout is the
        /// same on the 64-bit host and the 32-bit guest, where `u64` is only 4-byte
        /// aligned); enum fields hold the enum's index and are decoded by the accessor
        /// of the same name.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Config {
            $( $(#[$meta])* pub $field: params!(@ty $kind), )+
        }

        impl Config {
            /// Every parameter, in table order.
            pub const PARAMS: &'static [ParamInfo] = &[
                $( ParamInfo { key: $key, kind: params!(@kind $kind), default: $default, help: $help }, )+
            ];

            /// The configuration with every parameter at its default.
            pub fn new() -> Self {
                let mut c = Config { $( $field: 0, )+ };
                for p in Self::PARAMS {
                    // The table's defaults are checked by a unit test.
                    let _ = c.set(p.key, p.default);
                }
                c
            }

            /// Sets one parameter from its command-line text.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ParamError> {
                $( if key == $key { return params!(@set self.$field, $kind, value); } )+
                Err(ParamError::UnknownKey)
            }

            /// One parameter's value.
            pub fn get(&self, key: &str) -> Option<ParamValue> {
                $( if key == $key { return Some(params!(@get self.$field, $kind)); } )+
                None
            }

            /// Applies a bare-metal kernel command line: `key=value` words separated by
            /// spaces. Words without `=`, and unknown keys, are returned to the caller
            /// through `unknown` (which may ignore them).
            pub fn apply_cmdline(
                &mut self,
                cmdline: &str,
                mut unknown: impl FnMut(&str, Option<ParamError>),
            ) {
                for word in cmdline.split_ascii_whitespace() {
                    match word.split_once('=') {
                        Some((k, v)) => {
                            if let Err(e) = self.set(k, v) {
                                unknown(word, Some(e));
                            }
                        }
                        None => unknown(word, None),
                    }
                }
            }
        }

        impl Default for Config {
            fn default() -> Self {
                Self::new()
            }
        }

        /// One parameter set to one typed value: what a benchmark cell changes
        /// from the defaults, and what a verdict asks of a cell. A renamed
        /// parameter or variant is a compile error where a string key would read
        /// as "not measured".
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Setting {
            $( $(#[$meta])* $var(params!(@vty $kind)), )+
        }

        impl Setting {
            /// The parameter's key (`--key`).
            pub const fn key(&self) -> &'static str {
                match self { $( Setting::$var(_) => $key, )+ }
            }

            /// Parses `--key value`.
            pub fn parse(key: &str, value: &str) -> Result<Setting, ParamError> {
                $( if key == $key { return params!(@parse $var, $kind, value); } )+
                Err(ParamError::UnknownKey)
            }

            /// The value as the command line writes it.
            pub fn value(&self) -> ParamValue {
                match *self { $( Setting::$var(v) => params!(@value v, $kind), )+ }
            }

            /// Sets the parameter in `config`.
            pub fn apply(&self, config: &mut Config) -> Result<(), ParamError> {
                match *self { $( Setting::$var(v) => params!(@apply config.$field, v, $kind), )+ }
            }

            /// Whether `config` has this parameter at this value.
            pub fn holds(&self, config: &Config) -> bool {
                match *self { $( Setting::$var(v) => config.$field == params!(@raw v, $kind), )+ }
            }
        }
    };
    (@vty ($($range:tt)*)) => { u64 };
    (@vty $enum:ident) => { $enum };
    (@parse $var:ident, ($min:expr, $max:expr), $value:ident) => {
        match parse_u64($value) {
            Some(v) if ($min..=$max).contains(&v) => Ok(Setting::$var(v)),
            _ => Err(ParamError::BadNumber { min: $min, max: $max }),
        }
    };
    (@parse $var:ident, $enum:ident, $value:ident) => {
        $enum::from_name($value).map(Setting::$var).ok_or(ParamError::BadName)
    };
    (@value $v:ident, ($($range:tt)*)) => { ParamValue::Int($v) };
    (@value $v:ident, $enum:ident) => { ParamValue::Enum($v.as_str()) };
    (@apply $place:expr, $v:ident, ($min:expr, $max:expr)) => {{
        if !($min..=$max).contains(&$v) {
            return Err(ParamError::BadNumber { min: $min, max: $max });
        }
        $place = $v;
        Ok(())
    }};
    (@apply $place:expr, $v:ident, $enum:ident) => {{
        $place = $v as u64;
        Ok(())
    }};
    (@raw $v:ident, ($($range:tt)*)) => { $v };
    (@raw $v:ident, $enum:ident) => { $v as u64 };
    (@ty ($($range:tt)*)) => { u64 };
    (@ty $enum:ident) => { u64 };
    (@kind ($min:expr, $max:expr)) => { ParamKind::Int { min: $min, max: $max } };
    (@kind $enum:ident) => { ParamKind::Enum($enum::NAMES) };
    (@set $place:expr, ($min:expr, $max:expr), $value:ident) => {{
        match parse_u64($value) {
            Some(v) if ($min..=$max).contains(&v) => { $place = v; Ok(()) }
            _ => Err(ParamError::BadNumber { min: $min, max: $max }),
        }
    }};
    (@set $place:expr, $enum:ident, $value:ident) => {{
        match $enum::from_name($value) {
            Some(v) => { $place = v as u64; Ok(()) }
            None => Err(ParamError::BadName),
        }
    }};
    (@get $place:expr, ($min:expr, $max:expr)) => { ParamValue::Int($place) };
    (@get $place:expr, $enum:ident) => {
        ParamValue::Enum($enum::from_index($place).map(|v| v.as_str()).unwrap_or("?"))
    };
}

params! {
    /// [`Workload`]
    workload / Workload: Workload = "boot", "workload", "what the guest runs once every CPU is up";
    /// Iterations of the workload's main loop (0: the workload's own default).
    iterations / Iterations: (0, 1 << 32) = "0", "iterations", "iterations of the workload's main loop (0: the workload's default)";
    /// Seed for everything random in the guest.
    seed / Seed: (0, u64::MAX) = "1", "seed", "seed for the guest's random choices";
    /// The end of lowmem (directly mapped RAM); less if RAM is smaller.
    lowmem / Lowmem: (8 << 20, 896 << 20) = "896m", "lowmem", "directly mapped RAM (lowmem), at most 896m; the rest is highmem";
    /// [`PteVariant`]
    pte / Pte: PteVariant = "atomic", "pte", "where pagetables live and how they are mapped";
    /// [`PtCache`]
    ptcache / Ptcache: PtCache = "quicklist", "ptcache", "where freed pagetable pages go: per-CPU quicklists (2.4), one global locked list, or none";
    /// Entries of the persistent kmap pool (LAST_PKMAP).
    last_pkmap / LastPkmap: (128, 2048) = "512", "last-pkmap", "entries of the persistent kmap pool (LAST_PKMAP)";
    /// Atomic kmap slots per CPU in the percpu-pool variant.
    pool_size / PoolSize: (2, 48) = "16", "pool-size", "atomic kmap slots per CPU of the percpu-pool variant";
    /// [`Switch`]: kernel preemption from the timer tick.
    preempt / Preempt: Switch = "on", "preempt", "preempt kernel code from the timer tick (user code always is)";
    /// [`Switch`]: the debug checker (atomic kmaps held while sleeping, unbalanced maps, reused slots).
    debug / Debug: Switch = "on", "debug", "the debug checker of kmap misuse";
    /// [`Switch`]: idle CPUs take runnable tasks from busy ones (tasks holding
    /// per-CPU pool kmaps stay).
    balance / Balance: Switch = "on", "balance", "idle CPUs take runnable tasks from busy CPUs";
    /// [`Inject`]
    inject / Inject: Inject = "none", "inject", "reproduce a historic bug";
    /// Tasks a workload starts.
    tasks / Tasks: (1, 4096) = "8", "tasks", "ring-3 tasks a workload starts";
    /// Pages each task touches.
    pages / Pages: (1, 65536) = "64", "pages", "pages each task touches";
    /// Rounds of each task's loop.
    rounds / Rounds: (1, 1 << 20) = "4", "rounds", "rounds of each task's main loop";
    /// [`VmapVariant`]
    vmap / Vmap: VmapVariant = "lazy-ptes", "vmap", "when vunmap clears PTEs and flushes TLBs";
    /// pte-bench: ptes read per map of a pte page.
    pte_reads / PteReads: (1, 512) = "1", "pte-reads", "pte-bench: ptes read per map of a pte page (1: one map per pte read; 512: every pte of the page, as zap_pte_range and copy_pte_range)";
    /// [`VmapFlush`]
    vmap_flush / VmapFlush: VmapFlush = "2.6.28", "vmap-flush", "which Linux's vm_unmap_aliases: 2.6.28 (free-list blocks only, dirty ranges flushed again) or 6.5";
    /// Largest request of the vmap churn, in pages.
    vmap_max_pages / VmapMaxPages: (1, 256) = "16", "vmap-max-pages", "largest vmap-churn request, in pages";
    /// Share of the vmap churn's requests that go through vm_map_ram (the rest
    /// alternate between vmalloc and vmap).
    vmap_ram_pct / VmapRamPct: (0, 100) = "50", "vmap-ram-pct", "percent of vmap-churn requests through vm_map_ram";
    /// Areas each CPU keeps live in the vmap churn.
    vmap_live / VmapLive: (1, 4096) = "32", "vmap-live", "areas each CPU keeps live in vmap-churn";
    /// The contract scenario the `contract` workload runs (its index in the image).
    scenario / Scenario: (0, 4095) = "0", "scenario", "the contract scenario to run (see vmm contract --list)";
    /// [`HostCheck`]
    host_check / HostCheck: HostCheck = "typecount", "host-check", "how the host's PV MMU finds writable aliases of a frame";
    /// [`OnViolation`]
    host_on_violation / HostOnViolation: OnViolation = "stop", "host-on-violation", "stop the guest at a contract violation, or record it and go on";
    /// [`WriteWatch`]
    host_write_watch / HostWriteWatch: WriteWatch = "dirty-log", "host-write-watch", "how the host finds direct writes to validated tables no read-only memslot covers";
    /// [`HostWeaken`]
    host_weaken / HostWeaken: HostWeaken = "none", "host-weaken", "test only: a deliberately weakened host check";
    /// [`Switch`]: the kernel's pagetables under the host's PV MMU.
    pvmmu / Pvmmu: Switch = "off", "pvmmu", "put the kernel's pagetables under the host's PV MMU (updates by hypercall, tables pinned and read-only)";
    /// [`Switch`]: under `--pvmmu on`, queue pagetable updates in lazy-MMU
    /// sections and send them in one hypercall (off: one hypercall each).
    pv_batch / PvBatch: Switch = "on", "pv-batch", "under --pvmmu on, batch pagetable updates of a lazy-MMU section into one hypercall";
    /// [`AliasStrategy`]
    alias / Alias: AliasStrategy = "always-flush", "alias", "how the kernel keeps lazy vmap aliases from the pagetables it pins (--pvmmu on)";
    /// Pages the clean-pool strategy takes per refill (one vm_unmap_aliases each).
    clean_pool_batch / CleanPoolBatch: (1, 1024) = "16", "clean-pool-batch", "pages per refill of the clean-pool strategy";
    /// fork-churn: a vmap churn step before every Nth fork (0: never).
    churn_every / ChurnEvery: (0, 1 << 20) = "1", "churn-every", "fork-churn: a vmap churn step before every Nth fork (0: none)";
    /// [`Switch`]: ask all three host checks every time and count disagreements.
    host_cross_check / HostCrossCheck: Switch = "off", "host-cross-check", "run all three host alias checks and count disagreements";
    /// vmap-bench: how many CPUs run the loop (0: every CPU); the others wait
    /// and answer the flush IPIs, as the idle CPUs of Linux's one-thread run did.
    bench_cpus / BenchCpus: (0, 8) = "0", "bench-cpus", "vmap-bench: CPUs that run the loop (0: every CPU; the others answer flush IPIs)";
}

// Same layout on both sides of the boundary: only u64 fields, no padding.
const _: () = assert!(core::mem::size_of::<Config>() == 8 * Config::PARAMS.len());

impl Config {
    /// The workload (its default if the field holds a bad value).
    pub fn workload(&self) -> Workload {
        Workload::from_index(self.workload).unwrap_or(Workload::Boot)
    }

    pub fn pte(&self) -> PteVariant {
        PteVariant::from_index(self.pte).unwrap_or(PteVariant::Atomic)
    }

    pub fn ptcache(&self) -> PtCache {
        PtCache::from_index(self.ptcache).unwrap_or(PtCache::Quicklist)
    }

    pub fn preempt(&self) -> bool {
        Switch::from_index(self.preempt) != Some(Switch::Off)
    }

    pub fn debug(&self) -> bool {
        Switch::from_index(self.debug) != Some(Switch::Off)
    }

    pub fn balance(&self) -> bool {
        Switch::from_index(self.balance) != Some(Switch::Off)
    }

    pub fn vmap(&self) -> VmapVariant {
        VmapVariant::from_index(self.vmap).unwrap_or(VmapVariant::LazyPtes)
    }

    pub fn vmap_flush(&self) -> VmapFlush {
        VmapFlush::from_index(self.vmap_flush).unwrap_or(VmapFlush::Linux2628)
    }

    pub fn pvmmu(&self) -> bool {
        Switch::from_index(self.pvmmu) == Some(Switch::On)
    }

    pub fn pv_batch(&self) -> bool {
        Switch::from_index(self.pv_batch) != Some(Switch::Off)
    }

    pub fn alias(&self) -> AliasStrategy {
        AliasStrategy::from_index(self.alias).unwrap_or(AliasStrategy::AlwaysFlush)
    }

    pub fn host_check(&self) -> HostCheck {
        HostCheck::from_index(self.host_check).unwrap_or(HostCheck::Typecount)
    }

    pub fn host_on_violation(&self) -> OnViolation {
        OnViolation::from_index(self.host_on_violation).unwrap_or(OnViolation::Stop)
    }

    pub fn host_write_watch(&self) -> WriteWatch {
        WriteWatch::from_index(self.host_write_watch).unwrap_or(WriteWatch::DirtyLog)
    }

    pub fn host_weaken(&self) -> HostWeaken {
        HostWeaken::from_index(self.host_weaken).unwrap_or(HostWeaken::None)
    }

    pub fn host_cross_check(&self) -> bool {
        Switch::from_index(self.host_cross_check) == Some(Switch::On)
    }

    pub fn inject(&self) -> Inject {
        Inject::from_index(self.inject).unwrap_or(Inject::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        let mut c = Config::new();
        c.workload = 99;
        for p in Config::PARAMS {
            c.set(p.key, p.default).unwrap_or_else(|e| panic!("{}: {e}", p.key));
            match c.get(p.key).unwrap() {
                ParamValue::Int(v) => assert_eq!(Some(v), parse_u64(p.default), "{}", p.key),
                e => assert_eq!(format_value(e), p.default, "{}", p.key),
            }
        }
        assert_eq!(c, Config::new());
    }

    fn format_value(v: ParamValue) -> std::string::String {
        use std::string::ToString;
        v.to_string()
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = Config::new();
        assert_eq!(c.set("workload", "nope"), Err(ParamError::BadName));
        assert_eq!(c.set("nope", "1"), Err(ParamError::UnknownKey));
        assert!(matches!(c.set("iterations", "-1"), Err(ParamError::BadNumber { .. })));
        assert_eq!(c, Config::new());
        c.set("workload", "ipi-pingpong").unwrap();
        assert_eq!(c.workload(), Workload::IpiPingpong);
    }

    #[test]
    fn a_setting_is_the_key_and_value_the_command_line_gives() {
        for p in Config::PARAMS {
            let s = Setting::parse(p.key, p.default).unwrap_or_else(|e| panic!("{}: {e}", p.key));
            assert_eq!(s.key(), p.key);
            assert!(s.holds(&Config::new()), "{}", p.key);
            assert_eq!(Some(s.value()), Config::new().get(p.key));
        }
        let mut c = Config::new();
        let s = Setting::Alias(AliasStrategy::CleanPool);
        assert!(!s.holds(&c));
        s.apply(&mut c).unwrap();
        assert!(s.holds(&c));
        assert_eq!(c.alias(), AliasStrategy::CleanPool);
        assert_eq!(Setting::parse("alias", "clean-pool"), Ok(s));
        assert_eq!(Setting::parse("last-pkmap", "4096"), Err(ParamError::BadNumber { min: 128, max: 2048 }));
        assert_eq!(Setting::LastPkmap(4096).apply(&mut c), Err(ParamError::BadNumber { min: 128, max: 2048 }));
        assert_eq!(Setting::parse("nope", "1"), Err(ParamError::UnknownKey));
        assert_eq!(Setting::parse("pte", "nope"), Err(ParamError::BadName));
    }

    #[test]
    fn cmdline_sets_known_keys_and_returns_the_rest() {
        let mut c = Config::new();
        let mut rest = 0;
        c.apply_cmdline("console=ttyS0 workload=hang iterations=0x10 bogus=1", |_, _| rest += 1);
        assert_eq!(c.workload(), Workload::Hang);
        assert_eq!(c.iterations, 16);
        assert_eq!(rest, 2);
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_u64("16m"), Some(16 << 20));
        assert_eq!(parse_u64("64G"), Some(64 << 30));
        assert_eq!(parse_u64("0x1000"), Some(4096));
        assert_eq!(parse_u64("k"), None);
        assert_eq!(parse_u64("99999999999999999999g"), None);
    }
}

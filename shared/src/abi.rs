//! The hypercall ABI.
//!
//! A hypercall is one port-I/O exit: the guest fills a [`HypercallBlock`] in its own
//! memory (below 4 GiB) and writes the block's guest-physical address with a 32-bit
//! `out` to [`HYPERCALL_PORT`]. The VMM reads the block, runs the call, and writes
//! `rc` and `ret` back into it before resuming the vCPU. No register is read or
//! written on this path (as in hermit-os/uhyve).
//!
//! Numbers follow Xen where Xen has the call (`mmu_update` 1, `set_callbacks` 4,
//! `multicall` 13, `update_va_mapping` 14, `vm_assist` 21, `mmuext_op` 26); the console, shutdown,
//! milestones, results and fault reports are this project's own (0x100 and up).
//! Error codes are negative errno values, as Xen returns them.

/// Numbered constants and their names from one table: each row
/// `NAME = value, "text";` becomes `pub const NAME`, a row of `ALL`, and what
/// `name_of` finds, so that a number and its name cannot drift apart.
macro_rules! named_numbers {
    ($t:ty; $($(#[$m:meta])* $id:ident = $v:expr, $text:literal;)+) => {
        $($(#[$m])* pub const $id: $t = $v;)+

        /// Every value with its name, for reports.
        pub const ALL: &[($t, &str)] = &[$(($id, $text)),+];

        /// The name of `v`, if it is one of these.
        pub fn name_of(v: $t) -> Option<&'static str> {
            ALL.iter().find(|(n, _)| *n == v).map(|(_, s)| *s)
        }
    };
}

/// `out dx, eax` here carries the guest-physical address of a [`HypercallBlock`].
pub const HYPERCALL_PORT: u16 = 0x500;
/// `out` here costs one exit and nothing else: the VMM does no work. The baseline
/// against which the hypercall round trip is measured.
pub const NOP_EXIT_PORT: u16 = 0x501;

/// Bare-metal (no VMM) devices the guest uses under plain QEMU.
pub mod bare {
    /// COM1, the console without a VMM.
    pub const SERIAL_PORT: u16 = 0x3f8;
    /// QEMU's `isa-debug-exit` device: writing `v` exits QEMU with status `2*v+1`.
    pub const DEBUG_EXIT_PORT: u16 = 0xf4;
}

/// Hypercall numbers.
pub mod nr {
    named_numbers! { u32;
        MMU_UPDATE = 1, "mmu_update";
        SET_CALLBACKS = 4, "set_callbacks";
        MULTICALL = 13, "multicall";
        VM_ASSIST = 21, "vm_assist";
        UPDATE_VA_MAPPING = 14, "update_va_mapping";
        MMUEXT_OP = 26, "mmuext_op";
        /// `(buf_gpa, len)`: write `len` bytes of text to the console.
        CONSOLE_WRITE = 0x100, "console_write";
        /// `(code)`: the guest is done; `code` 0 is success. The VMM stops every vCPU.
        SHUTDOWN = 0x101, "shutdown";
        /// `(milestone, arg)`: the host timestamps a point of the boot (see [`super::milestone`]).
        MILESTONE = 0x102, "milestone";
        /// `(name_gpa, name_len, value)`: a named figure the guest measured.
        RESULT = 0x103, "result";
        /// `(report_gpa)`: an unexpected exception or a guest panic, described by a
        /// [`super::FaultReport`]; the VMM reports it and stops the guest.
        GUEST_FAULT = 0x104, "guest_fault";
        /// Does nothing but return 0: measures the hypercall round trip.
        NOP = 0x105, "nop";
    }

    /// The name of a hypercall number, if it is one.
    pub fn name(nr: u32) -> Option<&'static str> {
        name_of(nr)
    }
}

/// One hypercall and its arguments: the one description of each call that the
/// guest encodes ([`Hypercall::encode`]) and the host decodes
/// ([`Hypercall::decode`]), so that neither side packs or unpacks arguments by
/// position on its own. Addresses are guest-physical. Arguments a call does
/// not take are sent as 0 and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Validated pagetable writes: `count` [`pvmmu::MmuUpdate`]s at `reqs`.
    MmuUpdate { reqs: u64, count: u64 },
    /// Pins, unpins, roots and flushes: `count` [`pvmmu::MmuextOp`]s at `ops`.
    MmuextOp { ops: u64, count: u64 },
    /// The L1 entry of `va` under this vCPU's root, then the flush `flags` ask.
    UpdateVaMapping { va: u64, val: u64, flags: u64 },
    /// `count` [`pvmmu::MulticallEntry`]s at `entries`, each with its own result.
    Multicall { entries: u64, count: u64 },
    /// Where the host traps back into the guest (0: nowhere).
    SetCallbacks { fixup_entry: u64 },
    /// `vm_assist(cmd, kind)`: the writable-pagetables assist on or off.
    VmAssist { cmd: u64, kind: u64 },
    /// `len` bytes of console text at `buf`.
    ConsoleWrite { buf: u64, len: u64 },
    /// The guest is done; `code` 0 is success.
    Shutdown { code: u64 },
    /// A point of the boot (see [`milestone`]).
    Milestone { which: u64, arg: u64 },
    /// A named figure: the name's `len` bytes at `name`, and its value.
    Result { name: u64, len: u64, value: u64 },
    /// A fatal fault, described by the [`FaultReport`] at `report`.
    GuestFault { report: u64 },
    /// Nothing: the host echoes `arg` (the round trip's cost).
    Nop { arg: u64 },
}

impl Hypercall {
    /// The call's number and its four argument words.
    pub const fn encode(self) -> (u32, [u64; 4]) {
        match self {
            Hypercall::MmuUpdate { reqs, count } => (nr::MMU_UPDATE, [reqs, count, 0, 0]),
            Hypercall::MmuextOp { ops, count } => (nr::MMUEXT_OP, [ops, count, 0, 0]),
            Hypercall::UpdateVaMapping { va, val, flags } => (nr::UPDATE_VA_MAPPING, [va, val, flags, 0]),
            Hypercall::Multicall { entries, count } => (nr::MULTICALL, [entries, count, 0, 0]),
            Hypercall::SetCallbacks { fixup_entry } => (nr::SET_CALLBACKS, [fixup_entry, 0, 0, 0]),
            Hypercall::VmAssist { cmd, kind } => (nr::VM_ASSIST, [cmd, kind, 0, 0]),
            Hypercall::ConsoleWrite { buf, len } => (nr::CONSOLE_WRITE, [buf, len, 0, 0]),
            Hypercall::Shutdown { code } => (nr::SHUTDOWN, [code, 0, 0, 0]),
            Hypercall::Milestone { which, arg } => (nr::MILESTONE, [which, arg, 0, 0]),
            Hypercall::Result { name, len, value } => (nr::RESULT, [name, len, value, 0]),
            Hypercall::GuestFault { report } => (nr::GUEST_FAULT, [report, 0, 0, 0]),
            Hypercall::Nop { arg } => (nr::NOP, [arg, 0, 0, 0]),
        }
    }

    /// The call a block names, read once; None for a number that is no call.
    pub const fn decode(op: u32, args: [u64; 4]) -> Option<Hypercall> {
        let [a0, a1, a2, _] = args;
        Some(match op {
            nr::MMU_UPDATE => Hypercall::MmuUpdate { reqs: a0, count: a1 },
            nr::MMUEXT_OP => Hypercall::MmuextOp { ops: a0, count: a1 },
            nr::UPDATE_VA_MAPPING => Hypercall::UpdateVaMapping { va: a0, val: a1, flags: a2 },
            nr::MULTICALL => Hypercall::Multicall { entries: a0, count: a1 },
            nr::SET_CALLBACKS => Hypercall::SetCallbacks { fixup_entry: a0 },
            nr::VM_ASSIST => Hypercall::VmAssist { cmd: a0, kind: a1 },
            nr::CONSOLE_WRITE => Hypercall::ConsoleWrite { buf: a0, len: a1 },
            nr::SHUTDOWN => Hypercall::Shutdown { code: a0 },
            nr::MILESTONE => Hypercall::Milestone { which: a0, arg: a1 },
            nr::RESULT => Hypercall::Result { name: a0, len: a1, value: a2 },
            nr::GUEST_FAULT => Hypercall::GuestFault { report: a0 },
            nr::NOP => Hypercall::Nop { arg: a0 },
            _ => return None,
        })
    }

    /// The call's name in reports.
    pub fn name(self) -> &'static str {
        nr::name(self.encode().0).unwrap_or("unknown")
    }
}

/// The paravirtual MMU's request structures and command numbers (Xen's meanings;
/// see docs/pvmmu-rules.md and docs/pvmmu.md). Every structure
/// has a fixed 64-bit layout so that the 32-bit guest and the 64-bit host agree.
pub mod pvmmu {
    /// `mmu_update` command in the low two bits of [`MmuUpdate::ptr`]: a validated
    /// write of a pagetable entry.
    pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
    /// Xen's machine-to-physical update: there is no m2p table here (`-ENOSYS`).
    pub const MMU_MACHPHYS_UPDATE: u64 = 1;
    /// As [`MMU_NORMAL_PT_UPDATE`], but the entry keeps the Accessed and Dirty bits
    /// the old one had.
    pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;

    /// `mmuext_op` commands (Xen's numbers).
    pub mod cmd {
        named_numbers! { u32;
            PIN_L1_TABLE = 0, "pin_l1_table";
            PIN_L2_TABLE = 1, "pin_l2_table";
            PIN_L3_TABLE = 2, "pin_l3_table";
            /// Not in a 32-bit PAE guest: `-ENOSYS`.
            PIN_L4_TABLE = 3, "pin_l4_table";
            UNPIN_TABLE = 4, "unpin_table";
            NEW_BASEPTR = 5, "new_baseptr";
            TLB_FLUSH_LOCAL = 6, "tlb_flush_local";
            INVLPG_LOCAL = 7, "invlpg_local";
            TLB_FLUSH_MULTI = 8, "tlb_flush_multi";
            INVLPG_MULTI = 9, "invlpg_multi";
            TLB_FLUSH_ALL = 10, "tlb_flush_all";
            INVLPG_ALL = 11, "invlpg_all";
        }

        /// The name of a command, for reports.
        pub fn name(cmd: u32) -> &'static str {
            name_of(cmd).unwrap_or("unknown")
        }
    }

    /// `update_va_mapping` flags: the flush after the update (low two bits) and
    /// whom it is for.
    pub mod uvmf {
        pub const NONE: u64 = 0;
        pub const TLB_FLUSH: u64 = 1;
        pub const INVLPG: u64 = 2;
        pub const FLUSHTYPE_MASK: u64 = 3;
        /// Only the calling vCPU (the default).
        pub const LOCAL: u64 = 0;
        /// Every vCPU.
        pub const ALL: u64 = 4;
    }

    /// `vm_assist(cmd, type)` (Xen's numbers).
    pub mod vmasst {
        pub const CMD_ENABLE: u64 = 0;
        pub const CMD_DISABLE: u64 = 1;
        /// Direct writes to validated pagetables are emulated as validated updates.
        pub const TYPE_WRITABLE_PAGETABLES: u64 = 2;
    }

    /// The most requests one `mmu_update`, `mmuext_op` or `multicall` may carry.
    pub const MAX_BATCH: u64 = 4096;

    /// The work budget of one `mmu_update` or `mmuext_op` exit, in pagetable
    /// entries validated or dropped: past it, between two requests, the call
    /// returns `-ERESTART` with `ret` the requests done, and the guest issues
    /// the rest again. One request is never cut: a pin of an L3 validates its
    /// whole tree in one exit.
    pub const EXIT_BUDGET: u64 = 8192;

    /// One `mmu_update` request: write `val` at guest-physical `ptr` (the low two
    /// bits of `ptr` are the command).
    #[repr(C, align(8))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct MmuUpdate {
        pub ptr: u64,
        pub val: u64,
    }

    /// One `mmuext_op`: `arg1` is a frame number (pins, NEW_BASEPTR) or a virtual
    /// address (INVLPG_*); `arg2` is the guest-physical address of a vCPU bitmask
    /// (a `u64`) for the *_MULTI commands.
    #[repr(C, align(8))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct MmuextOp {
        pub cmd: u32,
        pub _pad: u32,
        pub arg1: u64,
        pub arg2: u64,
    }

    /// One entry of a `multicall`: a hypercall number and its arguments as in a
    /// [`super::HypercallBlock`]; the host writes the entry's own `result` (and
    /// `ret`, e.g. the requests a batch applied).
    #[repr(C, align(8))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct MulticallEntry {
        pub op: u32,
        pub result: i32,
        pub args: [u64; 4],
        pub ret: u64,
    }

    impl MmuUpdate {
        pub const SIZE: u64 = core::mem::size_of::<Self>() as u64;
    }
    impl MmuextOp {
        pub const SIZE: u64 = core::mem::size_of::<Self>() as u64;
    }
    impl MulticallEntry {
        pub const SIZE: u64 = core::mem::size_of::<Self>() as u64;
        /// Byte offset of `result`.
        pub const RESULT_OFFSET: u64 = 4;
        /// Byte offset of `ret`.
        pub const RET_OFFSET: u64 = 40;
    }

    const _: () = {
        use core::mem::{offset_of, size_of};
        assert!(size_of::<MmuUpdate>() == 16);
        assert!(size_of::<MmuextOp>() == 24);
        assert!(offset_of!(MmuextOp, arg1) == 8);
        assert!(size_of::<MulticallEntry>() == 48);
        assert!(offset_of!(MulticallEntry, args) == 8);
        assert!(offset_of!(MulticallEntry, ret) == MulticallEntry::RET_OFFSET as usize);
    };
}

/// Points of the boot the host timestamps (argument of [`nr::MILESTONE`]).
pub mod milestone {
    named_numbers! { u32;
        /// The boot CPU reached the kernel's main function (paging on, console up).
        MAIN = 1, "main";
        /// A CPU came online; the argument is its index.
        CPU_ONLINE = 2, "cpu_online";
        /// Every CPU is online and the workload starts.
        WORKLOAD_START = 3, "workload_start";
        /// The workload finished.
        WORKLOAD_END = 4, "workload_end";
    }
}

/// Negative errno values returned in [`HypercallBlock::rc`] (Xen's choices).
pub mod errno {
    named_numbers! { i32;
        EPERM = 1, "EPERM";
        ESRCH = 3, "ESRCH";
        ECHILD = 10, "ECHILD";
        EAGAIN = 11, "EAGAIN";
        ENOMEM = 12, "ENOMEM";
        EFAULT = 14, "EFAULT";
        EBUSY = 16, "EBUSY";
        EINVAL = 22, "EINVAL";
        ERANGE = 34, "ERANGE";
        ENOSYS = 38, "ENOSYS";
        /// The call stopped at its work budget; issued again from `ret` on, it
        /// goes on (Xen's hypercall preemption).
        ERESTART = 85, "ERESTART";
    }

    /// The symbolic name of an errno value (positive or negative).
    pub fn name(rc: i32) -> &'static str {
        match rc.unsigned_abs() as i32 {
            0 => "OK",
            e => name_of(e).unwrap_or("E?"),
        }
    }
}

/// The request block of one hypercall. 8-byte aligned, in guest memory below 4 GiB.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallBlock {
    /// Hypercall number ([`nr`]); written by the guest.
    pub op: u32,
    /// Result: 0 or a negative errno; written by the host.
    pub rc: i32,
    /// Arguments; written by the guest.
    pub args: [u64; 4],
    /// Second result (e.g. how many requests of a batch were done); written by the host.
    pub ret: u64,
}

impl HypercallBlock {
    /// Size in bytes as laid out in guest memory.
    pub const SIZE: usize = core::mem::size_of::<Self>();
    /// Byte offset of `rc` (the host writes `rc` and `ret` only).
    pub const RC_OFFSET: usize = 4;
    /// Byte offset of `ret`.
    pub const RET_OFFSET: usize = 40;
}

// The layouts must not depend on u64's alignment (8 on the host, 4 on the guest).
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(HypercallBlock, args) == 8);
    assert!(offset_of!(HypercallBlock, ret) == HypercallBlock::RET_OFFSET);
    assert!(size_of::<HypercallBlock>() == 48);
    assert!(offset_of!(FaultReport, message) == 72);
};

/// Longest message a [`FaultReport`] carries.
pub const FAULT_MSG_LEN: usize = 120;

/// What the guest tells the host when it takes an exception it did not expect, or
/// panics (vector [`FaultReport::PANIC`]).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// Exception vector, or [`FaultReport::PANIC`].
    pub vector: u32,
    /// The CPU (vCPU index) that took it.
    pub cpu: u32,
    pub error_code: u32,
    pub eip: u32,
    pub cs: u32,
    pub eflags: u32,
    pub cr2: u32,
    pub cr3: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
    pub esi: u32,
    pub edi: u32,
    pub ebp: u32,
    pub esp: u32,
    /// Length of `message` in bytes.
    pub msg_len: u32,
    pub _pad: u32,
    /// UTF-8 text (a panic message, or the exception's name).
    pub message: [u8; FAULT_MSG_LEN],
}

impl FaultReport {
    /// `vector` of a guest panic (not an exception).
    pub const PANIC: u32 = 0x100;

    /// An empty report.
    pub const fn zeroed() -> Self {
        FaultReport {
            vector: 0,
            cpu: 0,
            error_code: 0,
            eip: 0,
            cs: 0,
            eflags: 0,
            cr2: 0,
            cr3: 0,
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
            esi: 0,
            edi: 0,
            ebp: 0,
            esp: 0,
            msg_len: 0,
            _pad: 0,
            message: [0; FAULT_MSG_LEN],
        }
    }

    /// The message as text (lossy on bad UTF-8 or a bad length).
    pub fn message(&self) -> &str {
        let len = (self.msg_len as usize).min(FAULT_MSG_LEN);
        match core::str::from_utf8(&self.message[..len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.message[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

/// The name of an x86 exception vector.
pub fn exception_name(vector: u32) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error (#DE)",
        "debug (#DB)",
        "NMI",
        "breakpoint (#BP)",
        "overflow (#OF)",
        "bound range (#BR)",
        "invalid opcode (#UD)",
        "device not available (#NM)",
        "double fault (#DF)",
        "coprocessor segment overrun",
        "invalid TSS (#TS)",
        "segment not present (#NP)",
        "stack fault (#SS)",
        "general protection (#GP)",
        "page fault (#PF)",
        "reserved 15",
        "x87 FP error (#MF)",
        "alignment check (#AC)",
        "machine check (#MC)",
        "SIMD FP error (#XM)",
        "virtualization (#VE)",
        "control protection (#CP)",
        "reserved 22",
        "reserved 23",
        "reserved 24",
        "reserved 25",
        "reserved 26",
        "reserved 27",
        "hypervisor injection (#HV)",
        "VMM communication (#VC)",
        "security (#SX)",
        "reserved 31",
    ];
    match vector {
        v if v < 32 => NAMES[v as usize],
        FaultReport::PANIC => "kernel panic",
        _ => "unexpected interrupt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each table of numbers has distinct numbers and distinct names, and
    /// every name is found again from its number.
    #[test]
    fn numbers_and_names_come_from_one_table() {
        fn distinct<T: Copy + PartialEq + core::fmt::Debug>(all: &[(T, &str)], name_of: fn(T) -> Option<&'static str>) {
            for (i, (v, n)) in all.iter().enumerate() {
                assert!(all[..i].iter().all(|(w, m)| w != v && m != n), "{v:?} {n}: twice");
                assert_eq!(name_of(*v), Some(*n));
            }
        }
        distinct(nr::ALL, nr::name_of);
        distinct(pvmmu::cmd::ALL, pvmmu::cmd::name_of);
        distinct(errno::ALL, errno::name_of);
        distinct(milestone::ALL, milestone::name_of);
        assert_eq!((nr::name(nr::NOP), nr::name(0x7777)), (Some("nop"), None));
        assert_eq!(pvmmu::cmd::name(pvmmu::cmd::PIN_L3_TABLE), "pin_l3_table");
        assert_eq!(pvmmu::cmd::name(99), "unknown");
        assert_eq!((errno::name(-errno::ERESTART), errno::name(0), errno::name(-99)), ("ERESTART", "OK", "E?"));
    }

    #[test]
    fn hypercall_block_layout_is_what_the_guest_writes() {
        assert_eq!(HypercallBlock::SIZE, 48);
        assert_eq!(core::mem::offset_of!(HypercallBlock, rc), HypercallBlock::RC_OFFSET);
        assert_eq!(core::mem::offset_of!(HypercallBlock, ret), HypercallBlock::RET_OFFSET);
        assert_eq!(core::mem::size_of::<FaultReport>(), 72 + FAULT_MSG_LEN);
    }

    /// Every call reads back as itself, every listed number decodes to a call
    /// of that number, and no other number decodes: the guest's encoding and
    /// the host's decoding cannot drift apart.
    #[test]
    fn every_call_decodes_as_it_was_encoded() {
        let (a, b, c) = (0x1234_5678_9abc_def0, 7, u64::MAX);
        let calls = [
            Hypercall::MmuUpdate { reqs: a, count: b },
            Hypercall::MmuextOp { ops: a, count: b },
            Hypercall::UpdateVaMapping { va: a, val: b, flags: c },
            Hypercall::Multicall { entries: a, count: b },
            Hypercall::SetCallbacks { fixup_entry: a },
            Hypercall::VmAssist { cmd: a, kind: b },
            Hypercall::ConsoleWrite { buf: a, len: b },
            Hypercall::Shutdown { code: c },
            Hypercall::Milestone { which: a, arg: b },
            Hypercall::Result { name: a, len: b, value: c },
            Hypercall::GuestFault { report: a },
            Hypercall::Nop { arg: a },
        ];
        assert_eq!(calls.len(), nr::ALL.len(), "a call per number");
        for call in calls {
            let (op, args) = call.encode();
            assert_eq!(Hypercall::decode(op, args), Some(call));
            assert_eq!(nr::name(op), Some(call.name()));
        }
        for &(op, name) in nr::ALL {
            let call = Hypercall::decode(op, [1, 2, 3, 4]).unwrap();
            assert_eq!((call.encode().0, call.name()), (op, name));
        }
        for op in [0, 2, 3, 5, 12, 15, 25, 27, 0xff, 0x106, u32::MAX] {
            assert_eq!(Hypercall::decode(op, [0; 4]), None, "{op:#x}");
        }
    }
}

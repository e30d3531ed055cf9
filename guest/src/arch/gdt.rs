//! Segments: one GDT and one TSS per CPU.
//!
//! The segments are flat except the per-CPU one, whose base is the CPU's
//! [`crate::percpu::PerCpu`]; it is loaded into `%gs` whenever the kernel runs, so
//! `gs:[0]` finds the current CPU in one load.

use core::arch::asm;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_CS: u16 = 0x18 | 3;
pub const USER_DS: u16 = 0x20 | 3;
pub const TSS_SEL: u16 = 0x28;
pub const PERCPU_SEL: u16 = 0x30;
/// The TSS a double fault switches to (through a task gate), with a stack of its own.
pub const DF_TSS_SEL: u16 = 0x38;
pub const GDT_ENTRIES: usize = 8;

/// A 32-bit task-state segment. The main one matters for `ss0`/`esp0` (the stack
/// taken on entry from ring 3), and receives the interrupted state when a double
/// fault switches tasks; the double-fault one is the state that task starts in.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Tss {
    pub link: u32,
    pub esp0: u32,
    pub ss0: u32,
    pub esp1: u32,
    pub ss1: u32,
    pub esp2: u32,
    pub ss2: u32,
    pub cr3: u32,
    pub eip: u32,
    pub eflags: u32,
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    pub ebx: u32,
    pub esp: u32,
    pub ebp: u32,
    pub esi: u32,
    pub edi: u32,
    pub es: u32,
    pub cs: u32,
    pub ss: u32,
    pub ds: u32,
    pub fs: u32,
    pub gs: u32,
    pub ldt: u32,
    pub trap: u16,
    pub iomap_base: u16,
}

impl Tss {
    pub const fn new() -> Self {
        Tss {
            link: 0,
            esp0: 0,
            ss0: KERNEL_DS as u32,
            esp1: 0,
            ss1: 0,
            esp2: 0,
            ss2: 0,
            cr3: 0,
            eip: 0,
            eflags: 0,
            eax: 0,
            ecx: 0,
            edx: 0,
            ebx: 0,
            esp: 0,
            ebp: 0,
            esi: 0,
            edi: 0,
            es: 0,
            cs: 0,
            ss: 0,
            ds: 0,
            fs: 0,
            gs: 0,
            ldt: 0,
            trap: 0,
            iomap_base: 104,
        }
    }

    /// The state a double-fault task starts in: `entry` on `stack`, kernel segments,
    /// interrupts off, the given pagetables.
    pub fn double_fault_task(entry: u32, stack: u32, cr3: u32) -> Self {
        Tss {
            cr3,
            eip: entry,
            eflags: 0x2,
            esp: stack,
            es: KERNEL_DS as u32,
            cs: KERNEL_CS as u32,
            ss: KERNEL_DS as u32,
            ds: KERNEL_DS as u32,
            fs: KERNEL_DS as u32,
            gs: PERCPU_SEL as u32,
            ..Tss::new()
        }
    }
}

const fn descriptor(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    (limit as u64 & 0xffff)
        | ((base as u64 & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((limit as u64 >> 16) & 0xf) << 48)
        | ((flags as u64 & 0xf) << 52)
        | (((base as u64 >> 24) & 0xff) << 56)
}

/// The GDT of a CPU whose TSSs and per-CPU block are at these addresses.
pub fn build(tss: u32, df_tss: u32, percpu: u32) -> [u64; GDT_ENTRIES] {
    [
        0,
        descriptor(0, 0xfffff, 0x9a, 0xc), // kernel code
        descriptor(0, 0xfffff, 0x92, 0xc), // kernel data
        descriptor(0, 0xfffff, 0xfa, 0xc), // user code, DPL 3
        descriptor(0, 0xfffff, 0xf2, 0xc), // user data, DPL 3
        descriptor(tss, 103, 0x89, 0),     // 32-bit TSS, available
        descriptor(percpu, 0xfffff, 0x92, 0xc),
        descriptor(df_tss, 103, 0x89, 0), // the double-fault task
    ]
}

/// Loads a GDT and reloads every segment register, including TR.
///
/// # Safety
/// `gdt` must stay alive and unchanged (but for the TSS busy bit) for as long as
/// this CPU runs, and hold the descriptors [`build`] makes.
pub unsafe fn load(gdt: *const [u64; GDT_ENTRIES]) {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u32,
    }
    let ptr = Pointer { limit: (GDT_ENTRIES * 8 - 1) as u16, base: gdt as u32 };
    // SAFETY: the caller guarantees the GDT; the selectors below index it.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [2f]",
            "push {tmp}",
            "retf",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "mov fs, {ds:x}",
            "mov gs, {gs:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u32,
            tmp = out(reg) _,
            ds = in(reg) KERNEL_DS as u32,
            gs = in(reg) PERCPU_SEL as u32,
            tss = in(reg) TSS_SEL as u32,
        );
    }
}

//! Per-CPU data, found through `%gs`.
//!
//! Each CPU owns one [`PerCpu`]; its GDT holds a segment whose base is that block,
//! loaded into `%gs` whenever the kernel runs, so `gs:[0]` is the block's address and
//! `gs:[4]` the CPU's index. Fields another CPU may touch are atomics; the rest are
//! only ever used by their own CPU, with interrupts off where an interrupt handler
//! could use them too.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use shared::abi::{FaultReport, HypercallBlock};
use shared::boot::{COUNTERS_GPA, MAX_VCPUS};
use shared::counters::{Counter, PerCpuCounters};

use crate::arch::cpu;
use crate::arch::gdt::{self, Tss, GDT_ENTRIES};
use crate::mm::layout::phys_to_virt;

/// Bytes of console text a CPU buffers before it must flush.
pub const LINE_LEN: usize = 160;

/// The double-fault task's stack.
pub const DF_STACK_SIZE: usize = 4096;

#[repr(C, align(16))]
pub struct DfStack(pub [u8; DF_STACK_SIZE]);

pub struct LineBuf {
    pub len: usize,
    pub buf: [u8; LINE_LEN],
}

#[repr(C, align(64))]
pub struct PerCpu {
    /// This block's own address (`gs:[0]`).
    self_ptr: UnsafeCell<u32>,
    /// The CPU's index (`gs:[4]`), equal to its APIC ID.
    cpu: UnsafeCell<u32>,
    pub online: AtomicBool,
    /// This CPU's hypercall request block.
    pub hypercall: UnsafeCell<HypercallBlock>,
    /// The console line being assembled.
    pub line: UnsafeCell<LineBuf>,
    /// The report sent to the host on a fatal fault.
    pub fault: UnsafeCell<FaultReport>,
    pub gdt: UnsafeCell<[u64; GDT_ENTRIES]>,
    pub tss: UnsafeCell<Tss>,
    /// The task a double fault switches to, and its stack.
    pub df_tss: UnsafeCell<Tss>,
    pub df_stack: UnsafeCell<DfStack>,
    /// Kernel stack pointer saved while this CPU runs a ring-3 program.
    pub user_return_sp: UnsafeCell<u32>,
    /// IPIs received by the ping-pong benchmark.
    pub pings: AtomicU32,
    /// Timer interrupts taken.
    pub ticks: AtomicU32,
    /// Nesting depth of fatal-fault handling (a fault while reporting one):
    /// [`enter_fatal`].
    fault_depth: UnsafeCell<u32>,
    /// The task running here (null until the scheduler starts). Written by
    /// this CPU under its run-queue lock; other CPUs read it under that lock.
    current: AtomicPtr<crate::task::Task>,
    /// Preemption is off while this is non-zero (spinlocks, atomic kmaps).
    pub preempt_count: UnsafeCell<u32>,
    /// The timer asks for a reschedule at the next preemption point.
    pub need_resched: AtomicBool,
    /// Set while `pv::pin` runs here: a vm_unmap_aliases meanwhile (the
    /// strategy's, or host-trap's fixup inside the pin's hypercall) is the
    /// pin's alias work, counted inside its cycles.
    pub in_pin: AtomicBool,
    /// The frame of the last alias fixup inside the running pin (u64::MAX:
    /// none yet): a second fixup for it means the purge missed the alias.
    pub pin_fixup_pfn: AtomicU64,
    /// Atomic kmaps live on this CPU (the debug checker's "sleeping while
    /// atomic"): [`atomic_kmaps`], [`atomic_kmap_taken`], [`atomic_kmap_dropped`].
    atomic_kmaps: UnsafeCell<u32>,
    /// TLB flush requests acknowledged (see `tlb`).
    pub flush_acks: AtomicU32,
}

// SAFETY: the non-atomic fields are used only by the CPU that owns the block (see
// the module comment); the atomics are shared.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            self_ptr: UnsafeCell::new(0),
            cpu: UnsafeCell::new(0),
            online: AtomicBool::new(false),
            hypercall: UnsafeCell::new(HypercallBlock { op: 0, rc: 0, args: [0; 4], ret: 0 }),
            line: UnsafeCell::new(LineBuf { len: 0, buf: [0; LINE_LEN] }),
            fault: UnsafeCell::new(FaultReport::zeroed()),
            gdt: UnsafeCell::new([0; GDT_ENTRIES]),
            tss: UnsafeCell::new(Tss::new()),
            df_tss: UnsafeCell::new(Tss::new()),
            df_stack: UnsafeCell::new(DfStack([0; DF_STACK_SIZE])),
            user_return_sp: UnsafeCell::new(0),
            pings: AtomicU32::new(0),
            ticks: AtomicU32::new(0),
            fault_depth: UnsafeCell::new(0),
            current: AtomicPtr::new(core::ptr::null_mut()),
            preempt_count: UnsafeCell::new(0),
            need_resched: AtomicBool::new(false),
            in_pin: AtomicBool::new(false),
            pin_fixup_pfn: AtomicU64::new(u64::MAX),
            atomic_kmaps: UnsafeCell::new(0),
            flush_acks: AtomicU32::new(0),
        }
    }

    pub fn cpu(&self) -> u32 {
        // SAFETY: written once before the CPU uses its block.
        unsafe { *self.cpu.get() }
    }
}

/// Offset of `tss.esp0` in [`PerCpu`], for the assembly that enters ring 3.
pub const TSS_ESP0_OFFSET: usize = core::mem::offset_of!(PerCpu, tss) + 4;

static PERCPU: [PerCpu; MAX_VCPUS] = [const { PerCpu::new() }; MAX_VCPUS];

/// Sets up this CPU's GDT, TSS and `%gs`. First thing every CPU does.
pub fn init_this_cpu(cpu: u32) {
    let pc = &PERCPU[cpu as usize];
    let base = pc as *const PerCpu as u32;
    // SAFETY: this CPU owns this block and nothing else uses it yet.
    unsafe {
        *pc.self_ptr.get() = base;
        *pc.cpu.get() = cpu;
        let df_stack_top = pc.df_stack.get() as u32 + DF_STACK_SIZE as u32;
        *pc.df_tss.get() =
            Tss::double_fault_task(crate::arch::trap::double_fault_entry(), df_stack_top, cpu::read_cr3());
        *pc.gdt.get() = gdt::build(pc.tss.get() as u32, pc.df_tss.get() as u32, base);
        gdt::load(pc.gdt.get());
    }
}

/// The current CPU's block.
#[inline]
pub fn this_cpu() -> &'static PerCpu {
    let p: u32;
    // SAFETY: %gs is the per-CPU segment whenever the kernel runs (set by
    // init_this_cpu and reloaded by every trap entry).
    unsafe { asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags)) };
    // SAFETY: gs:[0] is the address of a PERCPU element.
    unsafe { &*(p as *const PerCpu) }
}

/// The current CPU's index.
#[inline]
pub fn cpu_id() -> u32 {
    let c: u32;
    // SAFETY: as in this_cpu.
    unsafe { asm!("mov {}, gs:[4]", out(reg) c, options(nostack, readonly, preserves_flags)) };
    c
}

/// Another CPU's block.
pub fn get(cpu: u32) -> &'static PerCpu {
    &PERCPU[cpu as usize]
}

/// The counters of a CPU, in the block the host reads.
pub fn counters(cpu: u32) -> *mut PerCpuCounters {
    let base = phys_to_virt(COUNTERS_GPA) as *mut PerCpuCounters;
    // SAFETY: the counters block holds MAX_VCPUS entries; `cpu` is below that.
    unsafe { base.add(cpu as usize) }
}

/// Adds `n` to one of this CPU's counters.
#[inline]
pub fn count(c: Counter, n: u64) {
    let was_on = cpu::irq_save();
    let p = counters(cpu_id());
    // SAFETY: only this CPU writes its counters, and interrupts are off, so the
    // 64-bit read-modify-write is not interleaved with an interrupt handler's.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*p).v[c as usize]);
        slot.write_volatile(slot.read_volatile() + n);
    }
    cpu::irq_restore(was_on);
}

/// One of this CPU's counters.
pub fn read(c: Counter) -> u64 {
    let was_on = cpu::irq_save();
    // SAFETY: this CPU's own counters, which only this CPU writes; with
    // interrupts off no count of an interrupt handler tears the 64-bit read.
    let v = unsafe { (*counters(cpu_id())).get(c) };
    cpu::irq_restore(was_on);
    v
}

/// Points the double-fault task at the pagetables this CPU now runs on (they must
/// map the kernel); called after every switch to the kernel's pagetables.
pub fn set_double_fault_cr3(cr3: u32) {
    // SAFETY: this CPU's own TSS; it is only read by the CPU on a double fault.
    unsafe { (*this_cpu().df_tss.get()).cr3 = cr3 };
}

/// Marks this CPU online.
pub fn set_online() {
    this_cpu().online.store(true, Ordering::Release);
}

// Fields that preemptible code reaches in one instruction through %gs. A task
// may be preempted and moved to another CPU between any two instructions while
// preemption is on; finding the block (`this_cpu()`) and then using it would
// then touch the CPU it left. One gs-relative instruction is never split.
const PREEMPT_COUNT_OFFSET: usize = core::mem::offset_of!(PerCpu, preempt_count);
const CURRENT_OFFSET: usize = core::mem::offset_of!(PerCpu, current);
const ATOMIC_KMAPS_OFFSET: usize = core::mem::offset_of!(PerCpu, atomic_kmaps);
const FAULT_DEPTH_OFFSET: usize = core::mem::offset_of!(PerCpu, fault_depth);

/// One gs-relative instruction on a `u32` field of this CPU's block: `inc`,
/// `dec`, or a read (the field's offset a constant).
macro_rules! this_cpu_u32 {
    (inc $off:expr) => {
        // SAFETY: one increment of this CPU's own field (see above); an
        // interrupt handler that changes it restores it before returning.
        unsafe { asm!("inc dword ptr gs:[{off}]", off = const $off, options(nostack)) }
    };
    (dec $off:expr) => {
        // SAFETY: as for inc.
        unsafe { asm!("dec dword ptr gs:[{off}]", off = const $off, options(nostack)) }
    };
    (read $off:expr) => {{
        let v: u32;
        // SAFETY: one read of this CPU's own field.
        unsafe { asm!("mov {}, gs:[{off}]", out(reg) v, off = const $off, options(nostack, readonly, preserves_flags)) };
        v
    }};
}

/// Disables preemption on this CPU (nests).
#[inline]
pub fn preempt_disable() {
    this_cpu_u32!(inc PREEMPT_COUNT_OFFSET);
}

/// Re-enables preemption (the tick reschedules at its next preemption point).
#[inline]
pub fn preempt_enable() {
    debug_assert!(preempt_count() > 0);
    // Preemption is off until this instruction.
    this_cpu_u32!(dec PREEMPT_COUNT_OFFSET);
}

/// This CPU's preemption count.
#[inline]
pub fn preempt_count() -> u32 {
    this_cpu_u32!(read PREEMPT_COUNT_OFFSET)
}

/// The atomic kmaps live on this CPU.
#[inline]
pub fn atomic_kmaps() -> u32 {
    this_cpu_u32!(read ATOMIC_KMAPS_OFFSET)
}

/// One more atomic kmap on this CPU (preemption is off while it lives).
#[inline]
pub fn atomic_kmap_taken() {
    this_cpu_u32!(inc ATOMIC_KMAPS_OFFSET);
}

/// One atomic kmap fewer on this CPU.
#[inline]
pub fn atomic_kmap_dropped() {
    this_cpu_u32!(dec ATOMIC_KMAPS_OFFSET);
}

/// Enters fatal-fault handling on this CPU; returns whether it is the first
/// level (a fault while reporting a fault gets no second report).
#[inline]
pub fn enter_fatal() -> bool {
    this_cpu_u32!(inc FAULT_DEPTH_OFFSET);
    this_cpu_u32!(read FAULT_DEPTH_OFFSET) == 1
}

/// Makes `t` this CPU's running task (under this CPU's run-queue lock, or
/// before the scheduler starts).
#[inline]
pub fn set_current(t: *mut crate::task::Task) {
    this_cpu().current.store(t, Ordering::Relaxed);
}

/// The task another CPU runs (read under that CPU's run-queue lock, which its
/// changes are made under).
pub fn current_of(cpu: u32) -> *mut crate::task::Task {
    get(cpu).current.load(Ordering::Relaxed)
}

/// Points this CPU's TSS at the kernel stack ring 3 traps onto.
#[inline]
pub fn set_kernel_stack(esp0: u32) {
    // SAFETY: one write of this CPU's TSS.esp0, which the CPU reads only at a
    // trap from ring 3 (none can come while the kernel runs here).
    unsafe { asm!("mov gs:[{off}], {}", in(reg) esp0, off = const TSS_ESP0_OFFSET, options(nostack, preserves_flags)) };
}

/// The task running on this CPU (null before the scheduler starts). Read in one
/// instruction, so it is the caller's own task even if it moves right after.
#[inline]
pub fn current_task() -> *mut crate::task::Task {
    let t: *mut crate::task::Task;
    // SAFETY: one read of this CPU's current pointer.
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) t, off = const CURRENT_OFFSET, options(nostack, readonly, preserves_flags))
    };
    t
}

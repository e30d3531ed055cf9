//! The IDT, the 256 entry stubs, the trap frame, and the dispatch of every vector.
//!
//! Each stub pushes a zero error code where the CPU pushes none, then its vector,
//! and jumps to `trap_common`, which saves the general and segment registers, loads
//! the kernel's segments (the per-CPU one into `%gs`), and calls [`trap_dispatch`]
//! with the frame. `trap_return` restores the frame and `iret`s; new tasks start
//! there too.

use core::arch::{asm, global_asm};

use shared::counters::Counter;

use crate::arch::apic;
use crate::arch::gdt::{DF_TSS_SEL, KERNEL_CS, KERNEL_DS, PERCPU_SEL};
use crate::percpu;

/// The LAPIC timer.
pub const TIMER_VECTOR: u8 = 0xef;
/// IPIs of the ping-pong benchmark.
pub const PING_VECTOR: u8 = 0xf0;
pub const PONG_VECTOR: u8 = 0xf1;
/// Wakes a CPU halted waiting for a spinlock, or idle with a task to run.
pub const KICK_VECTOR: u8 = 0xf2;
/// A TLB flush request from another CPU.
pub const FLUSH_VECTOR: u8 = 0xf3;
/// `int 0x80` from ring 3.
pub const SYSCALL_VECTOR: u8 = 0x80;
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// What the CPU and the entry stub leave on the stack, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub gs: u32,
    pub fs: u32,
    pub es: u32,
    pub ds: u32,
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    pub esp_pusha: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    pub vector: u32,
    pub error: u32,
    pub eip: u32,
    pub cs: u32,
    pub eflags: u32,
    /// Only present when the trap came from ring 3.
    pub user_esp: u32,
    pub user_ss: u32,
}

impl TrapFrame {
    pub fn is_from_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// The stack pointer at the time of the trap.
    pub fn sp(&self) -> u32 {
        if self.is_from_user() {
            self.user_esp
        } else {
            core::ptr::addr_of!(self.user_esp) as u32
        }
    }
}

global_asm!(
    r#"
    .section .text
    .align 16
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .align 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushl $0
    .endif
    pushl $vec
    jmp trap_common
    .set vec, vec + 1
    .endr

trap_common:
    cld
    pushal
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    movl ${kds}, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %fs
    movl ${pcpu}, %eax
    movl %eax, %gs
    pushl %esp
    call {dispatch}
    addl $4, %esp
    .global trap_return
trap_return:
    popl %gs
    popl %fs
    popl %es
    popl %ds
    popal
    addl $8, %esp
    iretl
    "#,
    kds = const KERNEL_DS as u32,
    pcpu = const PERCPU_SEL as u32,
    dispatch = sym trap_dispatch,
    options(att_syntax)
);

global_asm!(
    r#"
    .section .text
    .global double_fault_task
# Entered by a task switch through the IDT's task gate: on a fresh stack, with the
# interrupted state saved in the main TSS. The CPU pushed the error code.
double_fault_task:
    cli
    call {handler}
1:  hlt
    jmp 1b
    "#,
    handler = sym double_fault,
    options(att_syntax)
);

extern "C" {
    static trap_stubs: u8;
    static double_fault_task: u8;
}

/// Where the double-fault task starts.
pub fn double_fault_entry() -> u32 {
    core::ptr::addr_of!(double_fault_task) as u32
}

/// A double fault (usually: the kernel stack is gone, so no trap frame could be
/// pushed). Reports the state the main TSS saved at the task switch.
extern "C" fn double_fault() -> ! {
    let pc = percpu::this_cpu();
    // SAFETY: the CPU saved the interrupted state into this CPU's main TSS.
    let t = unsafe { *pc.tss.get() };
    let frame = TrapFrame {
        gs: t.gs,
        fs: t.fs,
        es: t.es,
        ds: t.ds,
        edi: t.edi,
        esi: t.esi,
        ebp: t.ebp,
        esp_pusha: t.esp,
        ebx: t.ebx,
        edx: t.edx,
        ecx: t.ecx,
        eax: t.eax,
        vector: 8,
        error: 0,
        eip: t.eip,
        cs: t.cs,
        eflags: t.eflags,
        user_esp: t.esp,
        user_ss: t.ss,
    };
    let (eip, esp) = (t.eip, t.esp);
    crate::fault::fatal_at(&frame, esp, format_args!("at eip={eip:#x} esp={esp:#x} (kernel stack overflow?)"))
}

#[repr(C, align(8))]
struct Idt([u64; 256]);

static mut IDT: Idt = Idt([0; 256]);

fn gate(handler: u32, dpl: u8) -> u64 {
    let attr: u64 = 0x8e | ((dpl as u64 & 3) << 5); // present 32-bit interrupt gate
    (handler as u64 & 0xffff) | ((KERNEL_CS as u64) << 16) | (attr << 40) | (((handler as u64) >> 16) << 48)
}

/// A task gate: the CPU switches to the TSS `sel` names.
fn task_gate(sel: u16) -> u64 {
    ((sel as u64) << 16) | (0x85u64 << 40)
}

/// Fills the IDT (once, on the boot CPU).
pub fn init_idt() {
    // SAFETY: taking the stubs' address only.
    let base = core::ptr::addr_of!(trap_stubs) as u32;
    for v in 0..256u32 {
        let dpl = if v == SYSCALL_VECTOR as u32 { 3 } else { 0 };
        let entry = if v == 8 { task_gate(DF_TSS_SEL) } else { gate(base + v * 16, dpl) };
        // SAFETY: single-threaded boot; no CPU has loaded the IDT yet.
        unsafe { (*core::ptr::addr_of_mut!(IDT)).0[v as usize] = entry };
    }
}

/// Loads the IDT on this CPU.
pub fn load_idt() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u32,
    }
    let ptr = Pointer { limit: 256 * 8 - 1, base: core::ptr::addr_of!(IDT) as u32 };
    // SAFETY: the IDT is a static filled by init_idt.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(nostack, preserves_flags)) };
}

/// Loads an empty IDT: the next exception is a triple fault. (For the test that
/// the host reports one.)
pub fn load_empty_idt() {
    let ptr: [u16; 3] = [0, 0, 0];
    // SAFETY: deliberately breaks exception delivery; the caller wants a triple fault.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(nostack, preserves_flags)) };
}

/// Every trap lands here.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    match vector {
        0..=31 => {
            percpu::count(Counter::Exceptions, 1);
            crate::fault::exception(frame);
        }
        v if v == SYSCALL_VECTOR as u32 && frame.is_from_user() => {
            percpu::count(Counter::Syscalls, 1);
            crate::syscall::dispatch(frame);
        }
        v if v == TIMER_VECTOR as u32 => {
            percpu::count(Counter::TimerTicks, 1);
            apic::eoi();
            crate::time::tick();
            crate::sched::tick();
        }
        v if v == FLUSH_VECTOR as u32 => {
            percpu::count(Counter::IpisReceived, 1);
            apic::eoi();
            crate::mm::tlb::ipi();
        }
        v if v == PING_VECTOR as u32 || v == PONG_VECTOR as u32 => {
            percpu::count(Counter::IpisReceived, 1);
            apic::eoi();
            crate::smp::ipi(v as u8);
        }
        v if v == KICK_VECTOR as u32 => {
            percpu::count(Counter::IpisReceived, 1);
            apic::eoi();
        }
        v if v == SPURIOUS_VECTOR as u32 => {}
        _ => crate::fault::fatal(frame, format_args!("unexpected interrupt, vector {vector:#x}")),
    }
    if crate::sched::started() {
        if frame.is_from_user() {
            crate::sched::check_return_to_user();
        }
        crate::sched::preempt_point(frame.is_from_user(), frame.eflags & crate::arch::cpu::EFLAGS_IF != 0);
    }
}

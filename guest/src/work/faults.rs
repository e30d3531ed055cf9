//! Workloads that fail on purpose, to show the host's reports.

use crate::arch::{cpu, trap};
use crate::percpu;

/// A kernel-mode read of an unmapped address.
pub fn page_fault() {
    if percpu::cpu_id() == 0 {
        // SAFETY: deliberately faults: nothing is mapped below 4 MiB in the kernel's
        // address space. The host reports the fault and stops the guest.
        let v = unsafe { core::ptr::read_volatile(0x0000_0010 as *const u32) };
        crate::kprintln!("unreachable: read {v}");
    }
}

/// An exception with an empty IDT: a triple fault.
pub fn triple_fault() {
    if percpu::cpu_id() == 0 {
        cpu::cli();
        trap::load_empty_idt();
        // SAFETY: deliberately raises #BP with no IDT, which escalates to a triple
        // fault (a shutdown the host must report).
        unsafe { core::arch::asm!("int3") };
    }
}

/// Never finishes: interrupts off, spinning.
pub fn hang() {
    if percpu::cpu_id() == 0 {
        cpu::cli();
        loop {
            cpu::pause();
        }
    }
}

/// Points the stack at an unmapped page and takes an exception: the exception
/// cannot be delivered (#PF, then #DF), and the double-fault task reports it.
pub fn stack_fault() {
    if percpu::cpu_id() == 0 {
        // SAFETY: deliberately destroys the stack; the double-fault task takes over
        // and never returns here.
        unsafe { core::arch::asm!("mov esp, 0x1000", "int3", options(noreturn)) };
    }
}

//! Running a ring-3 program and coming back.
//!
//! [`run`] saves the kernel's callee-saved registers and stack pointer, points the
//! TSS's `esp0` just below them, and `iret`s to ring 3. The program comes back by
//! `int 0x80` exit (or by faulting): the handler calls [`exit_current`], which
//! restores the saved stack, so that `run` returns the exit code.

use core::arch::global_asm;

use crate::arch::gdt::{USER_CS, USER_DS};
use crate::arch::trap::TrapFrame;
use crate::percpu::{self, TSS_ESP0_OFFSET};

global_asm!(
    r#"
    .section .text
    .global enter_user_asm
# i32 enter_user_asm(u32 eip, u32 esp, u32 *saved_sp)
enter_user_asm:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    pushfl
    movl 32(%esp), %eax
    movl %esp, (%eax)
    movl %esp, %gs:{esp0}
    movl 24(%esp), %ecx
    movl 28(%esp), %edx
    pushl ${uds}
    pushl %edx
    pushl $0x202
    pushl ${ucs}
    pushl %ecx
    movl ${uds}, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %fs
    movl %eax, %gs
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %edi, %edi
    xorl %ebp, %ebp
    iretl

    .global leave_user_asm
# noreturn leave_user_asm(u32 saved_sp, i32 code)
leave_user_asm:
    movl 8(%esp), %eax
    movl 4(%esp), %esp
    popfl
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret
    "#,
    esp0 = const TSS_ESP0_OFFSET,
    uds = const USER_DS as u32,
    ucs = const USER_CS as u32,
    options(att_syntax)
);

extern "C" {
    fn enter_user_asm(eip: u32, esp: u32, saved_sp: *mut u32) -> i32;
    fn leave_user_asm(saved_sp: u32, code: i32) -> !;
}

/// Exit code of a program killed by a fault: `-(128 + vector)`.
pub const fn killed_by(vector: u32) -> i32 {
    -(128 + vector as i32)
}

/// Runs ring-3 code at `eip` with stack `esp` in the current address space until it
/// exits; returns its exit code.
pub fn run(eip: u32, esp: u32) -> i32 {
    let pc = percpu::this_cpu();
    // SAFETY: the saved stack pointer is this CPU's; the user mappings are the
    // caller's business (a bad one makes the program fault and come back).
    unsafe { enter_user_asm(eip, esp, pc.user_return_sp.get()) }
}

/// Ends the current ring-3 program with `code`; `run` returns it.
pub fn exit_current(code: i32) -> ! {
    let pc = percpu::this_cpu();
    // SAFETY: `run` saved this stack pointer and its frame is still live below us.
    unsafe { leave_user_asm(*pc.user_return_sp.get(), code) }
}

/// A ring-3 program took an exception: kill it.
pub fn kill_current(frame: &TrapFrame) -> ! {
    crate::kprintln!(
        "user program killed: {} at eip={:#x} cr2={:#x}",
        shared::abi::exception_name(frame.vector),
        frame.eip,
        crate::arch::cpu::read_cr2()
    );
    exit_current(killed_by(frame.vector))
}

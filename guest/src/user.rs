//! The ring-3 programs built into the kernel image.
//!
//! They live in the `.user` section, page aligned, and are written position
//! independent, so that the kernel can map their frames at [`USER_CODE_VA`] in any
//! address space.

use core::arch::global_asm;

use crate::mm::layout::{virt_to_phys, PAGE_SIZE};
use crate::mm::pgtable::AddressSpace;
use crate::syscall::{SYS_EXIT, SYS_GETCPU, SYS_WRITE};

/// Where user code is mapped.
pub const USER_CODE_VA: u32 = 0x0040_0000;
/// The top of a user stack (its page ends here).
pub const USER_STACK_TOP: u32 = 0xbfff_f000;

global_asm!(
    r#"
    .section .user.text, "ax"
    .global user_hello
# Writes a greeting, then exits with (cpu + 42).
user_hello:
    call 1f
1:  popl %ecx
    addl $(2f - 1b), %ecx
    movl ${write}, %eax
    movl $(3f - 2f), %edx
    int $0x80
    movl ${getcpu}, %eax
    int $0x80
    leal 42(%eax), %ebx
    movl ${exit}, %eax
    int $0x80
    ud2
2:  .ascii "hello from ring 3\n"
3:

    .global user_read_kernel
# Reads kernel memory: must be killed by a page fault.
user_read_kernel:
    movl 0xC0100000, %eax
    movl ${exit}, %eax
    xorl %ebx, %ebx
    int $0x80
    ud2
    "#,
    write = const SYS_WRITE,
    getcpu = const SYS_GETCPU,
    exit = const SYS_EXIT,
    options(att_syntax)
);

extern "C" {
    static __user_start: u8;
    static __user_end: u8;
    pub static user_hello: u8;
    pub static user_read_kernel: u8;
}

/// Maps the user code pages into `space` at [`USER_CODE_VA`], read-only.
pub fn map_code(space: &AddressSpace) -> Option<()> {
    let (start, end) = (core::ptr::addr_of!(__user_start) as u32, core::ptr::addr_of!(__user_end) as u32);
    let mut va = start;
    while va < end {
        space.map(USER_CODE_VA + (va - start), virt_to_phys(va), 0)?;
        va += PAGE_SIZE;
    }
    Some(())
}

/// The user address of a program's entry symbol.
pub fn entry(sym: *const u8) -> u32 {
    // SAFETY: only the symbol's address is taken.
    let start = core::ptr::addr_of!(__user_start) as u32;
    USER_CODE_VA + (sym as u32 - start)
}

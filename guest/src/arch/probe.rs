//! Reads and writes of kernel addresses that may fault: the page-fault handler
//! turns a fault at one of these instructions into a failed probe instead of an
//! oops (Linux's exception table, with two entries). The vmap self-tests use them
//! to show that an unmapped address faults on every CPU.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text
    .global probe_read_asm
# u32 probe_read_asm(const u32 *addr, u32 *out): 1 and *out = *addr, or 0 on a fault.
probe_read_asm:
    movl 4(%esp), %ecx
    .global probe_read_insn
probe_read_insn:
    movl (%ecx), %eax
    movl 8(%esp), %ecx
    movl %eax, (%ecx)
    movl $1, %eax
    ret

    .global probe_write_asm
# u32 probe_write_asm(u32 *addr, u32 value): 1 after *addr = value, or 0 on a fault.
probe_write_asm:
    movl 4(%esp), %ecx
    movl 8(%esp), %eax
    .global probe_write_insn
probe_write_insn:
    movl %eax, (%ecx)
    movl $1, %eax
    ret

    .global probe_fixup
probe_fixup:
    xorl %eax, %eax
    ret
    "#,
    options(att_syntax)
);

extern "C" {
    fn probe_read_asm(addr: *const u32, out: *mut u32) -> u32;
    fn probe_write_asm(addr: *mut u32, value: u32) -> u32;
    static probe_read_insn: u8;
    static probe_write_insn: u8;
    static probe_fixup: u8;
}

/// Reads the word at `va`, or `None` if that faults.
pub fn read(va: u32) -> Option<u32> {
    let mut out = 0;
    // SAFETY: a fault at the probed load is caught by `fixup`; nothing else in the
    // function touches memory but `out`, a live local.
    (unsafe { probe_read_asm(va as *const u32, &mut out) } != 0).then_some(out)
}

/// Writes `value` to the word at `va`; false if that faults.
pub fn write(va: u32, value: u32) -> bool {
    // SAFETY: as in `read`; the caller only probes addresses it may scribble on
    // (its own, just unmapped, vmap areas).
    unsafe { probe_write_asm(va as *mut u32, value) != 0 }
}

/// For the page-fault handler: if `eip` is a probing instruction, the address to
/// resume at (which returns "faulted" to the prober).
pub fn fixup(eip: u32) -> Option<u32> {
    let at = |s: &u8| s as *const u8 as u32;
    // SAFETY: only the symbols' addresses are taken.
    let (r, w, f) = unsafe { (at(&probe_read_insn), at(&probe_write_insn), at(&probe_fixup)) };
    (eip == r || eip == w).then_some(f)
}

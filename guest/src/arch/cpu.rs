//! Thin wrappers over privileged instructions.

use core::arch::asm;

#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc has no side effects; CR4.TSD is clear, so it works at any CPL.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

#[inline]
pub fn cpuid(leaf: u32, subleaf: u32) -> core::arch::x86::CpuidResult {
    core::arch::x86::__cpuid_count(leaf, subleaf)
}

#[inline]
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the callers pass MSRs this CPU implements (checked through CPUID).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// # Safety
/// Writing an MSR changes CPU state; the caller knows what this one does.
#[inline]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: delegated to the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// # Safety
/// Port I/O reaches devices and the VMM; the caller knows what the port does.
#[inline]
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: delegated to the caller.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, preserves_flags)) };
}

/// # Safety
/// As [`outb`].
#[inline]
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: delegated to the caller. No `nomem`: the VMM may read and write guest
    // memory during this exit, so the compiler must not cache memory across it.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, preserves_flags)) };
}

/// # Safety
/// As [`outb`].
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: delegated to the caller.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack, preserves_flags)) };
    v
}

#[inline]
pub fn read_cr2() -> u32 {
    let v: u32;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

#[inline]
pub fn read_cr3() -> u32 {
    let v: u32;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// # Safety
/// `pdpt` must be the physical address of a valid PDPT that maps the running kernel.
#[inline]
pub unsafe fn write_cr3(pdpt: u32) {
    // SAFETY: delegated to the caller.
    unsafe { asm!("mov cr3, {}", in(reg) pdpt, options(nostack, preserves_flags)) };
}

/// CR4's page-global-enable bit: translations of global entries survive CR3 loads.
pub const CR4_PGE: u32 = 1 << 7;

#[inline]
pub fn read_cr4() -> u32 {
    let v: u32;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Drops every translation, global ones too, by turning CR4.PGE off and on
/// again (`cr4` is the current CR4, with PGE on), on the PDPT at `private`
/// (physical `private_pa`, 32-byte aligned): a copy of the current one that no
/// other CPU loads. CR3 is `cr3` again at the end.
///
/// Each CR4 write makes the CPU reload the PDPTEs, and KVM checks their
/// reserved bits. QEMU's emulated SVM sets the accessed bit (and may set bit 6)
/// of a PDPTE as it walks, although both are reserved in PAE mode, so the
/// nested KVM would #GP. So before each write this clears bits 5 and 6 of the
/// four PDPTEs, which the kernel never sets: on real hardware they are already
/// clear. The PDPT is this CPU's own, so no other CPU's walk sets them again;
/// interrupts are off and the code is one cache line, so no walk of this CPU
/// comes between the clear and the write (the fetch hits the emulator's TLB).
///
/// # Safety
/// `private` must hold a copy of the PDPT in `cr3` (CR3 as it is), which no
/// other CPU loads; `cr4` must be CR4 as it is.
#[inline]
pub unsafe fn toggle_pge(private: *mut u64, private_pa: u32, cr3: u32, cr4: u32) {
    let was_on = irq_save();
    // SAFETY: the caller's contract: the private copy maps what CR3 maps, and
    // the entries' other bits are kept.
    unsafe {
        asm!(
            ".p2align 6",
            "mov cr3, {pa}",
            "and dword ptr [{p}], 0xffffff9f",
            "and dword ptr [{p} + 8], 0xffffff9f",
            "and dword ptr [{p} + 16], 0xffffff9f",
            "and dword ptr [{p} + 24], 0xffffff9f",
            "and {c}, {no_pge}",
            "mov cr4, {c}",
            "and dword ptr [{p}], 0xffffff9f",
            "and dword ptr [{p} + 8], 0xffffff9f",
            "and dword ptr [{p} + 16], 0xffffff9f",
            "and dword ptr [{p} + 24], 0xffffff9f",
            "or {c}, {pge}",
            "mov cr4, {c}",
            "mov cr3, {orig}",
            p = in(reg) private,
            pa = in(reg) private_pa,
            orig = in(reg) cr3,
            c = inout(reg) cr4 => _,
            pge = const CR4_PGE,
            no_pge = const !CR4_PGE,
            options(nostack),
        )
    };
    irq_restore(was_on);
}

/// CR0's write-protect bit: supervisor writes honour read-only pages.
pub const CR0_WP: u32 = 1 << 16;

#[inline]
pub fn read_cr0() -> u32 {
    let v: u32;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// # Safety
/// `v` must keep the kernel running: paging and protection stay on.
#[inline]
pub unsafe fn write_cr0(v: u32) {
    // SAFETY: delegated to the caller.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Flushes this CPU's TLB entry for one virtual address.
#[inline]
pub fn invlpg(va: u32) {
    // SAFETY: invalidating a TLB entry never breaks correctness.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

#[inline]
pub fn pause() {
    core::hint::spin_loop();
}

/// Interrupts on; returns at once.
#[inline]
pub fn sti() {
    // SAFETY: the IDT is loaded before anyone enables interrupts.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

#[inline]
pub fn cli() {
    // SAFETY: masking interrupts is always safe.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts and halts until the next one (atomically: no lost wakeup).
#[inline]
pub fn sti_hlt() {
    // SAFETY: `sti` takes effect after the next instruction, so an interrupt that is
    // already pending wakes the `hlt`.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}

#[inline]
pub fn eflags() -> u32 {
    let f: u32;
    // SAFETY: reads EFLAGS through the stack.
    unsafe { asm!("pushfd; pop {}", out(reg) f, options(nomem, preserves_flags)) };
    f
}

pub const EFLAGS_IF: u32 = 1 << 9;

/// Disables interrupts and returns whether they were on.
#[inline]
pub fn irq_save() -> bool {
    let on = eflags() & EFLAGS_IF != 0;
    cli();
    on
}

#[inline]
pub fn irq_restore(was_on: bool) {
    if was_on {
        sti();
    }
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        cli();
        // SAFETY: hlt with interrupts off parks the CPU.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

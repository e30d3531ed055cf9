//! The entry point: the multiboot header, `_start`, the boot pagetables, the path of
//! the application processors, and the real-mode trampoline used under bare QEMU.
//!
//! Every CPU enters `_start` in 32-bit protected mode with paging off, at physical
//! addresses. The boot CPU (initial APIC ID 0) builds a throwaway PAE pagetable that
//! maps the first GiB twice, at 0 and at `PAGE_OFFSET`, with 2 MiB pages; turns on
//! paging; and calls `rust_bsp_entry` at its link address. The other CPUs wait until
//! the boot CPU sets `AP_RELEASE`, then take the same tables and call
//! `rust_ap_entry` on the stack the boot CPU gave them. Rust code then switches to
//! the kernel's real pagetables.
//!
//! Each CPU turns paging on with a PDPT of its own that no CPU has walked before:
//! QEMU's TCG sets bit 5 (Accessed) in a PAE PDPTE when it walks it, and KVM, which
//! checks the PDPTEs when it emulates the CR0 write that enables paging, treats that
//! bit as reserved and injects #GP. (Seen QEMU-hosted, on the second CPU.)
//!
//! Under our VMM all CPUs start at `_start` at once. Under bare QEMU only the boot
//! CPU does; it wakes the others with INIT and SIPI into the trampoline, which
//! switches to protected mode and joins the same path.

use core::sync::atomic::AtomicU32;

use shared::boot::{AP_TRAMPOLINE_GPA, MAX_VCPUS};

/// Set by the boot CPU once the application processors may enter the kernel.
pub static AP_RELEASE: AtomicU32 = AtomicU32::new(0);
/// Top of each application processor's boot stack (virtual), by APIC ID.
pub static AP_STACK_TOPS: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];

/// The boot CPU's stack until it runs on a task's stack.
pub const BOOT_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
pub struct BootStack(pub [u8; BOOT_STACK_SIZE]);

#[no_mangle]
pub static mut BOOT_STACK: BootStack = BootStack([0; BOOT_STACK_SIZE]);

core::arch::global_asm!(
    r#"
    .section .multiboot, "a"
    .align 4
    .long 0x1BADB002              # multiboot v1 magic
    .long 0x00000003              # page-align modules, give us the memory map
    .long -(0x1BADB002 + 0x00000003)

    .section .boot.data, "aw"
    .align 4
boot_magic:     .long 0
boot_info_ptr:  .long 0

    .section .boot.bss, "aw", @nobits
    .align 4096
boot_pd:        .skip 4096        # 512 x 2 MiB: the first GiB
boot_pdpts:     .skip 32 * {max_cpus}

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl %eax, %edi               # boot magic
    movl %ebx, %esi               # boot information (physical)
    movl $1, %eax
    cpuid
    shrl $24, %ebx                # initial APIC ID
    testl %ebx, %ebx
    jnz ap_boot

    movl %edi, boot_magic
    movl %esi, boot_info_ptr

    # Zero the boot pagetables and the kernel's .bss (at its physical address).
    xorl %eax, %eax
    movl $__boot_bss_start, %edi
    movl $__boot_bss_end, %ecx
    subl %edi, %ecx
    rep stosb
    movl $(__bss_start - 0xC0000000), %edi
    movl $(__bss_end - 0xC0000000), %ecx
    subl %edi, %ecx
    rep stosb

    # boot_pd: 512 PDEs, P|RW|PS, covering physical 0..1 GiB.
    movl $boot_pd, %edi
    movl $0x83, %eax
    movl $512, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    # One PDPT per CPU, slots 0 (identity) and 3 (PAGE_OFFSET) both boot_pd.
    movl $boot_pd, %eax
    orl $1, %eax
    movl $boot_pdpts, %edi
    movl ${max_cpus}, %ecx
1:  movl %eax, (%edi)
    movl %eax, 24(%edi)
    addl $32, %edi
    loop 1b

    movl $bsp_high, %ebp
    jmp enable_paging

ap_boot:                          # %ebx = APIC ID
    cmpl ${max_cpus}, %ebx
    jae 2f
1:  pause
    movl ({release} - 0xC0000000), %eax
    testl %eax, %eax
    jz 1b
    movl $ap_high, %ebp
    jmp enable_paging
2:  cli                           # an APIC ID the kernel cannot handle
    hlt
    jmp 2b

enable_paging:                    # %ebx = APIC ID; continues at %ebp (virtual)
    movl %cr4, %eax
    orl $0xa0, %eax               # CR4.PAE | CR4.PGE (global entries: native runs only)
    movl %eax, %cr4
    movl %ebx, %eax
    shll $5, %eax
    addl $boot_pdpts, %eax
    movl %eax, %cr3
    movl %cr0, %eax
    orl $0x80010000, %eax         # CR0.PG | CR0.WP
    movl %eax, %cr0
    jmp *%ebp

    # The bare-QEMU trampoline: copied to AP_TRAMPOLINE_GPA, entered in real mode
    # by SIPI. Position dependent only through the .equ below.
    .equ TRAMP, {tramp}
    .global ap_trampoline_start
    .global ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (TRAMP + tramp_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMP + tramp32 - ap_trampoline_start)
    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    movl $ap_boot, %eax
    jmp *%eax
    .align 8
tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF      # flat 32-bit code
    .quad 0x00CF92000000FFFF      # flat data
tramp_gdtr:
    .word 23
    .long TRAMP + tramp_gdt - ap_trampoline_start
ap_trampoline_end:

    .section .text
bsp_high:
    movl ${stack} + {stack_size}, %esp
    xorl %ebp, %ebp
    pushl (boot_info_ptr)
    pushl (boot_magic)
    call rust_bsp_entry
    ud2

ap_high:
    movl {tops}(,%ebx,4), %esp
    xorl %ebp, %ebp
    pushl %ebx
    call rust_ap_entry
    ud2
    "#,
    release = sym AP_RELEASE,
    tops = sym AP_STACK_TOPS,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    tramp = const AP_TRAMPOLINE_GPA,
    max_cpus = const MAX_VCPUS,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// The trampoline's code, as linked (at its physical load address).
pub fn trampoline_code() -> (u32, usize) {
    let (start, end) = (core::ptr::addr_of!(ap_trampoline_start) as u32, core::ptr::addr_of!(ap_trampoline_end) as u32);
    (start, (end - start) as usize)
}

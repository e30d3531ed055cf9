//! The kernel's virtual layout (Linux i386 with PAE, scaled):
//!
//! ```text
//! 0x00000000 .. 0xC0000000   user space
//! 0xC0000000 .. +lowmem      lowmem, directly mapped (at most 896 MiB)
//! VMALLOC_START .. END       vmalloc / vmap (after an 8 MiB gap above 896 MiB)
//! PKMAP_BASE .. +8 MiB       the persistent kmap window (LAST_PKMAP <= 2048)
//! FIXMAP_START .. 4 GiB      fixmap: the xAPIC page, per-CPU atomic kmap slots
//! ```

use shared::boot::MAX_VCPUS;

pub const PAGE_SIZE: u32 = 4096;
pub const PAGE_OFFSET: u32 = 0xc000_0000;
/// The most RAM that can be directly mapped.
pub const MAX_LOWMEM: u64 = 896 << 20;
pub const VMALLOC_START: u32 = PAGE_OFFSET + MAX_LOWMEM as u32 + (8 << 20);
pub const PKMAP_BASE: u32 = 0xff40_0000;
/// The largest persistent kmap window, in pages.
pub const PKMAP_MAX: u32 = 2048;
/// Two guard pages between vmalloc space and the kmap window.
pub const VMALLOC_END: u32 = PKMAP_BASE - 2 * PAGE_SIZE;
pub const FIXMAP_START: u32 = PKMAP_BASE + PKMAP_MAX * PAGE_SIZE;
/// The last page of the address space is never mapped.
pub const FIXMAP_END: u32 = 0xffff_f000;

/// Atomic kmap slots each CPU has in the fixmap.
pub const KMAP_SLOTS_PER_CPU: u32 = 64;

/// Fixed virtual pages.
#[derive(Clone, Copy, Debug)]
pub enum FixSlot {
    /// The xAPIC's registers (bare metal without x2APIC).
    Apic,
    /// Atomic kmap slot `idx` of CPU `cpu`.
    Kmap { cpu: u32, idx: u32 },
}

const FIX_KMAP_BEGIN: u32 = 16;

/// The virtual address of a fixmap slot.
pub const fn fix_to_virt(slot: FixSlot) -> u32 {
    let index = match slot {
        FixSlot::Apic => 0,
        FixSlot::Kmap { cpu, idx } => FIX_KMAP_BEGIN + cpu * KMAP_SLOTS_PER_CPU + idx,
    };
    FIXMAP_START + index * PAGE_SIZE
}

const _: () =
    assert!(fix_to_virt(FixSlot::Kmap { cpu: MAX_VCPUS as u32 - 1, idx: KMAP_SLOTS_PER_CPU - 1 }) < FIXMAP_END);
const _: () = assert!(VMALLOC_START < VMALLOC_END);

/// The kernel virtual address of a lowmem physical address.
#[inline]
pub const fn phys_to_virt(pa: u64) -> u32 {
    pa as u32 + PAGE_OFFSET
}

/// The physical address of a lowmem (directly mapped) virtual address.
#[inline]
pub const fn virt_to_phys(va: u32) -> u64 {
    (va - PAGE_OFFSET) as u64
}

/// Rounds up to a page boundary.
pub const fn page_align_up(x: u64) -> u64 {
    (x + PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1)
}

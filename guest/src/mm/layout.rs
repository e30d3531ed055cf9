//! The kernel's virtual layout (Linux i386 with PAE, scaled):
//!
//! ```text
//! 0x00000000 .. 0xC0000000   user space
//! 0xC0000000 .. +lowmem      lowmem, directly mapped (at most 896 MiB)
//! vmalloc_start() .. END     vmalloc / vmap (after a gap of 8 to 16 MiB above
//!                            lowmem: the less lowmem, the more vmalloc space)
//! pkmap_base() .. FIXMAP     the persistent kmap window: its three series
//!                            (pte-highmem's), `--last-pkmap` entries each
//! FIXMAP_START .. 4 GiB      fixmap: the xAPIC page, per-CPU atomic kmap slots
//! ```
//!
//! As in pte-highmem-5 (`PKMAP_SIZE = LAST_PKMAP * KM_NR_SERIES`), the window
//! is as large as its series need and ends below the fixmap; the vmalloc space
//! ends two guard pages below it, so it grows as the pool shrinks.

use core::sync::atomic::{AtomicU32, Ordering};

use shared::boot::MAX_VCPUS;

pub const PAGE_SIZE: u32 = 4096;
pub const PAGE_OFFSET: u32 = 0xc000_0000;
/// The most RAM that can be directly mapped.
pub const MAX_LOWMEM: u64 = 896 << 20;
/// Linux's VMALLOC_OFFSET: the least gap between lowmem and the vmalloc space,
/// and the space's alignment.
pub const VMALLOC_OFFSET: u32 = 8 << 20;

/// Where the vmalloc space starts above a lowmem of `lowmem_end` bytes: as
/// 2.6.28's i386 `VMALLOC_START`, at least VMALLOC_OFFSET above `high_memory`,
/// aligned to it. So a smaller lowmem (`vmalloc=` in Linux, `--lowmem` here,
/// or less RAM) buys a larger vmalloc space.
pub const fn vmalloc_start_for(lowmem_end: u64) -> u32 {
    let high_memory = PAGE_OFFSET as u64 + lowmem_end;
    ((high_memory + 2 * VMALLOC_OFFSET as u64 - 1) & !(VMALLOC_OFFSET as u64 - 1)) as u32
}

/// The lowest the vmalloc space starts (no lowmem at all).
pub const VMALLOC_START_MIN: u32 = vmalloc_start_for(0);
/// The highest it starts (896 MiB of lowmem).
pub const VMALLOC_START_MAX: u32 = vmalloc_start_for(MAX_LOWMEM);

static VMALLOC_START: AtomicU32 = AtomicU32::new(VMALLOC_START_MAX);

/// Places the vmalloc space above a lowmem of `lowmem_end` bytes (at boot,
/// before anything is mapped there).
pub fn set_lowmem_end(lowmem_end: u64) {
    VMALLOC_START.store(vmalloc_start_for(lowmem_end.min(MAX_LOWMEM)), Ordering::Relaxed);
}

/// The start of the vmalloc space.
pub fn vmalloc_start() -> u32 {
    VMALLOC_START.load(Ordering::Relaxed)
}
/// The most entries a persistent kmap series has (`--last-pkmap`).
pub const PKMAP_MAX: u32 = 2048;
/// The fewest (`--last-pkmap`'s lower bound).
pub const PKMAP_MIN: u32 = 128;
/// Series of the persistent kmap window (pte-highmem's KM_NR_SERIES).
pub const PKMAP_SERIES: u32 = 3;
pub const FIXMAP_START: u32 = 0xffc0_0000;
/// The lowest the kmap window starts (every series at its largest).
pub const PKMAP_BASE_MIN: u32 = FIXMAP_START - PKMAP_SERIES * PKMAP_MAX * PAGE_SIZE;
/// The highest the vmalloc space ends (every series at its smallest).
pub const VMALLOC_END_MAX: u32 = FIXMAP_START - PKMAP_SERIES * PKMAP_MIN * PAGE_SIZE - 2 * PAGE_SIZE;

/// Where the persistent kmap window starts: its series of `--last-pkmap`
/// entries each, just below the fixmap.
pub fn pkmap_base() -> u32 {
    let last = (crate::bootinfo::get().config.last_pkmap as u32).clamp(PKMAP_MIN, PKMAP_MAX);
    FIXMAP_START - PKMAP_SERIES * last * PAGE_SIZE
}

/// The end of the vmalloc space: two guard pages below the kmap window.
pub fn vmalloc_end() -> u32 {
    pkmap_base() - 2 * PAGE_SIZE
}
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
const _: () = assert!(VMALLOC_START_MAX == PAGE_OFFSET + MAX_LOWMEM as u32 + VMALLOC_OFFSET);
const _: () = assert!(VMALLOC_START_MAX < PKMAP_BASE_MIN);

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

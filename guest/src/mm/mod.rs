//! Memory management.

pub mod layout;
pub mod memblock;
pub mod pgtable;

use shared::boot::BootInfo;

use crate::kprintln;
use layout::{virt_to_phys, MAX_LOWMEM};

extern "C" {
    static __kernel_end: u8;
}

/// The end of lowmem: everything below this is directly mapped (as in Linux, the
/// end of RAM capped at [`MAX_LOWMEM`]; holes below it are mapped too).
pub fn lowmem_end(info: &BootInfo) -> u64 {
    let top = info.regions().iter().map(|r| r.end()).max().unwrap_or(0);
    top.min(MAX_LOWMEM)
}

/// Brings memory up: the boot allocator and the kernel pagetables.
pub fn init(info: &BootInfo) {
    // SAFETY: only the symbol's address is taken.
    let kernel_end = virt_to_phys(core::ptr::addr_of!(__kernel_end) as u32);
    let lowmem = lowmem_end(info);
    memblock::init(info, kernel_end, lowmem);
    pgtable::init_kernel(lowmem);
    kprintln!(
        "mm: {} MiB RAM, lowmem {} MiB, kernel image ends at {:#x}, pagetables {} KiB",
        info.total_ram() >> 20,
        lowmem >> 20,
        kernel_end,
        (memblock::watermark() - layout::page_align_up(kernel_end)) >> 10
    );
}

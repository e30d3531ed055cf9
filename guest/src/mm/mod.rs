//! Memory management.

pub mod address_space;
pub mod alias;
pub mod highpte;
pub mod kmap;
pub mod layout;
pub mod memblock;
pub mod page;
pub mod pgtable;
pub mod ptcache;
pub mod pv;
pub mod tlb;
pub mod vmap;
pub mod vmap_block;

use shared::boot::BootInfo;

use crate::kprintln;
use layout::{virt_to_phys, MAX_LOWMEM};

extern "C" {
    static __kernel_end: u8;
}

/// The end of lowmem: everything below this is directly mapped (as in Linux, the
/// end of RAM capped at [`MAX_LOWMEM`] and at `--lowmem`; holes below it are
/// mapped too).
pub fn lowmem_end(info: &BootInfo) -> u64 {
    let top = info.regions().iter().map(|r| r.end()).max().unwrap_or(0);
    top.min(MAX_LOWMEM).min(info.config.lowmem.max(8 << 20))
}

/// Brings memory up: the boot allocator and the kernel pagetables.
pub fn init(info: &BootInfo) {
    // SAFETY: only the symbol's address is taken.
    let kernel_end = virt_to_phys(core::ptr::addr_of!(__kernel_end) as u32);
    let lowmem = lowmem_end(info);
    memblock::init(info, kernel_end, lowmem);
    layout::set_lowmem_end(lowmem);
    pgtable::init_kernel(lowmem);
    let tables = memblock::watermark() - layout::page_align_up(kernel_end);
    vmap::init(info, pgtable::TableSource { alloc: ptcache::alloc_table_low, free: ptcache::free_table_low });
    if let Err(e) = page::init(info, lowmem) {
        panic!(
            "{e}: {} MiB of RAM needs {} MiB of mem_map, lowmem is {} MiB",
            info.total_ram() >> 20,
            ((info.total_ram() >> 12) * core::mem::size_of::<page::Page>() as u64) >> 20,
            lowmem >> 20
        );
    }
    pv::init(info, lowmem);
    let (low, low_free) = page::zone_stats(page::Zone::Normal);
    let (high, _) = page::zone_stats(page::Zone::HighMem);
    kprintln!(
        "mm: {} MiB RAM, lowmem {} MiB, kernel image ends at {:#x}, kernel pagetables {} KiB, mem_map {} KiB",
        info.total_ram() >> 20,
        lowmem >> 20,
        kernel_end,
        tables >> 10,
        page::mem_map_bytes() >> 10
    );
    kprintln!("mm: zone Normal {} pages ({} free), zone HighMem {} pages", low, low_free, high);
}

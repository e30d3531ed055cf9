//! The boot-time allocator: hands out lowmem frames bottom-up from the memory map,
//! above the kernel image, before the page allocator exists.

use shared::boot::{BootInfo, MemRegion, MAX_MEM_REGIONS};

use crate::mm::layout::{page_align_up, phys_to_virt, PAGE_SIZE};
use crate::sync::SpinLock;

struct Memblock {
    regions: [MemRegion; MAX_MEM_REGIONS],
    nr: usize,
    /// Next free physical address.
    next: u64,
    /// Nothing at or above this is handed out (the end of lowmem).
    limit: u64,
}

static MEMBLOCK: SpinLock<Memblock> =
    SpinLock::new(Memblock { regions: [MemRegion { base: 0, len: 0 }; MAX_MEM_REGIONS], nr: 0, next: 0, limit: 0 });

/// Starts handing out frames from `start` (the end of the kernel image) to `limit`.
pub fn init(info: &BootInfo, start: u64, limit: u64) {
    let mut m = MEMBLOCK.lock();
    let regions = info.regions();
    m.regions[..regions.len()].copy_from_slice(regions);
    m.nr = regions.len();
    m.next = page_align_up(start);
    m.limit = limit;
}

/// One zeroed lowmem frame, or `None` when lowmem is exhausted.
pub fn alloc_page() -> Option<u64> {
    let mut m = MEMBLOCK.lock();
    loop {
        let pa = m.next;
        if pa + PAGE_SIZE as u64 > m.limit {
            return None;
        }
        let inside = m.regions[..m.nr].iter().any(|r| pa >= r.base && pa + PAGE_SIZE as u64 <= r.end());
        if inside {
            m.next = pa + PAGE_SIZE as u64;
            // SAFETY: the frame is RAM in lowmem (directly mapped) and nobody owns it.
            unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, PAGE_SIZE as usize) };
            return Some(pa);
        }
        // Skip to the next region that lies above.
        let next = m.regions[..m.nr].iter().filter(|r| r.base > pa).map(|r| r.base).min();
        m.next = match next {
            Some(b) => page_align_up(b),
            None => return None,
        };
    }
}

/// The first frame not yet handed out (where the page allocator takes over).
pub fn watermark() -> u64 {
    MEMBLOCK.lock().next
}

/// `bytes` of physically contiguous lowmem that nobody has written since the
/// machine started, so still zero (the VMM's RAM is a fresh anonymous mapping,
/// QEMU's is zeroed): large tables such as mem_map need not be cleared by hand,
/// and their untouched pages cost the host nothing.
pub fn alloc_contiguous_fresh(bytes: u64) -> Option<u64> {
    let mut m = MEMBLOCK.lock();
    let len = page_align_up(bytes);
    let pa = m.next;
    let inside = m.regions[..m.nr].iter().any(|r| pa >= r.base && pa + len <= r.end());
    if !inside || pa + len > m.limit {
        return None;
    }
    m.next = pa + len;
    Some(pa)
}

/// Ends the boot allocator: the page allocator owns everything above [`watermark`].
pub fn close() {
    let mut m = MEMBLOCK.lock();
    m.limit = m.next;
}

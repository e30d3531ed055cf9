//! Physical pages: the per-frame metadata (`mem_map`, in lowmem as in Linux) and a
//! buddy allocator per zone.
//!
//! NORMAL is lowmem above what the boot allocator handed out (directly mapped);
//! HIGHMEM is everything above `--lowmem`, which the kernel can only reach through
//! a kmap. `mem_map` has one 32-byte [`Page`] for every frame up to the top of RAM,
//! holes included, so with 64 GiB it takes 512 MiB of lowmem: the pressure that
//! made highmem pagetables necessary.

use shared::boot::BootInfo;
use shared::counters::Counter;

use crate::mm::layout::{phys_to_virt, PAGE_SIZE};
use crate::mm::memblock;
use crate::percpu;
use crate::sync::{Once, SpinLock, Word};

/// Largest block: 2^MAX_ORDER pages (4 MiB).
pub const MAX_ORDER: u32 = 10;

/// A page is the head of a free buddy block.
const PG_BUDDY: u32 = 1 << 0;
/// A page is allocated (debug aid: double frees are caught).
const PG_ALLOCATED: u32 = 1 << 1;

/// What the kernel knows of one frame. 32 bytes, as Linux's `struct page` was.
#[repr(C)]
pub struct Page {
    flags: Word,
    order: Word,
    /// Free-list links (frame numbers; `NIL` ends a list).
    next: Word,
    prev: Word,
    /// The persistent kmap address of a highmem page (0: not mapped), under
    /// kmap_lock: Linux's `page_address()` for highmem.
    pub virtual_: Word,
    /// Lazy vmap PTEs that still name this frame (see `mm::alias`).
    pub lazy_aliases: core::sync::atomic::AtomicU32,
    /// Under `--pvmmu on`: [`PINNED`] while the frame is a pagetable the host
    /// validated (Linux's PG_pinned), and [`PINNED_ALONE`] when it holds a pin
    /// of its own, not only through its address space's root.
    pub pin_state: core::sync::atomic::AtomicU32,
    _pad: u32,
}

/// The frame is part of a pinned pagetable tree: read-only to the kernel, its
/// entries written through the host.
pub const PINNED: u32 = 1;
/// The frame holds a pin of its own (a pte page added to a pinned address space).
pub const PINNED_ALONE: u32 = 2;

/// Whether the frame at `pa` is a pinned pagetable (PG_pinned).
pub fn is_pinned(pa: u64) -> bool {
    pfn_to_page(pa >> 12).pin_state.load(core::sync::atomic::Ordering::Acquire) & PINNED != 0
}

/// Whether the frame at `pa` holds a pin of its own.
pub fn is_pinned_alone(pa: u64) -> bool {
    pfn_to_page(pa >> 12).pin_state.load(core::sync::atomic::Ordering::Acquire) & PINNED_ALONE != 0
}

/// Sets the frame's pin state (0 when it stops being a pagetable).
pub fn set_pin_state(pa: u64, state: u32) {
    pfn_to_page(pa >> 12).pin_state.store(state, core::sync::atomic::Ordering::Release);
}

const _: () = assert!(core::mem::size_of::<Page>() == 32);
const NIL: u32 = u32::MAX;

// A Page's fields are touched under the lock of its zone (flags, order,
// links) or of the kmap pool (virtual_), or atomically (lazy_aliases,
// pin_state): every field is a Word or an atomic, so Page is Sync as it is.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Zone {
    Normal = 0,
    HighMem = 1,
}

struct FreeArea {
    heads: [u32; MAX_ORDER as usize + 1],
    free_pages: u64,
}

struct ZoneInfo {
    start_pfn: u64,
    end_pfn: u64,
    present: u64,
    area: SpinLock<FreeArea>,
}

struct MemMap {
    pages: *mut Page,
    nr: u64,
    zones: [ZoneInfo; 2],
}

// SAFETY: mem_map is shared; see Page.
unsafe impl Sync for MemMap {}
// SAFETY: the pointer names mem_map, which lives for ever and is shared under
// the same rules wherever it is sent.
unsafe impl Send for MemMap {}

static MEM_MAP: Once<MemMap> = Once::new();

fn mm() -> &'static MemMap {
    MEM_MAP.get()
}

/// The metadata of frame `pfn`.
pub fn pfn_to_page(pfn: u64) -> &'static Page {
    let m = mm();
    assert!(pfn < m.nr, "pfn {pfn:#x} beyond mem_map");
    // SAFETY: in bounds of mem_map, which lives for ever.
    unsafe { &*m.pages.add(pfn as usize) }
}

/// Frames `mem_map` describes (the top of RAM, holes included).
pub fn nr_frames() -> u64 {
    mm().nr
}

/// Bytes of lowmem `mem_map` takes.
pub fn mem_map_bytes() -> u64 {
    mm().nr * core::mem::size_of::<Page>() as u64
}

/// The zone of a frame.
pub fn zone_of(pfn: u64) -> Zone {
    if pfn < mm().zones[Zone::HighMem as usize].start_pfn {
        Zone::Normal
    } else {
        Zone::HighMem
    }
}

/// Whether a frame is directly mapped.
pub fn is_lowmem(pa: u64) -> bool {
    zone_of(pa >> 12) == Zone::Normal
}

/// Pages present and free in a zone.
pub fn zone_stats(z: Zone) -> (u64, u64) {
    let zi = &mm().zones[z as usize];
    (zi.present, zi.area.lock().free_pages)
}

/// Lays out mem_map (from the boot allocator) and frees every remaining frame of
/// RAM into its zone. Fails with a message when mem_map does not fit in lowmem.
pub fn init(info: &BootInfo, lowmem_end: u64) -> Result<(), &'static str> {
    let top = info.regions().iter().map(|r| r.end()).max().unwrap_or(0);
    let nr = top >> 12;
    let bytes = nr * core::mem::size_of::<Page>() as u64;
    let pages_pa = memblock::alloc_contiguous_fresh(bytes).ok_or("mem_map does not fit in lowmem")?;
    let low_pfn = lowmem_end >> 12;
    let first_free = memblock::watermark() >> 12;
    let zone = |start, end| ZoneInfo {
        start_pfn: start,
        end_pfn: end,
        present: 0,
        area: SpinLock::new(FreeArea { heads: [NIL; MAX_ORDER as usize + 1], free_pages: 0 }),
    };
    let mut zones = [zone(first_free, low_pfn), zone(low_pfn, nr.max(low_pfn))];
    for r in info.regions() {
        for z in zones.iter_mut() {
            let s = (r.base.div_ceil(PAGE_SIZE as u64)).max(z.start_pfn);
            let e = (r.end() >> 12).min(z.end_pfn);
            z.present += e.saturating_sub(s);
        }
    }
    MEM_MAP.set(MemMap { pages: phys_to_virt(pages_pa) as *mut Page, nr, zones });
    memblock::close();
    for r in info.regions() {
        for z in [Zone::Normal, Zone::HighMem] {
            let zi = &mm().zones[z as usize];
            let s = (r.base.div_ceil(PAGE_SIZE as u64)).max(zi.start_pfn);
            let e = (r.end() >> 12).min(zi.end_pfn);
            free_range(z, s, e);
        }
    }
    Ok(())
}

/// Frees `[s, e)` in the largest aligned blocks that fit.
fn free_range(z: Zone, mut s: u64, e: u64) {
    while s < e {
        let mut order = 0;
        while order < MAX_ORDER && s.is_multiple_of(2 << order) && s + (2 << order) <= e {
            order += 1;
        }
        let mut area = mm().zones[z as usize].area.lock();
        // The block was never allocated: mark it so that free_block's check holds.
        pfn_to_page(s).flags.set(PG_ALLOCATED);
        free_block(&mut area, z, s, order);
        s += 1 << order;
    }
}

fn list_add(area: &mut FreeArea, pfn: u64, order: u32) {
    let p = pfn_to_page(pfn);
    let head = area.heads[order as usize];
    // The zone lock is held by the caller (it owns `area`).
    p.flags.set(PG_BUDDY);
    p.order.set(order);
    p.next.set(head);
    p.prev.set(NIL);
    if head != NIL {
        pfn_to_page(head as u64).prev.set(pfn as u32);
    }
    area.heads[order as usize] = pfn as u32;
}

fn list_del(area: &mut FreeArea, pfn: u64, order: u32) {
    let p = pfn_to_page(pfn);
    // The zone lock is held by the caller.
    let (next, prev) = (p.next.get(), p.prev.get());
    if prev != NIL {
        pfn_to_page(prev as u64).next.set(next);
    } else {
        area.heads[order as usize] = next;
    }
    if next != NIL {
        pfn_to_page(next as u64).prev.set(prev);
    }
    p.flags.set(0);
}

fn free_block(area: &mut FreeArea, z: Zone, mut pfn: u64, mut order: u32) {
    let zi = &mm().zones[z as usize];
    let flags = pfn_to_page(pfn).flags.get();
    assert!(flags & PG_ALLOCATED != 0, "double free of pfn {pfn:#x}");
    area.free_pages += 1 << order;
    while order < MAX_ORDER {
        let buddy = pfn ^ (1 << order);
        if buddy < zi.start_pfn || buddy + (1 << order) > zi.end_pfn {
            break;
        }
        let b = pfn_to_page(buddy);
        let (bf, bo) = (b.flags.get(), b.order.get());
        if bf & PG_BUDDY == 0 || bo != order {
            break;
        }
        list_del(area, buddy, order);
        pfn = pfn.min(buddy);
        order += 1;
    }
    list_add(area, pfn, order);
}

fn alloc_from(z: Zone, order: u32) -> Option<u64> {
    let mut area = mm().zones[z as usize].area.lock();
    let mut o = order;
    while o <= MAX_ORDER && area.heads[o as usize] == NIL {
        o += 1;
    }
    if o > MAX_ORDER {
        return None;
    }
    let pfn = area.heads[o as usize] as u64;
    list_del(&mut area, pfn, o);
    // Split: give back the upper halves.
    while o > order {
        o -= 1;
        list_add(&mut area, pfn + (1 << o), o);
    }
    area.free_pages -= 1 << order;
    pfn_to_page(pfn).flags.set(PG_ALLOCATED);
    pfn_to_page(pfn).order.set(order);
    Some(pfn << 12)
}

/// Allocates 2^order pages from `z` (not zeroed); returns the physical address.
/// Never sleeps.
pub fn alloc_pages(z: Zone, order: u32) -> Option<u64> {
    let pa = alloc_from(z, order)?;
    percpu::count(if z == Zone::Normal { Counter::PagesLowmem } else { Counter::PagesHighmem }, 1 << order);
    Some(pa)
}

/// A user page: highmem first (GFP_HIGHUSER), else lowmem.
pub fn alloc_user_page() -> Option<u64> {
    alloc_pages(Zone::HighMem, 0).or_else(|| alloc_pages(Zone::Normal, 0))
}

/// Order-0 pages waiting to be freed together, chained through their free-list
/// link (unused while a page is allocated): vfree gathers an area's pages this
/// way and frees them only once the area is on the lazy list, as Linux's
/// `__vunmap` frees `vm_struct->pages` after `remove_vm_area`.
pub struct PageChain {
    head: u32,
}

impl PageChain {
    pub const fn new() -> Self {
        PageChain { head: NIL }
    }

    /// Adds allocated page `pa`, which the caller owns, to the chain.
    pub fn push(&mut self, pa: u64) {
        let p = pfn_to_page(pa >> 12);
        // `pa` is allocated and the caller's, so no free list links it and
        // nobody else touches its link.
        p.next.set(self.head);
        self.head = (pa >> 12) as u32;
    }

    /// Takes the page pushed last off the chain.
    pub fn pop(&mut self) -> Option<u64> {
        if self.head == NIL {
            return None;
        }
        let pfn = self.head as u64;
        // As in push: the page is still ours, and so is its link.
        self.head = pfn_to_page(pfn).next.get();
        Some(pfn << 12)
    }

    /// Whether some page of the chain satisfies `f`.
    pub fn any(&self, f: impl Fn(u64) -> bool) -> bool {
        let mut pfn = self.head;
        while pfn != NIL {
            if f((pfn as u64) << 12) {
                return true;
            }
            // A page of the chain, the owner's, and so is its link.
            pfn = pfn_to_page(pfn as u64).next.get();
        }
        false
    }

    /// Frees every page of the chain.
    pub fn free_all(mut self) {
        while let Some(pa) = self.pop() {
            free_pages(pa, 0);
        }
    }
}

impl Default for PageChain {
    fn default() -> Self {
        Self::new()
    }
}

/// Frees what [`alloc_pages`] returned.
pub fn free_pages(pa: u64, order: u32) {
    let pfn = pa >> 12;
    let z = zone_of(pfn);
    let mut area = mm().zones[z as usize].area.lock();
    let o = pfn_to_page(pfn).order.get();
    assert!(o == order, "free of pfn {pfn:#x} with order {order}, allocated with {o}");
    free_block(&mut area, z, pfn, order);
}

//! Per-CPU vmap blocks: the fast path of `vm_map_ram` for up to
//! [`VMAP_MAX_ALLOC`] pages (Linux 2.6.28).
//!
//! Each CPU carves blocks of [`bbmap_bits`] pages out of the vmalloc space and
//! hands out naturally aligned power-of-two pieces of them under the block's own
//! lock, with no global lock and no tree search. A freed piece becomes dirty:
//! never handed out again, its PTEs (lazy-ptes) or its flush (lazy-tlb) owed
//! until `vm_unmap_aliases()` takes it. A block is given back, as one lazy area,
//! when all of it is dirty, or when nothing in it is live but what is left free
//! is too fragmented to serve a request.

use shared::boot::MAX_VCPUS;
use shared::config::VmapVariant;
use shared::counters::Counter;
use vmspace::BlockMap;

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::mm::layout::{phys_to_virt, vmalloc_end, vmalloc_start, PAGE_SIZE, VMALLOC_END_MAX, VMALLOC_START_MIN};
use crate::mm::vmap::{self, VM_BLOCK};
use crate::mm::{memblock, page};
use crate::percpu;
use crate::sync::SpinLock;

/// The largest request a block serves, in pages (BITS_PER_LONG on 32-bit).
pub const VMAP_MAX_ALLOC: u32 = 32;
const VMAP_BBMAP_BITS_MAX: u32 = 1024;
const VMAP_BBMAP_BITS_MIN: u32 = VMAP_MAX_ALLOC * 2;
/// Linux's VMALLOC_SPACE on 32-bit, the input of its block-size formula.
const LINUX_VMALLOC_SPACE: u32 = 128 << 20;

/// Pages per block for `cpus` CPUs, by Linux's formula (it uses NR_CPUS): 1024
/// up to 2 CPUs, 512 for 4, 256 for 8.
pub fn bbmap_bits(cpus: u32) -> u32 {
    (LINUX_VMALLOC_SPACE / PAGE_SIZE / cpus.next_power_of_two() / 16).clamp(VMAP_BBMAP_BITS_MIN, VMAP_BBMAP_BITS_MAX)
}

/// Block positions in the largest vmalloc space (the smallest lowmem, every
/// kmap series at its smallest) at the smallest block size (256 pages, 8 CPUs).
const MAX_BLOCKS: usize = ((VMALLOC_END_MAX - (VMALLOC_START_MIN & !((4 << 20) - 1))) / (256 * PAGE_SIZE)) as usize + 1;

struct Block {
    map: BlockMap,
    va: u32,
    alive: bool,
}

/// Blocks sit in pages of this many, by position, as Linux kmalloc'd each
/// vmap_block and found it in a radix tree by its index.
const PER_PAGE: usize = PAGE_SIZE as usize / core::mem::size_of::<SpinLock<Block>>();
const _: () = assert!(PER_PAGE >= 1);

/// The pages of blocks: page `i` holds positions `i * PER_PAGE ..`. A page is
/// made when a block is first carved at one of its positions, and kept.
static PAGES: [AtomicPtr<SpinLock<Block>>; MAX_BLOCKS.div_ceil(PER_PAGE)] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_BLOCKS.div_ceil(PER_PAGE)];
/// Lowmem pages the blocks' pages took.
static PAGES_KEPT: AtomicU32 = AtomicU32::new(0);

/// The block at `pos`, whose page must exist (a block was carved there).
fn block(pos: usize) -> &'static SpinLock<Block> {
    let page = PAGES[pos / PER_PAGE].load(Ordering::Acquire);
    assert!(!page.is_null(), "vmap block position {pos} was never carved");
    // SAFETY: a published page of PER_PAGE initialised blocks, never freed;
    // the index is below PER_PAGE.
    unsafe { &*page.add(pos % PER_PAGE) }
}

/// The block at `pos`, its page made if it has none yet; None when lowmem has
/// no page for it.
fn block_or_make(pos: usize) -> Option<&'static SpinLock<Block>> {
    let slot = &PAGES[pos / PER_PAGE];
    if slot.load(Ordering::Acquire).is_null() {
        let pa = page::alloc_pages(page::Zone::Normal, 0)?;
        let fresh = phys_to_virt(pa) as *mut SpinLock<Block>;
        for i in 0..PER_PAGE {
            // SAFETY: a fresh lowmem page, directly mapped, large enough for
            // PER_PAGE blocks; nobody else sees it before it is published.
            unsafe {
                fresh.add(i).write(SpinLock::new(Block {
                    map: BlockMap::new(VMAP_BBMAP_BITS_MAX),
                    va: 0,
                    alive: false,
                }))
            };
        }
        match slot.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                PAGES_KEPT.fetch_add(1, Ordering::Relaxed);
            }
            // Another CPU made it first.
            Err(_) => page::free_pages(pa, 0),
        }
    }
    Some(block(pos))
}

/// Every block that has a page, dead ones included.
fn each_block(mut f: impl FnMut(&SpinLock<Block>)) {
    for (i, slot) in PAGES.iter().enumerate() {
        let page = slot.load(Ordering::Acquire);
        if page.is_null() {
            continue;
        }
        for k in 0..PER_PAGE.min(MAX_BLOCKS - i * PER_PAGE) {
            // SAFETY: as in `block`.
            f(unsafe { &*page.add(k) });
        }
    }
}

/// Lowmem pages the blocks' bookkeeping holds (they are kept once made).
pub fn pages_kept() -> u32 {
    PAGES_KEPT.load(Ordering::Relaxed)
}

/// A CPU's blocks that still have never-used pages (Linux's vmap_block_queue),
/// by position.
struct Queue {
    pos: &'static mut [u16],
    len: usize,
}

static QUEUES: [SpinLock<Queue>; MAX_VCPUS] = [const { SpinLock::new(Queue { pos: &mut [], len: 0 }) }; MAX_VCPUS];

/// The block size and where positions count from (the vmalloc space's start,
/// aligned down to 4 MiB, the largest block).
static GEOMETRY: crate::sync::Once<(u32, u32)> = crate::sync::Once::new();

fn bits() -> u32 {
    GEOMETRY.get().0
}

fn block_size() -> u32 {
    bits() * PAGE_SIZE
}

/// Sets the blocks up for `cpus` CPUs: their size, and each CPU's queue, with
/// room for every block position the vmalloc space has (from the boot
/// allocator, so call before it closes).
pub(super) fn init(cpus: u32) {
    let b = bbmap_bits(cpus);
    let base = vmalloc_start() & !((4 << 20) - 1);
    let positions = ((vmalloc_end() - base) / (b * PAGE_SIZE)) as usize + 1;
    assert!(positions <= MAX_BLOCKS && MAX_BLOCKS <= u16::MAX as usize);
    GEOMETRY.set((b, base));
    for q in QUEUES.iter().take(cpus as usize) {
        let bytes = (positions * core::mem::size_of::<u16>()) as u64;
        let pa = memblock::alloc_contiguous_fresh(bytes).expect("no lowmem for the vmap block queues");
        // SAFETY: the boot allocator's fresh lowmem, directly mapped, room for
        // `positions` u16s; this queue's alone for ever.
        let pos = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(pa) as *mut u16, positions) };
        q.lock().pos = pos;
    }
}

fn position(va: u32) -> usize {
    ((va - GEOMETRY.get().1) / block_size()) as usize
}

fn order_of(count: u32) -> u32 {
    count.next_power_of_two().trailing_zeros()
}

impl Queue {
    fn remove(&mut self, i: usize) {
        self.pos[i] = self.pos[self.len - 1];
        self.len -= 1;
    }
}

/// `count` pages of this CPU's blocks; a new block when none has room.
pub(super) fn alloc(count: u32) -> Option<u32> {
    let order = order_of(count);
    let cpu = percpu::cpu_id() as usize;
    loop {
        // Blocks given back whole (at most 8 a round), and whether that put
        // more on the lazy list than is allowed.
        let (mut nr_stale, mut over) = (0, false);
        let mut got = None;
        {
            let mut q = QUEUES[cpu].lock();
            let mut i = 0;
            while i < q.len {
                let mut b = block(q.pos[i] as usize).lock();
                if let Some(off) = b.map.alloc(order) {
                    got = Some(b.va + off * PAGE_SIZE);
                    if b.map.free_bits() == 0 {
                        drop(b);
                        q.remove(i);
                    }
                    break;
                }
                if b.map.is_fragmented() && nr_stale < 8 {
                    // Nothing live, nothing usable left: give it back whole.
                    b.alive = false;
                    over |= vmap::block_area_lazy(b.va);
                    nr_stale += 1;
                    drop(b);
                    q.remove(i);
                    continue;
                }
                i += 1;
            }
        }
        percpu::count(Counter::VmapBlockPurges, nr_stale as u64);
        if over {
            vmap::purge(true);
        }
        if got.is_some() {
            return got;
        }
        if nr_stale == 0 {
            new_block(cpu)?;
        }
    }
}

/// Carves a new block for `cpu` and queues it.
fn new_block(cpu: usize) -> Option<()> {
    let va = vmap::alloc_area(block_size(), block_size(), VM_BLOCK)?;
    let pos = position(va);
    let Some(slot) = block_or_make(pos) else {
        vmap::block_area_lazy(va);
        return None;
    };
    {
        let mut b = slot.lock();
        assert!(!b.alive, "vmap block position {pos} reused while live");
        *b = Block { map: BlockMap::new(bits()), va, alive: true };
    }
    let mut q = QUEUES[cpu].lock();
    let len = q.len;
    q.pos[len] = pos as u16;
    q.len += 1;
    percpu::count(Counter::VmapBlockAllocs, 1);
    Some(())
}

/// Gives back `count` pages at `va` (already left lazy by the caller).
pub(super) fn free(va: u32, count: u32) {
    let mut b = block(position(va)).lock();
    assert!(b.alive && va >= b.va && va < b.va + block_size(), "BUG: vm_unmap_ram of {va:#x}, in no live vmap block");
    let off = (va - b.va) / PAGE_SIZE;
    if let Err(e) = b.map.free(off, order_of(count)) {
        panic!("BUG: vm_unmap_ram of {va:#x} ({count} pages): {e:?}");
    }
    if b.map.is_fully_dirty() {
        b.alive = false;
        let over = vmap::block_area_lazy(b.va);
        drop(b);
        percpu::count(Counter::VmapBlockFrees, 1);
        if over {
            vmap::purge(true);
        }
    }
}

/// What `vm_unmap_aliases()` found in the blocks.
#[derive(Clone, Copy, Default)]
pub(super) struct Dirty {
    /// Some block it walked has dirty ranges: the call flushes.
    pub flush: bool,
    /// Some of them were never flushed before (without it, a 2.6.28 call
    /// flushes only what earlier calls already did).
    pub fresh: bool,
}

/// For vm_unmap_aliases (purge lock held): the freed, not yet flushed pages of
/// the blocks it walks move to "flushing"; with lazy-ptes their PTEs are
/// cleared (the frames kept for after the flush).
///
/// `every_block` is Linux 6.5's walk: every live block, and only ranges never
/// flushed count. Otherwise 2.6.28's: only the blocks on some CPU's free list
/// (a block with no never-used page left is skipped, and what was freed in it
/// stays, lazy PTEs and all), and any dirty range, however often flushed
/// before, makes the call flush again.
pub(super) fn take_dirty(every_block: bool) -> Dirty {
    let retire = vmap::variant() == VmapVariant::LazyPtes;
    let mut d = Dirty::default();
    let take = |b: &mut Block, d: &mut Dirty| {
        if b.map.dirty_bits() > 0 && !every_block {
            d.flush = true;
        }
        if !b.map.has_pending() {
            return;
        }
        let va = b.va;
        b.map.take_pending(|s, e| {
            if retire {
                vmap::retire(va + s * PAGE_SIZE, va + e * PAGE_SIZE);
            }
        });
        d.flush = true;
        d.fresh = true;
    };
    if every_block {
        each_block(|slot| {
            let mut b = slot.lock();
            if b.alive {
                take(&mut b, &mut d);
            }
        });
    } else {
        for q in QUEUES.iter() {
            let q = q.lock();
            for &pos in &q.pos[..q.len] {
                take(&mut block(pos as usize).lock(), &mut d);
            }
        }
    }
    d
}

/// After the purge's flush: the flushing pages' PTEs are cleared and their
/// frames' lazy aliases dropped. (A block given back meanwhile is done by the
/// purge of its area instead.) The entries cleared.
pub(super) fn release_flushed() -> u32 {
    let mut cleared = 0;
    each_block(|slot| {
        let mut b = slot.lock();
        if b.alive {
            let va = b.va;
            b.map.take_flushing(|s, e| cleared += vmap::release(va + s * PAGE_SIZE, va + e * PAGE_SIZE, true, |_| {}));
        }
    });
    cleared
}

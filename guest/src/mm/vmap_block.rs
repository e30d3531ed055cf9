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

use crate::mm::layout::{vmalloc_end, PAGE_SIZE, VMALLOC_END_MAX, VMALLOC_START};
use crate::mm::vmap::{self, VM_BLOCK};
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

/// Blocks are aligned to their size; positions count from here.
const BASE: u32 = VMALLOC_START & !((4 << 20) - 1);
/// Block positions in the vmalloc space at the smallest block size in use
/// (256 pages, 8 CPUs).
const MAX_BLOCKS: usize = ((VMALLOC_END_MAX - BASE) / (256 * PAGE_SIZE)) as usize + 1;

struct Block {
    map: BlockMap,
    va: u32,
    alive: bool,
}

/// Blocks by position: `(va - BASE) / block size`.
static BLOCKS: [SpinLock<Block>; MAX_BLOCKS] =
    [const { SpinLock::new(Block { map: BlockMap::new(VMAP_BBMAP_BITS_MAX), va: 0, alive: false }) }; MAX_BLOCKS];

/// A CPU's blocks that still have never-used pages (Linux's vmap_block_queue).
struct Queue {
    pos: [u8; MAX_BLOCKS],
    len: usize,
}

static QUEUES: [SpinLock<Queue>; MAX_VCPUS] =
    [const { SpinLock::new(Queue { pos: [0; MAX_BLOCKS], len: 0 }) }; MAX_VCPUS];

static BITS: crate::sync::Once<u32> = crate::sync::Once::new();

fn bits() -> u32 {
    *BITS.get()
}

fn block_size() -> u32 {
    bits() * PAGE_SIZE
}

pub(super) fn init(cpus: u32) {
    let b = bbmap_bits(cpus);
    assert!((((vmalloc_end() - BASE) / (b * PAGE_SIZE)) as usize) < MAX_BLOCKS);
    BITS.set(b);
}

fn position(va: u32) -> usize {
    ((va - BASE) / block_size()) as usize
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
                let mut b = BLOCKS[q.pos[i] as usize].lock();
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
    {
        let mut b = BLOCKS[pos].lock();
        assert!(!b.alive, "vmap block position {pos} reused while live");
        *b = Block { map: BlockMap::new(bits()), va, alive: true };
    }
    let mut q = QUEUES[cpu].lock();
    let len = q.len;
    q.pos[len] = pos as u8;
    q.len += 1;
    percpu::count(Counter::VmapBlockAllocs, 1);
    Some(())
}

/// Gives back `count` pages at `va` (already left lazy by the caller).
pub(super) fn free(va: u32, count: u32) {
    let pos = position(va);
    let mut b = BLOCKS[pos].lock();
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
        for slot in BLOCKS.iter() {
            let mut b = slot.lock();
            if b.alive {
                take(&mut b, &mut d);
            }
        }
    } else {
        for q in QUEUES.iter() {
            let q = q.lock();
            for &pos in &q.pos[..q.len] {
                take(&mut BLOCKS[pos as usize].lock(), &mut d);
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
    for slot in BLOCKS.iter() {
        let mut b = slot.lock();
        if !b.alive {
            continue;
        }
        let va = b.va;
        b.map.take_flushing(|s, e| cleared += vmap::release(va + s * PAGE_SIZE, va + e * PAGE_SIZE, true, |_| {}));
    }
    cleared
}

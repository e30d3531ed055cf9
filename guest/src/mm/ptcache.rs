//! Where pagetable pages come from and go back to (`--ptcache`): a global
//! quicklist of zeroed pages under a lock (2.4), a per-CPU pool (no sharing), or
//! straight to and from the page allocator (zeroed on allocation, through a kmap
//! when the page is in highmem).

use shared::boot::MAX_VCPUS;
use shared::config::PtCache;
use shared::counters::Counter;

use crate::mm::highpte::pte_zone;
use crate::mm::kmap::{kmap_atomic, kunmap_atomic, KmType};
use crate::mm::page::{self, Zone};
use crate::sync::SpinLock;
use crate::{bootinfo, percpu};

const QUICKLIST_MAX: usize = 256;
const PERCPU_MAX: usize = 32;

struct Stack<const N: usize> {
    pages: [u64; N],
    n: usize,
}

impl<const N: usize> Stack<N> {
    const fn new() -> Self {
        Stack { pages: [0; N], n: 0 }
    }

    fn pop(&mut self) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        self.n -= 1;
        Some(self.pages[self.n])
    }

    fn push(&mut self, pa: u64) -> bool {
        if self.n == N {
            return false;
        }
        self.pages[self.n] = pa;
        self.n += 1;
        true
    }
}

static QUICKLIST: SpinLock<Stack<QUICKLIST_MAX>> = SpinLock::new(Stack::new());
/// Per-CPU pools: each used only by its CPU (its lock is never contended; it
/// only keeps interrupts off).
static PERCPU: [SpinLock<Stack<PERCPU_MAX>>; MAX_VCPUS] = [const { SpinLock::new(Stack::new()) }; MAX_VCPUS];

fn policy() -> PtCache {
    bootinfo::get().config.ptcache()
}

/// Zeroes a page through an atomic kmap.
pub fn zero_page(pa: u64) {
    let va = kmap_atomic(pa, KmType::User0);
    // SAFETY: the page is mapped at `va` until the unmap below.
    unsafe { core::ptr::write_bytes(va, 0, 4096) };
    kunmap_atomic(va);
}

/// A zeroed pagetable page from the `--pte` variant's zone (lowmem if highmem is
/// exhausted or absent), or `None` when memory is out.
pub fn alloc_pt() -> Option<u64> {
    let cached = match policy() {
        PtCache::Quicklist => QUICKLIST.lock().pop(),
        PtCache::Percpu => PERCPU[percpu::cpu_id() as usize].lock_irqsave().pop(),
        PtCache::None => None,
    };
    if let Some(pa) = cached {
        percpu::count(Counter::PtCacheHits, 1);
        count_zone(pa);
        return Some(pa);
    }
    if policy() != PtCache::None {
        percpu::count(Counter::PtCacheMisses, 1);
    }
    let pa = page::alloc_pages(pte_zone(), 0).or_else(|| page::alloc_pages(Zone::Normal, 0))?;
    zero_page(pa);
    count_zone(pa);
    Some(pa)
}

fn count_zone(pa: u64) {
    let c = if page::is_lowmem(pa) { Counter::PtPagesLowmem } else { Counter::PtPagesHighmem };
    percpu::count(c, 1);
}

/// Gives back a pagetable page whose entries are all zero.
pub fn free_pt(pa: u64) {
    let kept = match policy() {
        PtCache::Quicklist => QUICKLIST.lock().push(pa),
        PtCache::Percpu => PERCPU[percpu::cpu_id() as usize].lock_irqsave().push(pa),
        PtCache::None => false,
    };
    if !kept {
        page::free_pages(pa, 0);
    }
}

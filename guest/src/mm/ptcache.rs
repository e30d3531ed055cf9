//! Where pagetable pages come from and go back to (`--ptcache`): 2.4's per-CPU
//! quicklists (no sharing, no lock contended), one global list of zeroed pages
//! under a lock, or straight to and from the page allocator (zeroed on allocation, through a kmap
//! when the page is in highmem).
//!
//! Under `--pvmmu on --alias clean-pool`, what the allocator would have supplied
//! comes from a pool of pages known to have no lazy vmap alias instead: refilled
//! `--clean-pool-batch` pages at a time with one `vm_unmap_aliases()`, and fed
//! by freed pagetables (which cannot have gained an alias while they were
//! pinned).

use shared::boot::MAX_VCPUS;
use shared::config::{AliasStrategy, PtCache};
use shared::counters::Counter;

use crate::mm::highpte::pte_zone;
use crate::mm::kmap::{kmap_atomic, kunmap_atomic, KmType};
use crate::mm::page::{self, Zone};
use crate::mm::{alias, pv, vmap};
use crate::sync::SpinLock;
use crate::{bootinfo, percpu};

const GLOBAL_MAX: usize = 256;
const QUICKLIST_MAX: usize = 32;

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

static GLOBAL: SpinLock<Stack<GLOBAL_MAX>> = SpinLock::new(Stack::new());
/// The per-CPU quicklists: each used only by its CPU (its lock is never
/// contended; it only keeps interrupts off).
static QUICKLISTS: [SpinLock<Stack<QUICKLIST_MAX>>; MAX_VCPUS] = [const { SpinLock::new(Stack::new()) }; MAX_VCPUS];

fn policy() -> PtCache {
    bootinfo::get().config.ptcache()
}

const CLEAN_MAX: usize = 1024;
/// The clean pools of lowmem and highmem pages.
static CLEAN: [SpinLock<Stack<CLEAN_MAX>>; 2] = [const { SpinLock::new(Stack::new()) }; 2];

fn clean_pool() -> bool {
    pv::on() && pv::strategy() == AliasStrategy::CleanPool
}

fn clean_index(z: Zone) -> usize {
    if z == Zone::Normal {
        0
    } else {
        1
    }
}

/// A zeroed page of zone `z` with no lazy alias, from the clean pool (refilled
/// if empty).
fn take_clean(z: Zone) -> Option<u64> {
    let pool = &CLEAN[clean_index(z)];
    let got = pool.lock_irqsave().pop();
    let pa = match got {
        Some(pa) => pa,
        None => {
            let batch = bootinfo::get().config.clean_pool_batch as usize;
            // The batch joins the pool only after the purge that cleans it: a
            // page another CPU took from the pool before would still carry its
            // alias to the host (the benchmark's clean-pool cells saw 1 to 3
            // refused pins per run on 2 and 4 vCPUs before this order).
            let mut fresh = page::PageChain::new();
            let mut n = 0;
            while n < batch.min(CLEAN_MAX) {
                let Some(pa) = page::alloc_pages(z, 0) else { break };
                fresh.push(pa);
                n += 1;
            }
            // One purge makes the batch clean, but for a page whose alias
            // sits where the purge does not look (2.6.28's walk skips full
            // vmap blocks): such a page is not clean and goes back to the
            // allocator. None clean at all: the benchmark's device, a purge of
            // every block (counted as a missed alias, see pv::pin).
            if n == 0 {
                return None;
            }
            vmap::vm_unmap_aliases();
            if !fresh.any(|pa| !alias::may_have_alias(pa)) {
                pv::purge_missed_alias();
            }
            let mut got = None;
            while let Some(more) = fresh.pop() {
                if alias::may_have_alias(more) {
                    page::free_pages(more, 0);
                } else if got.is_none() {
                    got = Some(more);
                } else if !pool.lock_irqsave().push(more) {
                    page::free_pages(more, 0);
                }
            }
            let pa = got?;
            percpu::count(Counter::CleanPoolRefills, 1);
            percpu::count(Counter::CleanPoolPages, n as u64);
            pa
        }
    };
    zero_page(pa);
    Some(pa)
}

/// Gives a page that was a pagetable back to the clean pool (full: the allocator).
fn give_clean(pa: u64) {
    let z = if page::is_lowmem(pa) { Zone::Normal } else { Zone::HighMem };
    if !CLEAN[clean_index(z)].lock_irqsave().push(pa) {
        page::free_pages(pa, 0);
    }
}

/// A zeroed lowmem page for an L2, an L3 or a lowmem L1 of an address space.
pub fn alloc_table_low() -> Option<u64> {
    if clean_pool() {
        return take_clean(Zone::Normal);
    }
    crate::mm::pgtable::alloc_low_page()
}

/// Gives back a page from [`alloc_table_low`] (its entries need not be zero).
pub fn free_table_low(pa: u64) {
    if clean_pool() {
        give_clean(pa);
    } else {
        page::free_pages(pa, 0);
    }
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
        PtCache::Global => GLOBAL.lock().pop(),
        PtCache::Quicklist => QUICKLISTS[percpu::cpu_id() as usize].lock_irqsave().pop(),
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
    let pa = if clean_pool() {
        take_clean(pte_zone()).or_else(|| take_clean(Zone::Normal))?
    } else {
        let pa = page::alloc_pages(pte_zone(), 0).or_else(|| page::alloc_pages(Zone::Normal, 0))?;
        zero_page(pa);
        pa
    };
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
        PtCache::Global => GLOBAL.lock().push(pa),
        PtCache::Quicklist => QUICKLISTS[percpu::cpu_id() as usize].lock_irqsave().push(pa),
        PtCache::None => false,
    };
    if !kept {
        if clean_pool() {
            give_clean(pa);
        } else {
            page::free_pages(pa, 0);
        }
    }
}

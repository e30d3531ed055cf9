//! The vmalloc space: Nick Piggin's vmap allocator (Linux 2.6.28) with its lazy
//! unmapping, in the three forms `--vmap` selects.
//!
//! Areas live in a balanced tree keyed by address (`vmspace::AreaTree`) and are
//! found first-fit. `vunmap` in the lazy forms does not flush: the area is marked
//! lazy and its pages counted, and once more than [`lazy_max_pages`] are owed, a
//! purge clears every lazy area's PTEs, flushes every CPU's TLB once (an IPI to
//! each other CPU), and only then frees the areas for reuse. Small `vm_map_ram`
//! requests come from per-CPU blocks (`vmap_block`); `vm_unmap_aliases()` purges
//! the lazy areas and every block's freed ranges with one flush, or none when
//! nothing was owed.
//!
//! What a PTE holds through this life:
//!
//! ```text
//!             mapped            vunmapped, lazy           purge, before the flush   after the flush
//! eager       frame|P|RW        -                         frame|LAZY (not present)  0
//! lazy-ptes   frame|P|RW        frame|P|RW (an alias)     frame|LAZY                0
//! lazy-tlb    frame|P|RW        frame|LAZY                frame|LAZY                0
//! ```
//!
//! A `LAZY` entry is not present (neither the CPU nor a hypervisor sees a mapping)
//! but remembers its frame, so that the purge can lower the frame's lazy-alias
//! count (`mm::alias`) once the flush is done, and free a vfree'd page only after
//! (eager).

use core::sync::atomic::{AtomicU32, Ordering};

use shared::config::{Inject, VmapFlush, VmapVariant};
use shared::counters::Counter;
use shared::pae::{ADDR_MASK, P};
use vmspace::{AllocError, AreaState, AreaTree, Node, NIL};

use crate::mm::layout::{phys_to_virt, vmalloc_end, vmalloc_start, PAGE_SIZE};
use crate::mm::page;
use crate::mm::pgtable::{self, read_kernel_pte, write_kernel_pte, KERNEL_RW};
use crate::mm::pv::{self, AfterFlush};
use crate::mm::{alias, memblock, tlb, vmap_block};
use crate::sync::{Once, SpinLock};
use crate::{bootinfo, percpu, smp};

/// Software bit of a PTE the vmap layer cleared but still owes a flush for.
const LAZY: u64 = 1 << 9;

/// Area kinds, in the area's `data` word.
const VM_ALLOC: u32 = 1 << 31;
const VM_GUARD: u32 = 1 << 30;
pub(super) const VM_BLOCK: u32 = 1 << 29;

/// Linux's formula: fls(CPUs) x 32 MiB worth of pages may be owed before a purge.
pub fn lazy_max_pages(cpus: u32) -> u32 {
    (32 - cpus.leading_zeros()) * ((32 << 20) / PAGE_SIZE)
}

struct Areas {
    tree: AreaTree<'static>,
    /// The lazy areas, chained through their `link`.
    lazy_head: u32,
    lazy_areas: u32,
    lazy_pages: u32,
}

static AREAS: Once<SpinLock<Areas>> = Once::new();
/// One purge at a time (Linux's purge_lock).
static PURGE: SpinLock<()> = SpinLock::new(());
static VARIANT: AtomicU32 = AtomicU32::new(VmapVariant::LazyPtes as u32);
static MAX_LAZY: AtomicU32 = AtomicU32::new(0);

fn areas() -> &'static SpinLock<Areas> {
    AREAS.get()
}

/// The `--vmap` form in use.
pub fn variant() -> VmapVariant {
    VmapVariant::from_index(VARIANT.load(Ordering::Relaxed) as u64).unwrap_or(VmapVariant::LazyPtes)
}

/// Whether vunmap leaves work for a purge.
pub fn is_lazy() -> bool {
    variant() != VmapVariant::Eager
}

/// The nodes the arena starts with.
const FIRST_NODES: usize = 1024;
/// The arena grows by this many pages at a time (16 pages, 1638 nodes), as
/// Linux's vmap areas came from a slab that grows.
const GROW_ORDER: u32 = 4;
/// Lowmem pages the arena's growth took (kept).
static ARENA_PAGES: AtomicU32 = AtomicU32::new(0);

/// Where the vmalloc space's L1s come from (the pagetable allocator's lowmem).
static KERNEL_TABLES: Once<pgtable::TableSource> = Once::new();

/// Sets the vmap layer up: the node arena's first slice (from the boot
/// allocator, so call before it closes), the `--vmap` form, and where the
/// space's L1s come from.
pub fn init(info: &shared::boot::BootInfo, tables: pgtable::TableSource) {
    KERNEL_TABLES.set(tables);
    VARIANT.store(info.config.vmap() as u32, Ordering::Relaxed);
    MAX_LAZY.store(lazy_max_pages(info.nr_vcpus), Ordering::Relaxed);
    let bytes = (FIRST_NODES * core::mem::size_of::<Node>()) as u64;
    let pa = memblock::alloc_contiguous_fresh(bytes).expect("no lowmem for the vmap area nodes");
    // SAFETY: the boot allocator's fresh lowmem, room for FIRST_NODES nodes,
    // owned by the vmap layer for ever; AreaTree initialises every node.
    let storage = unsafe { nodes_at(pa, FIRST_NODES) };
    AREAS.set(SpinLock::new(Areas { tree: AreaTree::new(storage), lazy_head: NIL, lazy_areas: 0, lazy_pages: 0 }));
    vmap_block::init(info.nr_vcpus);
}

/// # Safety
/// `[pa, pa + n nodes)` is lowmem nobody else uses, for ever.
unsafe fn nodes_at(pa: u64, n: usize) -> &'static mut [Node] {
    let base = phys_to_virt(pa) as *mut Node;
    for i in 0..n {
        // SAFETY: per the contract, so that the slice below holds valid nodes.
        unsafe { base.add(i).write(Node::EMPTY) };
    }
    // SAFETY: initialised above; the caller's for ever, per the contract.
    unsafe { core::slice::from_raw_parts_mut(base, n) }
}

/// Adds a slice of lowmem to the arena; false when lowmem has no room or the
/// arena has its most slices.
fn grow_arena() -> bool {
    let Some(pa) = page::alloc_pages(page::Zone::Normal, GROW_ORDER) else {
        return false;
    };
    let n = ((PAGE_SIZE << GROW_ORDER) as usize) / core::mem::size_of::<Node>();
    // SAFETY: fresh lowmem pages from the page allocator, given to the arena
    // for ever below (or given back if it has no room).
    let storage = unsafe { nodes_at(pa, n) };
    if areas().lock().tree.grow(storage).is_err() {
        page::free_pages(pa, GROW_ORDER);
        return false;
    }
    ARENA_PAGES.fetch_add(1 << GROW_ORDER, Ordering::Relaxed);
    true
}

/// Lowmem pages the vmap layer took for itself since boot and keeps: the
/// vmalloc space's L1s, the area arena's growth and the blocks' bookkeeping.
pub fn pages_kept() -> u32 {
    pgtable::vmalloc_l1s() + ARENA_PAGES.load(Ordering::Relaxed) + vmap_block::pages_kept()
}

/// A snapshot of the vmap layer.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Areas in use (blocks included).
    pub live_areas: u32,
    /// Areas vunmapped lazily, not yet purged, and their pages.
    pub lazy_areas: u32,
    pub lazy_pages: u32,
    pub lazy_max_pages: u32,
}

/// How many more areas of `pages` pages the space has room for now, first fit
/// packing them into every gap (tests).
pub fn room_for(pages: u32) -> u32 {
    let a = areas().lock();
    let size = pages * PAGE_SIZE;
    let mut room = 0;
    let mut prev_end = vmalloc_start();
    let mut id = a.tree.first();
    while let Some(i) = id {
        let area = a.tree.area(i);
        room += (area.start - prev_end) / size;
        prev_end = area.end;
        id = a.tree.next(i);
    }
    room + (vmalloc_end() - prev_end) / size
}

pub fn stats() -> Stats {
    let a = areas().lock();
    Stats {
        live_areas: a.tree.len() - a.lazy_areas,
        lazy_areas: a.lazy_areas,
        lazy_pages: a.lazy_pages,
        lazy_max_pages: MAX_LAZY.load(Ordering::Relaxed),
    }
}

/// Finds room for `size` bytes aligned to `align`, purging the lazy areas once
/// if there is none. Returns the start.
pub(super) fn alloc_area(size: u32, align: u32, kind: u32) -> Option<u32> {
    let mut purged = false;
    loop {
        let fit = {
            let mut a = areas().lock();
            let r = a.tree.alloc(size, align, vmalloc_start(), vmalloc_end());
            if let Ok(f) = r {
                a.tree.set_data(f.id, kind);
            }
            r
        };
        match fit {
            Ok(f) => {
                percpu::count(Counter::VmapAreaAllocs, 1);
                percpu::count(Counter::VmapSearchVisits, f.visited as u64);
                return Some(f.start);
            }
            // Linux allocates the area's node before it searches: no node is
            // a failed kmalloc, not a full space.
            Err(AllocError::NoNodes) if grow_arena() => {}
            Err(AllocError::NoSpace | AllocError::NoNodes) if !purged => {
                percpu::count(Counter::VmapAllocRetries, 1);
                purged = true;
                purge(false);
            }
            Err(_) => {
                percpu::count(Counter::VmapAllocFailures, 1);
                return None;
            }
        }
    }
}

/// The busy area starting at `va` and its kind; panics on anything else (Linux's
/// "Trying to vfree() nonexistent vm area").
fn busy_area(va: u32) -> (u32, u32, u32) {
    let a = areas().lock();
    let id = a.tree.find_start(va).unwrap_or_else(|| panic!("BUG: vunmap of {va:#x}, which starts no vmap area"));
    let area = a.tree.area(id);
    assert!(area.state == AreaState::Busy, "BUG: vunmap of {va:#x}, an area already unmapped ({:?})", area.state);
    (id, area.end, area.data)
}

/// Gives `[va, va + pages)` its L1s (2.6.28's `vmap_page_range` allocated them
/// as it went, through `pte_alloc_kernel`); false when lowmem has no page for
/// one, and then nothing is mapped.
fn populate(va: u32, pages: u32) -> bool {
    pgtable::populate_kernel(va, va + pages * PAGE_SIZE, *KERNEL_TABLES.get()).is_some()
}

/// Maps `frames` at `va` (whose PTEs must be clear: the debug checker's "slot
/// reused while live", and whose L1s must exist: [`populate`]). 2.6.28's
/// vmap_page_range ran in no lazy-MMU section: under a hypervisor each PTE is
/// its own `update_va_mapping`.
pub(super) fn map_pages(va: u32, frames: &[u64]) {
    for (i, &pa) in frames.iter().enumerate() {
        let v = va + i as u32 * PAGE_SIZE;
        let old = read_kernel_pte(v);
        assert!(old == 0, "BUG: vmap over a live PTE at {v:#x} ({old:#x})");
        write_kernel_pte(v, (pa & ADDR_MASK) | KERNEL_RW);
    }
}

/// vunmap's work on the PTEs of `[start, end)` (the caller's, just given up):
/// raise each frame's lazy-alias count and, with lazy-tlb, clear the PTE but
/// keep its frame. `each` sees every mapped frame.
pub(super) fn leave_lazy(start: u32, end: u32, mut each: impl FnMut(u64)) {
    let clear = variant() == VmapVariant::LazyTlb;
    pv::lazy_enter();
    // With lazy-tlb, a frame is handed on once the host has its cleared PTE.
    let mut after = AfterFlush::new(|pa| {
        alias::get(pa);
        each(pa);
    });
    let mut va = start;
    while va < end {
        let e = read_kernel_pte(va);
        if e & P != 0 {
            if clear {
                write_kernel_pte(va, (e & ADDR_MASK) | LAZY);
            }
            after.push(e & ADDR_MASK);
        }
        va += PAGE_SIZE;
    }
    pv::lazy_leave();
}

/// Before a flush: every present PTE of `[start, end)` becomes a LAZY entry.
pub(super) fn retire(start: u32, end: u32) {
    pv::lazy_enter();
    let mut va = start;
    while va < end {
        let e = read_kernel_pte(va);
        if e & P != 0 {
            write_kernel_pte(va, (e & ADDR_MASK) | LAZY);
        }
        va += PAGE_SIZE;
    }
    pv::lazy_leave();
}

/// After the flush: every LAZY entry of `[start, end)` is cleared and its frame's
/// lazy alias dropped (lazy forms) and `each` called on it. The entries cleared.
pub(super) fn release(start: u32, end: u32, lazy: bool, mut each: impl FnMut(u64)) -> u32 {
    pv::lazy_enter();
    let mut after = AfterFlush::new(|pa| {
        if lazy {
            alias::put(pa);
        }
        each(pa);
    });
    let mut va = start;
    let mut n = 0;
    while va < end {
        let e = read_kernel_pte(va);
        if e & LAZY != 0 {
            write_kernel_pte(va, 0);
            after.push(e & ADDR_MASK);
            n += 1;
        }
        va += PAGE_SIZE;
    }
    drop(after);
    pv::lazy_leave();
    n
}

/// One flush of every CPU's TLB: Linux's flush_tlb_kernel_range before 3.5, a
/// full flush whatever the range, so no range is kept.
fn flush_every_cpu() {
    percpu::count(Counter::VmapFlushes, 1);
    if bootinfo::get().config.inject() == Inject::VmapLocalFlush {
        tlb::flush_local();
        return;
    }
    percpu::count(Counter::VmapFlushIpis, (smp::nr_cpus() - 1) as u64);
    let t0 = crate::arch::cpu::rdtsc();
    tlb::flush_all();
    percpu::count(Counter::VmapFlushCycles, crate::arch::cpu::rdtsc() - t0);
}

/// Gives an area up: eagerly (clear, flush, free at once) or lazily.
/// `owned`: a vmalloc area, whose pages go back to the allocator.
fn free_area(id: u32, start: u32, end: u32, kind: u32) {
    let owned = kind & VM_ALLOC != 0;
    if !is_lazy() {
        retire(start, end);
        flush_every_cpu();
        release(start, end, false, |pa| {
            if owned {
                page::free_pages(pa, 0)
            }
        });
        areas().lock().tree.remove(id);
        percpu::count(Counter::VmapAreaFrees, 1);
        return;
    }
    // Linux's vfree frees the pages at once, lazy alias and all: the alias a
    // hypervisor trips over when the page comes back as a pagetable. But only
    // once the area is on the lazy list: a page handed out before would carry
    // an alias that a vm_unmap_aliases() running meanwhile cannot see, and a
    // pin refused for it would be refused again after the purge.
    let mut pages = page::PageChain::new();
    leave_lazy(start, end, |pa| {
        if owned {
            pages.push(pa)
        }
    });
    free_area_lazy(id);
    pages.free_all();
}

/// Marks an area lazily freed; purges if too much is owed.
pub(super) fn free_area_lazy(id: u32) {
    if enqueue_lazy(id) {
        purge(true);
    }
}

/// Puts an area on the lazy list, where the next purge finds it; whether more
/// is owed than `--lazy-max` allows (the caller then purges).
fn enqueue_lazy(id: u32) -> bool {
    let mut a = areas().lock();
    let area = a.tree.area(id);
    let pages = (area.end - area.start) / PAGE_SIZE;
    a.tree.set_state(id, AreaState::Lazy);
    let head = a.lazy_head;
    a.tree.set_link(id, head);
    a.lazy_head = id;
    a.lazy_areas += 1;
    a.lazy_pages += pages;
    percpu::count(Counter::VmapLazyAreas, 1);
    percpu::count(Counter::VmapLazyPages, pages as u64);
    a.lazy_pages > MAX_LAZY.load(Ordering::Relaxed)
}

/// The area of a block starting at `va`, given back whole (lazily). The caller
/// holds the block's lock, so that no purge runs between the block leaving the
/// live ones (whose freed ranges `vm_unmap_aliases()` flushes) and its area
/// joining the lazy list; it purges with [`purge`] after dropping that lock if
/// this returns true.
pub(super) fn block_area_lazy(va: u32) -> bool {
    let id = areas().lock().tree.find_start(va).expect("a vmap block without its area");
    enqueue_lazy(id)
}

/// Purges the lazy areas; `try_only` gives up if another purge runs (the
/// threshold path, Linux's try_purge_vmap_area_lazy). Returns whether it flushed.
pub fn purge(try_only: bool) -> bool {
    let _guard = if try_only {
        match PURGE.try_lock() {
            Some(g) => g,
            None => return false,
        }
    } else {
        PURGE.lock()
    };
    purge_locked(false).0
}

/// The purge, with PURGE held: `force` flushes even if no area was lazy (the
/// blocks had something outstanding). Whether it flushed, whether it purged
/// a lazy area, and the mapped pages it cleared (areas' and blocks').
pub(super) fn purge_locked(force: bool) -> (bool, bool, u32) {
    // Take the lazy list; the areas stay in the tree (their addresses are not
    // reusable) until after the flush.
    let (head, nr_pages) = {
        let mut a = areas().lock();
        let head = a.lazy_head;
        a.lazy_head = NIL;
        let mut id = head;
        let mut pages = 0;
        while id != NIL {
            let area = a.tree.area(id);
            a.tree.set_state(id, AreaState::Purging);
            pages += (area.end - area.start) / PAGE_SIZE;
            id = area.link;
        }
        (head, pages)
    };
    let each_area = |f: &mut dyn FnMut(u32, u32)| {
        let mut id = head;
        while id != NIL {
            let area = areas().lock().tree.area(id);
            f(area.start, area.end);
            id = area.link;
        }
    };
    if variant() == VmapVariant::LazyPtes {
        each_area(&mut |s, e| retire(s, e));
    }
    let flush = nr_pages > 0 || force;
    if flush {
        flush_every_cpu();
    }
    let mut cleared = 0;
    each_area(&mut |s, e| cleared += release(s, e, true, |_| {}));
    cleared += vmap_block::release_flushed();
    if nr_pages > 0 {
        let mut a = areas().lock();
        let mut id = head;
        let mut n = 0;
        while id != NIL {
            let next = a.tree.area(id).link;
            a.tree.remove(id);
            n += 1;
            id = next;
        }
        a.lazy_areas -= n;
        a.lazy_pages -= nr_pages;
        percpu::count(Counter::VmapAreaFrees, n as u64);
        percpu::count(Counter::VmapPurges, 1);
        percpu::count(Counter::VmapPurgedPages, nr_pages as u64);
    }
    (flush, nr_pages > 0, cleared)
}

/// Flushes every lazy mapping the `--vmap-flush` form finds: the lazy areas
/// and the blocks' freed ranges, with one flush, and none when nothing was
/// outstanding. What Linux under Xen calls before it pins a pagetable.
pub fn vm_unmap_aliases() -> bool {
    let every_block = bootinfo::get().config.vmap_flush() == VmapFlush::Linux65;
    vm_unmap_aliases_walking(every_block)
}

/// vm_unmap_aliases with 6.5's walk of every block, whatever `--vmap-flush`
/// says: the benchmark's device after a pin 2.6.28's form could not make
/// pinnable (see `pv::pin`).
pub fn vm_unmap_aliases_every_block() -> bool {
    vm_unmap_aliases_walking(true)
}

fn vm_unmap_aliases_walking(every_block: bool) -> bool {
    let t0 = crate::arch::cpu::rdtsc();
    let flushed = vm_unmap_aliases_timed(every_block);
    let cycles = crate::arch::cpu::rdtsc() - t0;
    percpu::count(Counter::VmUnmapAliasesCycles, cycles);
    if percpu::this_cpu().in_pin.load(Ordering::Relaxed) {
        percpu::count(Counter::VmUnmapAliasesInPinCycles, cycles);
    }
    if flushed {
        percpu::count(Counter::VmUnmapAliasesFlushCycles, cycles);
    }
    flushed
}

fn vm_unmap_aliases_timed(every_block: bool) -> bool {
    percpu::count(Counter::VmUnmapAliases, 1);
    // The TSC is read only when another CPU holds the lock (it is purging).
    let (_guard, waited) = match PURGE.try_lock() {
        Some(g) => (g, 0),
        None => {
            let t0 = crate::arch::cpu::rdtsc();
            let g = PURGE.lock();
            (g, crate::arch::cpu::rdtsc() - t0)
        }
    };
    percpu::count(Counter::VmUnmapAliasesLockCycles, waited);
    let dirty = vmap_block::take_dirty(every_block);
    let (flushed, areas, cleared) = purge_locked(dirty.flush);
    percpu::count(Counter::VmUnmapAliasesPurgedPages, cleared as u64);
    if flushed {
        percpu::count(Counter::VmUnmapAliasesFlushed, 1);
        if !dirty.fresh && !areas {
            percpu::count(Counter::VmUnmapAliasesReflushed, 1);
        }
    } else {
        percpu::count(Counter::VmUnmapAliasesEmptyLockCycles, waited);
    }
    flushed
}

/// Maps `frames` contiguously (with a guard page after); the address, or None
/// when the space is full.
pub fn vmap(frames: &[u64]) -> Option<u32> {
    let n = frames.len() as u32;
    assert!(n > 0, "vmap of no pages");
    let va = alloc_area((n + 1) * PAGE_SIZE, PAGE_SIZE, VM_GUARD | n)?;
    if !populate(va, n) {
        vunmap(va);
        return None;
    }
    map_pages(va, frames);
    Some(va)
}

/// Unmaps what [`vmap`] returned.
pub fn vunmap(va: u32) {
    let (id, end, kind) = busy_area(va);
    assert!(kind & VM_ALLOC == 0 && kind & VM_BLOCK == 0, "BUG: vunmap of {va:#x}, not a vmap area");
    free_area(id, va, end, kind);
}

/// `size` bytes of virtually contiguous memory, backed by highmem pages where
/// there are any, aligned to `align` (a power of two, at least a page).
pub fn vmalloc_aligned(size: u32, align: u32) -> Option<u32> {
    let n = size.div_ceil(PAGE_SIZE);
    assert!(n > 0, "vmalloc of nothing");
    let va = alloc_area((n + 1) * PAGE_SIZE, align.max(PAGE_SIZE), VM_ALLOC | VM_GUARD | n)?;
    if !populate(va, n) {
        vfree(va);
        return None;
    }
    for i in 0..n {
        match page::alloc_user_page() {
            Some(pa) => map_pages(va + i * PAGE_SIZE, &[pa]),
            None => {
                // Give back what was mapped, as vfree would.
                vfree(va);
                return None;
            }
        }
    }
    Some(va)
}

pub fn vmalloc(size: u32) -> Option<u32> {
    vmalloc_aligned(size, PAGE_SIZE)
}

/// Unmaps and frees what [`vmalloc`] returned.
pub fn vfree(va: u32) {
    let (id, end, kind) = busy_area(va);
    assert!(kind & VM_ALLOC != 0, "BUG: vfree of {va:#x}, not a vmalloc area");
    free_area(id, va, end, kind);
}

/// Maps `frames` for a short while (no guard page): small requests from this
/// CPU's vmap block in the lazy forms, the rest from the tree.
pub fn vm_map_ram(frames: &[u64]) -> Option<u32> {
    let n = frames.len() as u32;
    assert!(n > 0, "vm_map_ram of no pages");
    let va = if is_lazy() && n <= vmap_block::VMAP_MAX_ALLOC {
        vmap_block::alloc(n)?
    } else {
        alloc_area(n * PAGE_SIZE, PAGE_SIZE, n)?
    };
    if !populate(va, n) {
        vm_unmap_ram(va, n);
        return None;
    }
    map_pages(va, frames);
    Some(va)
}

/// Unmaps what [`vm_map_ram`] returned (`count` must be what was mapped).
pub fn vm_unmap_ram(va: u32, count: u32) {
    if is_lazy() && count <= vmap_block::VMAP_MAX_ALLOC {
        leave_lazy(va, va + count * PAGE_SIZE, |_| {});
        vmap_block::free(va, count);
    } else {
        let (id, end, kind) = busy_area(va);
        assert!(kind & (VM_ALLOC | VM_GUARD | VM_BLOCK) == 0, "BUG: vm_unmap_ram of {va:#x}, not a vm_map_ram area");
        assert!(
            end - va == count * PAGE_SIZE,
            "BUG: vm_unmap_ram of {va:#x} with {count} pages, mapped {}",
            (end - va) / PAGE_SIZE
        );
        free_area(id, va, end, kind);
    }
}

/// The frame mapped at `va` now, if any (tests).
pub fn mapped_frame(va: u32) -> Option<u64> {
    let e = read_kernel_pte(va);
    (e & P != 0).then_some(e & ADDR_MASK)
}

/// Whether `va`'s PTE is present and global (tests).
pub fn mapped_global(va: u32) -> bool {
    let e = read_kernel_pte(va);
    e & P != 0 && e & shared::pae::G != 0
}

/// Whether `va`'s PTE is present and writable (tests).
pub fn mapped_writable(va: u32) -> bool {
    let e = read_kernel_pte(va);
    e & P != 0 && e & shared::pae::RW != 0
}

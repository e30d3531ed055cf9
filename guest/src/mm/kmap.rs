//! kmaps: temporary kernel mappings of highmem pages, in the four forms argued
//! over in 2002.
//!
//! - **atomic**: a per-CPU fixmap slot per use (KM_PTE0, KM_PTE1, KM_USER0,
//!   KM_USER1); preemption is off while mapped; only this CPU's TLB is flushed.
//! - **persistent**: the global pool (`kmap`/`kunmap`): a PKMAP window of
//!   `--last-pkmap` entries under one `kmap_lock`, `pkmap_count` with Linux's
//!   meaning (0 free, 1 unused but maybe still in some TLB, n: n-1 users), the
//!   page->virtual cache, and on wrap the O(N) `flush_all_zero_pkmaps` with one
//!   global TLB flush by IPI. A full pool puts the caller to sleep. As in
//!   Arcangeli's pte-highmem-5, pte pages have two series of their own beside
//!   this default one ([`Serie`]): `--last-pkmap` entries each, a waitqueue each,
//!   a fresh entry per map.
//! - **percpu-pool**: `--pool-size` fixmap slots per CPU that a task may keep
//!   across sleeps, because the task is pinned to its CPU while it holds one (no
//!   other CPU takes it); no lock, local flushes, sleeps when the CPU's pool is
//!   full.
//! - **per-task**: two virtual pages below the task's user stack (a guard page
//!   between), in its own address space (their L1 is lowmem), supervisor-only;
//!   they move with the task.
//!
//! A lowmem page needs no mapping in any form: its direct-map address is used.

use core::sync::atomic::{AtomicU32, Ordering};

use nosleep::MaySleep;
use shared::boot::MAX_VCPUS;
use shared::counters::Counter;
use shared::pae::ADDR_MASK;

use crate::mm::layout::{
    fix_to_virt, phys_to_virt, pkmap_base, FixSlot, FIXMAP_START, PAGE_SIZE, PKMAP_MAX, PKMAP_MIN,
};
use crate::mm::page::{self, pfn_to_page};
use crate::mm::pgtable::{kernel_pte, write_kernel_pte, KERNEL_RO, KERNEL_RW};
use crate::mm::{pv, tlb};
use crate::sched::{self, WaitQueue};
use crate::sync::SpinLock;
use crate::{bootinfo, percpu};

/// Atomic kmap slots (Linux's `km_type`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KmType {
    Pte0 = 0,
    Pte1 = 1,
    User0 = 2,
    User1 = 3,
}

/// First fixmap slot of the per-CPU pool.
const POOL_FIRST_SLOT: u32 = 16;
/// Virtual pages of the per-task kmap: the first two of the top 2 MiB of user
/// space, below the stack's guard page (see `address_space`).
pub const PER_TASK_VA: u32 = 0xbfe0_0000;

fn count(c: Counter) {
    percpu::count(c, 1);
}

fn note_map() {
    let t = sched::current();
    // The current task's own counter.
    t.maps_live.set(t.maps_live.get() + 1);
}

fn note_unmap() {
    let t = sched::current();
    t.maps_live.set(t.maps_live.get() - 1);
}

// ---------------------------------------------------------------- atomic

/// The kernel's entry for a kmap of `pa`: writable, or read-only (a pinned
/// pagetable under `--pvmmu on`, Linux's `kmap_atomic_prot(.., PAGE_KERNEL_RO)`).
fn kmap_entry(pa: u64, writable: bool) -> u64 {
    (pa & ADDR_MASK) | if writable { KERNEL_RW } else { KERNEL_RO }
}

/// Whether an unmap clears its entry: always under `--pvmmu on` (a stale
/// writable kmap is an alias the host refuses to pin), else only for the debug
/// checker (so that a stale use faults).
fn clear_on_unmap() -> bool {
    sched::debug() || pv::on()
}

/// Maps `pa` writable in this CPU's slot `ty`; preemption stays off until
/// [`kunmap_atomic`].
pub fn kmap_atomic(pa: u64, ty: KmType) -> *mut u8 {
    kmap_atomic_prot(pa, ty, true)
}

/// Maps `pa` in this CPU's slot `ty`, writable or read-only.
pub fn kmap_atomic_prot(pa: u64, ty: KmType, writable: bool) -> *mut u8 {
    percpu::preempt_disable();
    percpu::atomic_kmap_taken();
    if page::is_lowmem(pa) {
        count(Counter::KmapDirect);
        return phys_to_virt(pa) as *mut u8;
    }
    count(Counter::KmapAtomic);
    let va = fix_to_virt(FixSlot::Kmap { cpu: percpu::cpu_id(), idx: ty as u32 });
    // The clear of the slot's last unmap may still be queued (pv, lazy-MMU).
    pv::flush();
    // SAFETY: this CPU's own fixmap slot entry, preemption off.
    if sched::debug() && unsafe { kernel_pte(va).read_volatile() } != 0 {
        panic!("BUG: atomic kmap slot {ty:?} of cpu {} reused while live", percpu::cpu_id());
    }
    write_kernel_pte(va, kmap_entry(pa, writable));
    // Live at once, even inside a lazy-MMU section (Linux's kmap_atomic flushes
    // the lazy queue too).
    pv::flush();
    tlb::flush_one(va);
    va as *mut u8
}

/// Ends an atomic kmap of `va` (from [`kmap_atomic`]).
pub fn kunmap_atomic(va: *mut u8) {
    let va = va as u32;
    if va >= FIXMAP_START && clear_on_unmap() {
        // This CPU's own fixmap slot, still preemption off.
        write_kernel_pte(va, 0);
        tlb::flush_one(va);
    }
    percpu::atomic_kmap_dropped();
    percpu::preempt_enable();
}

// ---------------------------------------------------------------- persistent

/// The series of the persistent kmap window (pte-highmem-5's `km_serie_type`),
/// `--last-pkmap` entries each, each with its own waitqueue, under the one
/// kmap_lock. A task never takes two entries of one series at once (two maps
/// of one pool could deadlock: every task holding one and waiting for a
/// second), so a nested pte map comes from a series of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Serie {
    /// `kmap()` of any page, with the page->virtual cache.
    Default = 0,
    /// `pte_offset`: a pte page, a fresh entry every map (no page->virtual).
    Pagetable = 1,
    /// `pte_offset2`: the nested pte map (fork's copy, mremap's move).
    Pagetable2 = 2,
}

const SERIES: [Serie; 3] = [Serie::Default, Serie::Pagetable, Serie::Pagetable2];

struct Pkmap {
    /// Linux's pkmap_count: 0 free, 1 unused (maybe cached in a TLB), n >= 2 in use.
    count: [u16; PKMAP_MAX as usize],
    /// The page each entry maps.
    pa: [u64; PKMAP_MAX as usize],
    last: u32,
    /// Wraps of the scan, each one `flush_all_zero_pkmaps` pass.
    wraps: u32,
}

impl Pkmap {
    const fn new() -> Self {
        Pkmap { count: [0; PKMAP_MAX as usize], pa: [0; PKMAP_MAX as usize], last: 0, wraps: 0 }
    }
}

/// The series, under kmap_lock.
static KMAP_LOCK: SpinLock<[Pkmap; 3]> = SpinLock::new([Pkmap::new(), Pkmap::new(), Pkmap::new()]);
static PKMAP_WAIT: [WaitQueue; 3] = [const { WaitQueue::new() }; 3];
/// Entries with count 0 or 1, per series (a hint for the sleepers' condition).
static PKMAP_RECLAIMABLE: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

fn last_pkmap() -> u32 {
    (bootinfo::get().config.last_pkmap as u32).clamp(PKMAP_MIN, PKMAP_MAX)
}

fn pkmap_va(s: Serie, i: u32) -> u32 {
    pkmap_base() + (s as u32 * last_pkmap() + i) * PAGE_SIZE
}

/// The series and index of a persistent kmap address.
fn pkmap_slot(va: u32) -> (Serie, usize) {
    let n = (va - pkmap_base()) / PAGE_SIZE;
    (SERIES[(n / last_pkmap()) as usize], (n % last_pkmap()) as usize)
}

fn lock_kmap() -> crate::sync::SpinGuard<'static, [Pkmap; 3]> {
    let (g, waited) = KMAP_LOCK.lock_counted();
    count(Counter::KmapLockTaken);
    if waited.spins != 0 {
        count(Counter::KmapLockWaits);
        percpu::count(Counter::KmapLockSpins, waited.spins as u64);
        percpu::count(Counter::KmapLockWaitCycles, waited.cycles);
    }
    g
}

/// Frees every entry of series `s` nobody uses (count 1) and flushes every
/// CPU's TLB once if it freed any.
fn flush_all_zero_pkmaps(p: &mut Pkmap, s: Serie) {
    count(Counter::PkmapFlushes);
    if free_all_zero_pkmaps(p, s) != 0 {
        tlb::flush_all();
    }
}

/// Frees every entry of series `s` nobody uses (count 1), clearing their
/// ptes; how many. The caller flushes every CPU's TLB if any.
fn free_all_zero_pkmaps(p: &mut Pkmap, s: Serie) -> u64 {
    let mut freed = 0;
    pv::lazy_enter();
    for i in 0..last_pkmap() {
        if p.count[i as usize] != 1 {
            continue;
        }
        p.count[i as usize] = 0;
        freed += 1;
        // 0: a forgotten (or already cleared) entry, its pte clear.
        if p.pa[i as usize] != 0 {
            // The pool's own kernel pte, under kmap_lock.
            write_kernel_pte(pkmap_va(s, i), 0);
            if s == Serie::Default {
                // page->virtual is under kmap_lock.
                pfn_to_page(p.pa[i as usize] >> 12).virtual_.set(0);
            }
            p.pa[i as usize] = 0;
        }
    }
    pv::lazy_leave();
    percpu::count(Counter::PkmapFreed, freed);
    freed
}

/// A free entry of series `s` for `pa`, mapped and counted 1 (unused), or
/// `None` when every entry is in use. The scan starts after the last entry
/// taken; at the wrap every unused entry is freed with one global flush.
fn take_entry(p: &mut Pkmap, s: Serie, pa: u64, writable: bool) -> Option<u32> {
    let n = last_pkmap();
    let mut scanned = 0;
    while scanned < n {
        p.last = (p.last + 1) % n;
        if p.last == 0 {
            // The flush frees every unused entry, also those this scan has
            // passed already: scan the whole pool again (Linux resets its
            // count here too).
            p.wraps += 1;
            flush_all_zero_pkmaps(p, s);
            scanned = 0;
        }
        if p.count[p.last as usize] == 0 {
            let (i, va) = (p.last, pkmap_va(s, p.last));
            // A free entry of the window, under kmap_lock.
            write_kernel_pte(va, kmap_entry(pa, writable));
            pv::flush();
            p.count[i as usize] = 1;
            p.pa[i as usize] = pa;
            return Some(i);
        }
        scanned += 1;
    }
    None
}

/// Sleeps until series `s` may have an entry again (kmap_lock dropped by the
/// caller).
fn wait_for_entry(ctx: &mut MaySleep, s: Serie) {
    count(Counter::KmapSleeps);
    PKMAP_WAIT[s as usize].wait_until(ctx, || PKMAP_RECLAIMABLE[s as usize].load(Ordering::Relaxed) != 0);
}

/// Maps `pa` writable in the persistent pool (or returns its existing mapping);
/// may sleep.
pub fn kmap(ctx: &mut MaySleep, pa: u64) -> *mut u8 {
    kmap_prot(ctx, pa, true)
}

/// Maps `pa` in the default series, writable or read-only. A page has one
/// mapping there, shared by its users, so it is always used one way: a
/// pagetable read-only, anything else writable ([`forget`] drops the unused
/// mapping of a page that changes between the two).
pub fn kmap_prot(ctx: &mut MaySleep, pa: u64, writable: bool) -> *mut u8 {
    // Linux's kmap() may sleep (a full pool), lowmem pages or not.
    sched::might_sleep(ctx, "kmap");
    if page::is_lowmem(pa) {
        count(Counter::KmapDirect);
        return phys_to_virt(pa) as *mut u8;
    }
    count(Counter::KmapPersistent);
    let page = pfn_to_page(pa >> 12);
    let mut p = lock_kmap();
    // page->virtual, under kmap_lock.
    let mut va = page.virtual_.get();
    if va != 0 {
        count(Counter::KmapCacheHits);
    }
    while va == 0 {
        match take_entry(&mut p[Serie::Default as usize], Serie::Default, pa, writable) {
            Some(i) => {
                va = pkmap_va(Serie::Default, i);
                page.virtual_.set(va);
            }
            None => {
                // Every entry is in use: sleep until a kunmap frees one.
                PKMAP_RECLAIMABLE[0].store(0, Ordering::Relaxed);
                drop(p);
                wait_for_entry(ctx, Serie::Default);
                p = lock_kmap();
                // Someone else may have mapped the page meanwhile.
                va = page.virtual_.get();
            }
        }
    }
    let (_, i) = pkmap_slot(va);
    p[0].count[i] += 1;
    drop(p);
    note_map();
    va as *mut u8
}

/// Ends a persistent kmap of `pa`.
pub fn kunmap(pa: u64) {
    if page::is_lowmem(pa) {
        return;
    }
    let page = pfn_to_page(pa >> 12);
    let mut p = lock_kmap();
    let va = page.virtual_.get();
    assert!(va != 0, "kunmap of a page that is not kmapped");
    let (_, i) = pkmap_slot(va);
    p[0].count[i] -= 1;
    let wake = p[0].count[i] == 1;
    drop(p);
    note_unmap();
    if wake {
        PKMAP_RECLAIMABLE[0].fetch_add(1, Ordering::Relaxed);
        PKMAP_WAIT[0].wake_all();
    }
}

/// Maps the pte page `pa` in series `s` (pte-highmem's `kmap_pagetable`):
/// always a fresh entry, the address kept by the caller, not in page->virtual;
/// may sleep when the series is full.
pub fn kmap_serie_prot(ctx: &mut MaySleep, pa: u64, s: Serie, writable: bool) -> *mut u8 {
    assert!(s != Serie::Default, "kmap_serie_prot is for the pagetable series");
    sched::might_sleep(ctx, "kmap_serie");
    if page::is_lowmem(pa) {
        count(Counter::KmapDirect);
        return phys_to_virt(pa) as *mut u8;
    }
    count(Counter::KmapPersistent);
    let mut p = lock_kmap();
    let i = loop {
        if let Some(i) = take_entry(&mut p[s as usize], s, pa, writable) {
            break i;
        }
        PKMAP_RECLAIMABLE[s as usize].store(0, Ordering::Relaxed);
        drop(p);
        wait_for_entry(ctx, s);
        p = lock_kmap();
    };
    p[s as usize].count[i as usize] = 2;
    drop(p);
    note_map();
    pkmap_va(s, i) as *mut u8
}

/// Ends a map of [`kmap_serie_prot`] at `va` (lowmem: nothing to do). The
/// entry stays "unused, maybe in a TLB" until its series wraps; under the
/// debug checker or the host's PV MMU its pte goes at once.
pub fn kunmap_serie(va: *mut u8) {
    let va = va as u32;
    if va < pkmap_base() || va >= FIXMAP_START {
        return;
    }
    let (s, i) = pkmap_slot(va);
    let mut p = lock_kmap();
    p[s as usize].count[i] = 1;
    if clear_on_unmap() {
        // The series' own pte, under kmap_lock; the TLB entry goes at the wrap.
        write_kernel_pte(va, 0);
        p[s as usize].pa[i] = 0;
    }
    drop(p);
    note_unmap();
    PKMAP_RECLAIMABLE[s as usize].fetch_add(1, Ordering::Relaxed);
    PKMAP_WAIT[s as usize].wake_all();
}

/// How often the series' scans wrapped and flushed, all series together (not
/// counting [`kmap_flush_unused`], which `pkmap_flushes` counts too).
pub fn wrap_flushes() -> u32 {
    lock_kmap().iter().map(|p| p.wraps).sum()
}

/// Whether a task sleeps waiting for a free entry of some series.
pub fn pkmap_waiters() -> bool {
    PKMAP_WAIT.iter().any(|w| w.has_sleepers())
}

/// Drops every unused persistent mapping now, in every series, with one
/// flush of every CPU's TLB if it dropped any (Linux's `kmap_flush_unused`).
pub fn kmap_flush_unused() {
    let mut p = lock_kmap();
    count(Counter::PkmapFlushes);
    let freed: u64 = SERIES.iter().map(|&s| free_all_zero_pkmaps(&mut p[s as usize], s)).sum();
    if freed != 0 {
        tlb::flush_all();
    }
}

// ---------------------------------------------------------------- per-CPU pool

struct Pool {
    busy: [AtomicU32; 2],
}

static POOLS: [Pool; MAX_VCPUS] = [const { Pool { busy: [AtomicU32::new(0), AtomicU32::new(0)] } }; MAX_VCPUS];
static POOL_WAIT: [WaitQueue; MAX_VCPUS] = [const { WaitQueue::new() }; MAX_VCPUS];

fn pool_size() -> u32 {
    bootinfo::get().config.pool_size as u32
}

/// The first free slot of a CPU's pool.
fn pool_free_slot(cpu: u32) -> Option<u32> {
    let pool = &POOLS[cpu as usize];
    (0..pool_size()).find(|i| pool.busy[(i / 32) as usize].load(Ordering::Relaxed) & (1 << (i % 32)) == 0)
}

fn pool_try_take(cpu: u32) -> Option<u32> {
    let was_on = crate::arch::cpu::irq_save();
    let got = pool_free_slot(cpu);
    if let Some(i) = got {
        POOLS[cpu as usize].busy[(i / 32) as usize].fetch_or(1 << (i % 32), Ordering::Relaxed);
    }
    crate::arch::cpu::irq_restore(was_on);
    got
}

/// Maps `pa` in a slot of this CPU's pool; the mapping survives sleeps (the task
/// is pinned to this CPU until [`kunmap_pool`], and already while it waits for a
/// slot). Sleeps while the pool is full. Returns (address, slot).
pub fn kmap_pool(ctx: &mut MaySleep, pa: u64) -> (*mut u8, u32) {
    kmap_pool_prot(ctx, pa, true)
}

/// [`kmap_pool`], writable or read-only.
pub fn kmap_pool_prot(ctx: &mut MaySleep, pa: u64, writable: bool) -> (*mut u8, u32) {
    // Linux's kmap() may sleep (a full pool), lowmem pages or not.
    sched::might_sleep(ctx, "kmap_pool");
    if page::is_lowmem(pa) {
        count(Counter::KmapDirect);
        return (phys_to_virt(pa) as *mut u8, u32::MAX);
    }
    count(Counter::KmapPercpuPool);
    let me = sched::current();
    // Pinned first: a task preempted between reading its CPU and pinning could
    // have been taken elsewhere.
    me.pin();
    let cpu = me.cpu();
    let slot = loop {
        if let Some(s) = pool_try_take(cpu) {
            break s;
        }
        count(Counter::KmapSleeps);
        POOL_WAIT[cpu as usize].wait_until(ctx, || pool_free_slot(cpu).is_some());
    };
    let va = fix_to_virt(FixSlot::Kmap { cpu, idx: POOL_FIRST_SLOT + slot });
    // A slot this task now owns in its CPU's fixmap.
    write_kernel_pte(va, kmap_entry(pa, writable));
    pv::flush();
    tlb::flush_one(va);
    note_map();
    (va as *mut u8, slot)
}

/// Whether a task sleeps waiting for a free slot of `cpu`'s pool.
pub fn pool_waiters(cpu: u32) -> bool {
    POOL_WAIT[cpu as usize].has_sleepers()
}

/// Ends a pool kmap.
pub fn kunmap_pool(slot: u32) {
    if slot == u32::MAX {
        return;
    }
    let cpu = sched::current().cpu();
    if clear_on_unmap() {
        let va = fix_to_virt(FixSlot::Kmap { cpu, idx: POOL_FIRST_SLOT + slot });
        // The slot this task owns.
        write_kernel_pte(va, 0);
        tlb::flush_one(va);
    }
    POOLS[cpu as usize].busy[(slot / 32) as usize].fetch_and(!(1 << (slot % 32)), Ordering::Relaxed);
    note_unmap();
    sched::current().unpin();
    POOL_WAIT[cpu as usize].wake_all();
}

// ---------------------------------------------------------------- per-task

/// Maps `pa` writable in the current task's slot `idx` (0 or 1).
pub fn kmap_task(pa: u64, idx: usize) -> *mut u8 {
    kmap_task_prot(pa, idx, true)
}

/// [`kmap_task`], writable or read-only.
pub fn kmap_task_prot(pa: u64, idx: usize, writable: bool) -> *mut u8 {
    if page::is_lowmem(pa) {
        count(Counter::KmapDirect);
        return phys_to_virt(pa) as *mut u8;
    }
    count(Counter::KmapPerTask);
    let t = sched::current();
    let mm = t.mm().expect("per-task kmap without an address space");
    // SAFETY: the task's own slots.
    let slots = unsafe { &mut *t.kmap_slots.get() };
    if sched::debug() && slots[idx] != 0 {
        panic!("BUG: per-task kmap slot {idx} of pid {} reused while live", t.pid());
    }
    slots[idx] = pa | 1;
    let va = PER_TASK_VA + idx as u32 * PAGE_SIZE;
    mm.set_per_task_pte(idx, kmap_entry(pa, writable));
    pv::flush();
    tlb::flush_one(va);
    note_map();
    va as *mut u8
}

/// Ends a per-task kmap.
pub fn kunmap_task(pa: u64, idx: usize) {
    if page::is_lowmem(pa) {
        return;
    }
    let t = sched::current();
    // SAFETY: the task's own slots.
    unsafe { (*t.kmap_slots.get())[idx] = 0 };
    if clear_on_unmap() {
        let mm = t.mm().expect("per-task kmap without an address space");
        mm.set_per_task_pte(idx, 0);
        tlb::flush_one(PER_TASK_VA + idx as u32 * PAGE_SIZE);
    }
    note_unmap();
}

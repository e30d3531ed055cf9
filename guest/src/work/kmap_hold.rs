//! kmap-hold: tasks hold kmaps of highmem pages across yields until their pool
//! runs full, so that later takers must sleep; then every page is checked
//! through its map and again through an atomic kmap, and released.
//!
//! The form is the `--pte` variant's: persistent (`kmap`, the `--last-pkmap`
//! pool shared by every CPU), percpu-pool (`kmap_pool`, `--pool-size` slots of
//! the task's CPU) or per-task (the task's two pages: `--pages` is capped at 2,
//! and there is no pool to fill). atomic and lowpte have no kmap that may be held
//! across a sleep; their tasks write and check each page through KM_USER0.
//!
//! A holder yields, holding its maps, until a task sleeps on its pool or every
//! task has taken its maps for the round. So when the tasks sharing a pool want
//! more maps than it has, the pool must run full and a taker must sleep (no
//! holder lets go before that). Tasks take their maps one at a time and may sleep
//! holding some, so `tasks x (maps - 1)` must stay below the pool's size, or every
//! task could sleep one map short of its set and none would ever let go: the
//! driver refuses such sizes.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use nosleep::MaySleep;
use shared::abi::errno;
use shared::config::{Inject, PteVariant};
use shared::results::GuestResult;

use crate::mm::highpte;
use crate::mm::kmap::{self, KmType};
use crate::mm::layout::phys_to_virt;
use crate::mm::page::{self, Zone};
use crate::mm::pgtable::alloc_low_page;
use crate::ring3::{pattern, WORDS_CHECKED};
use crate::{bootinfo, check, kprintln, sched, smp};

/// Most maps one task holds at once (its bookkeeping fills one page).
pub const MAX_HELD: u32 = 256;

/// Tasks of the phase, and the (task, round) takes completed so far.
static TASKS: AtomicU32 = AtomicU32::new(0);
static TAKEN: AtomicU32 = AtomicU32::new(0);
/// An injected bug is done once, by the first task that gets to it.
static INJECTED: AtomicBool = AtomicBool::new(false);

/// The kmap form a task holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Form {
    Persistent,
    Pool,
    PerTask,
    /// No form may be held across a sleep (atomic, lowpte).
    AtomicOnly,
}

fn form() -> Form {
    match highpte::variant() {
        PteVariant::Persistent => Form::Persistent,
        PteVariant::PercpuPool => Form::Pool,
        PteVariant::PerTask => Form::PerTask,
        PteVariant::Atomic | PteVariant::Lowpte => Form::AtomicOnly,
    }
}

/// Maps each task holds at once, for `--pages` pages.
fn held(pages: u32) -> u32 {
    match form() {
        Form::PerTask => pages.min(2),
        _ => pages,
    }
}

/// The size of the pool the holders share, if they share one.
fn pool_size(f: Form) -> Option<u32> {
    let cfg = &bootinfo::get().config;
    match f {
        Form::Persistent => Some(cfg.last_pkmap as u32),
        Form::Pool => Some(cfg.pool_size as u32),
        Form::PerTask | Form::AtomicOnly => None,
    }
}

/// Under `--pte persistent`, on the driver: with every entry of the pagetable
/// series but one held, a nested pte map still completes, its second map
/// coming from the series of its own (pte-highmem's deadlock avoidance; with
/// one pool for both maps it would sleep for ever). Reports
/// `nested_map_on_full_series` (1: completed).
pub fn nested_maps_on_a_full_series(ctx: &mut MaySleep) {
    if highpte::variant() != PteVariant::Persistent {
        return;
    }
    let Some(pt) = page::alloc_pages(Zone::HighMem, 0) else {
        check!(false, "no highmem page for the nested-map check");
        return;
    };
    crate::mm::ptcache::zero_page(pt);
    // The held addresses, in two lowmem pages (too many for a kernel stack).
    let Some(store) = page::alloc_pages(Zone::Normal, 1) else {
        check!(false, "no lowmem for the nested-map check");
        page::free_pages(pt, 0);
        return;
    };
    let n = crate::bootinfo::get().config.last_pkmap as usize;
    // SAFETY: two lowmem pages of our own, directly mapped: 2048 addresses.
    let held = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(store) as *mut u32, 2048) };
    for h in held.iter_mut().take(n - 1) {
        *h = kmap::kmap_serie_prot(ctx, pt, kmap::Serie::Pagetable, true) as u32;
    }
    {
        let (a, b) = highpte::pte_offset_map_nested(ctx, pt, pt);
        check!(a.get(0) == 0 && b.get(0) == 0, "the nested map reads a zeroed pte page");
    }
    for &h in held.iter().take(n - 1) {
        kmap::kunmap_serie(h as *mut u8);
    }
    page::free_pages(store, 1);
    page::free_pages(pt, 0);
    crate::hv::result(GuestResult::NestedMapOnFullSeries, 1);
}

/// The driver, before starting `tasks` tasks: says what will happen, and refuses
/// sizes that could deadlock (a failed check, and `false`).
pub fn prepare(tasks: u32, pages: u32) -> bool {
    TASKS.store(tasks, Ordering::Relaxed);
    TAKEN.store(0, Ordering::Relaxed);
    INJECTED.store(false, Ordering::Relaxed);
    let f = form();
    let h = held(pages);
    if page::zone_stats(Zone::HighMem).0 == 0 {
        check!(false, "kmap-hold: no highmem (--lowmem covers all RAM): nothing to kmap");
        return false;
    }
    if h > MAX_HELD {
        check!(false, "kmap-hold: --pages {pages}: a task holds at most {MAX_HELD} maps");
        return false;
    }
    let variant = highpte::variant();
    match pool_size(f) {
        Some(size) => {
            let (sharing, per) = match f {
                Form::Pool => (tasks.div_ceil(smp::nr_cpus()), " per CPU"),
                _ => (tasks, ""),
            };
            let partial = tasks as u64 * (h as u64 - 1);
            if partial >= size as u64 {
                check!(
                    false,
                    "kmap-hold: {tasks} tasks x {h} maps could deadlock a pool of {size}: {tasks} x {} >= {size}, every task could sleep one map short",
                    h - 1
                );
                return false;
            }
            let fill = if sharing as u64 * h as u64 > size as u64 {
                "it must run full and takers must sleep"
            } else {
                "it need not run full"
            };
            kprintln!("kmap-hold: {tasks} tasks x {h} {variant} kmaps held across yields, a pool of {size}{per}: {fill}");
        }
        None if f == Form::PerTask => {
            kprintln!("kmap-hold: {tasks} tasks x {h} per-task kmaps held across yields (each task's own pair: no pool to fill)")
        }
        None => kprintln!(
            "kmap-hold: --pte {variant} has no kmap that may be held across a sleep: each page is only written and checked through KM_USER0"
        ),
    }
    true
}

/// The driver, if fewer tasks than planned could start.
pub fn tasks_started(n: u32) {
    TASKS.store(n, Ordering::Relaxed);
}

/// What one task holds: page frames, and where and how each is mapped.
#[repr(C)]
struct Held {
    pa: [u64; MAX_HELD as usize],
    va: [u32; MAX_HELD as usize],
    slot: [u32; MAX_HELD as usize],
}

const _: () = assert!(core::mem::size_of::<Held>() <= 4096);

fn take(ctx: &mut MaySleep, f: Form, pa: u64, j: usize) -> (u32, u32) {
    match f {
        Form::Persistent => (kmap::kmap(ctx, pa) as u32, 0),
        Form::Pool => {
            let (va, slot) = kmap::kmap_pool(ctx, pa);
            (va as u32, slot)
        }
        Form::PerTask => (kmap::kmap_task(pa, j) as u32, 0),
        Form::AtomicOnly => unreachable!("an atomic kmap is never held across a sleep"),
    }
}

fn release(f: Form, pa: u64, j: usize, slot: u32) {
    match f {
        Form::Persistent => kmap::kunmap(pa),
        Form::Pool => kmap::kunmap_pool(slot),
        Form::PerTask => kmap::kunmap_task(pa, j),
        Form::AtomicOnly => unreachable!(),
    }
}

/// Whether a task sleeps for a map of the pool this task's maps come from.
fn pool_has_waiters(f: Form) -> bool {
    match f {
        Form::Persistent => kmap::pkmap_waiters(),
        Form::Pool => kmap::pool_waiters(sched::current().cpu()),
        Form::PerTask | Form::AtomicOnly => false,
    }
}

/// Holds (yielding) until a task waits on this pool or every task has taken its
/// maps for `round`.
fn hold(ctx: &mut MaySleep, f: Form, round: u32) {
    loop {
        let all = TASKS.load(Ordering::Relaxed) * (round + 1);
        if TAKEN.load(Ordering::Acquire) >= all || pool_has_waiters(f) {
            return;
        }
        sched::yield_now(ctx);
    }
}

/// The page's own pattern: its frame number and the round's tag.
fn word(pa: u64, tag: u32, k: u32) -> u32 {
    pattern((pa >> 12) as u32, tag, k)
}

fn write_page(va: u32, pa: u64, tag: u32) {
    for k in 0..WORDS_CHECKED {
        // SAFETY: `va` maps `pa` (a page this task owns) until it is released.
        unsafe { ((va + k * 256) as *mut u32).write_volatile(word(pa, tag, k)) };
    }
}

/// Words of the page mapped at `va` that are not `pa`'s pattern.
fn bad_words(va: u32, pa: u64, tag: u32) -> u32 {
    // SAFETY: as in write_page.
    (0..WORDS_CHECKED)
        .filter(|&k| unsafe { ((va + k * 256) as *const u32).read_volatile() } != word(pa, tag, k))
        .count() as u32
}

/// Whether this task does the injected bug `which` (once per run, if asked for).
fn injecting(which: Inject) -> bool {
    bootinfo::get().config.inject() == which && !INJECTED.swap(true, Ordering::Relaxed)
}

/// The KMAP_HOLD system call: `rounds` times, take maps of `pages` highmem pages
/// (writing each page's pattern through its map), hold them, check them through
/// the same maps, release them, and check them again through an atomic kmap.
/// Returns the words that were wrong, or -ENOMEM.
pub fn sys_kmap_hold(ctx: &mut MaySleep, pages: u32, rounds: u32, tag: u32) -> u32 {
    let f = form();
    let n = held(pages).min(MAX_HELD) as usize;
    let Some(book) = alloc_low_page() else { return (-errno::ENOMEM) as u32 };
    // SAFETY: a fresh lowmem page, this call's alone, zeroed (a valid `Held`).
    let h = unsafe { &mut *(phys_to_virt(book) as *mut Held) };
    let mut got = 0;
    while got < n {
        match page::alloc_pages(Zone::HighMem, 0) {
            Some(pa) => h.pa[got] = pa,
            None => break,
        }
        got += 1;
    }
    let mut bad = 0;
    if got < n {
        bad = (-errno::ENOMEM) as u32;
    } else {
        for round in 0..rounds {
            let t = tag ^ round.wrapping_mul(0x0100_0001);
            if f == Form::AtomicOnly {
                for j in 0..n {
                    let va = kmap::kmap_atomic(h.pa[j], KmType::User0);
                    write_page(va as u32, h.pa[j], t);
                    bad += bad_words(va as u32, h.pa[j], t);
                    if j == n - 1 && injecting(Inject::KmapUnbalanced) {
                        // The bug: back to ring 3 with the atomic kmap (and
                        // preemption off), the pages leaked with it.
                        TASKS.fetch_sub(1, Ordering::Relaxed);
                        return bad;
                    }
                    kmap::kunmap_atomic(va);
                }
                TAKEN.fetch_add(1, Ordering::Release);
            } else {
                for j in 0..n {
                    let (va, slot) = take(ctx, f, h.pa[j], j);
                    (h.va[j], h.slot[j]) = (va, slot);
                    write_page(va, h.pa[j], t);
                    // Let the others take theirs while this one holds.
                    sched::yield_now(ctx);
                }
                TAKEN.fetch_add(1, Ordering::Release);
                hold(ctx, f, round);
                for j in 0..n {
                    bad += bad_words(h.va[j], h.pa[j], t);
                    if j == n - 1 && injecting(Inject::KmapUnbalanced) {
                        // The bug: back to ring 3 still holding this map, the
                        // pages leaked with it. (The others stop waiting for it.)
                        TASKS.fetch_sub(1, Ordering::Relaxed);
                        return bad;
                    }
                    release(f, h.pa[j], j, h.slot[j]);
                }
            }
            bad += check_atomic(h, n, t);
        }
    }
    for &pa in &h.pa[..got] {
        page::free_pages(pa, 0);
    }
    page::free_pages(book, 0);
    bad
}

/// Checks every page again through an atomic kmap (the map it was written
/// through may have pointed elsewhere).
fn check_atomic(h: &Held, n: usize, tag: u32) -> u32 {
    let mut bad = 0;
    for j in 0..n {
        let va = kmap::kmap_atomic(h.pa[j], KmType::User0);
        if injecting(Inject::KmapSlotReuse) {
            // The bug: the live slot is mapped again, to the next page; the
            // first map's reads now go there.
            let again = kmap::kmap_atomic(h.pa[(j + 1) % n], KmType::User0);
            bad += bad_words(va as u32, h.pa[j], tag);
            kmap::kunmap_atomic(again);
        } else {
            bad += bad_words(va as u32, h.pa[j], tag);
        }
        kmap::kunmap_atomic(va);
    }
    bad
}

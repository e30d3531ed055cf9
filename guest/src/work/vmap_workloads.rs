//! The vmap workloads, run by every CPU at once: the self-tests, a churn of
//! areas of random sizes, and Nick Piggin's benchmark (map 4 pages, touch them,
//! unmap).

use core::sync::atomic::{AtomicU32, Ordering};
use shared::config::{Config, VmapFlush, VmapVariant, Workload};
use shared::counters::Counter;
use shared::results::GuestResult;

use crate::arch::{cpu, probe};
use crate::mm::layout::{vmalloc_end, vmalloc_start, PAGE_SIZE};
use crate::mm::page::{self, Zone};
use crate::mm::vmap::{self, vm_map_ram, vm_unmap_aliases, vm_unmap_ram};
use crate::mm::{alias, vmap_block};
use crate::rand::Rng;
use crate::work::all_cpus_reach;
use crate::{check, hv, kprintln, percpu, smp, time};

pub fn run(cfg: &Config) {
    // Every CPU takes interrupts from here on: a purge's flush waits for each.
    cpu::sti();
    match cfg.workload() {
        Workload::VmapTest => selftest(cfg),
        Workload::VmapChurn => churn(cfg),
        Workload::VmapBench => bench(cfg),
        _ => unreachable!(),
    }
}

/// A vmalloc'd array (the workloads' bookkeeping, too big for a kernel stack),
/// zeroed, freed on drop.
struct VBuf<T: Copy> {
    va: u32,
    len: usize,
    _t: core::marker::PhantomData<T>,
}

impl<T: Copy> VBuf<T> {
    fn new(len: usize, zero: T) -> Self {
        let bytes = (len * core::mem::size_of::<T>()).max(1) as u32;
        let va = vmap::vmalloc(bytes).expect("vmalloc of a workload's bookkeeping");
        let b = VBuf { va, len, _t: core::marker::PhantomData };
        // SAFETY: `bytes` of fresh vmalloc memory, page aligned, ours until drop.
        unsafe { core::slice::from_raw_parts_mut(va as *mut T, len).fill(zero) };
        b
    }
}

impl<T: Copy> core::ops::Deref for VBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: initialised in new, mapped until drop.
        unsafe { core::slice::from_raw_parts(self.va as *const T, self.len) }
    }
}

impl<T: Copy> core::ops::DerefMut for VBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: initialised in new, mapped until drop, and borrowed mutably
        // through self.
        unsafe { core::slice::from_raw_parts_mut(self.va as *mut T, self.len) }
    }
}

impl<T: Copy> Drop for VBuf<T> {
    fn drop(&mut self) {
        vmap::vfree(self.va);
    }
}

/// This CPU's count of `c`.
fn my(c: Counter) -> u64 {
    // SAFETY: this CPU's own counters, read only.
    unsafe { (*percpu::counters(percpu::cpu_id())).get(c) }
}

/// The sum of `c` over every CPU.
fn total(c: Counter) -> u64 {
    // SAFETY: other CPUs' counters, read racily: only for figures taken while
    // they wait at a barrier.
    (0..smp::nr_cpus()).map(|i| unsafe { (*percpu::counters(i)).get(c) }).sum()
}

fn alloc_frame() -> u64 {
    page::alloc_user_page().expect("out of memory for vmap test pages")
}

/// The word a page holds at both ends while mapped: its frame, a sequence number
/// and its index, so a PTE pointing at the wrong frame reads wrong.
fn pattern(pa: u64, seq: u32, i: u32) -> u32 {
    ((pa >> 12) as u32) ^ seq.rotate_left(7) ^ i
}

fn fill(va: u32, pages: u32, seq: u32) {
    for i in 0..pages {
        let p = va + i * PAGE_SIZE;
        let pa = vmap::mapped_frame(p).expect("a just-mapped page is not mapped");
        // SAFETY: the page is mapped by the caller's live area.
        unsafe {
            (p as *mut u32).write_volatile(pattern(pa, seq, i));
            ((p + PAGE_SIZE - 4) as *mut u32).write_volatile(pattern(pa, seq, i));
        }
    }
}

/// Checks what `fill` wrote; the number of wrong words.
fn verify(va: u32, pages: u32, seq: u32) -> u32 {
    let mut bad = 0;
    for i in 0..pages {
        let p = va + i * PAGE_SIZE;
        let Some(pa) = vmap::mapped_frame(p) else {
            bad += 2;
            continue;
        };
        // SAFETY: as in fill.
        let (a, b) =
            unsafe { ((p as *const u32).read_volatile(), ((p + PAGE_SIZE - 4) as *const u32).read_volatile()) };
        bad += (a != pattern(pa, seq, i)) as u32 + (b != pattern(pa, seq, i)) as u32;
    }
    bad
}

/// vmalloc, fill, verify, vfree: one round of the allocation tests.
fn vmalloc_round(size_pages: u32, align: u32, seq: u32) -> Result<(), &'static str> {
    let va = vmap::vmalloc_aligned(size_pages * PAGE_SIZE, align).ok_or("vmalloc failed")?;
    let r = if !va.is_multiple_of(align) {
        Err("misaligned")
    } else {
        fill(va, size_pages, seq);
        if verify(va, size_pages, seq) == 0 {
            Ok(())
        } else {
            Err("contents wrong")
        }
    };
    vmap::vfree(va);
    r
}

fn selftest(cfg: &Config) {
    let me = percpu::cpu_id();
    let mut rng = Rng::new(cfg.seed, me as u64);
    let n = if cfg.iterations != 0 { cfg.iterations as u32 } else { 200 };
    let boot = me == 0;
    let (low0, high0) = (page::zone_stats(Zone::Normal).1, page::zone_stats(Zone::HighMem).1);
    let kept0 = vmap::pages_kept();
    all_cpus_reach();

    // The tests of Linux's lib/test_vmalloc.c, on every CPU at once.
    for i in 0..n {
        if let Err(e) = vmalloc_round(3, PAGE_SIZE, i) {
            check!(false, "fixed-size vmalloc, round {i}: {e}");
        }
    }
    for i in 0..n {
        let pages = rng.range(1, 64);
        if let Err(e) = vmalloc_round(pages, PAGE_SIZE, i) {
            check!(false, "random-size vmalloc of {pages} pages: {e}");
        }
    }
    for shift in 0..32 {
        let align = 1u32 << shift;
        match vmap::vmalloc_aligned(PAGE_SIZE, align) {
            Some(va) => {
                check!(va.is_multiple_of(align), "alignment shift {shift}: {va:#x} is misaligned");
                vmap::vfree(va);
            }
            // Only alignments beyond what the vmalloc space can offer may fail.
            None => check!(align > (16 << 20), "alignment shift {shift}: vmalloc failed"),
        }
    }
    for i in 0..n {
        let (pages, align) = (rng.range(1, 8), 1 << rng.range(12, 17));
        if let Err(e) = vmalloc_round(pages, align, i) {
            check!(false, "random size {pages} pages with alignment {align:#x}: {e}");
        }
    }
    map_ram_rounds(&mut rng, n * 4);
    fragmented_blocks();
    all_cpus_reach();

    if boot {
        full_fit();
        long_busy_list();
        purge_threshold();
        full_block();
    }
    all_cpus_reach();
    // With the purge's flush made local (the injected bug) a stale entry shows only
    // if no exit emptied the other CPU's TLB in between; under the QEMU-hosted KVM
    // every exit does, so the experiment is repeated to catch one.
    let rounds = if cfg.inject() == shared::config::Inject::VmapLocalFlush { 16 } else { 1 };
    for _ in 0..rounds {
        stale_tlb(false);
        stale_tlb(true);
    }

    // Nothing leaks: after a last vm_unmap_aliases that walks every block (the
    // 2.6.28 form leaves full blocks' aliases) every page is back and no frame
    // keeps a lazy alias.
    all_cpus_reach();
    if boot {
        vmap::vm_unmap_aliases_every_block();
        let st = vmap::stats();
        report(&st);
        check!(st.lazy_areas == 0 && st.lazy_pages == 0, "lazy areas left after vm_unmap_aliases: {st:?}");
        let leaked = (0..page::nr_frames()).filter(|&pfn| alias::count(pfn << 12) != 0).count();
        check!(leaked == 0, "{leaked} frames keep a lazy alias count after vm_unmap_aliases");
        let (low1, high1) = (page::zone_stats(Zone::Normal).1, page::zone_stats(Zone::HighMem).1);
        check!(high1 == high0, "highmem pages free: {high0} before, {high1} after");
        // Every page the tests took, from either zone, must be back, but for
        // what the vmap layer keeps for itself once made: the vmalloc space's
        // L1s, the area arena's growth and the blocks' bookkeeping.
        let kept = u64::from(vmap::pages_kept() - kept0);
        check!(low1 + kept == low0, "lowmem pages free: {low0} before, {low1} after, {kept} kept by the vmap layer");
        kprintln!(
            "vmap-test: {} variant, {} CPUs, lazy_max_pages {}, block {} pages, {} purges, {} flushes",
            vmap::variant(),
            smp::nr_cpus(),
            st.lazy_max_pages,
            vmap_block::bbmap_bits(smp::nr_cpus()),
            total(Counter::VmapPurges),
            total(Counter::VmapFlushes)
        );
    }
}

/// The vmap layer's state at the end of a workload.
fn report(st: &vmap::Stats) {
    hv::result(GuestResult::VmapLiveAreas, st.live_areas as u64);
    hv::result(GuestResult::VmapLazyAreas, st.lazy_areas as u64);
    hv::result(GuestResult::VmapLazyPages, st.lazy_pages as u64);
}

/// vm_map_ram of random sizes, some beyond the blocks' limit.
fn map_ram_rounds(rng: &mut Rng, n: u32) {
    let mut frames = [0u64; 40];
    for f in frames.iter_mut() {
        *f = alloc_frame();
    }
    for i in 0..n {
        let count = if i % 8 == 7 { rng.range(33, 40) } else { rng.range(1, 32) };
        let Some(va) = vm_map_ram(&frames[..count as usize]) else {
            check!(false, "vm_map_ram of {count} pages failed");
            continue;
        };
        fill(va, count, i);
        check!(verify(va, count, i) == 0, "vm_map_ram of {count} pages at {va:#x}: contents wrong");
        vm_unmap_ram(va, count);
    }
    for f in frames {
        page::free_pages(f, 0);
    }
}

/// A block with nothing live and only scraps free is given back whole when a
/// request does not fit (the lazy forms; eager has no blocks).
fn fragmented_blocks() {
    if !vmap::is_lazy() {
        return;
    }
    let before = my(Counter::VmapBlockPurges);
    let mut frames = [0u64; 32];
    for f in frames.iter_mut() {
        *f = alloc_frame();
    }
    let big = vmap_block::VMAP_MAX_ALLOC;
    let per_block = vmap_block::bbmap_bits(smp::nr_cpus()) / big;
    let mut live = [0u32; 64];
    for _ in 0..3 {
        // One page, freed at once, then a block's worth of the largest requests.
        let one = vm_map_ram(&frames[..1]).expect("vm_map_ram of one page");
        vm_unmap_ram(one, 1);
        let mut nr = 0;
        for _ in 0..per_block.min(live.len() as u32) {
            live[nr] = vm_map_ram(&frames).expect("vm_map_ram of 32 pages");
            nr += 1;
        }
        for &va in &live[..nr] {
            vm_unmap_ram(va, big);
        }
    }
    for f in frames {
        page::free_pages(f, 0);
    }
    check!(my(Counter::VmapBlockPurges) > before, "no fragmented vmap block was purged");
}

fn flush_form() -> VmapFlush {
    crate::bootinfo::get().config.vmap_flush()
}

/// A range freed in a block with no never-used page left: 2.6.28's
/// vm_unmap_aliases() walks only the blocks on the free lists and leaves it
/// (its lazy alias stays); 6.5's takes it. Boot CPU alone, lazy forms.
fn full_block() {
    if !vmap::is_lazy() {
        return;
    }
    vm_unmap_aliases();
    let frame = alloc_frame();
    let frames = [frame; vmap_block::VMAP_MAX_ALLOC as usize];
    let big = vmap_block::VMAP_MAX_ALLOC;
    let per_block = vmap_block::bbmap_bits(smp::nr_cpus()) / big;
    // Chunks until one lands in a freshly carved block, then the rest of it.
    let mut live = [0u32; 64];
    let mut nr = 0;
    let carved = my(Counter::VmapBlockAllocs);
    let mut first = None;
    while nr < live.len() {
        let va = vm_map_ram(&frames).expect("vm_map_ram of 32 pages");
        live[nr] = va;
        nr += 1;
        if first.is_none() && my(Counter::VmapBlockAllocs) > carved {
            first = Some(nr - 1);
        }
        if first.is_some_and(|f| nr - f == per_block as usize) {
            break;
        }
    }
    let Some(first) = first.filter(|&f| nr - f == per_block as usize) else {
        check!(false, "full block: no block carved and filled in {nr} requests");
        return;
    };
    let va = live[first];
    vm_unmap_ram(va, big);
    check!(alias::count(frame) == big, "full block: {} lazy aliases after one unmap, not {big}", alias::count(frame));
    vm_unmap_aliases();
    let kept = alias::count(frame);
    let want = if flush_form() == VmapFlush::Linux2628 { big } else { 0 };
    check!(kept == want, "full block: {kept} lazy aliases left by vm_unmap_aliases ({}), not {want}", flush_form());
    hv::result(GuestResult::FullBlockAliasesKept, kept as u64);
    for (i, &v) in live[..nr].iter().enumerate() {
        if i != first {
            vm_unmap_ram(v, big);
        }
    }
    vmap::vm_unmap_aliases_every_block();
    check!(alias::count(frame) == 0, "full block: {} lazy aliases after every block was purged", alias::count(frame));
    page::free_pages(frame, 0);
}

/// Holes of exactly the requested size are found (test_vmalloc's full fit): boot
/// CPU alone.
fn full_fit() {
    const N: usize = 64;
    vm_unmap_aliases();
    let mut keep = [0u32; N];
    let mut holes = [0u32; N];
    for i in 0..N {
        keep[i] = vmap::vmalloc(PAGE_SIZE).expect("vmalloc");
        holes[i] = vmap::vmalloc(PAGE_SIZE).expect("vmalloc");
    }
    for &va in &holes {
        vmap::vfree(va);
    }
    vm_unmap_aliases();
    let mut again = [0u32; N];
    for a in again.iter_mut() {
        *a = vmap::vmalloc(PAGE_SIZE).expect("vmalloc");
    }
    let mut missed = 0;
    for a in again {
        missed += !holes.contains(&a) as u32;
    }
    check!(missed == 0, "full fit: {missed} of {N} one-page areas missed the {N} holes of their size");
    for va in keep.into_iter().chain(again) {
        vmap::vfree(va);
    }
}

/// Allocation behind a long list of busy areas (2.6.28's first fit walks it).
fn long_busy_list() {
    const BUSY: usize = 2000;
    const ROUNDS: u32 = 100;
    let frame = alloc_frame();
    let cost = |rounds: u32| {
        let (v0, t0) = (my(Counter::VmapSearchVisits), cpu::rdtsc());
        for i in 0..rounds {
            if let Err(e) = vmalloc_round(1, PAGE_SIZE, i) {
                check!(false, "vmalloc behind a busy list: {e}");
            }
        }
        ((my(Counter::VmapSearchVisits) - v0) / rounds as u64, (cpu::rdtsc() - t0) / rounds as u64)
    };
    vm_unmap_aliases();
    let (visits_empty, cycles_empty) = cost(ROUNDS);
    // The rounds' areas are lazy: purge them so that the busy list starts at
    // the bottom, where the search starts.
    vm_unmap_aliases();
    let mut busy = VBuf::new(BUSY, 0u32);
    let mut nr = 0;
    for b in busy.iter_mut() {
        match vmap::vmap(&[frame]) {
            Some(va) => {
                *b = va;
                nr += 1;
            }
            None => break,
        }
    }
    check!(nr == BUSY, "only {nr} of {BUSY} busy areas fit");
    vm_unmap_aliases();
    let (visits_busy, cycles_busy) = cost(ROUNDS);
    for &va in &busy[..nr] {
        vmap::vunmap(va);
    }
    page::free_pages(frame, 0);
    hv::result(GuestResult::VmapBusyListVisitsEmpty, visits_empty);
    hv::result(GuestResult::VmapBusyListVisitsBusy, visits_busy);
    hv::result(GuestResult::VmapBusyListNsEmpty, time::cycles_to_ns(cycles_empty));
    hv::result(GuestResult::VmapBusyListNsBusy, time::cycles_to_ns(cycles_busy));
}

/// The lazy purge starts when the pages owed pass lazy_max_pages(), Linux's
/// formula, or (where that is more than the space) when the space runs out.
fn purge_threshold() {
    vm_unmap_aliases();
    let frame = alloc_frame();
    let max = vmap::stats().lazy_max_pages;
    check!(max == vmap::lazy_max_pages(smp::nr_cpus()), "lazy_max_pages is {max}");
    // Each vmap takes a page and its guard: whether max + 2 pages of them fit
    // decides which comes first, the threshold or a full space.
    let room = vmap::room_for(2);
    let reachable = room * 2 >= max + 2;
    let (purges0, retries0) = (my(Counter::VmapPurges), my(Counter::VmapAllocRetries));
    let mut triggered = None;
    // Eager never owes anything: a few rounds show it (each is a flush by IPI).
    let rounds = if vmap::is_lazy() { room + 16 } else { 64 };
    for i in 0..rounds {
        let va = vmap::vmap(&[frame]).expect("vmap of one page");
        let owed = vmap::stats().lazy_pages;
        vmap::vunmap(va);
        if my(Counter::VmapPurges) != purges0 {
            triggered = Some((i, owed, my(Counter::VmapAllocRetries) != retries0));
            break;
        }
    }
    page::free_pages(frame, 0);
    match (vmap::variant(), triggered) {
        (VmapVariant::Eager, None) => check!(vmap::stats().lazy_pages == 0, "eager vunmap left lazy pages"),
        (VmapVariant::Eager, Some(_)) => check!(false, "eager vunmap purged"),
        (_, None) => check!(false, "no purge after {} lazy pages (lazy_max_pages {max})", room * 2),
        (_, Some((i, owed, by_retry))) => {
            if reachable {
                // Each vmap is a page and its guard: 2 pages owed per vunmap.
                check!(
                    !by_retry && owed <= max && owed + 2 > max,
                    "purge at {owed} pages owed (+2), round {i}; lazy_max_pages {max}"
                );
            } else {
                check!(
                    by_retry,
                    "room for {room} vmaps is below lazy_max_pages ({max}): only a failed allocation should purge"
                );
            }
            if !by_retry {
                hv::result(GuestResult::VmapPurgeAtPages, owed as u64 + 2);
            }
        }
    }
    hv::result(GuestResult::VmapLazyMaxPages, max as u64);
    hv::result(GuestResult::VmallocMib, u64::from(vmalloc_end() - vmalloc_start()) >> 20);
}

static STALE_VA: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// After vm_unmap_aliases a freed frame's old address faults on every CPU: no
/// stale TLB entry survives. With lazy-ptes the frame stays mapped writable
/// until then. `block`: through vm_map_ram's blocks instead of vmap.
fn stale_tlb(block: bool) {
    let boot = percpu::cpu_id() == 0;
    let what = if block { "vm_map_ram" } else { "vmap" };
    let mut frame = 0;
    let seq = 0x5eed_0000 | block as u32;
    if boot {
        vm_unmap_aliases();
        frame = alloc_frame();
        let va = if block { vm_map_ram(&[frame]) } else { vmap::vmap(&[frame]) }.expect("map one page");
        fill(va, 1, seq);
        STALE_VA.store(va, core::sync::atomic::Ordering::Release);
    }
    all_cpus_reach();
    let va = STALE_VA.load(core::sync::atomic::Ordering::Acquire);
    // The mapping is global in native runs (CR4.PGE, so only flush_all's PGE
    // toggle drops it: a CR3 reload would leave it to fail the check at the
    // end on a VMX/SVM host), and never under the PV MMU; the direct map too.
    let native = !crate::mm::pv::on();
    check!(
        vmap::mapped_global(va) == native && vmap::mapped_global(crate::mm::layout::PAGE_OFFSET) == native,
        "{what}: kernel mappings global: {}, want {native}",
        vmap::mapped_global(va)
    );
    // Every CPU caches the translation.
    let want = pattern(frame_of(va), seq, 0);
    check!(probe::read(va) == Some(want), "{what}: cpu {} cannot read the mapped page", percpu::cpu_id());
    all_cpus_reach();
    if boot {
        if block {
            vm_unmap_ram(va, 1);
        } else {
            vmap::vunmap(va);
        }
        match vmap::variant() {
            VmapVariant::LazyPtes => {
                check!(vmap::mapped_writable(va), "lazy-ptes: {what}'s PTE is gone before the purge");
                check!(probe::write(va, want), "lazy-ptes: {what}: cannot write the freed page before the purge");
            }
            VmapVariant::LazyTlb => check!(vmap::mapped_frame(va).is_none(), "lazy-tlb: {what}'s PTE left present"),
            VmapVariant::Eager => check!(vmap::mapped_frame(va).is_none(), "eager: {what}'s PTE left present"),
        }
        check!(
            alias::may_have_alias(frame) == vmap::is_lazy(),
            "{what}: lazy alias of the frame is {}",
            alias::count(frame)
        );
        let flushed = vm_unmap_aliases();
        check!(flushed == vmap::is_lazy(), "{what}: vm_unmap_aliases flushed: {flushed}");
        // 2.6.28 never forgets a block's dirty range: the block, still on this
        // CPU's free list, is flushed again (and after the vmap, any block an
        // earlier test dirtied is); 6.5 is done with them.
        let again = vm_unmap_aliases();
        match (flush_form(), block && vmap::is_lazy()) {
            (VmapFlush::Linux2628, true) => check!(again, "{what}: 2.6.28: a second vm_unmap_aliases did not flush"),
            (VmapFlush::Linux2628, false) => {}
            (VmapFlush::Linux65, _) => check!(!again, "{what}: 6.5: a second vm_unmap_aliases flushed again"),
        }
        check!(!alias::may_have_alias(frame), "{what}: the frame keeps a lazy alias after vm_unmap_aliases");
        check!(vmap::mapped_frame(va).is_none(), "{what}: PTE present after vm_unmap_aliases");
        page::free_pages(frame, 0);
    }
    all_cpus_reach();
    check!(
        probe::read(va).is_none(),
        "{what}: cpu {} still reads the unmapped page: a stale TLB entry",
        percpu::cpu_id()
    );
    all_cpus_reach();
}

/// The frame the pattern was written for: the boot CPU knew it; the others read
/// it from the PTE (still present at that point).
fn frame_of(va: u32) -> u64 {
    vmap::mapped_frame(va).unwrap_or(0)
}

/// What a churn slot holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Vmalloc,
    Vmap,
    MapRam,
}

#[derive(Clone, Copy)]
struct Slot {
    va: u32,
    pages: u16,
    kind: Kind,
    seq: u32,
}

fn churn(cfg: &Config) {
    let me = percpu::cpu_id();
    let mut rng = Rng::new(cfg.seed, me as u64);
    let iters = if cfg.iterations != 0 { cfg.iterations as u32 } else { 3000 };
    let (max_pages, ram_pct, live) = (cfg.vmap_max_pages as u32, cfg.vmap_ram_pct as u32, cfg.vmap_live as usize);
    let mut slots = VBuf::new(live, Slot { va: 0, pages: 0, kind: Kind::Empty, seq: 0 });
    let (mut bad, mut failed) = (0u32, 0u32);
    all_cpus_reach();
    let t0 = cpu::rdtsc();
    for i in 0..iters {
        let s = &mut slots[rng.range(0, live as u32 - 1) as usize];
        if s.kind != Kind::Empty {
            bad += verify(s.va, s.pages as u32, s.seq);
            release(s);
            continue;
        }
        let pages = rng.range(1, max_pages);
        let kind = if rng.range(1, 100) <= ram_pct {
            Kind::MapRam
        } else if i % 2 == 0 {
            Kind::Vmalloc
        } else {
            Kind::Vmap
        };
        match map(kind, pages) {
            Some(va) => {
                *s = Slot { va, pages: pages as u16, kind, seq: i };
                fill(va, pages, i);
            }
            None => failed += 1,
        }
    }
    for s in slots.iter_mut().filter(|s| s.kind != Kind::Empty) {
        bad += verify(s.va, s.pages as u32, s.seq);
        release(s);
    }
    let cycles = cpu::rdtsc() - t0;
    check!(bad == 0, "vmap-churn: {bad} words read wrong through their mappings");
    check!(failed == 0, "vmap-churn: {failed} allocations failed");
    // The bookkeeping is vmalloc'ed too: freed before the last vm_unmap_aliases,
    // not after it (a vfree racing that purge left a lazy area behind).
    drop(slots);
    all_cpus_reach();
    if me == 0 {
        vm_unmap_aliases();
        let st = vmap::stats();
        report(&st);
        hv::result(GuestResult::VmapChurnNsPerOp, time::cycles_to_ns(cycles) / iters as u64);
        kprintln!("vmap-churn: {} ops per CPU, {} variant, {st:?}", iters, vmap::variant());
    }
}

/// The largest churn request (`--vmap-max-pages`).
const MAX_PAGES: usize = 256;

fn map(kind: Kind, pages: u32) -> Option<u32> {
    if kind == Kind::Vmalloc {
        return vmap::vmalloc(pages * PAGE_SIZE);
    }
    let mut frames = [0u64; MAX_PAGES];
    for i in 0..pages as usize {
        match page::alloc_user_page() {
            Some(pa) => frames[i] = pa,
            None => {
                for &pa in &frames[..i] {
                    page::free_pages(pa, 0);
                }
                return None;
            }
        }
    }
    let frames = &frames[..pages as usize];
    let va = if kind == Kind::Vmap { vmap::vmap(frames) } else { vm_map_ram(frames) };
    if va.is_none() {
        for &pa in frames {
            page::free_pages(pa, 0);
        }
    }
    va
}

fn release(s: &mut Slot) {
    let pages = s.pages as u32;
    match s.kind {
        Kind::Vmalloc => vmap::vfree(s.va),
        Kind::Vmap | Kind::MapRam => {
            let mut frames = [0u64; MAX_PAGES];
            for (i, f) in frames[..pages as usize].iter_mut().enumerate() {
                *f = vmap::mapped_frame(s.va + i as u32 * PAGE_SIZE).expect("a live area's page is unmapped");
            }
            if s.kind == Kind::Vmap {
                vmap::vunmap(s.va);
            } else {
                vm_unmap_ram(s.va, pages);
            }
            for &pa in &frames[..pages as usize] {
                page::free_pages(pa, 0);
            }
        }
        Kind::Empty => {}
    }
    s.kind = Kind::Empty;
}

/// CPUs whose vmap-bench loop is done (the idle ones under --bench-cpus wait for them).
static BENCH_LOOPS_DONE: AtomicU32 = AtomicU32::new(0);

/// Piggin's benchmark: map 4 pages, touch them, unmap, on every CPU (or the
/// first `--bench-cpus`).
fn bench(cfg: &Config) {
    let iters = if cfg.iterations != 0 { cfg.iterations } else { 10_000 };
    let frames = [alloc_frame(), alloc_frame(), alloc_frame(), alloc_frame()];
    all_cpus_reach();
    let before = (total(Counter::VmapFlushes), total(Counter::VmapFlushIpis));
    all_cpus_reach();
    // --bench-cpus N: only the first N CPUs loop; the others sit halted until
    // they are done, waking only to answer flush IPIs (a spinning CPU would
    // also take emulation time from the loop, QEMU-hosted).
    let looping = cfg.bench_cpus == 0 || u64::from(percpu::cpu_id()) < cfg.bench_cpus;
    if !looping {
        crate::work::idle_until(|| u64::from(BENCH_LOOPS_DONE.load(Ordering::Acquire)) >= cfg.bench_cpus);
    }
    let iters = if looping { iters } else { 0 };
    let t0 = cpu::rdtsc();
    for i in 0..iters {
        let va = vm_map_ram(&frames).expect("vm_map_ram of 4 pages");
        for p in 0..4 {
            // SAFETY: mapped just above.
            unsafe { ((va + p * PAGE_SIZE) as *mut u32).write_volatile(i as u32) };
        }
        vm_unmap_ram(va, 4);
    }
    if looping {
        percpu::count(Counter::VmapBenchCycles, cpu::rdtsc() - t0);
        percpu::count(Counter::VmapBenchIters, iters);
        BENCH_LOOPS_DONE.fetch_add(1, Ordering::AcqRel);
    }
    all_cpus_reach();
    if percpu::cpu_id() == 0 {
        hv::result(GuestResult::VmapBenchFlushes, total(Counter::VmapFlushes) - before.0);
        hv::result(GuestResult::VmapBenchFlushIpis, total(Counter::VmapFlushIpis) - before.1);
        // Claim 1: with a single lazy mapping outstanding, vm_unmap_aliases costs
        // about one old-style (eager) unmap. The boot CPU alone, the others
        // waiting (and answering flush IPIs).
        vm_unmap_aliases();
        let rounds = 200;
        let t0 = cpu::rdtsc();
        for _ in 0..rounds {
            let va = vm_map_ram(&frames).expect("vm_map_ram of 4 pages");
            // SAFETY: mapped just above.
            unsafe { (va as *mut u32).write_volatile(0) };
            vm_unmap_ram(va, 4);
            vm_unmap_aliases();
        }
        hv::result(GuestResult::VmapOneAliasNs, time::cycles_to_ns(cpu::rdtsc() - t0) / rounds);
    }
    all_cpus_reach();
    if percpu::cpu_id() == 0 {
        let (c, n) = (total(Counter::VmapBenchCycles), total(Counter::VmapBenchIters));
        // Each CPU's loop ran at the same time: ns per iteration of one loop.
        hv::result(GuestResult::VmapBenchNs, time::cycles_to_ns(c) / n.max(1));
        hv::result(GuestResult::VmapBenchIters, n);
        report(&vmap::stats());
        kprintln!(
            "vmap-bench: {} variant, {} CPUs: {} ns per iteration",
            vmap::variant(),
            smp::nr_cpus(),
            time::cycles_to_ns(c) / n.max(1)
        );
    }
    for f in frames {
        page::free_pages(f, 0);
    }
}

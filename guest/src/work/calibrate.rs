//! `--workload calibrate`: the unit cost of each event the benchmark counts,
//! measured on the host it runs on, so that a run's counts can be priced
//! (`vmm bench`'s cost model). The boot CPU measures every unit twice: with
//! the others halted (woken only by the flush IPIs), then with them busy, as
//! a workload's CPUs are.
//!
//! Each unit is timed `ROUNDS` times, one event a time, and reported as the
//! median in TSC cycles (`unit_<event>_cycles`): a median, so that a timer
//! interrupt or a QEMU hiccup in one round does not move it.
//!
//! Under `--pvmmu on --vmap lazy-ptes --alias host-trap` it measures every
//! unit; under another strategy, all but the trap-back. Under `--pvmmu off`
//! it measures what runs natively: an exit, a global flush and the kmaps of
//! every `--pte` variant (which need highmem), the units that price native
//! cells such as pte-bench.

use nosleep::MaySleep;
use shared::config::{AliasStrategy, VmapVariant};
use shared::counters::Counter;
use shared::results::{GuestResult, UnitResults};

use crate::arch::cpu;
use crate::mm::kmap::{self, KmType};
use crate::mm::page::Zone;
use crate::mm::{address_space, highpte, page, ptcache, pv, tlb, vmap};
use crate::work::idle_until;
use crate::{check, hv, percpu, smp};
use core::sync::atomic::{AtomicU32, Ordering};

/// Timed repetitions of each unit.
const ROUNDS: usize = 64;
/// Pages of the many-page purge's one lazy area: fork-churn's alias source
/// maps `--pages` (16 in the benchmark's cells) at a time.
const FLUSH_PAGES: usize = 16;

/// How often a busy CPU makes a hypercall, in its TSC cycles: as often as
/// fork-churn's CPUs exit (1879 hypercall exits in 1.63e9 cycles of two
/// vCPUs, docs/bench/2026-12-05-busy-default-1: one per 8.6e5 cycles). A
/// busy CPU that never exits answers an IPI later than a workload's does.
const BUSY_EXIT_EVERY: u64 = 860_000;

static DONE: AtomicU32 = AtomicU32::new(0);
/// Set while the other CPUs are to spin instead of halting (a workload's
/// CPUs are busy when a pin flushes them).
static BUSY: AtomicU32 = AtomicU32::new(0);

/// The median of `v` (sorted in place).
fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Times `op` `ROUNDS` times (after `setup` each time, untimed) and reports the
/// median as `name`.
fn unit(name: GuestResult, setup: impl FnMut() -> u64, op: impl FnMut(u64)) {
    unit_less(name, None, setup, op);
}

/// This CPU's sum of `counters` (cycle counters of parts of an event).
fn sum(counters: &[Counter]) -> u64 {
    counters.iter().map(|&c| percpu::read(c)).sum()
}

/// As [`unit`]; with `less = Some((part, counters))` also reports as `part`
/// the median of each round less the cycles `counters` grew by in that same
/// round. A part timed so steadies a unit that would otherwise be the
/// difference of two medians of a larger, noisier whole (a flush of every
/// CPU: several times the part, and most of its spread).
fn unit_less(
    name: GuestResult,
    less: Option<(GuestResult, &[Counter])>,
    mut setup: impl FnMut() -> u64,
    mut op: impl FnMut(u64),
) {
    let mut t = [0u64; ROUNDS];
    let mut part = [0u64; ROUNDS];
    let counters = less.map_or(&[][..], |(_, c)| c);
    for (slot, rest) in t.iter_mut().zip(part.iter_mut()) {
        let arg = setup();
        let before = sum(counters);
        let t0 = cpu::rdtsc();
        op(arg);
        *slot = cpu::rdtsc() - t0;
        *rest = slot.saturating_sub(sum(counters) - before);
    }
    hv::result(name, median(&mut t));
    if let Some((part_name, _)) = less {
        hv::result(part_name, median(&mut part));
    }
}

/// A zeroed page of the zone pte pages come from.
fn pte_page() -> u64 {
    let pa = page::alloc_pages(highpte::pte_zone(), 0).or_else(|| page::alloc_pages(Zone::Normal, 0));
    let pa = pa.expect("calibrate: out of memory");
    ptcache::zero_page(pa);
    pa
}

/// A page with a lazy vmap alias left behind (its PTE present under lazy-ptes).
fn aliased_page() -> u64 {
    let pa = pte_page();
    let va = vmap::vmap(&[pa]).expect("calibrate: no vmap space");
    // A write through the alias (a zero: the page becomes an L1, whose entries
    // the host validates).
    // SAFETY: `va` maps `pa`, this workload's own page, until the vunmap.
    unsafe { (va as *mut u64).write_volatile(0) };
    vmap::vunmap(va);
    pa
}

/// A lazy area of `FLUSH_PAGES` pages, each written through it; the pages
/// themselves go back to the allocator (the alias stays until a purge).
fn aliased_area() {
    let mut frames = [0u64; FLUSH_PAGES];
    for f in frames.iter_mut() {
        *f = pte_page();
    }
    let va = vmap::vmap(&frames).expect("calibrate: no vmap space");
    for i in 0..FLUSH_PAGES {
        // SAFETY: `va` maps these pages, this workload's own, until the vunmap.
        unsafe { ((va as usize + i * 4096) as *mut u64).write_volatile(0) };
    }
    vmap::vunmap(va);
    for f in frames {
        page::free_pages(f, 0);
    }
}

fn give_back(pa: u64) {
    pv::unpin(&[pa], &[pa]);
    ptcache::free_pt(pa);
}

/// Times `ROUNDS` pins of L1 tables made by `page`, then unpins and frees them
/// (`less`: as in [`unit_less`]).
fn pins(name: GuestResult, less: Option<(GuestResult, &[Counter])>, page: fn() -> u64) {
    let mut pinned = [0u64; ROUNDS];
    let mut n = 0;
    unit_less(name, less, page, |pa| {
        pv::pin(pa, pv::Level::L1, &[pa]);
        pinned[n] = pa;
        n += 1;
    });
    for &pa in &pinned[..n] {
        give_back(pa);
    }
}

/// Pages the tree pin's parent address space maps: fork-churn's `--pages`
/// in the benchmark's cells.
const TREE_PAGES: u32 = 16;

/// A fork's pin of its child's whole tree: the parent maps `TREE_PAGES`
/// pages, and each round copies it as fork does (untimed) and times the pin
/// of the child's root alone, which the host validates recursively and
/// follows with a flush of every vCPU for the new L3. The time is the pin's
/// own counter (`pt_pin_cycles`), so it is what the benchmark's pins count.
fn tree_pins(which: GuestResult) {
    // SAFETY: the boot CPU's own context, as the mm workloads' driver. It
    // never sleeps: no task runs in this workload, so the copy's
    // cond_resched finds nothing to switch to, and nothing here waits.
    let mut ctx = unsafe { MaySleep::new() };
    let Some(parent) = address_space::new_user(&mut ctx) else {
        check!(false, "calibrate: no memory for the tree pin's address space");
        return;
    };
    // SAFETY: the new address space, this workload's alone.
    let parent = unsafe { &*parent };
    for i in 0..TREE_PAGES {
        if address_space::fault(&mut ctx, parent, address_space::ANON_START + i * 4096).is_err() {
            check!(false, "calibrate: no memory for the tree pin's pages");
            address_space::put(&mut ctx, parent);
            return;
        }
    }
    let mut t = [0u64; ROUNDS];
    for slot in t.iter_mut() {
        // Nothing lazy left for the strategy to find: the pin alone.
        vmap::vm_unmap_aliases();
        let before = percpu::read(Counter::PtPinCycles);
        let Ok(child) = address_space::copy(&mut ctx, parent) else {
            check!(false, "calibrate: no memory for a copy");
            break;
        };
        *slot = percpu::read(Counter::PtPinCycles) - before;
        // SAFETY: the copy just made, ours alone.
        address_space::put(&mut ctx, unsafe { &*child });
    }
    address_space::put(&mut ctx, parent);
    hv::result(which, median(&mut t));
}

/// A map and an unmap of one highmem pte page through each `--pte` variant's
/// own functions, whatever `--pte` says: the units that price a pte-bench
/// run's kmap counts. Persistent maps from the pagetable series (pte-highmem's
/// `pte_offset`: a fresh entry each time, no page->virtual cache); per-task
/// from the slot pair of an address space this CPU borrows for the purpose
/// (Linux's `kthread_use_mm`). Without highmem there is nothing to map.
fn kmaps(r: &UnitResults) {
    let Some(pa) = page::alloc_pages(Zone::HighMem, 0) else {
        return;
    };
    ptcache::zero_page(pa);
    // SAFETY: the boot CPU's own context, as tree_pins': no task runs in this
    // workload, so nothing it calls sleeps (the pools never run full here).
    let mut ctx = unsafe { MaySleep::new() };
    let read = |va: *mut u8| {
        // SAFETY: `va` maps `pa`, this workload's own page, until its unmap.
        core::hint::black_box(unsafe { (va as *const u64).read_volatile() });
    };
    unit(
        r.kmap_atomic,
        || 0,
        |_| {
            let va = kmap::kmap_atomic_prot(pa, KmType::Pte0, true);
            read(va);
            kmap::kunmap_atomic(va);
        },
    );
    unit(
        r.kmap_persistent,
        || 0,
        |_| {
            let va = kmap::kmap_serie_prot(&mut ctx, pa, kmap::Serie::Pagetable, true);
            read(va);
            kmap::kunmap_serie(va);
        },
    );
    unit(
        r.kmap_percpu_pool,
        || 0,
        |_| {
            let (va, slot) = kmap::kmap_pool_prot(&mut ctx, pa, true);
            read(va);
            kmap::kunmap_pool(slot);
        },
    );
    if let Some(mm) = address_space::new_user(&mut ctx) {
        let me = crate::sched::current();
        let before = me.replace_mm(mm);
        // SAFETY: the new address space, this workload's alone.
        let borrowed = unsafe { &*mm };
        borrowed.activate(false);
        unit(
            r.kmap_per_task,
            || 0,
            |_| {
                let va = kmap::kmap_task_prot(pa, 0, true);
                read(va);
                kmap::kunmap_task(pa, 0);
            },
        );
        crate::mm::pgtable::switch_to_kernel();
        me.replace_mm(before);
        address_space::put(&mut ctx, borrowed);
    } else {
        check!(false, "calibrate: no memory for the per-task kmap's address space");
    }
    page::free_pages(pa, 0);
}

/// Every unit, each reported under its name in `r`.
fn suite(r: &UnitResults) {
    if !pv::on() {
        // Native (`--pvmmu off`): what runs without the host's PV MMU, to
        // price native cells (pte-bench's kmaps).
        unit(r.exit, || 0, |_| hv::nop_exit());
        unit(r.flush_global, || 0, |_| tlb::flush_all());
        kmaps(r);
        return;
    }
    // Nothing lazy is left from before.
    vmap::vm_unmap_aliases();
    unit(r.exit, || 0, |_| hv::nop_exit());
    unit(
        r.hypercall,
        || 0,
        |i| {
            let _ = hv::nop(i);
        },
    );
    // One flush of every CPU's TLB: this CPU's CR3 reload and an IPI to each
    // other CPU, waited for (Linux's flush_tlb_kernel_range before 3.5).
    unit(r.flush_global, || 0, |_| tlb::flush_all());
    unit(
        r.vm_unmap_aliases_empty,
        || 0,
        |_| {
            vmap::vm_unmap_aliases();
        },
    );
    // One lazy area of one page: the purge clears its PTE, flushes every CPU
    // and frees the area. Less its flush, the purge's own work.
    let flush: &[Counter] = &[Counter::VmapFlushCycles];
    unit_less(
        r.vm_unmap_aliases_flush,
        Some((r.purge_one, flush)),
        || {
            let pa = aliased_page();
            page::free_pages(pa, 0);
            0
        },
        |_| {
            vmap::vm_unmap_aliases();
        },
    );
    // One lazy area of FLUSH_PAGES pages: what each page beyond the first
    // adds (its PTE retired and cleared, its alias dropped) is the model's
    // price of a page purged, from the two purges less their flushes.
    unit_less(
        r.vm_unmap_aliases_flush_pages,
        Some((r.purge_pages, flush)),
        || {
            aliased_area();
            0
        },
        |_| {
            vmap::vm_unmap_aliases();
        },
    );
    // A pin with nothing to purge (the strategy finds no alias; host-trap's
    // host finds none), the host's validation and alias check included.
    pins(r.pin, None, pte_page);
    tree_pins(r.pin_tree);
    // host-trap: the pin of an aliased frame, refused, trapped back into the
    // fixup (which purges) and retried. The trap-back's own cost, the refusal
    // and the trap into the fixup, is each round less its fixup's action and
    // its retry.
    if pv::strategy() == AliasStrategy::HostTrap {
        let fixup: &[Counter] = &[Counter::AliasFixupActionCycles, Counter::AliasFixupRetryCycles];
        pins(r.pin_trapped, Some((r.trap_back, fixup)), aliased_page);
    }
    // Under the PV MMU a kmap's pte writes are the host's: priced so, they
    // are for PV cells (the benchmark's pte-bench cells are native).
    kmaps(r);
}

pub fn run() {
    // Every CPU takes interrupts from here on: a flush waits for each.
    cpu::sti();
    if percpu::cpu_id() != 0 {
        while DONE.load(Ordering::Acquire) == 0 {
            idle_until(|| DONE.load(Ordering::Acquire) != 0 || BUSY.load(Ordering::Acquire) != 0);
            // Busy as a workload's task is: plain work, no `pause` (which a
            // nested SVM host may take as a hint to yield the vCPU), and a
            // hypercall as often as a workload's CPU makes one.
            let mut x = 1u32;
            let mut last = cpu::rdtsc();
            while BUSY.load(Ordering::Acquire) != 0 && DONE.load(Ordering::Acquire) == 0 {
                for _ in 0..256 {
                    x = core::hint::black_box(x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223));
                }
                if cpu::rdtsc() - last >= BUSY_EXIT_EVERY {
                    let _ = hv::nop(0);
                    last = cpu::rdtsc();
                }
            }
        }
        return;
    }
    let ready = hv::under_vmm() && (!pv::on() || vmap::variant() == VmapVariant::LazyPtes);
    check!(ready, "calibrate needs the VMM, and --vmap lazy-ptes under --pvmmu on");
    if !ready {
        DONE.store(1, Ordering::Release);
        return;
    }
    suite(&UnitResults::IDLE);
    // Again with the other CPUs busy, as a workload's are. Under one TCG
    // thread a busy vCPU takes its turns, so every event that spans one (or
    // waits for that vCPU: an IPI, the host's flush for a new root) costs
    // more; the model prices a workload's counts with these. The flush's
    // IPIs wake the others to work.
    BUSY.store(1, Ordering::Release);
    tlb::flush_all();
    suite(&UnitResults::BUSY);
    BUSY.store(0, Ordering::Release);
    hv::result(GuestResult::UnitFlushPages, FLUSH_PAGES as u64);
    hv::result(GuestResult::UnitRounds, ROUNDS as u64);
    hv::result(GuestResult::UnitCpus, smp::nr_cpus() as u64);
    DONE.store(1, Ordering::Release);
}

//! The memory-management workloads: ring-3 tasks that fault, fork, exit, mremap,
//! exec and walk each other's pagetables, every one checking its memory.
//!
//! The boot CPU is the driver: it starts a phase's tasks (spread over the CPUs in
//! turn), runs tasks of its own CPU while it waits, reaps them, and counts the
//! ones that exited non-zero (a wrong byte, a failed call). Every other CPU runs
//! its tasks until the driver says the workload is over.

use core::sync::atomic::{AtomicBool, Ordering};

use nosleep::MaySleep;
use shared::config::{Config, Workload};
use shared::counters::Counter;
use shared::results::GuestResult;

use crate::arch::cpu;
use crate::mm::address_space::{Mm, ANON_START};
use crate::mm::highpte::{self, pte_offset_map};
use crate::mm::page::{self, Zone};
use crate::ring3::{self, Mode};
use crate::sched;
use crate::syscall::MREMAP_ENOMEM;
use crate::task::{self, State};
use crate::work::kmap_hold;
use crate::{check, hv, kprintln, percpu, smp};

static OVER: AtomicBool = AtomicBool::new(false);

static FORKS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// fork-churn's vmap churn step, before every `--churn-every`th fork: a vmalloc of
/// `--vmap-max-pages` pages, written, checked and vfree'd; or, in
/// `--vmap-ram-pct` of the steps, the same through `vm_map_ram` (a per-CPU
/// vmap block, XFS's way) of pages taken and given back around it. With a lazy
/// `--vmap` the pages go back to the allocator still mapped (the lazy alias)
/// and come back as the new child's pagetables.
pub fn churn_before_fork() {
    let cfg = &crate::bootinfo::get().config;
    if cfg.workload() != Workload::ForkChurn || cfg.churn_every == 0 {
        return;
    }
    let n = FORKS.fetch_add(1, Ordering::Relaxed);
    if !(n as u64).is_multiple_of(cfg.churn_every) {
        return;
    }
    percpu::count(Counter::ChurnSteps, 1);
    let pages = cfg.vmap_max_pages as u32;
    // The steps that map with vm_map_ram: spread evenly, the same every run.
    let step = (n as u64 / cfg.churn_every) as u32;
    let ram = (step.wrapping_mul(37) % 100) < cfg.vmap_ram_pct as u32;
    if ram && pages <= crate::mm::vmap_block::VMAP_MAX_ALLOC {
        churn_map_ram(pages);
        return;
    }
    let Some(va) = crate::mm::vmap::vmalloc(pages * 4096) else {
        check!(false, "fork-churn: vmalloc of {pages} pages failed");
        return;
    };
    fill_and_check(va, pages);
    crate::mm::vmap::vfree(va);
}

fn fill_and_check(va: u32, pages: u32) {
    for p in 0..pages {
        // SAFETY: the area is the caller's, mapped until it unmaps it.
        unsafe { ((va + p * 4096) as *mut u32).write_volatile(va ^ p) };
    }
    for p in 0..pages {
        // SAFETY: the same words of the caller's area, still mapped.
        let w = unsafe { ((va + p * 4096) as *const u32).read_volatile() };
        check!(w == va ^ p, "fork-churn: vmap page {p} reads {w:#x}");
    }
}

/// The vm_map_ram form of the churn step.
fn churn_map_ram(pages: u32) {
    let mut frames = [0u64; crate::mm::vmap_block::VMAP_MAX_ALLOC as usize];
    let mut n = 0;
    while n < pages as usize {
        match page::alloc_user_page() {
            Some(pa) => {
                frames[n] = pa;
                n += 1;
            }
            None => break,
        }
    }
    let give_back = |frames: &[u64]| frames.iter().for_each(|&pa| page::free_pages(pa, 0));
    if n < pages as usize {
        check!(false, "fork-churn: no {pages} pages for vm_map_ram");
        give_back(&frames[..n]);
        return;
    }
    let Some(va) = crate::mm::vmap::vm_map_ram(&frames[..n]) else {
        check!(false, "fork-churn: vm_map_ram of {pages} pages failed");
        give_back(&frames[..n]);
        return;
    };
    fill_and_check(va, pages);
    crate::mm::vmap::vm_unmap_ram(va, pages);
    give_back(&frames[..n]);
}

/// Every CPU's part of a memory-management workload.
pub fn run(cfg: &Config) {
    // Every CPU takes interrupts from here on: ticks, kicks, TLB flush requests.
    cpu::sti();
    if percpu::cpu_id() != 0 {
        sched::idle_until(|| OVER.load(Ordering::Acquire));
        return;
    }
    // SAFETY: the driver runs in the boot CPU's own context; it starts tasks
    // (which never sleeps) and waits in the idle loop, never in schedule().
    let mut ctx = unsafe { MaySleep::new() };
    let (n, pages, rounds) = (cfg.tasks as u32, cfg.pages as u32, cfg.rounds as u32);
    match cfg.workload() {
        Workload::FaultStorm => phase(&mut ctx, GuestResult::FaultStorm, Mode::FaultStorm, n, pages, rounds, 0),
        Workload::ForkStorm => phase(&mut ctx, GuestResult::ForkStorm, Mode::ForkStorm, n, pages, rounds, 0),
        Workload::ForkChurn => phase(&mut ctx, GuestResult::ForkChurn, Mode::ForkStorm, n, pages, rounds, 0),
        Workload::MremapStorm => phase(&mut ctx, GuestResult::MremapStorm, Mode::MremapStorm, n, pages, rounds, 0),
        Workload::Walker => phase(&mut ctx, GuestResult::Walker, Mode::Walker, n.div_ceil(4), pages, rounds, 3),
        Workload::MmAll => {
            phase(&mut ctx, GuestResult::FaultStorm, Mode::FaultStorm, n, pages, rounds, 0);
            phase(&mut ctx, GuestResult::ForkStorm, Mode::ForkStorm, n, pages, rounds, 0);
            phase(&mut ctx, GuestResult::MremapStorm, Mode::MremapStorm, n, pages, rounds, 0);
            phase(&mut ctx, GuestResult::Walker, Mode::Walker, n.div_ceil(4), pages, rounds, 3);
            phase(&mut ctx, GuestResult::Exec, Mode::Exec, n, pages, rounds, 0);
        }
        Workload::TaskCapacity => capacity(&mut ctx, n, pages),
        Workload::PteBench => phase(&mut ctx, GuestResult::PteBench, Mode::PteBench, smp::nr_cpus(), pages, rounds, 0),
        Workload::KmapHold => {
            // Ring 3 cannot reach the per-task pair or the stack's guard.
            phase(&mut ctx, GuestResult::ProbeKernelPages, Mode::ProbeKernelPages, 1, 1, 1, 0);
            kmap_hold::nested_maps_on_a_full_series(&mut ctx);
            if kmap_hold::prepare(n, pages) {
                phase(&mut ctx, GuestResult::KmapHold, Mode::KmapHold, n, pages, rounds, 0);
            }
        }
        _ => unreachable!(),
    }
    if highpte::variant() == shared::config::PteVariant::Persistent {
        hv::result(GuestResult::PkmapWrapFlushes, crate::mm::kmap::wrap_flushes() as u64);
        // Drop the persistent kmaps nobody uses (one more global flush if any).
        crate::mm::kmap::kmap_flush_unused();
    }
    hv::result(GuestResult::MremapEnomem, MREMAP_ENOMEM.load(Ordering::Relaxed) as u64);
    hv::result(GuestResult::TaskMigrations, sched::migrations() as u64);
    let (low, low_free) = page::zone_stats(Zone::Normal);
    let (high, high_free) = page::zone_stats(Zone::HighMem);
    hv::result(GuestResult::LowmemPagesFree, low_free);
    hv::result(GuestResult::HighmemPagesFree, high_free);
    kprintln!("mm: after the workload: Normal {low_free}/{low} pages free, HighMem {high_free}/{high}");
    OVER.store(true, Ordering::Release);
    for c in 1..smp::nr_cpus() {
        smp::send_ipi(c, crate::arch::trap::KICK_VECTOR);
    }
}

/// Starts `n` tasks running `mode`, waits for all, reaps them, checks exit codes.
fn phase(ctx: &mut MaySleep, which: GuestResult, mode: Mode, n: u32, pages: u32, rounds: u32, aux: u32) {
    let name = which.name();
    let t0 = cpu::rdtsc();
    let mut started = 0;
    for i in 0..n {
        let tag = 0x1000_0000 ^ (i << 12);
        match task::spawn(ctx, ring3::main_entry(), [mode as u32, pages, rounds, tag, aux, 0]) {
            Ok(_) => started += 1,
            Err(e) => {
                check!(false, "{name}: task {i} could not start: {}", shared::abi::errno::name(-e));
                if mode == Mode::KmapHold {
                    kmap_hold::tasks_started(started);
                }
                break;
            }
        }
    }
    sched::idle_until(task::all_zombies);
    let failed = task::reap_all();
    let cycles = cpu::rdtsc() - t0;
    check!(failed == 0, "{name}: {failed} of {started} tasks failed their checks");
    kprintln!(
        "{name}: {started} tasks x {pages} pages x {rounds} rounds: {failed} failed, {} ms",
        crate::time::cycles_to_ns(cycles) / 1_000_000
    );
    hv::result(which, cycles);
}

/// Starts tasks one by one, each holding `pages` pagetable pages' worth of
/// sparse memory, until `n` run or memory runs out; reports how many fit.
fn capacity(ctx: &mut MaySleep, n: u32, pages: u32) {
    let mut started = 0;
    let mut why = None;
    for i in 0..n {
        let tag = 0x2000_0000 ^ (i << 12);
        let t = match task::spawn(ctx, ring3::main_entry(), [Mode::Capacity as u32, pages, 1, tag, 0, 0]) {
            Ok(t) => t,
            Err(e) => {
                why = Some(shared::abi::errno::name(-e));
                break;
            }
        };
        let pid = t.pid();
        sched::idle_until(|| match task::find(pid) {
            Some(t) => t.paused.load(Ordering::Acquire) || t.state() == State::Zombie,
            None => true,
        });
        if task::find(pid).is_some_and(|t| t.state() == State::Zombie) {
            why = Some("ENOMEM (killed in a page fault)");
            break;
        }
        started += 1;
    }
    let (_, low_free) = page::zone_stats(Zone::Normal);
    let where_ = if highpte::pte_zone() == Zone::Normal { "lowmem" } else { "highmem" };
    match why {
        Some(w) => kprintln!(
            "task-capacity: only {started} of {n} tasks fit: task {started} failed with {w}; pagetables in {where_}, {low_free} lowmem pages left"
        ),
        None => kprintln!("task-capacity: all {n} tasks fit (pagetables in {where_}, {low_free} lowmem pages left)"),
    }
    hv::result(GuestResult::TasksStarted, started);
    // Release the survivors, let them check their memory and exit.
    crate::syscall::release_all();
    sched::idle_until(task::all_zombies);
    let _ = task::reap_all();
}

/// The PTE_BENCH system call: `rounds` passes over this task's pte pages, each
/// a map through the `--pte` variant, `--pte-reads` pte reads and an unmap.
pub fn pte_bench(ctx: &mut MaySleep, mm: &Mm, rounds: u32) -> u32 {
    let reads = (crate::bootinfo::get().config.pte_reads as usize).clamp(1, 512);
    let mut l1s = [0u64; 64];
    let mut n = 0;
    let mut va = ANON_START;
    while n < l1s.len() {
        match mm.l1(va) {
            Some(l1) => l1s[n] = l1,
            None => break,
        }
        n += 1;
        va += 2 << 20;
    }
    if n == 0 {
        return (-shared::abi::errno::EINVAL) as u32;
    }
    let mut sum = 0u64;
    let t0 = cpu::rdtsc();
    for _ in 0..rounds {
        for &l1 in &l1s[..n] {
            let map = pte_offset_map(ctx, l1);
            for i in 0..reads {
                sum = sum.wrapping_add(map.get(i));
            }
        }
    }
    let cycles = cpu::rdtsc() - t0;
    percpu::count(Counter::PteBenchCycles, cycles);
    percpu::count(Counter::PteBenchAccesses, rounds as u64 * n as u64 * reads as u64);
    core::hint::black_box(sum);
    0
}

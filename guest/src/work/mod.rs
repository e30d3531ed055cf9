//! The workloads: what every CPU does once all are online. The boot CPU starts them,
//! waits for every CPU to finish, reports, and shuts the guest down with status 0
//! when every check passed.

mod bench;
mod boot_check;
mod calibrate;
mod chaos;
mod faults;
mod kmap_hold;
mod mm;
mod pvmmu;
mod vmap_workloads;

use core::sync::atomic::{AtomicU32, Ordering};

use shared::abi::milestone;
use shared::config::{Config, Workload};
use shared::counters::Counter;

use crate::arch::cpu;
use crate::{bootinfo, hv, kprintln, percpu, smp};

static GO: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
/// How many checks failed, over every CPU.
static FAILURES: AtomicU32 = AtomicU32::new(0);

/// Records a failed check.
pub fn fail(what: core::fmt::Arguments) {
    kprintln!("FAIL (cpu {}): {}", percpu::cpu_id(), what);
    FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// Checks a condition; a failure is recorded and printed, the run goes on.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::work::fail(format_args!($($arg)*));
        }
    };
}

/// Halts (counting idle cycles) until `cond` holds.
pub fn idle_until(cond: impl Fn() -> bool) {
    while !cond() {
        let t0 = cpu::rdtsc();
        cpu::sti_hlt();
        percpu::count(Counter::IdleCycles, cpu::rdtsc() - t0);
    }
}

fn config() -> &'static Config {
    &bootinfo::get().config
}

fn run_on_this_cpu() {
    let cfg = config();
    let t0 = cpu::rdtsc();
    match cfg.workload() {
        Workload::Boot => boot_check::run(cfg),
        Workload::HypercallBench => bench::hypercalls(cfg),
        Workload::HypercallSmp => bench::hypercalls_smp(cfg),
        Workload::IpiPingpong => bench::ipi_pingpong(cfg),
        Workload::FaultPage => faults::page_fault(),
        Workload::FaultTriple => faults::triple_fault(),
        Workload::FaultStack => faults::stack_fault(),
        Workload::Hang => faults::hang(),
        Workload::FaultStorm
        | Workload::ForkStorm
        | Workload::MremapStorm
        | Workload::Walker
        | Workload::MmAll
        | Workload::TaskCapacity
        | Workload::PteBench
        | Workload::KmapHold => mm::run(cfg),
        Workload::VmapTest | Workload::VmapChurn | Workload::VmapBench => vmap_workloads::run(cfg),
        Workload::PvmmuSelftest => pvmmu::run(cfg),
        Workload::Contract => crate::contract::run(cfg.scenario),
        Workload::Chaos => chaos::run(cfg),
        Workload::ForkChurn => mm::run(cfg),
        Workload::Calibrate => calibrate::run(),
    }
    percpu::count(Counter::WorkloadCycles, cpu::rdtsc() - t0);
}

/// The boot CPU, once every CPU is online.
pub fn bsp_main() -> ! {
    let cfg = config();
    kprintln!("workload {} on {} CPUs", cfg.workload(), smp::nr_cpus());

    // What the workloads add to the kernel's system calls, before any task.
    crate::syscall::set_hooks(crate::syscall::Hooks {
        before_fork: (cfg.workload() == Workload::ForkChurn).then_some(mm::churn_before_fork as fn()),
        pte_bench: Some(mm::pte_bench),
        kmap_hold: Some(kmap_hold::sys_kmap_hold),
    });
    hv::milestone(milestone::WORKLOAD_START, 0);
    GO.store(1, Ordering::Release);
    run_on_this_cpu();
    DONE.fetch_add(1, Ordering::AcqRel);
    idle_until(|| DONE.load(Ordering::Acquire) == smp::nr_cpus());
    hv::milestone(milestone::WORKLOAD_END, 0);
    let failures = FAILURES.load(Ordering::Relaxed);
    if failures == 0 {
        kprintln!("workload {}: all checks passed", cfg.workload());
        hv::shutdown(0)
    } else {
        kprintln!("workload {}: {} checks FAILED", cfg.workload(), failures);
        hv::shutdown(1)
    }
}

/// Every other CPU, once online.
pub fn ap_main() -> ! {
    idle_until(|| GO.load(Ordering::Acquire) != 0);
    run_on_this_cpu();
    DONE.fetch_add(1, Ordering::AcqRel);
    loop {
        idle_until(|| false);
    }
}

static REACHED: AtomicU32 = AtomicU32::new(0);
static ROUND: AtomicU32 = AtomicU32::new(0);

/// Waits until every CPU has called this as often as this one (a reusable
/// barrier). Spins with interrupts as they were, so a CPU waiting here still
/// answers TLB flush requests.
pub fn all_cpus_reach() {
    let round = ROUND.load(Ordering::Acquire);
    if REACHED.fetch_add(1, Ordering::AcqRel) + 1 == smp::nr_cpus() {
        REACHED.store(0, Ordering::Relaxed);
        ROUND.fetch_add(1, Ordering::Release);
    } else {
        while ROUND.load(Ordering::Acquire) == round {
            cpu::pause();
        }
    }
}

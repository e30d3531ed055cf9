//! The boot workload: every CPU checks the timer, a shared spinlock, and ring 3.

use core::sync::atomic::Ordering;

use shared::config::Config;
use shared::pae::RW;
use shared::results::GuestResult;

use crate::arch::{cpu, user};
use crate::mm::pgtable::AddressSpace;
use crate::ring3::{self, USER_STACK_TOP};
use crate::sync::SpinLock;
use crate::work::{all_cpus_reach, idle_until};
use crate::{check, hv, percpu, smp, time};

static SHARED: SpinLock<u64> = SpinLock::new(0);

pub fn run(cfg: &Config) {
    let cpu_id = percpu::cpu_id();

    // The LAPIC timer ticks on this CPU.
    let pc = percpu::this_cpu();
    let before = pc.ticks.load(Ordering::Relaxed);
    let deadline = cpu::rdtsc() + 2 * time::tsc_khz() as u64 * 1000;
    idle_until(|| pc.ticks.load(Ordering::Relaxed) >= before + 3 || cpu::rdtsc() > deadline);
    check!(pc.ticks.load(Ordering::Relaxed) >= before + 3, "timer: fewer than 3 ticks in 2 s");

    // Atomic increments from every CPU.
    static ATOMIC: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let n = if cfg.iterations != 0 { cfg.iterations as u32 } else { 1000 };
    for _ in 0..n {
        ATOMIC.fetch_add(1, Ordering::Relaxed);
    }
    all_cpus_reach();
    let t = ATOMIC.load(Ordering::Relaxed);
    check!(t == n * smp::nr_cpus(), "atomic: total {} != {}", t, n * smp::nr_cpus());

    // A spinlock shared by every CPU.
    let per_cpu = if cfg.iterations != 0 { cfg.iterations } else { 1000 };
    for _ in 0..per_cpu {
        *SHARED.lock() += 1;
    }
    all_cpus_reach();
    let total = *SHARED.lock();
    check!(
        total == per_cpu * smp::nr_cpus() as u64,
        "spinlock: total {} != {}",
        total,
        per_cpu * smp::nr_cpus() as u64
    );

    // Ring 3 in an address space of this CPU's own.
    match user_space() {
        Some(space) => {
            space.activate();
            let (hello, bad) = (core::ptr::addr_of!(ring3::user_hello), core::ptr::addr_of!(ring3::user_read_kernel));
            let code = user::run(ring3::entry(hello), USER_STACK_TOP);
            check!(code == 42 + cpu_id as i32, "ring 3: exit code {} (want {})", code, 42 + cpu_id);
            let code = user::run(ring3::entry(bad), USER_STACK_TOP);
            check!(code == user::killed_by(14), "ring 3 read of kernel memory: exit code {}, want a page fault", code);
            crate::mm::pgtable::switch_to_kernel();
        }
        None => check!(false, "ring 3: out of memory for an address space"),
    }

    if cpu_id == 0 {
        hv::result(GuestResult::BootCpus, smp::nr_cpus() as u64);
        hv::result(GuestResult::SpinlockTotal, total);
        hv::result(GuestResult::RamMib, crate::bootinfo::get().total_ram() >> 20);
        hv::result(GuestResult::LowmemMib, crate::mm::lowmem_end(crate::bootinfo::get()) >> 20);
    }
}

fn user_space() -> Option<AddressSpace> {
    let space = AddressSpace::new()?;
    ring3::map_code(&space)?;
    let stack = crate::mm::pgtable::alloc_low_page()?;
    space.map(USER_STACK_TOP - 4096, stack, RW)?;
    Some(space)
}

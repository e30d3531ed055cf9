//! TLB flushes: this CPU's (one entry or all), and the other CPUs' by IPI.
//!
//! One flush request is in flight at a time (a lock, as in Linux 2.4's
//! flush_tlb_others); the sender waits, interrupts on, until every target has
//! acknowledged. Kernel-range flushes go to every other CPU; user-range flushes
//! (munmap, mremap, and the teardown of an address space) only to the CPUs in
//! the address space's CPU mask, those it has been live on: with tasks moving
//! between CPUs that is more than the one it runs on.

use core::sync::atomic::{AtomicU32, Ordering};

use shared::counters::Counter;

use crate::arch::cpu;
use crate::arch::trap::FLUSH_VECTOR;
use crate::sync::SpinLock;
use crate::{percpu, smp};

#[derive(Clone, Copy)]
enum Request {
    None,
    /// Everything (a CR3 reload: the kernel maps nothing global).
    All,
    /// `[start, end)` of the address space whose PDPT is `pdpt`.
    Range {
        pdpt: u32,
        start: u32,
        end: u32,
    },
    /// The address space whose PDPT is `pdpt` is being freed: a CPU that still
    /// has it loaded (idle, lazily) switches to the kernel's pagetables.
    Leave {
        pdpt: u32,
    },
}

/// One request in flight: the sender holds this lock until every target acked.
static SENDER: SpinLock<()> = SpinLock::new(());
static PENDING: AtomicU32 = AtomicU32::new(0);
/// The request in flight, for the targets.
static SERVING: SpinLock<Request> = SpinLock::new_irq_safe(Request::None);

/// Flushes one entry on this CPU.
pub fn flush_one(va: u32) {
    percpu::count(Counter::TlbInvlpg, 1);
    cpu::invlpg(va);
}

/// Flushes this CPU's whole TLB.
pub fn flush_local() {
    percpu::count(Counter::TlbFlushLocal, 1);
    reload_cr3();
}

fn reload_cr3() {
    // SAFETY: reloading the current CR3 only drops cached translations.
    unsafe { cpu::write_cr3(cpu::read_cr3()) };
}

fn others() -> u32 {
    let all = (1u32 << smp::nr_cpus()) - 1;
    all & !(1 << percpu::cpu_id())
}

/// Flushes every CPU's whole TLB: here, and on the others by IPI.
pub fn flush_all() {
    percpu::count(Counter::TlbFlushGlobal, 1);
    reload_cr3();
    send(others(), Request::All, Counter::TlbShootdownKernel);
}

/// Flushes `[start, end)` of the address space `pdpt` on the CPUs of `mask`
/// (this one included if it is in the mask).
pub fn flush_user_range(mask: &AtomicU32, pdpt: u32, start: u32, end: u32) {
    // The caller stays on this CPU until every CPU of the mask has flushed.
    percpu::preempt_disable();
    let mask = mask.load(Ordering::SeqCst);
    if mask & (1 << percpu::cpu_id()) != 0 {
        flush_range_here(pdpt, start, end);
    }
    send(mask & others(), Request::Range { pdpt, start, end }, Counter::TlbShootdownUser);
    percpu::preempt_enable();
}

/// Before the address space `pdpt` is freed: the other CPUs of `mask` drop it
/// (a switch to the kernel's pagetables) if they still have it loaded.
pub fn leave_user(mask: &AtomicU32, pdpt: u32) {
    percpu::preempt_disable();
    send(mask.load(Ordering::SeqCst) & others(), Request::Leave { pdpt }, Counter::TlbShootdownUser);
    percpu::preempt_enable();
}

fn flush_range_here(pdpt: u32, start: u32, end: u32) {
    if cpu::read_cr3() != pdpt {
        return;
    }
    if (end - start) / 4096 > 32 {
        flush_local();
    } else {
        let mut va = start;
        while va < end {
            flush_one(va);
            va += 4096;
        }
    }
}

fn send(targets: u32, req: Request, counter: Counter) {
    if targets == 0 {
        return;
    }
    assert!(cpu::eflags() & cpu::EFLAGS_IF != 0, "a TLB shootdown with interrupts off would deadlock");
    let _sender = SENDER.lock();
    *SERVING.lock_irqsave() = req;
    PENDING.store(targets, Ordering::Release);
    for c in 0..smp::nr_cpus() {
        if targets & (1 << c) != 0 {
            percpu::count(counter, 1);
            smp::send_ipi(c, FLUSH_VECTOR);
        }
    }
    while PENDING.load(Ordering::Acquire) != 0 {
        cpu::pause();
    }
    *SERVING.lock_irqsave() = Request::None;
}

/// The flush IPI.
pub fn ipi() {
    let req = *SERVING.lock();
    match req {
        Request::None => {}
        Request::All => {
            percpu::count(Counter::TlbFlushLocal, 1);
            reload_cr3();
        }
        Request::Range { pdpt, start, end } => flush_range_here(pdpt, start, end),
        Request::Leave { pdpt } => {
            if cpu::read_cr3() == pdpt {
                crate::mm::pgtable::switch_to_kernel();
            }
        }
    }
    percpu::this_cpu().flush_acks.fetch_add(1, Ordering::Relaxed);
    PENDING.fetch_and(!(1 << percpu::cpu_id()), Ordering::AcqRel);
}

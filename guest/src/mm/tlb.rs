//! TLB flushes: this CPU's (one entry or all), and the other CPUs' by IPI.
//!
//! One flush request is in flight at a time (a lock, as in Linux 2.4's
//! flush_tlb_others); the sender waits, interrupts on, until every target has
//! acknowledged. Kernel-range flushes go to every other CPU; user-range flushes
//! (munmap, mremap, and the teardown of an address space) only to the CPUs in
//! the address space's CPU mask, those it has been live on: with tasks moving
//! between CPUs that is more than the one it runs on.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

use shared::boot::MAX_VCPUS;
use shared::counters::Counter;

use crate::arch::cpu;
use crate::arch::trap::FLUSH_VECTOR;
use crate::mm::layout::{phys_to_virt, virt_to_phys};
use crate::mm::pgtable;
use crate::sync::SpinLock;
use crate::{percpu, smp};

#[derive(Clone, Copy)]
enum Request {
    None,
    /// Everything, global kernel entries included.
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

/// Flushes this CPU's non-global translations (a CR3 reload, Linux's
/// `local_flush_tlb`): user mappings, and kernel ones under `--pvmmu on`.
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

/// Each CPU's own PDPT for a PGE toggle (see [`cpu::toggle_pge`]).
#[repr(align(32))]
struct PgePdpt(UnsafeCell<[u64; 4]>);

// SAFETY: each CPU touches only its own entry, with interrupts off.
unsafe impl Sync for PgePdpt {}

static PGE_PDPT: [PgePdpt; MAX_VCPUS] = [const { PgePdpt(UnsafeCell::new([0; 4])) }; MAX_VCPUS];

/// Drops every translation on this CPU, global ones too: with global kernel
/// mappings a CR4.PGE toggle (Linux's `__flush_tlb_all`), else a CR3 reload.
fn flush_everything_here() {
    if pgtable::kernel_mappings_global() {
        let cr3 = cpu::read_cr3();
        let cur = phys_to_virt(u64::from(cr3 & !0x1f)) as *const u64;
        let private = PGE_PDPT[percpu::cpu_id() as usize].0.get() as *mut u64;
        for i in 0..4 {
            // SAFETY: CR3's PDPT (every root is a lowmem page, directly mapped)
            // and this CPU's own copy, used with interrupts off (below).
            unsafe { private.add(i).write_volatile(cur.add(i).read_volatile() & !0x60) };
        }
        // SAFETY: the copy maps what CR3 maps and only this CPU loads it; CR3
        // and CR4 as they are, PGE on since boot.
        unsafe { cpu::toggle_pge(private, virt_to_phys(private as u32) as u32, cr3, cpu::read_cr4()) };
    } else {
        reload_cr3();
    }
}

/// Flushes every CPU's whole TLB, global entries included: here, and on the
/// others by IPI (Linux's `flush_tlb_all`).
pub fn flush_all() {
    percpu::count(Counter::TlbFlushGlobal, 1);
    flush_everything_here();
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
            flush_everything_here();
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

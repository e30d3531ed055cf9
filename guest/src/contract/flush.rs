//! TLB flushes the host carries out: this CPU's and the others'.

use core::sync::atomic::{AtomicU64, Ordering};

use shared::abi::pvmmu::{cmd, MmuextOp};
use shared::results::GuestResult;

use super::{ext, op};
use crate::arch::cpu;
use crate::mm::layout::{phys_to_virt, pkmap_base, PAGE_SIZE};
use crate::mm::pgtable::{alloc_low_page, kernel_pte, KERNEL_RW};
use crate::work::all_cpus_reach;
use crate::{check, hv, percpu, smp};

crate::scenario!(
    all_cpus FLUSH,
    "tlb-flush",
    "pass",
    "--vcpus 2",
    "TLB_FLUSH_LOCAL, TLB_FLUSH_ALL and INVLPG_MULTI leave no CPU reading a stale entry",
    flushes
);

/// A kernel VA with an L1 and no other user: the upper of the two guard pages
/// between the vmalloc space and the persistent kmap window.
pub(super) fn test_va() -> u32 {
    pkmap_base() - PAGE_SIZE
}

static MARKS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static STALE_SEEN: AtomicU64 = AtomicU64::new(0);

/// The host's flushes empty the TLBs it says: this CPU's (TLB_FLUSH_LOCAL,
/// INVLPG_LOCAL) and the others' (TLB_FLUSH_ALL, INVLPG_MULTI).
fn flushes() {
    let va = test_va();
    let me = percpu::cpu_id();
    let n = smp::nr_cpus();
    if me == 0 {
        for (i, m) in MARKS.iter().enumerate() {
            let Some(pa) = alloc_low_page() else {
                check!(false, "out of lowmem");
                return;
            };
            // SAFETY: a fresh lowmem page of this test.
            unsafe { (phys_to_virt(pa) as *mut u64).write_volatile(0x5eed_0000 + i as u64) };
            m.store(pa, Ordering::Relaxed);
        }
    }
    all_cpus_reach();
    let pa = |i: usize| MARKS[i].load(Ordering::Relaxed);
    let look = || {
        // SAFETY: the test VA is mapped (by CPU 0) whenever this runs.
        unsafe { (va as *const u64).read_volatile() }
    };
    // SAFETY: kernel_pte gives the live entry of the test VA; only CPU 0 writes it.
    let set = |i: usize| unsafe { kernel_pte(va).write_volatile(pa(i) | KERNEL_RW) };

    // Every CPU fills its TLB with mark 0.
    if me == 0 {
        set(0);
        cpu::invlpg(va);
    }
    all_cpus_reach();
    let first = look();
    check!(first == 0x5eed_0000, "test VA reads {:#x}, want mark 0", first);
    all_cpus_reach();

    // CPU 0 changes the entry without a flush of its own, then asks the host.
    if me == 0 {
        set(1);
        if look() == 0x5eed_0000 {
            STALE_SEEN.fetch_add(1, Ordering::Relaxed);
        }
        check!(ext(&[op(cmd::TLB_FLUSH_LOCAL, 0)]) == 0, "TLB_FLUSH_LOCAL");
        check!(look() == 0x5eed_0001, "after TLB_FLUSH_LOCAL the VA reads {:#x}", look());
        // And for every CPU: TLB_FLUSH_ALL.
        set(2);
        check!(ext(&[op(cmd::TLB_FLUSH_ALL, 0)]) == 0, "TLB_FLUSH_ALL");
    }
    all_cpus_reach();
    let after = look();
    check!(after == 0x5eed_0002, "cpu {}: after TLB_FLUSH_ALL the VA reads {:#x}", me, after);
    all_cpus_reach();

    // INVLPG_MULTI aimed at every CPU but 0, whose own TLB must stay stale-free by
    // its own invlpg.
    if me == 0 && n > 1 {
        set(0);
        cpu::invlpg(va);
        let mask: u64 = ((1u64 << n) - 1) & !1;
        let multi = [MmuextOp {
            cmd: cmd::INVLPG_MULTI,
            _pad: 0,
            arg1: va as u64,
            arg2: crate::mm::layout::virt_to_phys(&mask as *const u64 as u32),
        }];
        check!(ext(&multi) == 0, "INVLPG_MULTI");
    }
    all_cpus_reach();
    if n > 1 {
        let v = look();
        check!(v == 0x5eed_0000, "cpu {}: after INVLPG_MULTI the VA reads {:#x}", me, v);
    }
    all_cpus_reach();
    if me == 0 {
        // SAFETY: as `set`; the test VA goes back to unmapped.
        unsafe { kernel_pte(va).write_volatile(0) };
        cpu::invlpg(va);
        hv::result(GuestResult::PvStaleSeen, STALE_SEEN.load(Ordering::Relaxed));
    }
}

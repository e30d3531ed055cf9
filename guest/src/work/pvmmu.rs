//! `pvmmu-selftest`: the host's PV MMU seen from a real guest, through real
//! hypercalls. CPU 0 builds small pagetables in fresh frames and checks that the
//! host pins, validates and refuses as the contract says, with the right errors and
//! counts; then every CPU checks that the flushes the host carries out really empty
//! its TLB.
//!
//! The kernel itself still runs on its native pagetables, which the host does not
//! know: the tables here are announced to the host but never loaded in CR3.

use core::sync::atomic::{AtomicU64, Ordering};

use shared::abi::errno::{EBUSY, EINVAL, ENOSYS};
use shared::abi::nr;
use shared::abi::pvmmu::{cmd, uvmf, MmuUpdate, MmuextOp, MulticallEntry};
use shared::config::Config;
use shared::pae::{G, P, RW, US};

use crate::arch::cpu;
use crate::mm::layout::{phys_to_virt, PAGE_SIZE, PKMAP_BASE, PKMAP_MAX};
use crate::mm::page;
use crate::mm::pgtable::{alloc_low_page, kernel_pte, KERNEL_RW};
use crate::work::all_cpus_reach;
use crate::{bootinfo, check, hv, percpu, smp, trapback};

fn op(c: u32, arg1: u64) -> MmuextOp {
    MmuextOp { cmd: c, _pad: 0, arg1, arg2: 0 }
}

fn pfn(pa: u64) -> u64 {
    pa >> 12
}

fn entry(table: u64, idx: u64) -> *mut u64 {
    (phys_to_virt(table) + idx as u32 * 8) as *mut u64
}

fn read(table: u64, idx: u64) -> u64 {
    // SAFETY: a lowmem frame this test owns, read through the direct map.
    unsafe { entry(table, idx).read_volatile() }
}

fn write(table: u64, idx: u64, val: u64) {
    // SAFETY: as above; written before the frame is handed to the host.
    unsafe { entry(table, idx).write_volatile(val) }
}

fn update(table: u64, idx: u64, val: u64) -> (i32, u64) {
    hv::mmu_update(&[MmuUpdate { ptr: table + idx * 8, val }])
}

fn ext(ops: &[MmuextOp]) -> i32 {
    hv::mmuext_op(ops).0
}

pub fn run(cfg: &Config) {
    if !hv::under_vmm() {
        check!(false, "pvmmu-selftest needs the VMM");
        return;
    }
    if percpu::cpu_id() == 0 {
        rules();
    }
    all_cpus_reach();
    flushes(cfg);
}

/// Pins, validated updates and refusals (CPU 0).
fn rules() {
    let mut frames = [0u64; 8];
    for f in frames.iter_mut() {
        match alloc_low_page() {
            Some(pa) => *f = pa,
            None => {
                check!(false, "out of lowmem for the test's tables");
                return;
            }
        }
    }
    let [a, b, data, l3, l2, l1, spare, _] = frames;

    // T4: pins are not counted.
    check!(ext(&[op(cmd::PIN_L1_TABLE, pfn(a))]) == 0, "pin of an empty L1");
    check!(ext(&[op(cmd::PIN_L1_TABLE, pfn(a))]) == -EINVAL, "second pin of the same L1 accepted");
    check!(ext(&[op(cmd::PIN_L1_TABLE, pfn(b))]) == 0, "pin of a second L1");

    // V1/V2: a pagetable is mapped read-only, never writable.
    check!(update(b, 0, a | P | RW) == (-EBUSY, 0), "an L1 mapped writable by another L1");
    check!(read(b, 0) == 0, "a refused update wrote the entry");
    check!(update(b, 0, a | P) == (0, 1), "a read-only mapping of an L1 refused");
    check!(update(b, 1, data | P | RW | US) == (0, 1), "a writable mapping of a data page refused");

    // T1 and the alias rule: a frame mapped writable cannot become a pagetable.
    check!(ext(&[op(cmd::PIN_L1_TABLE, pfn(data))]) == -EINVAL, "a writably mapped frame pinned");
    check!(update(b, 1, 0) == (0, 1), "clearing an entry refused");
    check!(ext(&[op(cmd::PIN_L1_TABLE, pfn(data))]) == 0, "an unaliased frame not pinned");
    check!(ext(&[op(cmd::UNPIN_TABLE, pfn(data))]) == 0, "unpin");

    // A batch stops at its first failure (V3: the global bit) and says how far it got.
    let batch = [
        MmuUpdate { ptr: b + 2 * 8, val: spare | P },
        MmuUpdate { ptr: b + 3 * 8, val: spare | P | G },
        MmuUpdate { ptr: b + 4 * 8, val: spare | P },
    ];
    check!(hv::mmu_update(&batch) == (-EINVAL, 1), "a batch with a bad second request");
    check!(read(b, 2) == spare | P && read(b, 3) == 0 && read(b, 4) == 0, "the batch did more than one request");

    // A multicall: each entry on its own.
    let pin_a = [op(cmd::PIN_L1_TABLE, pfn(a))];
    let pin_spare = [op(cmd::PIN_L1_TABLE, pfn(spare))];
    let gpa = |p: *const MmuextOp| crate::mm::layout::virt_to_phys(p as u32);
    let mut calls = [
        MulticallEntry { op: nr::MMUEXT_OP, result: 1, args: [gpa(pin_a.as_ptr()), 1, 0, 0], ret: 9 },
        MulticallEntry { op: nr::NOP, result: 1, args: [0; 4], ret: 9 },
        MulticallEntry { op: nr::MMUEXT_OP, result: 1, args: [gpa(pin_spare.as_ptr()), 1, 0, 0], ret: 9 },
    ];
    check!(hv::multicall(&mut calls) == (0, 3), "multicall");
    let results = [calls[0].result, calls[1].result, calls[2].result];
    check!(results == [-EINVAL, -ENOSYS, 0], "multicall results {:?}", results);
    check!(calls[2].ret == 1, "multicall entry's done count {}", calls[2].ret);

    trap_back(b, data, spare);
    direct_writes(b, spare);

    // A root: L3 -> L2 -> L1, announced with NEW_BASEPTR; update_va_mapping walks it.
    write(l3, 0, l2 | P);
    write(l2, 0, l1 | P | RW | US);
    check!(ext(&[op(cmd::NEW_BASEPTR, pfn(l2))]) == -EINVAL, "an L2 taken as a root");
    check!(ext(&[op(cmd::PIN_L3_TABLE, pfn(l3)), op(cmd::NEW_BASEPTR, pfn(l3))]) == 0, "pin and announce a root");
    check!(hv::update_va_mapping(0x3000, data | P | RW | US, uvmf::INVLPG) == 0, "update_va_mapping");
    check!(read(l1, 3) == data | P | RW | US, "update_va_mapping did not write the L1 entry");
    check!(hv::update_va_mapping(0x4000, l1 | P | RW, uvmf::NONE) == -EBUSY, "the L1 mapped writable through its VA");
    check!(hv::update_va_mapping(0x4000_0000, 0, uvmf::NONE) == -EINVAL, "a VA with no L1");
    check!(update(l3, 4, spare | P) == (-EINVAL, 0), "L3 entry 4 written");

    // Tear down: the kernel root the host knows is not this one, so switch back
    // to nothing by unpinning (the root reference stays until the next NEW_BASEPTR).
    check!(hv::update_va_mapping(0x3000, 0, uvmf::INVLPG) == 0, "clearing a mapping");
    for t in [a, b, spare, l3] {
        check!(ext(&[op(cmd::UNPIN_TABLE, pfn(t))]) == 0, "unpin of {:#x}", t);
    }
    if bootinfo::get().config.inject() == shared::config::Inject::PvDirectWrite {
        check!(ext(&[op(cmd::PIN_L1_TABLE, pfn(a))]) == 0, "pin before the direct write");
        hv::nop(0);
        crate::kprintln!("pvmmu-selftest: writing pinned L1 {:#x} entry 9 directly", a);
        write(a, 9, spare | P);
        check!(false, "the direct write to a pinned L1 went through");
        return;
    }
    if crate::work::failures() == 0 {
        // Frames the host may still count as this CPU's root stay allocated.
        for f in [a, b, data, spare] {
            page::free_pages(f, 0);
        }
    }
}

/// The entry holding the alias the fixup is to remove (its physical address).
static ALIAS: AtomicU64 = AtomicU64::new(0);

fn clear_alias(_pfn: u64) {
    let at = ALIAS.load(Ordering::Relaxed);
    check!(hv::mmu_update(&[MmuUpdate { ptr: at, val: 0 }]) == (0, 1), "the fixup could not clear the alias");
}

fn leave_alias(_pfn: u64) {}

/// The trap-back: a writable alias the host knows of (an RW entry of the pinned L1
/// `b`), then a batch whose second op pins the aliased frame, with a fixup
/// registered. The fixup clears the alias and the batch completes as if nothing
/// had happened; a fixup that leaves the alias gets the caller the error.
fn trap_back(b: u64, victim: u64, other: u64) {
    // SAFETY: this CPU's own counters, read only.
    let fixups = || unsafe { (*percpu::counters(percpu::cpu_id())).get(shared::counters::Counter::AliasFixups) };
    let before = fixups();
    check!(update(b, 5, victim | P | RW) == (0, 1), "the alias mapping");
    ALIAS.store(b + 5 * 8, Ordering::Relaxed);
    check!(trapback::register(Some(clear_alias)) == 0, "set_callbacks");
    let r = hv::mmuext_op(&[op(cmd::UNPIN_TABLE, pfn(other)), op(cmd::PIN_L1_TABLE, pfn(victim))]);
    check!(r == (0, 2), "the batch through the trap-back: {:?}", r);
    check!(fixups() == before + 1, "fixups delivered: {}", fixups() - before);
    check!(ext(&[op(cmd::UNPIN_TABLE, pfn(victim)), op(cmd::PIN_L1_TABLE, pfn(other))]) == 0, "re-pin");
    // A fixup that leaves the alias in place: the error, not a loop.
    check!(update(b, 6, victim | P | RW) == (0, 1), "the second alias mapping");
    trapback::register(Some(leave_alias));
    check!(hv::mmuext_op(&[op(cmd::PIN_L1_TABLE, pfn(victim))]) == (-EINVAL, 0), "a fixup that failed");
    check!(fixups() == before + 2, "fixups delivered: {}", fixups() - before);
    check!(trapback::unregister() == 0, "set_callbacks(0)");
    check!(update(b, 6, 0) == (0, 1), "clearing the second alias");
}

/// Direct writes to a pinned table: with the writable-pagetables assist on, the
/// host applies a valid one as a validated update (its two 4-byte halves, as this
/// 32-bit kernel writes a 64-bit entry).
fn direct_writes(b: u64, target: u64) {
    check!(hv::writable_pagetables(true) == 0, "vm_assist enable");
    // The host protects the table when this CPU next enters the guest; a
    // hypercall is such a moment.
    hv::nop(0);
    write(b, 7, target | P);
    check!(read(b, 7) == target | P, "the emulated direct write reads {:#x}", read(b, 7));
    write(b, 7, 0);
    check!(hv::writable_pagetables(false) == 0, "vm_assist disable");
}

/// A kernel VA with an L1 and no other user: the last entry of the persistent kmap
/// window when the pool is smaller than the window.
fn test_va() -> Option<u32> {
    (bootinfo::get().config.last_pkmap < PKMAP_MAX as u64).then_some(PKMAP_BASE + (PKMAP_MAX - 1) * PAGE_SIZE)
}

static MARKS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static STALE_SEEN: AtomicU64 = AtomicU64::new(0);

/// The host's flushes empty the TLBs it says: this CPU's (TLB_FLUSH_LOCAL,
/// INVLPG_LOCAL) and the others' (TLB_FLUSH_ALL, INVLPG_MULTI).
fn flushes(_cfg: &Config) {
    let Some(va) = test_va() else {
        check!(false, "pvmmu-selftest needs --last-pkmap below {}", PKMAP_MAX);
        return;
    };
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
        hv::result("pv_stale_seen", STALE_SEEN.load(Ordering::Relaxed));
    }
}

//! pv-ops for pagetables (`--pvmmu on`): the kernel's pagetables under the host's
//! PV MMU, kept the way Linux 2.6.28's Xen code kept them on 32-bit PAE.
//!
//! - A pinned pagetable (the kernel's, and every table of an address space
//!   from its root's pin on) is read-only to the kernel: lowmem ones in the
//!   direct map, highmem pte pages in every kmap (Linux's
//!   `kmap_atomic_prot(.., PAGE_KERNEL_RO)`). A tree being built (fork's
//!   child) or let go (exit) is written with plain writes ([`write_entry`]).
//! - Entries of pinned tables are written with `mmu_update`. Inside a lazy-MMU
//!   section ([`lazy_enter`] .. [`lazy_leave`], preemption off) the writes are
//!   queued on this CPU and go to the host in one hypercall when the section
//!   ends or the queue is full; with `--pv-batch off` every write is its own
//!   hypercall. A kernel PTE written outside a section is one
//!   `update_va_mapping` ([`write_kernel`]). Whatever must wait until the host
//!   has the writes (freeing a page whose mapping was just cleared) waits in an
//!   [`AfterFlush`].
//! - A root is announced with NEW_BASEPTR before CR3 is loaded with it.
//! - Before a pin, the `--alias` strategy makes sure no lazy vmap alias of the
//!   frames it brings is left writable (see [`pin_with`]); a refused pin is
//!   counted, purged and retried, and purged with 6.5's walk of every block if
//!   refused again: the benchmark's device, where Linux BUGs.
//!
//! Without `--pvmmu on` every function here is the native operation.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use shared::abi::pvmmu::{cmd, MmuUpdate, MmuextOp, MMU_NORMAL_PT_UPDATE};
use shared::boot::{BootInfo, HOST_RESERVED_END, MAX_VCPUS};
use shared::config::{AliasStrategy, VmapVariant};
use shared::counters::Counter;
use shared::pae::{self, ADDR_MASK, P, RW};

use crate::arch::cpu;
use crate::mm::layout::{phys_to_virt, virt_to_phys, PAGE_SIZE};
use crate::mm::{alias, kmap, page, pgtable, vmap};
use crate::{bootinfo, hv, kprintln, percpu, trapback};

static ON: AtomicBool = AtomicBool::new(false);

/// Whether the kernel's pagetables are under the host's PV MMU.
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Whether [`init`] will put the kernel's pagetables under the host's PV MMU:
/// `--pvmmu on`, under the VMM. Known before the kernel's tables are built.
pub fn will_be_on() -> bool {
    bootinfo::get().config.pvmmu() && hv::under_vmm()
}

fn batching() -> bool {
    bootinfo::get().config.pv_batch()
}

pub fn strategy() -> AliasStrategy {
    bootinfo::get().config.alias()
}

/// Requests a CPU queues before it must send them.
const QUEUE_LEN: usize = 64;

struct Queue {
    depth: u32,
    n: usize,
    reqs: [MmuUpdate; QUEUE_LEN],
}

struct CpuQueue(UnsafeCell<Queue>);

// SAFETY: each CPU uses only its own queue, with preemption off (lazy sections)
// or interrupts off (the sends), and interrupt handlers never queue.
unsafe impl Sync for CpuQueue {}

static QUEUES: [CpuQueue; MAX_VCPUS] =
    [const { CpuQueue(UnsafeCell::new(Queue { depth: 0, n: 0, reqs: [MmuUpdate { ptr: 0, val: 0 }; QUEUE_LEN] })) };
        MAX_VCPUS];

fn queue() -> *mut Queue {
    QUEUES[percpu::cpu_id() as usize].0.get()
}

/// Sends `reqs` in one `mmu_update`; the host refusing a kernel pagetable write
/// is a kernel bug.
fn send(reqs: &[MmuUpdate]) {
    if reqs.is_empty() {
        return;
    }
    percpu::count(Counter::PvUpdates, reqs.len() as u64);
    percpu::count(Counter::PvUpdateCalls, 1);
    let (rc, done) = hv::mmu_update(reqs);
    if rc != 0 || done != reqs.len() as u64 {
        let bad = reqs[done.min(reqs.len() as u64 - 1) as usize];
        panic!(
            "the host refused pagetable write {done} of {}: entry {:#x} <- {:#x}: rc {rc}",
            reqs.len(),
            bad.ptr,
            bad.val
        );
    }
}

/// Writes the pagetable entry at `ptr` (whose guest-physical address is
/// `entry_pa`) with `val`: directly on native, through the host under pv (queued
/// inside a lazy-MMU section).
pub fn write(entry_pa: u64, ptr: *mut u64, val: u64) {
    if !on() {
        // SAFETY: the caller's live pagetable entry.
        unsafe { ptr.write_volatile(val) };
        return;
    }
    let req = MmuUpdate { ptr: entry_pa | MMU_NORMAL_PT_UPDATE, val };
    let was_on = cpu::irq_save();
    let q = queue();
    // SAFETY: this CPU's queue, interrupts off.
    unsafe {
        if (*q).depth == 0 || !batching() {
            send(&[req]);
        } else {
            if (*q).n == QUEUE_LEN {
                flush_locked(q);
            }
            (*q).reqs[(*q).n] = req;
            (*q).n += 1;
        }
    }
    cpu::irq_restore(was_on);
}

/// Writes entry `i` (at `ptr`) of the user pagetable `table`: through the host
/// while the table is pinned (PG_pinned), with a plain write while it is not
/// (a tree being built, or one let go at exit).
pub fn write_entry(table: u64, i: usize, ptr: *mut u64, val: u64) {
    if page::is_pinned(table) {
        write(table + 8 * i as u64, ptr, val);
    } else {
        // SAFETY: the caller's entry of an unpinned table, writable to the kernel.
        unsafe { ptr.write_volatile(val) };
    }
}

/// Writes the kernel PTE of `va` (at `ptr`, guest-physical `entry_pa`) with
/// `val`, as 2.6.28's `xen_set_pte_at` did for init_mm: inside a lazy-MMU
/// section queued like any write; outside one, one `update_va_mapping` of its
/// own (no flush asked). On native, a plain write.
pub fn write_kernel(va: u32, entry_pa: u64, ptr: *mut u64, val: u64) {
    if !on() {
        // SAFETY: the caller's live kernel pagetable entry.
        unsafe { ptr.write_volatile(val) };
        return;
    }
    let was_on = cpu::irq_save();
    // SAFETY: this CPU's queue, interrupts off.
    let in_section = unsafe { (*queue()).depth != 0 } && batching();
    if in_section {
        cpu::irq_restore(was_on);
        write(entry_pa, ptr, val);
        return;
    }
    percpu::count(Counter::PvUpdates, 1);
    percpu::count(Counter::PvUpdateCalls, 1);
    let rc = hv::update_va_mapping(va, val, 0);
    cpu::irq_restore(was_on);
    assert!(rc == 0, "the host refused kernel pagetable write {va:#x} <- {val:#x}: rc {rc}");
}

/// # Safety
/// `q` is this CPU's queue and interrupts are off.
unsafe fn flush_locked(q: *mut Queue) {
    // SAFETY: per the contract.
    unsafe {
        let n = (*q).n;
        (*q).n = 0;
        let reqs = &(*q).reqs;
        send(&reqs[..n]);
    }
}

/// Sends what this CPU queued (inside a section too).
pub fn flush() {
    if !on() {
        return;
    }
    let was_on = cpu::irq_save();
    // SAFETY: this CPU's queue, interrupts off.
    unsafe { flush_locked(queue()) };
    cpu::irq_restore(was_on);
}

/// Opens a lazy-MMU section (nests). Under `--pvmmu on` preemption is off
/// until [`lazy_leave`] (the queue is this CPU's); on native it changes
/// nothing, so a per-task kmap may still sleep while mapped.
pub fn lazy_enter() {
    if on() {
        percpu::preempt_disable();
        // SAFETY: this CPU's queue, preemption off; interrupt handlers never queue.
        unsafe { (*queue()).depth += 1 };
    }
}

/// Closes a lazy-MMU section: the outermost one sends the queue.
pub fn lazy_leave() {
    if on() {
        let q = queue();
        // SAFETY: as in lazy_enter.
        unsafe {
            (*q).depth -= 1;
            if (*q).depth == 0 {
                flush();
            }
        }
        percpu::preempt_enable();
    }
}

/// Frames that may be handed on (freed, their alias count dropped) only once
/// the host has the writes that unmapped them: kept until this CPU's queue is
/// sent. On native, handed on at once.
pub struct AfterFlush<F: FnMut(u64)> {
    frames: [u64; 32],
    n: usize,
    then: F,
}

impl<F: FnMut(u64)> AfterFlush<F> {
    pub fn new(then: F) -> Self {
        AfterFlush { frames: [0; 32], n: 0, then }
    }

    /// `pa` once the writes queued so far reached the host.
    pub fn push(&mut self, pa: u64) {
        if !on() {
            (self.then)(pa);
            return;
        }
        if self.n == self.frames.len() {
            self.drain();
        }
        self.frames[self.n] = pa;
        self.n += 1;
    }

    /// Sends the queue and hands every frame on.
    pub fn drain(&mut self) {
        if self.n == 0 {
            return;
        }
        flush();
        for &pa in &self.frames[..self.n] {
            (self.then)(pa);
        }
        self.n = 0;
    }
}

impl<F: FnMut(u64)> Drop for AfterFlush<F> {
    fn drop(&mut self) {
        self.drain();
    }
}

/// An `mmuext_op` batch; what this CPU queued goes first (a pin, a root or a
/// flush must see every write before it).
fn mmuext(ops: &[MmuextOp]) -> (i32, u64) {
    flush();
    hv::mmuext_op(ops)
}

fn op(cmd: u32, pfn: u64) -> MmuextOp {
    MmuextOp { cmd, _pad: 0, arg1: pfn, arg2: 0 }
}

/// Loads the root `pdpt` on this CPU: announced to the host first under pv.
pub fn load_root(pdpt: u64) {
    if on() {
        let (rc, _) = mmuext(&[op(cmd::NEW_BASEPTR, pdpt >> 12)]);
        assert!(rc == 0, "the host refused root {pdpt:#x}: rc {rc}");
    }
    // SAFETY: the caller's root maps the kernel (slot 3 is the kernel's L2).
    unsafe { cpu::write_cr3(pdpt as u32) };
}

/// A table level, as the pin commands name it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    L1,
    L3,
}

/// The direct-map entry of lowmem frame `pa`, read-only or writable.
fn direct_map_entry(pa: u64, writable: bool) -> (u64, *mut u64, u64) {
    let va = phys_to_virt(pa);
    let ptr = pgtable::kernel_pte(va);
    let val = if writable { pa | pgtable::KERNEL_RW } else { pa | (pgtable::KERNEL_RW & !RW) };
    (virt_to_phys(ptr as u32), ptr, val)
}

/// Frames handed to a visitor one by one: a pin's or an unpin's tables, which
/// for a whole address space are too many for a fixed array.
pub type Frames<'a> = &'a dyn Fn(&mut dyn FnMut(u64));

/// Makes the lowmem frames of `frames` (about to be pinned, or just
/// unpinned) read-only or writable again in the direct map (one batch), and
/// drops this CPU's cached translations of them: a stale writable one would
/// be an alias, a stale read-only one would fault the kernel's next write.
/// The other CPUs' stale writable entries the host revokes (T3). Highmem
/// frames have no kernel mapping to change: pte pages are mapped per use, by
/// protection (highpte), and a pin drops unused persistent kmaps first
/// (`kmap_flush_unused()`).
fn set_kernel_access(frames: Frames, writable: bool) {
    lazy_enter();
    frames(&mut |pa| {
        if page::is_lowmem(pa) {
            let (entry_pa, ptr, val) = direct_map_entry(pa, writable);
            write(entry_pa, ptr, val);
        }
    });
    lazy_leave();
    frames(&mut |pa| {
        if page::is_lowmem(pa) {
            cpu::invlpg(phys_to_virt(pa));
        }
    });
}

/// Pins the table `pa` at `level`: `fresh` are the frames becoming pagetables
/// with it (the table, and for an L3 every table of its tree). See [`pin_with`].
pub fn pin(pa: u64, level: Level, fresh: &[u64]) {
    pin_with(pa, level, &|f| fresh.iter().for_each(|&x| f(x)));
}

/// Pins the table `pa` at `level`, as 2.6.28's Xen code pinned: the `--alias`
/// strategy runs first (always-flush: one `vm_unmap_aliases()` per pin, however
/// many tables the pin brings), then `kmap_flush_unused()` if a highmem table
/// comes with it, then the lowmem tables turn read-only and one hypercall pins
/// the table; an L3 takes its whole tree, which the host validates. A pin the
/// host refuses is counted, purged and retried: Linux BUGs there instead.
pub fn pin_with(pa: u64, level: Level, fresh: Frames) {
    if !on() {
        return;
    }
    let t0 = cpu::rdtsc();
    // Preemption off for the pin, as under the mm's page-table lock that
    // Linux pins with: its alias work stays this CPU's and is counted as the pin's.
    percpu::preempt_disable();
    percpu::this_cpu().in_pin.store(true, Ordering::Relaxed);
    percpu::this_cpu().pin_fixup_pfn.store(u64::MAX, Ordering::Relaxed);
    percpu::count(Counter::PtPins, 1);
    if level == Level::L3 {
        percpu::count(Counter::PtPinsRoot, 1);
    }
    let (mut aliased, mut highmem) = (false, false);
    fresh(&mut |f| {
        aliased |= alias::may_have_alias(f);
        highmem |= !page::is_lowmem(f);
    });
    // A lazy alias the host would refuse: a present PTE, not only a stale TLB entry.
    let alias_pte = aliased && vmap::variant() == VmapVariant::LazyPtes;
    if aliased {
        percpu::count(Counter::PtPinsAliased, 1);
        if alias_pte {
            percpu::count(Counter::PtPinsAliasPte, 1);
        }
    }
    match strategy() {
        AliasStrategy::AlwaysFlush => {
            vmap::vm_unmap_aliases();
        }
        AliasStrategy::AliasBit | AliasStrategy::RuntimeSwitch if aliased => {
            vmap::vm_unmap_aliases();
        }
        AliasStrategy::Oracle if alias_pte => {
            vmap::vm_unmap_aliases();
        }
        // clean-pool's pages come unaliased from its pool (ptcache); host-trap's
        // host finds the alias itself and traps back; none does nothing.
        _ => {}
    }
    if highmem {
        // A persistent kmap nobody uses is a writable alias too.
        kmap::kmap_flush_unused();
    }
    set_kernel_access(fresh, false);
    let c = match level {
        Level::L1 => cmd::PIN_L1_TABLE,
        Level::L3 => cmd::PIN_L3_TABLE,
    };
    let (mut rc, _) = mmuext(&[op(c, pa >> 12)]);
    if rc != 0 {
        // Linux BUGs on a refused pin. Purge-and-retry is the benchmark's
        // device, so that a strategy that leaves aliases still finishes the
        // workload and its refusals show as counts.
        percpu::count(Counter::PtPinRefused, 1);
        vmap::vm_unmap_aliases();
        rc = mmuext(&[op(c, pa >> 12)]).0;
        if rc != 0 {
            purge_missed_alias();
            rc = mmuext(&[op(c, pa >> 12)]).0;
        }
        assert!(
            rc == 0,
            "the host refused to pin {level:?} table {pa:#x} even after purging every vmap block: rc {rc}"
        );
    }
    fresh(&mut |f| page::set_pin_state(f, page::PINNED));
    page::set_pin_state(pa, page::PINNED | page::PINNED_ALONE);
    percpu::this_cpu().pin_fixup_pfn.store(u64::MAX, Ordering::Relaxed);
    percpu::this_cpu().in_pin.store(false, Ordering::Relaxed);
    percpu::preempt_enable();
    percpu::count(Counter::PtPinCycles, cpu::rdtsc() - t0);
}

/// A pin refused again after `vm_unmap_aliases()`: the alias sits where the
/// `--vmap-flush 2.6.28` walk does not look (a full vmap block). Counted, and
/// purged with the walk of every block, the benchmark's device.
pub fn purge_missed_alias() {
    percpu::count(Counter::PtPinRefusedAfterPurge, 1);
    vmap::vm_unmap_aliases_every_block();
}

/// Unpins the tables `pins` and gives `frames` (every frame that stops being a
/// pagetable) back to the kernel writable.
pub fn unpin(pins: &[u64], frames: &[u64]) {
    unpin_with(pins, &|f| frames.iter().for_each(|&x| f(x)));
}

/// [`unpin`] with the frames from a visitor.
pub fn unpin_with(pins: &[u64], frames: Frames) {
    if !on() {
        return;
    }
    let mut ops = [MmuextOp::default(); 16];
    for chunk in pins.chunks(ops.len()) {
        for (o, &pa) in ops.iter_mut().zip(chunk) {
            *o = op(cmd::UNPIN_TABLE, pa >> 12);
        }
        let (rc, done) = mmuext(&ops[..chunk.len()]);
        assert!(rc == 0, "the host refused to unpin table {:#x}: rc {rc}", chunk[done as usize]);
    }
    set_kernel_access(frames, true);
    frames(&mut |f| page::set_pin_state(f, 0));
}

/// Puts the kernel's own pagetables under the host (at boot, on the boot CPU,
/// before the other CPUs start): the frames the host keeps and holes are
/// dropped from the direct map, every kernel table becomes read-only there, the
/// root is pinned (the host validates the whole tree) and announced.
pub fn init(info: &BootInfo, lowmem_end: u64) {
    if !bootinfo::get().config.pvmmu() {
        return;
    }
    if !will_be_on() {
        kprintln!("pvmmu: --pvmmu on needs the VMM (no hypercalls on bare metal); staying native");
        return;
    }
    let (pdpt, pd) = (pgtable::kernel_pdpt(), pgtable::kernel_pd());
    // The direct-map L1s turn read-only while their own entries are written:
    // write protection is off for supervisor writes until the tree is done.
    let cr0 = cpu::read_cr0();
    // SAFETY: only WP changes; paging stays on.
    unsafe { cpu::write_cr0(cr0 & !cpu::CR0_WP) };
    let in_ram = |pa: u64| pa >= HOST_RESERVED_END && info.regions().iter().any(|r| (r.base..r.end()).contains(&pa));
    // Native writes: nothing is validated yet.
    let mut pa = 0;
    while pa < lowmem_end {
        if !in_ram(pa) {
            pgtable::set_kernel_pte(phys_to_virt(pa), 0);
        }
        pa += PAGE_SIZE as u64;
    }
    let mut tables = 0;
    let mut make_ro = |pa: u64| {
        let (_, ptr, val) = direct_map_entry(pa, false);
        // SAFETY: a direct-map entry; the tables are not validated yet.
        unsafe { ptr.write_volatile(val) };
        tables += 1;
    };
    make_ro(pdpt);
    make_ro(pd);
    for i in 0..pae::ENTRIES {
        // SAFETY: the kernel's L2, lowmem.
        let e = unsafe { (phys_to_virt(pd) as *const u64).add(i).read_volatile() };
        if e & P != 0 {
            make_ro(e & ADDR_MASK);
        }
    }
    // SAFETY: reloading the current root only drops cached translations; WP as
    // it was.
    unsafe {
        cpu::write_cr3(cpu::read_cr3());
        cpu::write_cr0(cr0);
    }
    let (rc, _) = mmuext(&[op(cmd::PIN_L3_TABLE, pdpt >> 12)]);
    if rc != 0 {
        for i in 0..4 {
            // SAFETY: the kernel's PDPT, lowmem.
            let e = unsafe { (phys_to_virt(pdpt) as *const u64).add(i).read_volatile() };
            kprintln!("pvmmu: kernel L3 {pdpt:#x}[{i}] = {e:#x}");
        }
        panic!("the host refused the kernel's pagetables: rc {rc}");
    }
    ON.store(true, Ordering::Release);
    load_root(pdpt);
    if strategy() == AliasStrategy::HostTrap {
        let rc = trapback::register(None);
        assert!(rc == 0, "the host refused the alias fixup entry: rc {rc}");
    }
    kprintln!(
        "pvmmu: {tables} kernel pagetables pinned and read-only; updates {}, alias strategy {}",
        if batching() { "batched" } else { "one hypercall each" },
        strategy()
    );
}

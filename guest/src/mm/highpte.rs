//! highpte: the one way the kernel reaches a pte page, whatever `--pte` says.
//!
//! - [`pte_offset_map`] / [`pte_offset_map_nested`]: for an atomic section. The
//!   map borrows the caller's [`MaySleep`], so nothing that may sleep can be called
//!   while it lives (a compile error; see the `nosleep` crate). Dropping it unmaps.
//! - [`PteMapLong`]: the persistent form for slow paths (the walker), which may
//!   reach scheduling points while holding it: its [`PteMapLong::resched`] unmaps
//!   and remaps around the scheduling point when the map is an atomic one.
//!
//! How a pte page is mapped per variant: lowpte: directly (it is lowmem);
//! atomic: KM_PTE0 / KM_PTE1; persistent: an entry of pte-highmem's pagetable
//! series (the nested map from the second series); percpu-pool: a slot of this
//! CPU's pool; per-task: slot 0 / 1 of the task's own pair.
//!
//! [`pte_offset_map_zap`] is the fast path of a teardown (pte-highmem's
//! `pte_offset_atomic` in zap_page_range): under `--pte persistent` it maps
//! with KM_PTE0 instead of a series entry; every other variant maps as usual.

use nosleep::{MaySleep, Unmap};
use shared::config::PteVariant;
use shared::counters::Counter;

use crate::mm::kmap::{self, KmType};
use crate::mm::layout::phys_to_virt;
use crate::mm::page::{self, Zone};
use crate::mm::pv;
use crate::{bootinfo, percpu, sched};

/// The `--pte` variant of this boot.
pub fn variant() -> PteVariant {
    bootinfo::get().config.pte()
}

/// The zone pte pages come from.
pub fn pte_zone() -> Zone {
    if variant() == PteVariant::Lowpte {
        Zone::Normal
    } else {
        Zone::HighMem
    }
}

/// How one pte page is mapped, and so how it is unmapped.
pub enum Slot {
    Direct,
    Atomic(*mut u8),
    Serie(*mut u8),
    Pool(u32),
    Task(u64, usize),
}

impl Slot {
    fn unmap(&mut self) {
        match *self {
            Slot::Direct => {}
            Slot::Atomic(va) => kmap::kunmap_atomic(va),
            Slot::Serie(va) => kmap::kunmap_serie(va),
            Slot::Pool(s) => kmap::kunmap_pool(s),
            Slot::Task(pa, i) => kmap::kunmap_task(pa, i),
        }
    }
}

/// A pte page mapped for an atomic section, which is a lazy-MMU section too:
/// under `--pvmmu on` its entry writes are queued and sent when it ends.
pub struct Mapped {
    pt: u64,
    slot: Slot,
}

impl Mapped {
    fn new(pt: u64, slot: Slot) -> Self {
        pv::lazy_enter();
        Mapped { pt, slot }
    }
}

impl Unmap for Mapped {
    fn unmap(&mut self, _table: *mut u64) {
        pv::lazy_leave();
        self.slot.unmap();
    }

    unsafe fn write(&self, table: *mut u64, i: usize, v: u64) {
        // SAFETY: entry `i` (below 512, per the contract) of the mapped page.
        pv::write_entry(self.pt, i, unsafe { table.add(i) }, v);
    }
}

pub type PteMap<'a> = nosleep::PteMap<'a, Mapped>;

/// Maps `pt` with slot `nest` (0: first, 1: nested). May sleep (a full pool) before
/// the atomic section begins.
fn map(ctx: &mut MaySleep, pt: u64, nest: usize) -> (*mut u64, Slot) {
    percpu::count(Counter::PteMaps, 1);
    // Under --pte atomic a lowmem pte page is mapped atomically too: Linux's
    // kmap_atomic turns preemption off before it tests for highmem, so
    // pte_offset_map is an atomic section whatever zone the page is in.
    if page::is_lowmem(pt) && variant() != PteVariant::Atomic {
        percpu::count(Counter::KmapDirect, 1);
        return (phys_to_virt(pt) as *mut u64, Slot::Direct);
    }
    // A pinned pte page is read-only to the kernel under the host's PV MMU
    // (2.6.28's xen_kmap_atomic_pte); one not pinned yet, or no more, is not.
    let w = !pv::on() || !page::is_pinned(pt);
    // A task that has let go of its address space (exit's teardown, which
    // comes after the switch to the kernel's pagetables) has no per-task pair:
    // it maps with the atomic slots.
    let v = match variant() {
        PteVariant::PerTask if sched::current().mm().is_none() => PteVariant::Atomic,
        v => v,
    };
    match v {
        PteVariant::Lowpte => (phys_to_virt(pt) as *mut u64, Slot::Direct),
        PteVariant::Atomic => {
            let va = kmap::kmap_atomic_prot(pt, if nest == 0 { KmType::Pte0 } else { KmType::Pte1 }, w);
            (va as *mut u64, Slot::Atomic(va))
        }
        PteVariant::Persistent => {
            let serie = if nest == 0 { kmap::Serie::Pagetable } else { kmap::Serie::Pagetable2 };
            let va = kmap::kmap_serie_prot(ctx, pt, serie, w);
            (va as *mut u64, Slot::Serie(va))
        }
        PteVariant::PercpuPool => {
            let (va, s) = kmap::kmap_pool_prot(ctx, pt, w);
            (va as *mut u64, Slot::Pool(s))
        }
        PteVariant::PerTask => (kmap::kmap_task_prot(pt, nest, w) as *mut u64, Slot::Task(pt, nest)),
    }
}

/// Maps the pte page `pt` for an atomic section.
pub fn pte_offset_map(ctx: &mut MaySleep, pt: u64) -> PteMap<'_> {
    let (table, slot) = map(ctx, pt, 0);
    // SAFETY: `map` mapped the page at `table` until `slot` unmaps it.
    unsafe { PteMap::new(ctx.enter_atomic(), table, Mapped::new(pt, slot)) }
}

/// Maps the pte page `pt` for a teardown's atomic section (munmap, exit): as
/// [`pte_offset_map`], but atomically (KM_PTE0) under `--pte persistent`,
/// pte-highmem's `pte_offset_atomic` on the zap path.
pub fn pte_offset_map_zap(ctx: &mut MaySleep, pt: u64) -> PteMap<'_> {
    let (table, slot) = if variant() == PteVariant::Persistent && !page::is_lowmem(pt) {
        percpu::count(Counter::PteMaps, 1);
        let w = !pv::on() || !page::is_pinned(pt);
        let va = kmap::kmap_atomic_prot(pt, KmType::Pte0, w);
        (va as *mut u64, Slot::Atomic(va))
    } else {
        map(ctx, pt, 0)
    };
    // SAFETY: as in pte_offset_map.
    unsafe { PteMap::new(ctx.enter_atomic(), table, Mapped::new(pt, slot)) }
}

/// Maps two pte pages at once (source and destination of a copy or a move): the
/// second is the nested map (KM_PTE1, the second per-task page).
pub fn pte_offset_map_nested(ctx: &mut MaySleep, pt: u64, nested: u64) -> (PteMap<'_>, PteMap<'_>) {
    let (t0, s0) = map(ctx, pt, 0);
    let (t1, s1) = map(ctx, nested, 1);
    let (a0, a1) = ctx.enter_atomic().split();
    // SAFETY: as in pte_offset_map, for both.
    unsafe { (PteMap::new(a0, t0, Mapped::new(pt, s0)), PteMap::new(a1, t1, Mapped::new(nested, s1))) }
}

/// A pte page mapped for a slow path that reaches scheduling points.
pub struct PteMapLong {
    pt: u64,
    table: *mut u64,
    slot: Option<Slot>,
}

impl PteMapLong {
    /// Maps `pt` (slot 0).
    pub fn new(ctx: &mut MaySleep, pt: u64) -> Self {
        let (table, slot) = map(ctx, pt, 0);
        PteMapLong { pt, table, slot: Some(slot) }
    }

    pub fn get(&self, i: usize) -> u64 {
        assert!(i < 512 && self.slot.is_some());
        // SAFETY: mapped while `slot` is Some.
        unsafe { self.table.add(i).read_volatile() }
    }

    /// A scheduling point: an atomic map is dropped around it and made again.
    pub fn resched(&mut self, ctx: &mut MaySleep) {
        if matches!(self.slot, Some(Slot::Atomic(_))) {
            if let Some(mut s) = self.slot.take() {
                s.unmap();
            }
            sched::cond_resched(ctx);
            let (table, slot) = map(ctx, self.pt, 0);
            self.table = table;
            self.slot = Some(slot);
        } else {
            sched::cond_resched(ctx);
        }
    }
}

impl Drop for PteMapLong {
    fn drop(&mut self) {
        if let Some(mut s) = self.slot.take() {
            s.unmap();
        }
    }
}

/// Maps one pte page with slot `nest` for an atomic section. Only the injected
/// 2.5.7 bug uses this directly: it maps the destination while the source map
/// (made with a forged right to sleep) is still live.
pub fn pte_offset_map_slot(ctx: &mut MaySleep, pt: u64, nest: usize) -> PteMap<'_> {
    let (table, slot) = map(ctx, pt, nest);
    // SAFETY: as in pte_offset_map.
    unsafe { PteMap::new(ctx.enter_atomic(), table, Mapped::new(pt, slot)) }
}

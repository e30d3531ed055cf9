//! Contexts that may sleep, and sections that must not.
//!
//! The 2.5.7 mremap bug: `move_one_page` held the source pte through an atomic
//! kmap while allocating the destination pagetable page, and the allocation could
//! sleep; another task then reused the same per-CPU kmap slot. Here the right to
//! sleep is a value, [`MaySleep`], that every function which may sleep takes by
//! `&mut`. An atomic pte map ([`PteMap`]) borrows it for as long as the map lives,
//! so the bug does not compile:
//!
//! ```compile_fail
//! use nosleep::{MaySleep, PteMap, Unmap};
//! struct Slot;
//! impl Unmap for Slot {
//!     fn unmap(&mut self, _: *mut u64) {}
//! }
//! fn pte_offset_map(ctx: &mut MaySleep) -> PteMap<'_, Slot> {
//!     // SAFETY: a dummy table for the example.
//!     unsafe { PteMap::new(ctx.enter_atomic(), core::ptr::null_mut(), Slot) }
//! }
//! fn alloc_pagetable(_ctx: &mut MaySleep) {}
//!
//! // SAFETY: the example is process context.
//! let mut ctx = unsafe { MaySleep::new() };
//! let src = pte_offset_map(&mut ctx);
//! alloc_pagetable(&mut ctx); // may sleep while `src` is mapped: refused
//! drop(src);
//! ```
#![no_std]

use core::marker::PhantomData;

/// The right to sleep: held by process context (a task's system call or page
/// fault, a kernel task), passed by `&mut` to everything that may sleep.
/// Neither `Send` nor `Clone`.
pub struct MaySleep {
    _not_send: PhantomData<*mut ()>,
}

impl MaySleep {
    /// The right to sleep, at the entry of a process context.
    ///
    /// # Safety
    /// The caller is in process context, may be preempted, and holds no atomic
    /// section; only one `MaySleep` is live per context.
    pub unsafe fn new() -> Self {
        MaySleep { _not_send: PhantomData }
    }

    /// Enters an atomic section, which lasts as long as the returned value.
    pub fn enter_atomic(&mut self) -> Atomic<'_> {
        Atomic { _ctx: PhantomData }
    }
}

/// Proof of being inside an atomic section: no `&mut MaySleep` can be passed
/// while it lives.
pub struct Atomic<'a> {
    _ctx: PhantomData<&'a mut MaySleep>,
}

impl<'a> Atomic<'a> {
    /// A second, shorter proof (for a nested map).
    pub fn reborrow(&mut self) -> Atomic<'_> {
        Atomic { _ctx: PhantomData }
    }

    /// Two proofs of the same section (for two maps held at once, such as the
    /// source and destination of a copy); both end before the section does.
    pub fn split(self) -> (Atomic<'a>, Atomic<'a>) {
        (Atomic { _ctx: PhantomData }, Atomic { _ctx: PhantomData })
    }
}

/// How a mapped pagetable page is unmapped (a kmap slot, a pool entry, nothing),
/// and how its entries are written.
pub trait Unmap {
    fn unmap(&mut self, table: *mut u64);

    /// Writes entry `i` of the page mapped at `table`: directly, unless the
    /// mapping knows better (a hypervisor that validates pagetable writes).
    ///
    /// # Safety
    /// `table` is the page this mapping maps, still mapped, and `i` is below 512.
    unsafe fn write(&self, table: *mut u64, i: usize, v: u64) {
        // SAFETY: per the contract.
        unsafe { table.add(i).write_volatile(v) }
    }
}

/// A pagetable page mapped for the duration of an atomic section: the entries
/// are at `table[0..512]`; dropping the map unmaps it.
pub struct PteMap<'a, U: Unmap> {
    table: *mut u64,
    unmapper: U,
    _atomic: Atomic<'a>,
}

impl<'a, U: Unmap> PteMap<'a, U> {
    /// # Safety
    /// `table` must point at a mapped 4 KiB pagetable page that stays mapped until
    /// `unmapper` unmaps it.
    pub unsafe fn new(atomic: Atomic<'a>, table: *mut u64, unmapper: U) -> Self {
        PteMap { table, unmapper, _atomic: atomic }
    }

    /// Reads entry `i` (0..512).
    pub fn get(&self, i: usize) -> u64 {
        assert!(i < 512);
        // SAFETY: the page is mapped while `self` lives (see `new`).
        unsafe { self.table.add(i).read_volatile() }
    }

    /// Writes entry `i` (0..512), as the mapping writes entries.
    pub fn set(&self, i: usize, v: u64) {
        assert!(i < 512);
        // SAFETY: the page is mapped while `self` lives (see `new`); i < 512.
        unsafe { self.unmapper.write(self.table, i, v) }
    }

    /// The address of entry `i`.
    pub fn entry_ptr(&self, i: usize) -> *mut u64 {
        assert!(i < 512);
        // SAFETY: in bounds of the mapped page.
        unsafe { self.table.add(i) }
    }

    /// The mapped page's base.
    pub fn table(&self) -> *mut u64 {
        self.table
    }
}

impl<U: Unmap> Drop for PteMap<'_, U> {
    fn drop(&mut self) {
        self.unmapper.unmap(self.table);
    }
}

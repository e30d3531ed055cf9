//! User address spaces: demand-zero faults, fork's copy, exit's teardown, munmap,
//! mremap (`move_one_page`), exec's replacement, and the /proc-like walker.
//!
//! Layout of every address space:
//!
//! ```text
//! 0x00400000            the user programs (kernel image frames, read-only, shared)
//! 0x10000000..B0000000  anonymous memory, demand zero
//! 0xBFE00000, BFE01000  the per-task kmap pair (supervisor only)
//! 0xBFE02000            the stack's guard page (never mapped)
//! 0xBFE03000..C0000000  the stack, demand zero (top at USER_STACK_TOP)
//! ```
//!
//! The PDPT, the three user L2s and the L1 of the top 2 MiB (the per-task kmap
//! pair, the guard and the stack) are lowmem; every other L1 comes from the
//! `--pte` variant's zone through the pagetable cache, and is only ever reached
//! through `highpte`. The pair and the guard are outside every user region: a
//! ring-3 access faults (not present, or present without US) and kills the task,
//! and munmap and mremap refuse them.
//! An address space belongs to one task (no threads), so only that task changes
//! it; the walker reads another's while holding a reference.

use core::sync::atomic::{AtomicU32, Ordering};

use nosleep::MaySleep;
use shared::abi::errno;
use shared::config::Inject;
use shared::counters::Counter;
use shared::pae::{self, A, ADDR_MASK, D, P, RW, US};

use crate::arch::cpu;
use crate::mm::highpte::{self, pte_offset_map, pte_offset_map_nested, pte_offset_map_zap, PteMapLong};
use crate::mm::kmap::{kmap_atomic, kunmap_atomic, KmType, PER_TASK_VA};
use crate::mm::layout::{phys_to_virt, PAGE_OFFSET, PAGE_SIZE};
use crate::mm::page;
use crate::mm::pgtable::alloc_low_page;
use crate::mm::pv::{self, AfterFlush};
use crate::mm::{ptcache, tlb};
use crate::{bootinfo, percpu, ring3, sched};

pub const ANON_START: u32 = 0x1000_0000;
pub const ANON_END: u32 = 0xb000_0000;
/// The 2 MiB whose L1 is lowmem in every variant (per-task kmaps, the stack).
const TOP_L1_VA: u32 = 0xbfe0_0000;
/// The page between the per-task kmap pair and the stack, never mapped.
pub const STACK_GUARD: u32 = PER_TASK_VA + 2 * PAGE_SIZE;
pub const STACK_BOTTOM: u32 = STACK_GUARD + PAGE_SIZE;
pub const USER_STACK_TOP: u32 = PAGE_OFFSET;

const _: () = assert!(PER_TASK_VA == TOP_L1_VA && STACK_BOTTOM < USER_STACK_TOP);

/// An available pte bit: the frame is the kernel image's (user code), shared by
/// every address space, never copied or freed.
const SHARED: u64 = 1 << 9;
const USER_PDE: u64 = P | RW | US | A;
const USER_PTE: u64 = P | US | A | D;

/// An address space. It lives in its own PDPT page, after the four entries; under
/// `--pvmmu on` in a page of its own (the PDPT is read-only to the kernel then).
#[repr(C)]
pub struct Mm {
    _pdpt_entries: [u64; 4],
    users: AtomicU32,
    /// CPUs it has been live on (loaded in CR3), Linux's mm_cpumask: those that
    /// may hold its translations. Bits are never cleared; a CPU that has loaded
    /// another address space since ignores the flush it is sent.
    cpumask: AtomicU32,
    pdpt: u64,
    pds: [u64; 3],
    top_l1: u64,
    /// The page holding this struct when it is not the PDPT (`--pvmmu on`).
    home: u64,
}

fn table(pa: u64) -> *mut u64 {
    phys_to_virt(pa) as *mut u64
}

impl Mm {
    /// Loads it on this CPU (again, flushing this CPU's TLB, if `reload`).
    pub fn activate(&self, reload: bool) {
        self.cpumask.fetch_or(1 << percpu::cpu_id(), Ordering::SeqCst);
        if reload || cpu::read_cr3() != self.pdpt as u32 {
            // Slot 3 is the kernel's L2, so the kernel stays mapped.
            pv::load_root(self.pdpt);
        }
    }

    fn pde(&self, va: u32) -> *mut u64 {
        let (i3, i2, _) = pae::indexes(va);
        // SAFETY: the L2s are lowmem pages of this address space.
        unsafe { table(self.pds[i3]).add(i2) }
    }

    /// Writes the L2 entry of `va` (through the host once the tree is pinned).
    fn set_pde(&self, va: u32, e: u64) {
        let (i3, i2, _) = pae::indexes(va);
        pv::write_entry(self.pds[i3], i2, self.pde(va), e);
    }

    /// Whether the host holds this address space's tables (`--pvmmu on`, after
    /// its root's pin).
    fn pinned(&self) -> bool {
        page::is_pinned(self.pdpt)
    }

    /// Every table of the address space: the PDPT, its three L2s and the L1
    /// of every present L2 entry.
    pub fn for_each_table(&self, f: &mut dyn FnMut(u64)) {
        f(self.pdpt);
        self.pds.iter().for_each(|&pd| f(pd));
        self.for_each_l1(&mut |_, l1| f(l1));
    }

    /// Every L1 `(va, frame)` of the address space, by address.
    fn for_each_l1(&self, f: &mut dyn FnMut(u32, u64)) {
        for i in 0..3 * 512u32 {
            let va = ((i / 512) << 30) | ((i % 512) << 21);
            if let Some(l1) = self.l1(va) {
                f(va, l1);
            }
        }
    }

    /// The L1 (pte page) covering `va`, if there is one.
    pub fn l1(&self, va: u32) -> Option<u64> {
        // SAFETY: a live entry of this address space's L2.
        let e = unsafe { self.pde(va).read_volatile() };
        (e & P != 0).then_some(e & ADDR_MASK)
    }

    /// Sets a per-task kmap pte (slot `idx`): the top L1 is lowmem. The pair is
    /// the kernel's: never a user-accessible entry.
    pub fn set_per_task_pte(&self, idx: usize, entry: u64) {
        assert!(idx < 2 && entry & US == 0, "a per-task kmap entry {entry:#x} (slot {idx}) user space could reach");
        let (_, _, i1) = pae::indexes(PER_TASK_VA + idx as u32 * PAGE_SIZE);
        // SAFETY: an entry of the lowmem top L1 of this address space.
        let ptr = unsafe { table(self.top_l1).add(i1) };
        pv::write_entry(self.top_l1, i1, ptr, entry);
    }

    fn flush(&self, start: u32, end: u32) {
        tlb::flush_user_range(&self.cpumask, self.pdpt as u32, start, end);
    }
}

/// A fresh address space with the user programs mapped; `None` when lowmem is out.
///
/// The tables are built with plain writes while they are nobody's; under
/// `--pvmmu on` the new PDPT is then pinned, which validates all of them
/// (exec's, as 2.6.28's `xen_activate_mm` pinned it before first use).
pub fn new_user(ctx: &mut MaySleep) -> Option<*mut Mm> {
    let mm = build_user(ctx)?;
    // SAFETY: the new address space, ours alone.
    pin_tree(unsafe { &*mm });
    Some(mm)
}

/// Pins the whole tree of `mm` with its root (under `--pvmmu on`): one alias
/// check by the strategy and one pin, which the host validates recursively,
/// as 2.6.28's `xen_pgd_pin`.
fn pin_tree(mm: &Mm) {
    pv::pin_with(mm.pdpt, pv::Level::L3, &|f| mm.for_each_table(f));
}

/// [`new_user`]'s tables, not yet pinned.
fn build_user(_ctx: &mut MaySleep) -> Option<*mut Mm> {
    let pdpt = ptcache::alloc_table_low()?;
    let home = if pv::on() {
        match alloc_low_page() {
            Some(pa) => pa,
            None => {
                page::free_pages(pdpt, 0);
                return None;
            }
        }
    } else {
        0
    };
    let free_home = || {
        if home != 0 {
            page::free_pages(home, 0)
        }
    };
    let mm = phys_to_virt(if home != 0 { home } else { pdpt }) as *mut Mm;
    let mut pds = [0u64; 3];
    for (i, pd) in pds.iter_mut().enumerate() {
        match ptcache::alloc_table_low() {
            Some(pa) => *pd = pa,
            None => {
                pds[..i].iter().for_each(|&p| ptcache::free_table_low(p));
                ptcache::free_table_low(pdpt);
                free_home();
                return None;
            }
        }
    }
    let Some(top_l1) = ptcache::alloc_table_low() else {
        pds.iter().for_each(|&p| ptcache::free_table_low(p));
        ptcache::free_table_low(pdpt);
        free_home();
        return None;
    };
    percpu::count(Counter::PtPagesLowmem, 1);
    // SAFETY: the PDPT page is ours; the Mm sits after its four entries.
    unsafe {
        let e = table(pdpt);
        for (i, &pd) in pds.iter().enumerate() {
            e.add(i).write(pd | P);
        }
        e.add(3).write(crate::mm::pgtable::kernel_pd() | P);
        core::ptr::addr_of_mut!((*mm).users).write(AtomicU32::new(1));
        core::ptr::addr_of_mut!((*mm).cpumask).write(AtomicU32::new(0));
        core::ptr::addr_of_mut!((*mm).pdpt).write(pdpt);
        core::ptr::addr_of_mut!((*mm).pds).write(pds);
        core::ptr::addr_of_mut!((*mm).top_l1).write(top_l1);
        core::ptr::addr_of_mut!((*mm).home).write(home);
    }
    // SAFETY: initialised above.
    let m = unsafe { &*mm };
    // SAFETY: an entry of the new address space's L2.
    unsafe { m.pde(TOP_L1_VA).write(top_l1 | USER_PDE) };
    // The user programs: kernel image frames, read-only, shared.
    let (code_pa, len) = ring3::code_frames();
    let mut off = 0;
    while off < len {
        let va = ring3::USER_CODE_VA + off;
        let l1 = match m.l1(va) {
            Some(l1) => l1,
            None => {
                // Lowmem: it is set up before the task runs, outside highpte.
                // (A leak if it fails, as before pv: lowmem is out anyway.)
                let l1 = ptcache::alloc_table_low()?;
                percpu::count(Counter::PtPagesLowmem, 1);
                // SAFETY: an entry of the new address space's L2, which no
                // one else uses before the task runs.
                unsafe { m.pde(va).write(l1 | USER_PDE) };
                l1
            }
        };
        // SAFETY: a lowmem L1 of the new address space.
        unsafe { table(l1).add(pae::indexes(va).2).write((code_pa + off as u64) | USER_PTE | SHARED) };
        off += PAGE_SIZE;
    }
    Some(mm)
}

/// Takes another reference (the walker's).
pub fn get(mm: &Mm) {
    mm.users.fetch_add(1, Ordering::AcqRel);
}

/// Drops a reference; the last one frees every page and pagetable, as 2.6.28
/// under Xen did at exit: no CPU keeps it loaded (this one switches to the
/// kernel's pagetables), the host lets go of it (its root's pin and the pins of
/// pte pages added later), every table is writable to the kernel again, and
/// only then are the ptes cleared, with plain writes, through the pte API's
/// teardown map (`pte_offset_map_zap`; per-task kmaps fall back to the atomic
/// slots once the task has let go of its address space), and the pages and
/// tables freed.
pub fn put(ctx: &mut MaySleep, mm: &Mm) {
    if mm.users.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    if cpu::read_cr3() == mm.pdpt as u32 {
        // Detach it from the task (an exit) before it goes: a preemption from
        // here on must not load it again.
        let was_on = cpu::irq_save();
        let me = sched::current();
        if me.mm().is_some_and(|m| core::ptr::eq(m, mm)) {
            me.replace_mm(core::ptr::null_mut());
        }
        crate::mm::pgtable::switch_to_kernel();
        cpu::irq_restore(was_on);
    }
    // The other CPUs it was live on flush its user range, and any that still
    // has it loaded (an idle CPU keeps the last one) drops it.
    tlb::leave_user(&mm.cpumask, mm.pdpt as u32);
    if mm.pinned() {
        // The root's pin goes (the host drops the L2s and the L1s they held),
        // then the pte pages' own pins, and every table is the kernel's again.
        pv::unpin(&[mm.pdpt], &[]);
        let (mut pins, mut n) = ([0u64; 16], 0);
        mm.for_each_l1(&mut |_, l1| {
            if page::is_pinned_alone(l1) {
                pins[n] = l1;
                n += 1;
                if n == pins.len() {
                    pv::unpin(&pins, &[]);
                    n = 0;
                }
            }
        });
        pv::unpin(&pins[..n], &[]);
        pv::unpin_with(&[], &|f| mm.for_each_table(f));
    }
    mm.for_each_l1(&mut |_, l1| {
        let map = pte_offset_map_zap(ctx, l1);
        for i in 0..512 {
            let e = map.get(i);
            if e != 0 {
                map.set(i, 0);
            }
            if e & P != 0 && e & US != 0 && e & SHARED == 0 {
                page::free_pages(e & ADDR_MASK, 0);
            }
        }
    });
    // The L2s are untouched (only freed below), so the walk sees the same L1s.
    mm.for_each_l1(&mut |va, l1| {
        if own_l1(va) {
            ptcache::free_pt(l1);
        } else {
            ptcache::free_table_low(l1);
        }
    });
    let (pdpt, pds, home) = (mm.pdpt, mm.pds, mm.home);
    for pd in pds {
        ptcache::free_table_low(pd);
    }
    ptcache::free_table_low(pdpt);
    if home != 0 {
        page::free_pages(home, 0);
    }
}

/// Whether the L1 of `va` comes from the pagetable cache (the others, lowmem,
/// are built with the address space).
fn own_l1(va: u32) -> bool {
    va != TOP_L1_VA && va >= ANON_START
}

/// The L1 covering `va`, allocated (zeroed, from the pagetable cache) if missing.
/// May sleep.
pub fn pte_alloc(ctx: &mut MaySleep, mm: &Mm, va: u32) -> Result<u64, i32> {
    // Linux's pte_alloc_map allocates with GFP_KERNEL, which may sleep.
    sched::might_sleep(ctx, "pte_alloc");
    if let Some(l1) = mm.l1(va) {
        return Ok(l1);
    }
    let l1 = ptcache::alloc_pt().ok_or(errno::ENOMEM)?;
    if mm.pinned() {
        // A pte page joining a pinned tree is pinned on its own, after its own
        // alias check (2.6.28's xen_alloc_ptpage). One that joins a tree still
        // being built (fork's copy) is pinned with it.
        pv::pin(l1, pv::Level::L1, &[l1]);
    }
    // An entry of this address space's L2; only its task changes it.
    mm.set_pde(va, l1 | USER_PDE);
    Ok(l1)
}

fn in_user_region(va: u32) -> bool {
    (ANON_START..ANON_END).contains(&va) || (STACK_BOTTOM..USER_STACK_TOP).contains(&va)
}

/// A page fault from ring 3 at `va`: a demand-zero page if `va` is in an anonymous
/// region. `Err` kills the task (out of memory or a bad address).
pub fn fault(ctx: &mut MaySleep, mm: &Mm, va: u32) -> Result<(), i32> {
    if !in_user_region(va) {
        return Err(errno::EFAULT);
    }
    let va = va & !(PAGE_SIZE - 1);
    let l1 = pte_alloc(ctx, mm, va)?;
    let data = page::alloc_user_page().ok_or(errno::ENOMEM)?;
    ptcache::zero_page(data);
    let map = pte_offset_map(ctx, l1);
    let i = pae::indexes(va).2;
    if map.get(i) & P == 0 {
        map.set(i, data | USER_PTE | RW);
        drop(map);
        percpu::count(Counter::PageFaults, 1);
    } else {
        // A spurious fault (the pte is there): give the page back.
        drop(map);
        page::free_pages(data, 0);
    }
    Ok(())
}

/// Copies one data page through two atomic kmaps.
fn copy_page(dst: u64, src: u64) {
    let s = kmap_atomic(src, KmType::User0);
    let d = kmap_atomic(dst, KmType::User1);
    // SAFETY: both pages are mapped until the unmaps below.
    unsafe { core::ptr::copy_nonoverlapping(s, d, PAGE_SIZE as usize) };
    kunmap_atomic(d);
    kunmap_atomic(s);
}

/// fork's copy: every user page is copied (no copy-on-write), the pagetables
/// with it. Fails with ENOMEM, having freed what it built.
///
/// The child's tables are built unpinned, with plain writes, and pinned whole
/// at the end: one alias check and one pin per fork (2.6.28's `xen_dup_mmap`).
pub fn copy(ctx: &mut MaySleep, parent: &Mm) -> Result<*mut Mm, i32> {
    let child_ptr = build_user(ctx).ok_or(errno::ENOMEM)?;
    // SAFETY: the new address space, ours alone.
    let child = unsafe { &*child_ptr };
    let mut va = ANON_START;
    while va < PAGE_OFFSET {
        let Some(src_l1) = parent.l1(va) else {
            va += 2 << 20;
            continue;
        };
        let dst_l1 = match pte_alloc(ctx, child, va) {
            Ok(l1) => l1,
            Err(e) => {
                put(ctx, child);
                return Err(e);
            }
        };
        let mut failed = false;
        {
            let (src, dst) = pte_offset_map_nested(ctx, src_l1, dst_l1);
            for i in 0..512 {
                let e = src.get(i);
                if e & P == 0 || e & US == 0 || e & SHARED != 0 {
                    continue;
                }
                let Some(new) = page::alloc_user_page() else {
                    failed = true;
                    break;
                };
                copy_page(new, e & ADDR_MASK);
                dst.set(i, new | (e & !ADDR_MASK));
            }
        }
        if failed {
            put(ctx, child);
            return Err(errno::ENOMEM);
        }
        va += 2 << 20;
        sched::cond_resched(ctx);
    }
    pin_tree(child);
    Ok(child_ptr)
}

/// Unmaps `[start, start + len)` of the current address space and frees its pages.
pub fn munmap(ctx: &mut MaySleep, mm: &Mm, start: u32, len: u32) -> Result<(), i32> {
    let end = start.checked_add(len).ok_or(errno::EINVAL)?;
    if !start.is_multiple_of(PAGE_SIZE) || !in_user_region(start) || !in_user_region(end - 1) {
        return Err(errno::EINVAL);
    }
    let mut free = AfterFlush::new(|pa| page::free_pages(pa, 0));
    let mut va = start;
    while va < end {
        let next = ((va >> 21) + 1) << 21;
        if let Some(l1) = mm.l1(va) {
            let map = pte_offset_map_zap(ctx, l1);
            let mut v = va;
            while v < end.min(next) {
                let i = pae::indexes(v).2;
                let e = map.get(i);
                if e & P != 0 {
                    map.set(i, 0);
                    free.push(e & ADDR_MASK);
                }
                v += PAGE_SIZE;
            }
        }
        va = next;
    }
    drop(free);
    mm.flush(start, end);
    Ok(())
}

/// mremap, moving `len` bytes at `old` to `new` (non-overlapping) page by page.
/// Returns the new address, or ENOMEM when a pagetable could not be allocated
/// (pages already moved stay moved, as in Linux).
pub fn mremap(ctx: &mut MaySleep, mm: &Mm, old: u32, new: u32, len: u32) -> Result<u32, i32> {
    let (old_end, new_end) = (old.checked_add(len).ok_or(errno::EINVAL)?, new.checked_add(len).ok_or(errno::EINVAL)?);
    if !old.is_multiple_of(PAGE_SIZE) || !new.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(errno::EINVAL);
    }
    if !in_user_region(old) || !in_user_region(old_end - 1) || !in_user_region(new) || !in_user_region(new_end - 1) {
        return Err(errno::EINVAL);
    }
    if old < new_end && new < old_end {
        return Err(errno::EINVAL);
    }
    percpu::count(Counter::Mremaps, 1);
    let mut off = 0;
    let mut result = Ok(new);
    while off < len {
        if let Err(e) = move_one_page(ctx, mm, old + off, new + off) {
            result = Err(e);
            break;
        }
        off += PAGE_SIZE;
    }
    mm.flush(old, old_end);
    result
}

/// Moves one pte: allocate the destination pagetable (may sleep), then map the
/// source and the destination, move the entry, unmap. `--inject` reproduces the
/// two historic bugs of this function.
fn move_one_page(ctx: &mut MaySleep, mm: &Mm, old: u32, new: u32) -> Result<(), i32> {
    let Some(src_l1) = mm.l1(old) else { return Ok(()) };
    let (i_old, i_new) = (pae::indexes(old).2, pae::indexes(new).2);
    match bootinfo::get().config.inject() {
        Inject::MremapAllocFail if mm.l1(new).is_none() => {
            // 2.4's backport: the allocation fails. The move must stop cleanly.
            return Err(errno::ENOMEM);
        }
        Inject::MremapSleepInAtomic => return move_one_page_2_5_7(mm, src_l1, old, new),
        _ => {}
    }
    let dst_l1 = pte_alloc(ctx, mm, new)?;
    let (src, dst) = pte_offset_map_nested(ctx, src_l1, dst_l1);
    let e = src.get(i_old);
    if e & P != 0 {
        assert!(dst.get(i_new) & P == 0, "mremap onto a mapped page at {new:#x}");
        dst.set(i_new, e);
        src.set(i_old, 0);
    }
    Ok(())
}

/// The 2.5.7 ordering: map the source atomically, then allocate the destination
/// pagetable, which sleeps. The type system forbids it, so the bug forges a
/// second right to sleep, as the C code implicitly did.
fn move_one_page_2_5_7(mm: &Mm, src_l1: u64, old: u32, new: u32) -> Result<(), i32> {
    // SAFETY: deliberately wrong (the injected bug): this context already holds
    // the real right to sleep, which the source map below borrows.
    let mut forged = unsafe { MaySleep::new() };
    // SAFETY: deliberately wrong too: a second forged right to sleep, which
    // the source map borrows while `forged` allocates (the injected bug).
    let mut src_ctx = unsafe { MaySleep::new() };
    let src = highpte::pte_offset_map_slot(&mut src_ctx, src_l1, 0);
    let e = src.get(pae::indexes(old).2);
    // The allocation may sleep while the source stays mapped: might_sleep()
    // there catches it under the debug checker. Without it, the allocation
    // sleeps (as when memory is short).
    let dst_l1 = pte_alloc(&mut forged, mm, new)?;
    sched::yield_now(&mut forged);
    let dst = highpte::pte_offset_map_slot(&mut forged, dst_l1, 1);
    if e & P != 0 {
        dst.set(pae::indexes(new).2, e);
        src.set(pae::indexes(old).2, 0);
    }
    Ok(())
}

/// Walks `mm`'s anonymous memory like /proc/<pid>/pagemap: counts present pages,
/// and those whose first word is `va ^ tag` (what the workloads write), with a
/// scheduling point every 64 entries.
pub fn walk(ctx: &mut MaySleep, mm: &Mm, tag: u32) -> (u32, u32) {
    let (mut present, mut good) = (0, 0);
    let mut va = ANON_START;
    while va < ANON_END {
        if let Some(l1) = mm.l1(va) {
            let mut map = PteMapLong::new(ctx, l1);
            for i in 0..512u32 {
                let e = map.get(i as usize);
                if e & P != 0 && e & US != 0 {
                    present += 1;
                    let d = kmap_atomic(e & ADDR_MASK, KmType::User0);
                    // SAFETY: mapped until the unmap below.
                    let w = unsafe { (d as *const u32).read_volatile() };
                    kunmap_atomic(d);
                    if w == (va + i * PAGE_SIZE) ^ tag {
                        good += 1;
                    }
                }
                if i % 64 == 63 {
                    map.resched(ctx);
                }
            }
        }
        va += 2 << 20;
    }
    (present, good)
}

//! PAE pagetables: the kernel's own (built at boot, its L2 shared by every address
//! space), and user address spaces.
//!
//! The kernel's L2 (the page directory for 3..4 GiB) is shared by every address
//! space, so a kernel mapping is seen by all at once. The L1s of the direct map
//! and of the kmap and fixmap areas are allocated at boot; those of the vmalloc
//! space as it is first mapped ([`populate_kernel`]), as 2.6.28's
//! `vmap_page_range` did with `pte_alloc_kernel`: with less lowmem the space is
//! larger, up to almost 1 GiB, whose L1s would cost 2 MiB of lowmem up front.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shared::pae::{self, A, D, G, P, PCD, PWT, RW, US};

use crate::arch::cpu;
use crate::mm::layout::{phys_to_virt, virt_to_phys, vmalloc_end, FIXMAP_END, PAGE_OFFSET, PAGE_SIZE};
use crate::mm::{memblock, pv};
use crate::sync::{Once, SpinLock};

/// Flags of a kernel data mapping (A and D preset: the CPU never has to set them).
pub const KERNEL_RW: u64 = P | RW | A | D;
/// Flags of a read-only kernel data mapping.
pub const KERNEL_RO: u64 = P | A | D;
/// Flags of an uncached kernel mapping of device registers.
pub const KERNEL_MMIO: u64 = KERNEL_RW | PCD | PWT;
/// Flags of a page-directory entry of the kernel / of user space.
const KERNEL_PDE: u64 = P | RW | A;
const USER_PDE: u64 = P | RW | US | A;

struct KernelTables {
    pdpt: u64,
    /// The L2 of slot 3 (PAGE_OFFSET and up).
    pd: u64,
}

static KERNEL: Once<KernelTables> = Once::new();

/// `_PAGE_GLOBAL` on every kernel mapping (the direct map, vmap, pkmap and
/// fixmap entries) in native runs, where CR4.PGE is on (`arch::boot`), as
/// Linux's `PAGE_KERNEL` had it. None under `--pvmmu on`: 32-bit Xen refused
/// global entries in a PV guest's L1s. Set once, before the kernel's tables.
static GLOBAL: AtomicU64 = AtomicU64::new(0);

/// The global bit kernel mappings carry (0 under `--pvmmu on`).
pub fn kernel_global() -> u64 {
    GLOBAL.load(Ordering::Relaxed)
}

/// Whether kernel mappings are global, so that only a CR4.PGE toggle flushes
/// them all (`tlb::flush_all`).
pub fn kernel_mappings_global() -> bool {
    kernel_global() != 0
}

fn table(pa: u64) -> *mut u64 {
    phys_to_virt(pa) as *mut u64
}

fn alloc_table() -> u64 {
    memblock::alloc_page().expect("out of lowmem while building pagetables")
}

/// Builds the kernel pagetables (direct map of `[0, lowmem_end)` and the L1s of the
/// areas above vmalloc) and switches this CPU to them.
pub fn init_kernel(lowmem_end: u64) {
    GLOBAL.store(if pv::will_be_on() { 0 } else { G }, Ordering::Relaxed);
    let g = kernel_global();
    let pdpt = alloc_table();
    let pd = alloc_table();
    let l2 = table(pd);
    let mut pa = 0u64;
    while pa < lowmem_end {
        let l1pa = alloc_table();
        let l1 = table(l1pa);
        for i in 0..pae::ENTRIES {
            let frame = pa + (i as u64) * PAGE_SIZE as u64;
            if frame < lowmem_end {
                // SAFETY: l1 is a fresh lowmem table, mapped by the boot pagetables.
                unsafe { l1.add(i).write(frame | KERNEL_RW | g) };
            }
        }
        let va = phys_to_virt(pa);
        // SAFETY: l2 is the kernel's fresh L2 (lowmem, mapped by the boot
        // pagetables); the index of a 3..4 GiB address is below 512.
        unsafe { l2.add(pae::indexes(va).1).write(l1pa | KERNEL_PDE) };
        pa += 2 << 20;
    }
    // The kmap and fixmap areas' L1s, and the one the vmalloc space ends in.
    let mut va = vmalloc_end() & !(L1_SPAN - 1);
    loop {
        let l1pa = alloc_table();
        // SAFETY: the kernel's fresh L2, as for the direct map's L1s.
        unsafe { l2.add(pae::indexes(va).1).write(l1pa | KERNEL_PDE) };
        match va.checked_add(2 << 20) {
            Some(next) if next <= FIXMAP_END => va = next,
            _ => break,
        }
    }
    // SAFETY: the kernel's fresh PDPT, lowmem; slot 3 of its four.
    unsafe { table(pdpt).add(3).write(pd | P) };
    KERNEL.set(KernelTables { pdpt, pd });
    switch_to_kernel();
}

/// Loads the kernel pagetables on this CPU.
pub fn switch_to_kernel() {
    // The kernel PDPT maps the running kernel (lowmem) at its link address.
    pv::load_root(KERNEL.get().pdpt);
    crate::percpu::set_double_fault_cr3(KERNEL.get().pdpt as u32);
}

/// The kernel's root (its PDPT).
pub fn kernel_pdpt() -> u64 {
    KERNEL.get().pdpt
}

/// The kernel's L2 (slot 3 of every address space).
pub fn kernel_pd() -> u64 {
    KERNEL.get().pd
}

/// The bytes one L1 maps.
const L1_SPAN: u32 = 2 << 20;

/// The kernel's L1 for `va` (at or above PAGE_OFFSET), if it has one.
fn kernel_l1(va: u32) -> Option<u64> {
    assert!(va >= PAGE_OFFSET);
    let (_, i2, _) = pae::indexes(va);
    // SAFETY: the kernel L2 lives in lowmem; i2 is below 512.
    let pde = unsafe { table(KERNEL.get().pd).add(i2).read_volatile() };
    (pde & P != 0).then_some(pde & pae::ADDR_MASK)
}

/// The kernel PTE for `va` (which must be at or above PAGE_OFFSET and have an L1).
pub fn kernel_pte(va: u32) -> *mut u64 {
    let l1 = kernel_l1(va).unwrap_or_else(|| panic!("no kernel L1 for {va:#x}"));
    // SAFETY: a present kernel PDE names one of the kernel's L1s, all lowmem;
    // the index is below 512.
    unsafe { table(l1).add(pae::indexes(va).2) }
}

/// The kernel PTE of `va` now: 0 where no L1 covers it yet (a part of the
/// vmalloc space never mapped).
pub fn read_kernel_pte(va: u32) -> u64 {
    match kernel_l1(va) {
        // SAFETY: one of the kernel's L1s, lowmem; the index is below 512.
        Some(l1) => unsafe { table(l1).add(pae::indexes(va).2).read_volatile() },
        None => 0,
    }
}

/// Lowmem pages taken since boot by the vmalloc space's L1s.
static VMALLOC_L1S: AtomicU32 = AtomicU32::new(0);
/// One CPU at a time adds an L1 to the kernel's L2 (init_mm's page_table_lock).
static KERNEL_L2_LOCK: SpinLock<()> = SpinLock::new(());

/// How many L1s the vmalloc space has allocated since boot (each a lowmem page,
/// kept).
pub fn vmalloc_l1s() -> u32 {
    VMALLOC_L1S.load(Ordering::Relaxed)
}

/// Where a kernel L1 comes from and goes back to: a zeroed lowmem page (the
/// pagetable allocator's, which under clean-pool hands out unaliased pages).
#[derive(Clone, Copy)]
pub struct TableSource {
    pub alloc: fn() -> Option<u64>,
    pub free: fn(u64),
}

/// Gives every kernel PTE of `[start, end)` an L1, allocating those missing
/// from `src`: the vmalloc space's, on its first mapping (2.6.28's
/// `pte_alloc_kernel`). None when lowmem has no page left for one.
pub fn populate_kernel(start: u32, end: u32, src: TableSource) -> Option<()> {
    let mut va = start & !(L1_SPAN - 1);
    while va < end {
        if kernel_l1(va).is_none() {
            add_kernel_l1(va, src)?;
        }
        va = va.checked_add(L1_SPAN)?;
    }
    Some(())
}

/// Allocates the L1 covering `va` and enters it in the kernel's L2. Under
/// `--pvmmu on` init_mm is pinned, so the new pte page is pinned on its own
/// first, after its own alias check (2.6.28's `xen_alloc_ptpage`), and the L2
/// entry goes through the host.
fn add_kernel_l1(va: u32, src: TableSource) -> Option<()> {
    let l1 = (src.alloc)()?;
    if pv::on() {
        crate::percpu::count(shared::counters::Counter::PtPinsKernel, 1);
    }
    pv::pin(l1, pv::Level::L1, &[l1]);
    let (_, i2, _) = pae::indexes(va);
    let pd = KERNEL.get().pd;
    let guard = KERNEL_L2_LOCK.lock();
    if kernel_l1(va).is_some() {
        // Another CPU added it meanwhile.
        drop(guard);
        pv::unpin(&[l1], &[l1]);
        (src.free)(l1);
        return Some(());
    }
    // SAFETY: the kernel's L2, lowmem; i2 is below 512.
    let entry = unsafe { table(pd).add(i2) };
    pv::write(pd + 8 * i2 as u64, entry, l1 | KERNEL_PDE);
    pv::flush();
    VMALLOC_L1S.fetch_add(1, Ordering::Relaxed);
    drop(guard);
    Some(())
}

/// Writes the kernel PTE of `va` (through the host under `--pvmmu on`; queued
/// in a lazy-MMU section), without any flush. A present entry is made global in
/// native runs ([`kernel_global`]).
pub fn write_kernel_pte(va: u32, entry: u64) {
    let entry = if entry & P != 0 { entry | kernel_global() } else { entry };
    let p = kernel_pte(va);
    pv::write_kernel(va, virt_to_phys(p as u32), p, entry);
}

/// Maps one kernel page on this CPU (with a local flush of the old entry).
pub fn set_kernel_pte(va: u32, entry: u64) {
    write_kernel_pte(va, entry);
    cpu::invlpg(va);
}

/// A user address space: a PDPT whose slots 0..3 are its own L2s and slot 3 the
/// kernel's.
pub struct AddressSpace {
    pub pdpt: u64,
}

/// A zeroed lowmem page from the page allocator.
pub fn alloc_low_page() -> Option<u64> {
    let pa = crate::mm::page::alloc_pages(crate::mm::page::Zone::Normal, 0)?;
    // SAFETY: a fresh lowmem page, directly mapped.
    unsafe { core::ptr::write_bytes(table(pa), 0, 512) };
    Some(pa)
}

impl AddressSpace {
    pub fn new() -> Option<Self> {
        let pdpt = alloc_low_page()?;
        for slot in 0..3 {
            let pd = alloc_low_page()?;
            // SAFETY: fresh lowmem tables.
            unsafe { table(pdpt).add(slot).write(pd | P) };
        }
        // SAFETY: the fresh lowmem PDPT allocated above, slot 3 of its four.
        unsafe { table(pdpt).add(3).write(KERNEL.get().pd | P) };
        Some(AddressSpace { pdpt })
    }

    /// Maps the user page at `va` to frame `pa` with `flags` (P and US implied).
    pub fn map(&self, va: u32, pa: u64, flags: u64) -> Option<()> {
        assert!(va < PAGE_OFFSET);
        let (i3, i2, i1) = pae::indexes(va);
        // SAFETY: this address space's tables are lowmem frames it owns.
        unsafe {
            let pd = table(table(self.pdpt).add(i3).read() & pae::ADDR_MASK);
            let mut pde = pd.add(i2).read();
            if pde & P == 0 {
                pde = alloc_low_page()? | USER_PDE;
                pd.add(i2).write(pde);
            }
            table(pde & pae::ADDR_MASK).add(i1).write(pa | flags | P | US | A | D);
        }
        Some(())
    }

    /// Loads this address space on this CPU (under `--pvmmu on` pinned first:
    /// it is never changed after, and never freed).
    pub fn activate(&self) {
        if pv::on() {
            // The boot workload's: a PDPT, three L2s, the code's and the stack's L1.
            let mut frames = [0u64; 16];
            let mut n = 0;
            let mut add = |pa: u64| {
                assert!(n < frames.len(), "a pinned AddressSpace holds at most 16 tables");
                frames[n] = pa;
                n += 1;
            };
            add(self.pdpt);
            for slot in 0..3 {
                // SAFETY: this address space's tables are lowmem frames it owns.
                let pd = unsafe { table(self.pdpt).add(slot).read() } & pae::ADDR_MASK;
                add(pd);
                for i in 0..pae::ENTRIES {
                    // SAFETY: pd is one of this address space's L2s, a lowmem
                    // frame it owns; i is below 512.
                    let e = unsafe { table(pd).add(i).read() };
                    if e & P != 0 {
                        add(e & pae::ADDR_MASK);
                    }
                }
            }
            pv::pin(self.pdpt, pv::Level::L3, &frames[..n]);
        }
        // Slot 3 is the kernel's L2, so the kernel stays mapped.
        pv::load_root(self.pdpt);
    }
}

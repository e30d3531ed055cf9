// The 2.5.7 mremap bug: allocate the destination pagetable page (which may
// sleep) while the source pte is mapped atomically.
use nosleep::{MaySleep, PteMap, Unmap};

struct KmapSlot;

impl Unmap for KmapSlot {
    fn unmap(&mut self, _: *mut u64) {}
}

fn pte_offset_map(ctx: &mut MaySleep) -> PteMap<'_, KmapSlot> {
    // SAFETY: a dummy table; the test only compiles.
    unsafe { PteMap::new(ctx.enter_atomic(), core::ptr::null_mut(), KmapSlot) }
}

fn pte_alloc(_ctx: &mut MaySleep) -> Option<u64> {
    None
}

fn move_one_page(ctx: &mut MaySleep) {
    let src = pte_offset_map(ctx);
    let _dst = pte_alloc(ctx);
    src.set(0, 0);
}

fn main() {
    // SAFETY: process context in this test.
    let mut ctx = unsafe { MaySleep::new() };
    move_one_page(&mut ctx);
}

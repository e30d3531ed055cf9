// The fix of 2.5.7: allocate the destination pagetable page first (it may
// sleep), then map source and destination atomically, copy, and unmap.
use nosleep::{MaySleep, PteMap, Unmap};

struct KmapSlot;

impl Unmap for KmapSlot {
    fn unmap(&mut self, _: *mut u64) {}
}

fn pte_alloc(_ctx: &mut MaySleep) -> Option<u64> {
    Some(0)
}

fn move_one_page(ctx: &mut MaySleep) {
    let _dst = pte_alloc(ctx);
    let mut atomic = ctx.enter_atomic();
    let mut table = [0u64; 512];
    // SAFETY: a local table stands for the mapped page.
    let src = unsafe { PteMap::new(atomic.reborrow(), table.as_mut_ptr(), KmapSlot) };
    src.set(0, 1);
    drop(src);
    drop(atomic);
    let _again = pte_alloc(ctx);
}

fn main() {
    // SAFETY: process context in this test.
    let mut ctx = unsafe { MaySleep::new() };
    move_one_page(&mut ctx);
}

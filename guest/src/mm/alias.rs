//! "May this frame have a lazy alias?": Piggin's p->v bit, kept as a count per
//! frame in its `struct page`.
//!
//! The vmap layer raises the count when it leaves a mapping of the frame behind
//! at vunmap (with `--vmap lazy-ptes` a present PTE, with `lazy-tlb` a cleared PTE
//! whose flush is still owed) and lowers it when the purge that removes that PTE
//! has flushed every CPU. A frame whose count is zero has no vmap alias, neither
//! in a pagetable nor in any TLB, so it can be pinned as a pagetable without a
//! `vm_unmap_aliases()`: the alias-bit strategy of the benchmark.

use core::sync::atomic::Ordering;

use shared::config::AliasStrategy;

use crate::mm::page::pfn_to_page;

/// Lazy aliases of the frame at `pa`.
pub fn count(pa: u64) -> u32 {
    pfn_to_page(pa >> 12).lazy_aliases.load(Ordering::Acquire)
}

/// Whether the frame at `pa` may have a lazy alias.
pub fn may_have_alias(pa: u64) -> bool {
    count(pa) != 0
}

/// Whether the counts are kept: always, but for `--alias runtime-switch` on
/// native, which keeps them only when a hypervisor is there to need them.
fn tracking() -> bool {
    let cfg = &crate::bootinfo::get().config;
    cfg.alias() != AliasStrategy::RuntimeSwitch || cfg.pvmmu()
}

/// A lazy mapping of the frame was left behind.
pub(super) fn get(pa: u64) {
    if !tracking() {
        return;
    }
    pfn_to_page(pa >> 12).lazy_aliases.fetch_add(1, Ordering::AcqRel);
}

/// A lazy mapping of the frame is gone from every pagetable and TLB.
pub(super) fn put(pa: u64) {
    if !tracking() {
        return;
    }
    let old = pfn_to_page(pa >> 12).lazy_aliases.fetch_sub(1, Ordering::AcqRel);
    assert!(old != 0, "lazy alias count of frame {:#x} underflows", pa >> 12);
}

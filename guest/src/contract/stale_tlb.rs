//! A stale TLB entry of a lazily unmapped alias: the alias's PTE is cleared but
//! not yet flushed (a lazy vunmap before its purge) when its frame becomes a
//! pagetable. A write through the stale entry must not reach the new table (T3):
//! Xen flushes the TLBs that may hold the frame when its type changes; this host
//! makes the frame read-only in the memslots, which empties the combined TLB
//! entries for it, so the write arrives as a direct write to a protected table.

use shared::pae::{P, RW};
use shared::results::GuestResult;

use super::flush::test_va;
use super::{frames, pin, read, unpin};
use crate::arch::{cpu, probe};
use crate::mm::pgtable::{kernel_pte, KERNEL_RW};
use crate::{check, hv, kprintln};

crate::scenario!(
    STALE_TLB,
    "stale-tlb-alias",
    "pass",
    "--host-on-violation continue",
    "a write through a stale TLB entry of an unmapped alias cannot change a frame pinned since",
    stale_alias
);
fn stale_alias() {
    let va = test_va();
    let [frame, data] = frames();
    // The alias: a writable kernel mapping the host does not validate (the guest
    // runs on its own tables here), used once so the TLB holds it, dirty.
    // SAFETY: kernel_pte gives the live entry of the test VA, which nothing else
    // uses; the frame is the scenario's own.
    unsafe { kernel_pte(va).write_volatile(frame | KERNEL_RW) };
    cpu::invlpg(va);
    check!(probe::write(va, 0), "the alias cannot write its own page");
    // The lazy unmap: the entry goes, the flush waits for a purge.
    // SAFETY: the test VA's live entry again, which nothing else uses.
    unsafe { kernel_pte(va).write_volatile(0) };
    check!(pin(1, frame) == 0, "pin of the unmapped alias's frame");
    // The stale entry, where the CPU kept it, now points at a pinned L1.
    let entry = data | P | RW;
    let wrote = probe::write(va + 7 * 8, entry as u32);
    kprintln!(
        "contract: the write through the stale alias {}",
        if wrote { "reached the host (a stale TLB entry)" } else { "faulted (no stale TLB entry survived the pin)" }
    );
    hv::result(GuestResult::StaleAliasWriteIssued, wrote as u64);
    check!(read(frame, 7) == 0, "the stale alias wrote {:#x} into the pinned L1", read(frame, 7));
    check!(pin(1, data) == 0, "the stale write took a reference on {:#x}", data);
    check!(unpin(data) == 0 && unpin(frame) == 0, "unpin");
    cpu::invlpg(va);
}

//! Frame types (T1, T2) and the alias rule (V1).

use shared::abi::errno::{EBUSY, EINVAL};
use shared::pae::{P, RW, US};

use super::{frames, pin, read, unpin, update, write};
use crate::check;

crate::scenario!(
    T1,
    "t1-bad-type",
    "pass",
    "",
    "a frame typed as an L1 cannot also be an L2 or an L3, pinned or only referenced; once free it can",
    t1
);
fn t1() {
    let [a, l2] = frames();
    check!(pin(1, a) == 0, "pin of an empty L1");
    check!(pin(2, a) == -EINVAL, "an L1 pinned again as an L2");
    check!(pin(1, a) == -EINVAL, "the L1 pin did not survive the refused L2 pin");
    check!(unpin(a) == 0, "unpin");
    check!(pin(2, a) == 0, "a free frame pinned as an L2");
    check!(unpin(a) == 0, "unpin");
    // Typed by a validated L2's entry and not pinned: only its type can refuse
    // (a pinned frame is refused by T4 before its type is looked at).
    write(l2, 0, a | P | RW | US);
    check!(pin(2, l2) == 0, "pin of an L2 whose entry makes a free frame an L1");
    check!(pin(2, a) == -EINVAL, "a frame an L2 entry made an L1 was pinned as an L2");
    check!(pin(3, a) == -EINVAL, "a frame an L2 entry made an L1 was pinned as an L3");
    check!(pin(1, a) == 0, "the same frame pinned as the L1 it is");
    check!(unpin(a) == 0, "unpin");
    check!(unpin(l2) == 0, "unpin of the L2");
    check!(pin(2, a) == 0, "the frame free again once its L2 is devalidated");
    check!(unpin(a) == 0, "unpin");
}

crate::scenario!(
    T2,
    "t2-validation-references",
    "pass",
    "",
    "validating an L1 types what it maps writable; devalidating it gives that back",
    t2
);
fn t2() {
    let [l1, data] = frames();
    write(l1, 0, data | P | RW | US);
    check!(pin(1, l1) == 0, "pin of an L1 mapping a data page writable");
    check!(pin(1, data) == -EINVAL, "a page mapped writable by a validated L1 was pinned");
    check!(unpin(l1) == 0, "unpin");
    check!(pin(1, data) == 0, "the page is free again once its mapper is devalidated");
    check!(unpin(data) == 0, "unpin");
    // A validation that fails half-way gives back what it took.
    write(l1, 1, data | P | shared::pae::PCD);
    check!(pin(1, l1) == -EINVAL, "an L1 with a cache-disabled entry was pinned");
    check!(pin(1, data) == 0, "the refused validation kept a reference");
    check!(unpin(data) == 0, "unpin");
}

crate::scenario!(
    V1,
    "v1-writable-pagetable",
    "pass",
    "",
    "an L1 entry mapping a pinned table writable is refused (-EBUSY); read-only is fine",
    v1
);
fn v1() {
    let [a, b, own] = frames();
    check!(pin(1, a) == 0 && pin(1, b) == 0, "pins");
    check!(update(b, 0, a | P | RW) == (-EBUSY, 0), "an L1 mapped writable by another L1");
    check!(read(b, 0) == 0, "a refused update wrote the entry");
    check!(update(b, 0, a | P) == (0, 1), "a read-only mapping of an L1 (V2)");
    write(own, 0, own | P | RW);
    check!(pin(1, own) == -EBUSY, "an L1 mapping itself writable was pinned");
    check!(update(b, 0, 0) == (0, 1), "clear");
    check!(unpin(a) == 0 && unpin(b) == 0, "unpins");
}

crate::scenario!(
    V1_ALIAS,
    "v1-alias-at-pin",
    "pass",
    "",
    "a frame with a writable alias (a lazy vmap PTE) cannot be pinned; without it, it can",
    v1_alias
);
fn v1_alias() {
    let [l1, victim] = frames();
    check!(pin(1, l1) == 0, "pin");
    check!(update(l1, 7, victim | P | RW) == (0, 1), "the alias");
    check!(pin(1, victim) == -EINVAL, "a frame with a writable alias was pinned");
    check!(update(l1, 7, 0) == (0, 1), "removing the alias");
    check!(pin(1, victim) == 0, "the unaliased frame");
    check!(unpin(victim) == 0 && unpin(l1) == 0, "unpins");
}

crate::scenario!(
    UNTYPED_WRITE,
    "mmu-update-untyped",
    "pass",
    "",
    "mmu_update into a frame of no type is refused, nothing written; mapped writable, it takes a plain write",
    untyped_write
);
fn untyped_write() {
    let [l1, frame] = frames();
    check!(update(frame, 3, 0x1234) == (-EINVAL, 0), "an entry of a frame of no type was written");
    check!(read(frame, 3) == 0, "the refused write reached memory");
    check!(pin(1, l1) == 0, "pin");
    check!(update(l1, 0, frame | P | RW) == (0, 1), "a writable mapping of the frame");
    check!(update(frame, 3, 0x1234) == (0, 1), "a plain write into a frame mapped writable");
    check!(read(frame, 3) == 0x1234, "the plain write did not reach memory");
    check!(update(l1, 0, 0) == (0, 1) && unpin(l1) == 0, "clean up");
}

//! L2 entries (V4) and the PAE L3 (V5).

use shared::abi::errno::{EINVAL, ERANGE};
use shared::pae::{P, PCD, PS, RW, US};

use super::{frames, pin, skip, unpin, update, write};
use crate::check;

crate::scenario!(
    V4,
    "v4-l2-entries",
    "pass",
    "",
    "L2 entries: no PSE; an L1 validated on the spot; linear maps read-only, one level, not to self",
    v4
);
fn v4() {
    let [l2, l1, other, data] = frames();
    check!(pin(2, l2) == 0 && pin(2, other) == 0, "pins");
    check!(update(l2, 0, data | P | PS) == (-EINVAL, 0), "a 2 MiB page");
    check!(update(l2, 0, l1 | P | RW | US) == (0, 1), "an L2 entry at a fresh L1");
    check!(pin(1, l1) == 0, "the L1 is an L1 now (pinning it adds a pin only)");
    check!(update(l2, 1, other | P | RW) == (-EINVAL, 0), "a writable linear entry");
    check!(update(l2, 2, l2 | P) == (-EINVAL, 0), "an L2 mapping itself");
    check!(update(l2, 1, other | P) == (0, 1), "a read-only linear entry");
    check!(update(other, 0, l2 | P) == (-EINVAL, 0), "a linear entry two levels deep");
    for i in 0..2 {
        check!(update(l2, i, 0) == (0, 1), "clear {}", i);
    }
    check!(unpin(l1) == 0 && unpin(l2) == 0 && unpin(other) == 0, "unpins");
}

crate::scenario!(
    V5,
    "v5-l3-entries",
    "pass",
    "",
    "PAE L3: only P and cache bits, entries 0..3 checked, 4..511 ignored and unwritable",
    v5
);
fn v5() {
    let [l3, l2, l2b, data] = frames();
    write(l3, 0, l2 | P | RW);
    check!(pin(3, l3) == -EINVAL, "RW in a PDPTE");
    write(l3, 0, l2 | P | PCD);
    write(l3, 9, data | P | RW | US | PS);
    check!(pin(3, l3) == 0, "P and cache bits; entries 4..511 ignored");
    check!(update(l3, 4, l2b | P) == (-EINVAL, 0), "entry 4 written");
    check!(update(l3, 1, l2b | P | US) == (-EINVAL, 0), "US in a PDPTE");
    check!(update(l3, 1, l2b | P) == (0, 1), "a second L2");
    check!(pin(1, l2b) == -EINVAL, "an L2 referenced by the L3 pinned as an L1");
    check!(unpin(l3) == 0, "unpin");
}

crate::scenario!(
    V5_HIGH,
    "v5-l3-above-4g",
    "pass",
    "--mem 5g",
    "an L3 above 4 GiB cannot be a root (CR3 is 32 bits): -ERANGE",
    v5_high
);
fn v5_high() {
    // The first frame above 4 GiB: the host must refuse it as an L3 before it
    // looks at its contents, so it need not be ours.
    let pa = shared::boot::HIGH_RAM_START;
    if crate::bootinfo::get().regions().iter().all(|r| !(r.base..r.end()).contains(&pa)) {
        skip("no RAM above 4 GiB (give the VM more than 4 GiB)");
    }
    check!(pin(3, pa) == -ERANGE, "an L3 above 4 GiB");
}

//! Pins (T4) and unpinning a table still in use.

use shared::abi::errno::EINVAL;
use shared::abi::pvmmu::cmd;
use shared::pae::P;

use super::{ext, frames, op, pfn, pin, unpin, update, write};
use crate::check;

crate::scenario!(
    T4,
    "t4-pins-not-counted",
    "pass",
    "",
    "pinning a pinned frame and unpinning an unpinned one fail",
    t4
);
fn t4() {
    let [a, never] = frames();
    check!(pin(1, a) == 0, "pin");
    check!(pin(1, a) == -EINVAL, "a second pin");
    check!(unpin(a) == 0, "unpin");
    check!(unpin(a) == -EINVAL, "a second unpin");
    check!(unpin(never) == -EINVAL, "unpin of a frame never pinned");
}

crate::scenario!(
    UNPIN_IN_USE,
    "unpin-table-in-use",
    "pass",
    "",
    "unpinning a root in use leaves it validated: the vCPU still holds it",
    unpin_in_use
);
fn unpin_in_use() {
    let [l3, l2, spare] = frames();
    write(l3, 0, l2 | P);
    check!(ext(&[op(cmd::PIN_L3_TABLE, pfn(l3)), op(cmd::NEW_BASEPTR, pfn(l3))]) == 0, "pin and announce");
    check!(unpin(l3) == 0, "unpin of the root in use");
    // Still an L3: its entry 4 does not exist (a plain frame's would be written).
    check!(update(l3, 4, spare | P) == (-EINVAL, 0), "the unpinned root is no longer validated");
}

//! Direct writes to pinned tables: emulated as validated updates with the
//! writable-pagetables assist, a violation without it.

use shared::pae::{P, RW};

use super::{frames, pin, read, unpin, update, write};
use crate::{check, hv, kprintln};

crate::scenario!(
    ASSIST,
    "direct-write-assist",
    "pass",
    "",
    "with the writable-pagetables assist a direct write to a pinned L1 is applied, validated",
    assist
);
fn assist() {
    let [l1, data] = frames();
    check!(pin(1, l1) == 0, "pin");
    check!(hv::writable_pagetables(true) == 0, "vm_assist enable");
    // The host protects the table before this CPU next enters the guest.
    hv::nop(0);
    write(l1, 7, data | P | RW);
    check!(read(l1, 7) == data | P | RW, "the emulated write reads {:#x}", read(l1, 7));
    check!(pin(1, data) == -shared::abi::errno::EINVAL, "the emulated entry took no reference");
    write(l1, 7, 0);
    check!(hv::writable_pagetables(false) == 0, "vm_assist disable");
    check!(update(l1, 7, 0) == (0, 1), "clear");
    check!(unpin(l1) == 0, "unpin");
}

crate::scenario!(
    NO_ASSIST,
    "direct-write-no-assist",
    "violation:direct write",
    "",
    "without the assist a direct write to a pinned L1 stops the guest with a violation",
    no_assist
);
fn no_assist() {
    let [l1, data] = frames();
    check!(pin(1, l1) == 0, "pin");
    hv::nop(0);
    kprintln!("contract: writing pinned L1 {:#x} entry 9 directly", l1);
    write(l1, 9, data | P);
    check!(false, "the direct write to a pinned L1 went through");
}

//! Direct writes to pinned tables: emulated as validated updates with the
//! writable-pagetables assist, a violation without it.

use shared::abi::errno::EINVAL;
use shared::pae::{D, P, RW};

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
    check!(pin(1, data) == -EINVAL, "the emulated entry took no reference");
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

// L3s are never put in a read-only memslot (the CPU writes accessed bits into
// a live PDPT on these hosts): the host watches them with KVM's dirty log and
// compares the ones written with what it validated at every hypercall exit.

crate::scenario!(
    L3,
    "direct-write-l3",
    "violation:direct write",
    "",
    "a direct write to a pinned L3 is found at the next hypercall (the dirty log): a violation without the assist",
    l3
);
fn l3() {
    let [l3, l2] = frames();
    check!(pin(3, l3) == 0, "pin");
    hv::nop(0);
    kprintln!("contract: writing pinned L3 {:#x} entry 1 directly", l3);
    write(l3, 1, l2 | P);
    hv::nop(0);
    check!(false, "the direct write to a pinned L3 went unseen");
}

crate::scenario!(
    L3_BIT6,
    "direct-write-l3-bit6",
    "violation:direct write",
    "",
    "a direct write of bit 6 (reserved in a PDPTE) to a pinned L3 is the guest's, not the CPU's: a violation",
    l3_bit6
);
fn l3_bit6() {
    let [l3, l2] = frames();
    write(l3, 1, l2 | P);
    check!(pin(3, l3) == 0, "pin");
    hv::nop(0);
    // The CPU may set the accessed bit of a PDPTE (QEMU's SVM does), never
    // bit 6: a host that let it pass would keep an entry it never validated.
    kprintln!("contract: setting bit 6 of pinned L3 {:#x} entry 1 directly", l3);
    write(l3, 1, l2 | P | D);
    hv::nop(0);
    check!(false, "the direct write of bit 6 to a pinned L3 went unseen");
}

crate::scenario!(
    L3_TAIL,
    "direct-write-l3-tail",
    "violation:audit",
    "--host-write-watch memslot",
    "a direct write to a pinned L3's entries 4..511, which no memslot or dirty log watches, is found by the end-of-run audit",
    l3_tail
);
fn l3_tail() {
    let [l3, l2] = frames();
    check!(pin(3, l3) == 0, "pin");
    hv::nop(0);
    // Not a PDPTE (the CPU reads four), but the host keeps the rest of the
    // frame as it validated it, and only the audit compares it here.
    kprintln!("contract: writing pinned L3 {:#x} entry 5 directly", l3);
    write(l3, 5, l2 | P);
    hv::nop(0);
    // The guest says nothing: only the host's audit can fail this run.
}

crate::scenario!(
    L3_ASSIST,
    "direct-write-l3-assist",
    "pass",
    "",
    "with the assist a direct write to a pinned L3, found at the next hypercall, is applied as a validated update",
    l3_assist
);
fn l3_assist() {
    let [l3, l2] = frames();
    check!(pin(3, l3) == 0, "pin");
    check!(hv::writable_pagetables(true) == 0, "vm_assist enable");
    write(l3, 1, l2 | P);
    hv::nop(0);
    check!(read(l3, 1) == l2 | P, "the applied write reads {:#x}", read(l3, 1));
    check!(pin(1, l2) == -EINVAL, "the applied entry made its frame an L2");
    check!(hv::writable_pagetables(false) == 0, "vm_assist disable");
    check!(update(l3, 1, 0) == (0, 1), "clear");
    check!(pin(1, l2) == 0 && unpin(l2) == 0, "the frame is free again");
    check!(unpin(l3) == 0, "unpin");
}

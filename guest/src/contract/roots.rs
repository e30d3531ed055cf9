//! Roots: NEW_BASEPTR and update_va_mapping through the announced root.

use shared::abi::errno::{EBUSY, EINVAL};
use shared::abi::pvmmu::{cmd, uvmf};
use shared::pae::{P, RW, US};

use super::{ext, frames, op, pfn, pin, read, unpin, write};
use crate::arch::cpu;
use crate::mm::{pgtable, pv};
use crate::{check, hv, kprintln};

crate::scenario!(
    NEW_BASEPTR,
    "new-baseptr-rules",
    "pass",
    "",
    "a root must be a valid L3: an L2 is refused, an unpinned L3 is validated on the spot",
    new_baseptr
);
fn new_baseptr() {
    let [l2, l3, l3_l2] = frames();
    check!(pin(2, l2) == 0, "pin");
    check!(ext(&[op(cmd::NEW_BASEPTR, pfn(l2))]) == -EINVAL, "an L2 as a root");
    write(l3, 0, l3_l2 | P | RW);
    check!(ext(&[op(cmd::NEW_BASEPTR, pfn(l3))]) == -EINVAL, "a root with RW in a PDPTE");
    write(l3, 0, l3_l2 | P);
    check!(ext(&[op(cmd::NEW_BASEPTR, pfn(l3))]) == 0, "an unpinned, valid L3 as a root");
    check!(pin(1, l3_l2) == -EINVAL, "the root's L2 taken as an L1");
    check!(unpin(l2) == 0, "unpin");
}

crate::scenario!(
    UVA,
    "update-va-mapping",
    "pass",
    "",
    "update_va_mapping finds the L1 entry through the announced root and validates it",
    update_va
);
fn update_va() {
    let [l3, l2, l1, data] = frames();
    write(l3, 0, l2 | P);
    write(l2, 0, l1 | P | RW | US);
    check!(ext(&[op(cmd::PIN_L3_TABLE, pfn(l3)), op(cmd::NEW_BASEPTR, pfn(l3))]) == 0, "pin and announce");
    check!(hv::update_va_mapping(0x3000, data | P | RW | US, uvmf::INVLPG) == 0, "update_va_mapping");
    check!(read(l1, 3) == data | P | RW | US, "the L1 entry");
    check!(hv::update_va_mapping(0x4000, l1 | P | RW, uvmf::NONE) == -EBUSY, "the L1 mapped writable");
    check!(hv::update_va_mapping(0x4000_0000, 0, uvmf::NONE) == -EINVAL, "a VA with no L1");
    check!(hv::update_va_mapping(0x3000, 0, 3) == -EINVAL, "bad flags");
    check!(hv::update_va_mapping(0x3000, 0, uvmf::TLB_FLUSH | uvmf::ALL) == 0, "clear");
    check!(unpin(l3) == 0, "unpin");
}

crate::scenario!(
    CR3_SLOT,
    "cr3-pdpt-slot",
    "violation:CR3",
    "--pvmmu on",
    "CR3 may select only the PDPT the host validated: L3 + 32 (entries 4..7, never checked) stops the guest",
    cr3_slot
);
fn cr3_slot() {
    if !pv::on() {
        super::skip("the scenario needs --pvmmu on");
    }
    let [l3, poisoned] = frames();
    let kernel = pgtable::kernel_pdpt();
    // The kernel's four entries in both slots, so that it runs on either, but
    // entry 4 points at an L2 nobody validated: a guest that loads L3 + 32
    // would map whatever that page holds.
    for i in 0..4 {
        write(l3, i, read(kernel, i));
        write(l3, 4 + i, read(kernel, i));
    }
    write(l3, 4, poisoned | P);
    pv::pin(l3, pv::Level::L3, &[l3]);
    pv::load_root(l3);
    hv::nop(0);
    kprintln!("contract: loading CR3 = {:#x} + 32 (entries 4..7 of a pinned L3)", l3);
    // SAFETY: entries 4..7 map the kernel as 0..3 do (slot 3 is the kernel's L2).
    unsafe { cpu::write_cr3(l3 as u32 + 32) };
    hv::nop(0);
    check!(false, "the vCPU ran on entries 4..7 of a pinned L3 and the host did not notice");
}

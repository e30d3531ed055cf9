//! The host writes guest memory only where the guest could have written it:
//! never into a frame it validated as a pagetable, where guest-chosen numbers
//! would become unvalidated entries (an attacker's hypercall block inside a
//! pinned L1 once made `ret = 3` an entry mapping frame 0 writable).

use shared::abi::errno::EFAULT;
use shared::abi::{Hypercall, HypercallBlock};

use super::{frames, pin, read, unpin, write};
use crate::check;
use crate::hv;
use crate::mm::layout::phys_to_virt;

/// `mmuext_op` with no ops: it does nothing and answers `rc` 0, `ret` 0. Its
/// number is even and its arguments aligned, so the block's words, read as L1
/// entries, are not present: the frame holding it validates as an empty L1.
fn harmless(ops_gpa: u64) -> (u32, [u64; 4]) {
    Hypercall::MmuextOp { ops: ops_gpa, count: 0 }.encode()
}

crate::scenario!(
    BLOCK,
    "block-in-pagetable",
    "violation:host write",
    "",
    "a hypercall block inside a pinned L1: the host refuses to write its answer there and stops the guest",
    block
);
fn block() {
    let [l1, scratch] = frames();
    let (op, args) = harmless(scratch);
    // The block at the L1's start, written while the frame is no table yet;
    // rc starts at 1, so an answer written would show.
    let b = HypercallBlock { op, rc: 1, args, ret: 7 << 1 };
    // SAFETY: the scenario's own lowmem frame, not yet a table.
    unsafe { (phys_to_virt(l1) as *mut HypercallBlock).write_volatile(b) };
    check!(pin(1, l1) == 0, "the frame holding the block did not validate as an L1");
    let before = read(l1, 0);
    hv::hypercall_at(l1);
    // A host that answered wrote into the validated table.
    check!(read(l1, 0) == before, "the host wrote its answer into a validated L1 ({:#x})", read(l1, 0));
    check!(false, "the host answered a block inside a validated L1 instead of stopping the guest");
    let _ = unpin(l1);
}

crate::scenario!(
    MULTI,
    "multicall-results-in-pagetable",
    "pass",
    "",
    "a multicall whose entries lie in a pinned L1: the first result is refused (-EFAULT) and nothing is written",
    multicall
);
fn multicall() {
    let [l1, scratch] = frames();
    let (op, args) = harmless(scratch);
    for (i, w) in [op as u64 | (1u64 << 33), args[0], args[1], args[2], args[3], 7 << 1].iter().enumerate() {
        write(l1, i as u64, *w);
    }
    check!(pin(1, l1) == 0, "the frame holding the entries did not validate as an L1");
    let entry = read(l1, 0);
    let (rc, ret) = hv::call(Hypercall::Multicall { entries: l1, count: 1 });
    check!((rc, ret) == (-EFAULT, 1), "the multicall's answer: ({}, {}), not (-EFAULT, 1)", rc, ret);
    check!(read(l1, 0) == entry && read(l1, 5) == 7 << 1, "the host wrote a result into a validated L1");
    check!(unpin(l1) == 0, "unpin");
}

//! Batches stop at their first failure and say how far they got; a multicall's
//! entries fail independently.

use shared::abi::errno::{EINVAL, ENOSYS};
use shared::abi::nr;
use shared::abi::pvmmu::{cmd, MmuUpdate, MulticallEntry};
use shared::pae::{G, P};

use super::{frames, op, pfn, pin, read, unpin};
use crate::check;
use crate::hv;
use crate::mm::layout::virt_to_phys;

crate::scenario!(
    BATCH,
    "batch-partial-failure",
    "pass",
    "",
    "a batch with a bad second request applies the first, reports 1 done, skips the rest",
    batch
);
fn batch() {
    let [l1, data] = frames();
    check!(pin(1, l1) == 0, "pin");
    let reqs = [
        MmuUpdate { ptr: l1 + 2 * 8, val: data | P },
        MmuUpdate { ptr: l1 + 3 * 8, val: data | P | G },
        MmuUpdate { ptr: l1 + 4 * 8, val: data | P },
    ];
    check!(hv::mmu_update(&reqs) == (-EINVAL, 1), "the batch's answer");
    check!(read(l1, 2) == data | P && read(l1, 3) == 0 && read(l1, 4) == 0, "the batch did more than one request");
    let ops = [op(cmd::PIN_L1_TABLE, pfn(data)), op(cmd::PIN_L1_TABLE, pfn(data)), op(cmd::UNPIN_TABLE, pfn(data))];
    check!(hv::mmuext_op(&ops) == (-EINVAL, 1), "an op batch with a second pin of the same frame");
    check!(unpin(data) == 0, "the first op stayed done");
    check!(hv::mmu_update(&[MmuUpdate { ptr: l1 + 2 * 8, val: 0 }]) == (0, 1), "clear");
    check!(unpin(l1) == 0, "unpin");
}

crate::scenario!(
    MULTI,
    "multicall-independent",
    "pass",
    "",
    "multicall entries each get their own result; a failing one does not stop the rest",
    multicall
);
fn multicall() {
    let [a, b] = frames();
    let pin_a = [op(cmd::PIN_L1_TABLE, pfn(a))];
    let pin_b = [op(cmd::PIN_L1_TABLE, pfn(b))];
    let gpa = |p: &[shared::abi::pvmmu::MmuextOp]| virt_to_phys(p.as_ptr() as u32);
    let entry = |op: u32, args: [u64; 4]| MulticallEntry { op, result: 1, args, ret: 9 };
    let mut calls = [
        entry(nr::MMUEXT_OP, [gpa(&pin_a), 1, 0, 0]),
        entry(nr::MMUEXT_OP, [gpa(&pin_a), 1, 0, 0]),
        entry(nr::NOP, [0; 4]),
        entry(nr::MMUEXT_OP, [gpa(&pin_b), 1, 0, 0]),
    ];
    check!(hv::multicall(&mut calls) == (0, 4), "multicall");
    let results = [calls[0].result, calls[1].result, calls[2].result, calls[3].result];
    check!(results == [0, -EINVAL, -ENOSYS, 0], "multicall results {:?}", results);
    check!(calls[3].ret == 1, "an entry's done count {}", calls[3].ret);
    check!(unpin(a) == 0 && unpin(b) == 0, "both pins happened");
}

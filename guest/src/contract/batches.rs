//! Batches stop at their first failure and say how far they got; a multicall's
//! entries fail independently; a batch past one exit's work budget stops with
//! `-ERESTART` and goes on when issued again, and so does a tree pin cut inside
//! its validation.

use shared::abi::errno::{EBUSY, EINVAL, ENOSYS, ERESTART};
use shared::abi::pvmmu::{cmd, MmuUpdate, MmuextOp, MulticallEntry, EXIT_BUDGET};
use shared::abi::Hypercall;
use shared::pae::{G, P, RW};

use super::{frames, op, pfn, pin, read, unpin, update, write};
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
    let entry = |c: Hypercall| {
        let (op, args) = c.encode();
        MulticallEntry { op, result: 1, args, ret: 9 }
    };
    let mut calls = [
        entry(Hypercall::MmuextOp { ops: gpa(&pin_a), count: 1 }),
        entry(Hypercall::MmuextOp { ops: gpa(&pin_a), count: 1 }),
        entry(Hypercall::Nop { arg: 0 }),
        entry(Hypercall::MmuextOp { ops: gpa(&pin_b), count: 1 }),
    ];
    check!(hv::multicall(&mut calls) == (0, 4), "multicall");
    let results = [calls[0].result, calls[1].result, calls[2].result, calls[3].result];
    check!(results == [0, -EINVAL, -ENOSYS, 0], "multicall results {:?}", results);
    check!(calls[3].ret == 1, "an entry's done count {}", calls[3].ret);
    check!(unpin(a) == 0 && unpin(b) == 0, "both pins happened");
}

crate::scenario!(
    BUDGET,
    "exit-budget",
    "pass",
    "",
    "a batch of pins past one exit's work budget stops with -ERESTART and goes on when issued again",
    budget
);
/// 24 L1s of 512 present entries: 12288 entries to validate, past the 8192 of
/// one exit, so the host must stop between two pins.
fn budget() {
    const N: usize = 24;
    let tables: [u64; N] = frames();
    let [data] = frames();
    for &t in &tables {
        for i in 0..512 {
            write(t, i, data | P);
        }
    }
    let pins: [MmuextOp; N] = core::array::from_fn(|i| op(cmd::PIN_L1_TABLE, pfn(tables[i])));
    let gpa = |p: &[MmuextOp]| virt_to_phys(p.as_ptr() as u32);
    let per_exit = (EXIT_BUDGET / 512) as usize;
    // One exit: as many pins as the budget holds, then -ERESTART and how many.
    let (rc, done) = hv::call(Hypercall::MmuextOp { ops: gpa(&pins), count: N as u64 });
    check!(rc == -ERESTART, "a batch past the exit budget ran to its end in one exit (rc {})", rc);
    check!(done == per_exit as u64, "the budget's exit did {} pins, not {}", done, per_exit);
    // Issued again from there, the rest.
    let rest = &pins[done as usize..];
    let (rc, more) = hv::call(Hypercall::MmuextOp { ops: gpa(rest), count: rest.len() as u64 });
    check!((rc, done + more) == (0, N as u64), "the rest of the batch: rc {} after {} more", rc, more);
    // The wrappers issue it again by themselves: the unpins' devalidation is
    // work as well. Each unpin of a frame not pinned would fail: all 24 held.
    let unpins: [MmuextOp; N] = core::array::from_fn(|i| op(cmd::UNPIN_TABLE, pfn(tables[i])));
    check!(hv::mmuext_op(&unpins) == (0, N as u64), "the unpins, restarted");
}

crate::scenario!(
    BUDGET_TREE,
    "exit-budget-tree",
    "pass",
    "",
    "a tree pin past the exit budget is cut inside its validation (-ERESTART) and goes on when issued again",
    budget_tree
);
/// An L3 over an L2 of 24 L1s of 512 present entries: 12288 entries in one
/// pin, past the 8192 of one exit, so the host must cut the validation itself
/// (Xen's PGT_partial).
fn budget_tree() {
    const N: usize = 24;
    let tables: [u64; N] = frames();
    let [l3, l2, data] = frames();
    for (k, &t) in tables.iter().enumerate() {
        for i in 0..512 {
            write(t, i, data | P);
        }
        write(l2, k as u64, t | P | RW);
    }
    write(l3, 0, l2 | P);
    let pins = [op(cmd::PIN_L3_TABLE, pfn(l3))];
    let issue = || hv::call(Hypercall::MmuextOp { ops: virt_to_phys(pins.as_ptr() as u32), count: 1 });
    let (rc, done) = issue();
    check!(
        (rc, done) == (-ERESTART, 0),
        "a tree pin past the exit budget: rc {}, {} done (want -ERESTART, 0)",
        rc,
        done
    );
    // Until its validation ends, the tree's tables take no update.
    check!(update(l2, 300, 0).0 == -EBUSY, "an entry of the L2 under validation");
    let mut exits = 1;
    let (mut rc, mut done) = (rc, done);
    while rc == -ERESTART && exits < 64 {
        (rc, done) = issue();
        exits += 1;
    }
    check!((rc, done) == (0, 1), "the pin issued again: rc {}, {} done after {} exits", rc, done, exits);
    check!(exits >= 2, "one exit validated {} entries", N * 512);
    check!(unpin(l3) == 0, "unpin the tree");
}

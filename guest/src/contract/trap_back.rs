//! The trap-back: a pin that meets a writable alias, with a fixup registered, is
//! completed through the guest's fixup without its caller seeing anything; a fixup
//! that leaves the alias gets the caller the error.

use core::sync::atomic::{AtomicU64, Ordering};

use shared::abi::errno::EINVAL;
use shared::abi::pvmmu::{cmd, MmuUpdate};
use shared::counters::Counter;
use shared::pae::{P, RW};

use super::{frames, op, pfn, pin, unpin, update};
use crate::{check, hv, percpu, trapback};

static ALIAS: AtomicU64 = AtomicU64::new(0);

fn clear_alias(_pfn: u64) {
    let at = ALIAS.load(Ordering::Relaxed);
    check!(hv::mmu_update(&[MmuUpdate { ptr: at, val: 0 }]) == (0, 1), "the fixup could not clear the alias");
}

fn leave_alias(_pfn: u64) {}

fn fixups() -> u64 {
    // SAFETY: this CPU's own counters, read only.
    unsafe { (*percpu::counters(percpu::cpu_id())).get(Counter::AliasFixups) }
}

crate::scenario!(
    TRAP_BACK,
    "trap-back",
    "pass",
    "",
    "a pin with a writable alias traps back to the guest's fixup and the batch completes",
    trap_back
);
fn trap_back() {
    let [l1, victim, other] = frames();
    check!(pin(1, l1) == 0 && pin(1, other) == 0, "pins");
    check!(update(l1, 5, victim | P | RW) == (0, 1), "the alias");
    ALIAS.store(l1 + 5 * 8, Ordering::Relaxed);
    let before = fixups();
    check!(trapback::register(Some(clear_alias)) == 0, "set_callbacks");
    let r = hv::mmuext_op(&[op(cmd::UNPIN_TABLE, pfn(other)), op(cmd::PIN_L1_TABLE, pfn(victim))]);
    check!(r == (0, 2), "the batch through the trap-back: {:?}", r);
    check!(fixups() == before + 1, "fixups run: {}", fixups() - before);
    check!(trapback::unregister() == 0, "set_callbacks(0)");
    check!(unpin(victim) == 0 && unpin(l1) == 0, "unpins");
}

crate::scenario!(
    TRAP_BACK_FAILS,
    "trap-back-fixup-fails",
    "pass",
    "",
    "a fixup that leaves the alias in place: the caller gets -EINVAL, once, not a loop",
    trap_back_fails
);
fn trap_back_fails() {
    let [l1, victim] = frames();
    check!(pin(1, l1) == 0, "pin");
    check!(update(l1, 6, victim | P | RW) == (0, 1), "the alias");
    let before = fixups();
    check!(trapback::register(Some(leave_alias)) == 0, "set_callbacks");
    check!(hv::mmuext_op(&[op(cmd::PIN_L1_TABLE, pfn(victim))]) == (-EINVAL, 0), "a fixup that failed");
    check!(fixups() == before + 1, "fixups run: {}", fixups() - before);
    check!(trapback::unregister() == 0, "set_callbacks(0)");
    check!(update(l1, 6, 0) == (0, 1), "clear");
    check!(unpin(l1) == 0, "unpin");
}

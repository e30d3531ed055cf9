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

crate::scenario!(
    TRAP_BACK_READONLY_STACK,
    "trap-back-readonly-stack",
    "violation:trap-back frame",
    "",
    "a trap-back onto a stack page the guest maps read-only is refused, nothing written",
    trap_back_readonly_stack
);
fn trap_back_readonly_stack() {
    use crate::mm::layout::phys_to_virt;
    use crate::mm::pgtable::{set_kernel_pte, KERNEL_RO};
    let [l1, victim, stack] = frames();
    check!(pin(1, l1) == 0, "pin");
    check!(update(l1, 7, victim | P | RW) == (0, 1), "the alias");
    check!(trapback::register(Some(leave_alias)) == 0, "set_callbacks");
    // The stack page, read-only in the direct map: a push there would fault.
    let top = phys_to_virt(stack) + 4096;
    set_kernel_pte(phys_to_virt(stack), stack | KERNEL_RO);
    let ops = [op(cmd::PIN_L1_TABLE, pfn(victim))];
    let was_on = crate::arch::cpu::irq_save();
    let block = percpu::this_cpu().hypercall.get();
    let block_pa = block as u32 - crate::mm::layout::PAGE_OFFSET;
    // SAFETY: this CPU's block, interrupts off; the stack switch lasts for the
    // `out` alone, and the host either refuses the frame (the run ends) or
    // returns to the next instruction.
    unsafe {
        let (op, args) = shared::abi::Hypercall::MmuextOp {
            ops: (ops.as_ptr() as u32 - crate::mm::layout::PAGE_OFFSET) as u64,
            count: 1,
        }
        .encode();
        block.write_volatile(shared::abi::HypercallBlock { op, rc: -shared::abi::errno::ENOSYS, args, ret: 0 });
        core::arch::asm!(
            "mov {saved}, esp",
            "mov esp, {top}",
            "out dx, eax",
            "mov esp, {saved}",
            saved = out(reg) _,
            top = in(reg) top,
            in("dx") shared::abi::HYPERCALL_PORT,
            in("eax") block_pa,
        );
    }
    crate::arch::cpu::irq_restore(was_on);
    check!(false, "the host delivered a trap-back onto a read-only stack");
}

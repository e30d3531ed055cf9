//! The trap-back: where the host delivers an alias fixup (`set_callbacks`).
//!
//! When a pin meets writable aliases of a frame, the host does not fail it: it
//! pushes the address after the guest's hypercall `out`, the frame, and the
//! hypercall block's physical address on the guest's stack (no register changes)
//! and starts the guest at [`alias_fixup_entry`]. The entry saves every register and
//! calls [`alias_fixup`], which runs the registered action (`vm_unmap_aliases()`
//! in a kernel) with interrupts on, then issues the same hypercall again; the host
//! resumes the batch where it stopped, and the entry returns to the original
//! caller, who reads the retried call's answer from its block as if nothing had
//! happened.

use core::sync::atomic::{AtomicUsize, Ordering};

use shared::abi::{Hypercall, HypercallBlock, HYPERCALL_PORT};
use shared::counters::Counter;

use crate::arch::cpu;
use crate::mm::layout::phys_to_virt;
use crate::{hv, percpu};

/// What a fixup does: by default the vmap layer's `vm_unmap_aliases()`.
pub type Action = fn(pfn: u64);

static ACTION: AtomicUsize = AtomicUsize::new(0);

fn default_action(pfn: u64) {
    // The same frame trapped back twice in one pin: the purge missed its alias
    // (2.6.28's walk skips full blocks), as pv::pin's own retry can find.
    let last = percpu::this_cpu().pin_fixup_pfn.swap(pfn, Ordering::Relaxed);
    if last == pfn {
        crate::mm::pv::purge_missed_alias();
    } else {
        crate::mm::vmap::vm_unmap_aliases();
    }
}

/// Registers the fixup entry with the host and sets what it does (`None`: the
/// default, `vm_unmap_aliases()`). Returns the host's answer.
pub fn register(action: Option<Action>) -> i32 {
    ACTION.store(action.unwrap_or(default_action) as usize, Ordering::Release);
    let entry = core::ptr::addr_of!(alias_fixup_entry) as u32;
    hv::call(Hypercall::SetCallbacks { fixup_entry: entry as u64 }).0
}

/// Removes the fixup: pins with aliases fail again.
pub fn unregister() -> i32 {
    hv::call(Hypercall::SetCallbacks { fixup_entry: 0 }).0
}

extern "C" {
    static alias_fixup_entry: u8;
}

core::arch::global_asm!(
    r#"
    .section .text
    .global alias_fixup_entry
alias_fixup_entry:
    pushfl
    pushal
    movl 36(%esp), %edx
    movl 40(%esp), %eax
    movl %esp, %ebp
    andl $-16, %esp
    subl $8, %esp
    pushl %edx
    pushl %eax
    call {handler}
    movl %ebp, %esp
    popal
    popfl
    addl $8, %esp
    ret
    "#,
    handler = sym alias_fixup,
    options(att_syntax)
);

/// The fixup proper (called by the entry with the caller's registers saved).
extern "C" fn alias_fixup(pfn: u32, block_pa: u32) {
    percpu::count(Counter::AliasFixups, 1);
    let block = phys_to_virt(block_pa as u64) as *mut HypercallBlock;
    // SAFETY: the host hands back this CPU's own hypercall block (lowmem), which
    // nothing else uses while interrupts are off, as they are here.
    let call = unsafe { block.read_volatile() };
    let action = ACTION.load(Ordering::Acquire);
    if action != 0 {
        // SAFETY: ACTION only ever holds an `Action` stored by `register`.
        let action: Action = unsafe { core::mem::transmute::<usize, Action>(action) };
        // The action may flush other CPUs' TLBs, which needs interrupts on; the
        // block is saved, so a hypercall from an interrupt meanwhile is harmless.
        // Preemption stays off: the retry must come from this CPU, whose block
        // and whose continuation in the host it is. A task moved to another CPU
        // here would re-issue the call through this CPU's block while this CPU
        // uses it for its own calls, and one of the two would read the other's
        // answer (a bench run of host-trap under the scan check did: an
        // mmu_update answered -ENOSYS, 2026-11-23).
        percpu::preempt_disable();
        cpu::sti();
        let t0 = cpu::rdtsc();
        action(pfn as u64);
        percpu::count(Counter::AliasFixupActionCycles, cpu::rdtsc() - t0);
        cpu::cli();
        percpu::preempt_enable();
    }
    assert!(
        percpu::this_cpu().hypercall.get() == block,
        "BUG: the alias fixup of frame {pfn:#x} retries through another CPU's hypercall block"
    );
    let t0 = cpu::rdtsc();
    // SAFETY: this CPU's own hypercall block (checked just above), which nothing
    // else uses with interrupts off; the same call again, answered in it.
    unsafe {
        block.write_volatile(HypercallBlock { rc: -shared::abi::errno::ENOSYS, ret: 0, ..call });
        cpu::outl(HYPERCALL_PORT, block_pa);
    }
    percpu::count(Counter::AliasFixupRetryCycles, cpu::rdtsc() - t0);
}

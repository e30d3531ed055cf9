//! The hypervisor interface: hypercalls to our VMM, and the bare-metal stand-ins
//! (serial console, QEMU's debug-exit device) when the kernel runs without one.

use core::sync::atomic::{AtomicBool, Ordering};

use shared::abi::pvmmu::{MmuUpdate, MmuextOp, MulticallEntry};
use shared::abi::{self, bare, FaultReport, Hypercall, HypercallBlock, HYPERCALL_PORT, NOP_EXIT_PORT};
use shared::counters::Counter;
use shared::results::GuestResult;

use crate::arch::cpu;
use crate::mm::layout::{virt_to_phys, PAGE_OFFSET};
use crate::{kprintln, percpu};

static UNDER_VMM: AtomicBool = AtomicBool::new(false);

/// Records whether our VMM started the kernel (before anything else uses this module).
pub fn init(under_vmm: bool) {
    UNDER_VMM.store(under_vmm, Ordering::Relaxed);
}

pub fn under_vmm() -> bool {
    UNDER_VMM.load(Ordering::Relaxed)
}

/// One hypercall: `(rc, ret)`. Without a VMM every call fails with `-ENOSYS`.
pub fn call(c: Hypercall) -> (i32, u64) {
    let (op, args) = c.encode();
    raw(op, args)
}

/// A block with any number and any words in it: the contract scenarios send
/// what no [`Hypercall`] would, to see the host refuse it.
pub fn raw(op: u32, args: [u64; 4]) -> (i32, u64) {
    if !under_vmm() {
        return (-abi::errno::ENOSYS, 0);
    }
    let was_on = cpu::irq_save();
    let block = percpu::this_cpu().hypercall.get();
    // SAFETY: the block is this CPU's and interrupts are off, so nothing else on this
    // CPU uses it; it lies in lowmem, so its physical address is below 4 GiB.
    let r = unsafe {
        block.write_volatile(HypercallBlock { op, rc: -abi::errno::ENOSYS, args, ret: 0 });
        cpu::outl(HYPERCALL_PORT, virt_to_phys(block as u32) as u32);
        block.read_volatile()
    };
    cpu::irq_restore(was_on);
    percpu::count(Counter::Hypercalls, 1);
    (r.rc, r.ret)
}

/// Issues the hypercall whose request block the caller put at guest-physical
/// `block_pa` itself (contract scenarios: a block where the host must not
/// write its answer). The answer, if any, is the caller's to read there.
pub fn hypercall_at(block_pa: u64) {
    if under_vmm() {
        // SAFETY: a port write; the host reads the block at `block_pa`, which
        // the caller filled, and writes nothing anywhere it may not.
        unsafe { cpu::outl(HYPERCALL_PORT, block_pa as u32) };
    }
}

/// The guest-physical address of kernel data handed to the host.
fn gpa_of<T: ?Sized>(p: *const T) -> u64 {
    let va = p as *const u8 as u32;
    assert!(va >= PAGE_OFFSET, "hypercall buffer outside lowmem");
    virt_to_phys(va)
}

/// Writes console bytes (which must lie in lowmem) through the VMM.
pub fn console_write(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    call(Hypercall::ConsoleWrite { buf: gpa_of(bytes), len: bytes.len() as u64 });
}

/// Tells the host a point of the boot was reached.
pub fn milestone(which: u32, arg: u32) {
    if under_vmm() {
        call(Hypercall::Milestone { which: which as u64, arg: arg as u64 });
    }
}

/// Reports a named figure (its name lies in the image, and the host reads it there).
pub fn result(which: GuestResult, value: u64) {
    let name = which.name();
    if under_vmm() {
        call(Hypercall::Result { name: gpa_of(name), len: name.len() as u64, value });
    } else {
        kprintln!("result {} = {}", name, value);
    }
}

/// The no-op hypercall; the host echoes `arg` back.
pub fn nop(arg: u64) -> (i32, u64) {
    call(Hypercall::Nop { arg })
}

/// `mmu_update`: validated pagetable writes, in one exit. `(rc, requests done)`.
pub fn mmu_update(reqs: &[MmuUpdate]) -> (i32, u64) {
    let n = reqs.len();
    restarting(n, |s| call(Hypercall::MmuUpdate { reqs: gpa_of(&reqs[s..]), count: (n - s) as u64 }))
}

/// Issues a batch of `len` requests (`call(start)` issues those from `start`
/// on), and again from where it stopped while the host answers `-ERESTART`
/// (its exit budget spent): `(rc, requests done in all)`. A request whose
/// tree validation the budget cut comes back with none done; issued again, it
/// goes on where it stopped, so the host makes progress at every exit. A host
/// that answered so without end would be stopped by the watchdog.
fn restarting(len: usize, mut call: impl FnMut(usize) -> (i32, u64)) -> (i32, u64) {
    let mut done = 0usize;
    loop {
        let (rc, n) = call(done);
        // No more than were asked, whatever the host says.
        done += n.min((len - done) as u64) as usize;
        if rc != -abi::errno::ERESTART || done == len {
            return (rc, done as u64);
        }
    }
}

/// `mmuext_op`: pins, unpins, roots and flushes, in one exit. `(rc, ops done)`.
pub fn mmuext_op(ops: &[MmuextOp]) -> (i32, u64) {
    let n = ops.len();
    restarting(n, |s| call(Hypercall::MmuextOp { ops: gpa_of(&ops[s..]), count: (n - s) as u64 }))
}

/// `update_va_mapping`: the L1 entry of `va` under the root this CPU announced.
pub fn update_va_mapping(va: u32, val: u64, flags: u64) -> i32 {
    call(Hypercall::UpdateVaMapping { va: va as u64, val, flags }).0
}

/// `multicall`: each entry runs and gets its own `result` and `ret`.
pub fn multicall(entries: &mut [MulticallEntry]) -> (i32, u64) {
    let n = entries.len();
    restarting(n, |s| call(Hypercall::Multicall { entries: gpa_of(&entries[s..]), count: (n - s) as u64 }))
}

/// `vm_assist`: turns the writable-pagetables assist on or off.
pub fn writable_pagetables(on: bool) -> i32 {
    use shared::abi::pvmmu::vmasst;
    let cmd = if on { vmasst::CMD_ENABLE } else { vmasst::CMD_DISABLE };
    call(Hypercall::VmAssist { cmd, kind: vmasst::TYPE_WRITABLE_PAGETABLES }).0
}

/// One bare port-I/O exit that the VMM does nothing for.
pub fn nop_exit() {
    // SAFETY: the VMM ignores writes to this port.
    unsafe { cpu::outl(NOP_EXIT_PORT, 0) };
}

/// Ends the run with `code` (0: success).
pub fn shutdown(code: u32) -> ! {
    crate::console::flush();
    if under_vmm() {
        call(Hypercall::Shutdown { code: code as u64 });
    } else {
        // SAFETY: QEMU's isa-debug-exit exits with status 2*code+1.
        unsafe { cpu::outb(bare::DEBUG_EXIT_PORT, code as u8) };
    }
    cpu::halt_forever()
}

/// Hands a fatal fault to the host, which stops the guest. Does not return.
pub fn report_fault(report: &FaultReport) -> ! {
    crate::console::flush();
    if under_vmm() {
        call(Hypercall::GuestFault { report: gpa_of(report) });
    } else {
        crate::console::print_fault_report(report);
        // SAFETY: as in shutdown; status 7 says "fault".
        unsafe { cpu::outb(bare::DEBUG_EXIT_PORT, 3) };
    }
    cpu::halt_forever()
}

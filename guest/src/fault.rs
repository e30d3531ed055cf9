//! Exceptions the kernel does not expect, and panics: both end in a
//! [`FaultReport`] the host prints (or, without a VMM, the console).

use core::fmt;

use shared::abi::{exception_name, FaultReport, FAULT_MSG_LEN};

use crate::arch::cpu;
use crate::arch::trap::TrapFrame;
use crate::console::FixedWriter;
use crate::percpu;

/// An exception (vector below 32).
pub fn exception(frame: &mut TrapFrame) {
    if frame.is_from_user() {
        if !crate::sched::in_idle() {
            return user_fault(frame);
        }
        // A ring-3 program of the boot workload faulted: it is killed and the
        // kernel goes on.
        crate::arch::user::kill_current(frame);
    }
    if frame.vector == 14 {
        if let Some(resume) = crate::arch::probe::fixup(frame.eip) {
            frame.eip = resume;
            return;
        }
    }
    fatal(frame, format_args!("{} in kernel mode", exception_name(frame.vector)));
}

/// An exception of a task in ring 3: a demand-zero fault is resolved; anything
/// else kills the task.
fn user_fault(frame: &mut TrapFrame) {
    let cr2 = cpu::read_cr2();
    // SAFETY: a task's fault from ring 3 is process context with nothing held.
    let mut ctx = unsafe { nosleep::MaySleep::new() };
    cpu::sti();
    let task = crate::sched::current();
    let mm = task.mm().expect("a task without an address space");
    let not_present = frame.error & 1 == 0;
    let why = if frame.vector == 14 && not_present {
        match crate::mm::address_space::fault(&mut ctx, mm, cr2) {
            Ok(()) => {
                cpu::cli();
                return;
            }
            Err(e) => shared::abi::errno::name(-e),
        }
    } else {
        exception_name(frame.vector)
    };
    crate::kprintln!(
        "pid {} killed: {} at eip={:#x} cr2={:#x} ({})",
        task.pid(),
        exception_name(frame.vector),
        frame.eip,
        cr2,
        why
    );
    crate::task::exit(&mut ctx, crate::arch::user::killed_by(frame.vector))
}

/// Reports an unrecoverable fault described by a trap frame, and stops.
pub fn fatal(frame: &TrapFrame, msg: fmt::Arguments) -> ! {
    fatal_at(frame, frame.sp(), msg)
}

/// As [`fatal`], with the stack pointer given (when the frame was not pushed by
/// the CPU on that stack, as for a double fault).
pub fn fatal_at(frame: &TrapFrame, sp: u32, msg: fmt::Arguments) -> ! {
    let pc = percpu::this_cpu();
    // SAFETY: this CPU's fault report; interrupts are off in a trap handler.
    let r = unsafe { &mut *pc.fault.get() };
    *r = FaultReport::zeroed();
    r.vector = frame.vector;
    r.cpu = pc.cpu();
    r.error_code = frame.error;
    r.eip = frame.eip;
    r.cs = frame.cs;
    r.eflags = frame.eflags;
    r.cr2 = cpu::read_cr2();
    r.cr3 = cpu::read_cr3();
    r.eax = frame.eax;
    r.ebx = frame.ebx;
    r.ecx = frame.ecx;
    r.edx = frame.edx;
    r.esi = frame.esi;
    r.edi = frame.edi;
    r.ebp = frame.ebp;
    r.esp = sp;
    let mut w = FixedWriter { buf: &mut r.message[..FAULT_MSG_LEN], len: 0 };
    let _ = fmt::write(&mut w, msg);
    r.msg_len = w.len as u32;
    crate::hv::report_fault(r)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cpu::cli();
    if !percpu::enter_fatal() {
        // A panic while reporting a panic: stop without another report.
        cpu::halt_forever();
    }
    let pc = percpu::this_cpu();
    // SAFETY: this CPU's fault report, interrupts off, and this the first
    // level of fatal handling here (no other reference to it is live).
    let r = unsafe { &mut *pc.fault.get() };
    *r = FaultReport::zeroed();
    r.vector = FaultReport::PANIC;
    r.cpu = pc.cpu();
    r.cr3 = cpu::read_cr3();
    let mut w = FixedWriter { buf: &mut r.message[..FAULT_MSG_LEN], len: 0 };
    let _ = fmt::write(&mut w, format_args!("{}", info.message()));
    if let Some(loc) = info.location() {
        let _ = fmt::write(&mut w, format_args!(" at {}:{}", loc.file(), loc.line()));
    }
    r.msg_len = w.len as u32;
    crate::hv::report_fault(r)
}

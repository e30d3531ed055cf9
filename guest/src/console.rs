//! The kernel console: whole lines through the VMM's console hypercall, or bytes on
//! COM1 without a VMM.

use core::fmt::{self, Write};

use shared::abi::{bare::SERIAL_PORT, exception_name, FaultReport};

use crate::arch::cpu;
use crate::hv;
use crate::percpu::{self, LINE_LEN};
use crate::sync::SpinLock;

static SERIAL: SpinLock<()> = SpinLock::new(());

/// Programs COM1 for 115200 8N1 (bare metal only).
pub fn init_serial() {
    // SAFETY: COM1's registers; only the console touches them.
    unsafe {
        cpu::outb(SERIAL_PORT + 1, 0x00);
        cpu::outb(SERIAL_PORT + 3, 0x80);
        cpu::outb(SERIAL_PORT, 0x01);
        cpu::outb(SERIAL_PORT + 1, 0x00);
        cpu::outb(SERIAL_PORT + 3, 0x03);
        cpu::outb(SERIAL_PORT + 2, 0xc7);
        cpu::outb(SERIAL_PORT + 4, 0x0b);
    }
}

fn serial_putc(b: u8) {
    // SAFETY: COM1 line status and data registers.
    unsafe {
        while cpu::inb(SERIAL_PORT + 5) & 0x20 == 0 {
            cpu::pause();
        }
        cpu::outb(SERIAL_PORT, b);
    }
}

/// Sends one line: through the VMM, or on COM1 under the serial lock (so lines from
/// different CPUs never interleave).
fn emit(line: &[u8]) {
    if hv::under_vmm() {
        hv::console_write(line);
    } else {
        let _g = SERIAL.lock_irqsave();
        for &b in line {
            serial_putc(b);
        }
    }
}

/// Writes bytes to the console, a whole line at a time per CPU.
pub fn write_bytes(bytes: &[u8]) {
    let was_on = cpu::irq_save();
    // SAFETY: the line buffer is this CPU's and interrupts are off.
    let line = unsafe { &mut *percpu::this_cpu().line.get() };
    for &b in bytes {
        line.buf[line.len] = b;
        line.len += 1;
        if b == b'\n' || line.len == LINE_LEN {
            emit(&line.buf[..line.len]);
            line.len = 0;
        }
    }
    cpu::irq_restore(was_on);
}

/// Sends this CPU's partial line, if any.
pub fn flush() {
    let was_on = cpu::irq_save();
    // SAFETY: as in write_bytes.
    let line = unsafe { &mut *percpu::this_cpu().line.get() };
    if line.len > 0 {
        emit(&line.buf[..line.len]);
        line.len = 0;
    }
    cpu::irq_restore(was_on);
}

pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::console::Console, format_args!($($arg)*));
    }};
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => {{
        $crate::kprint!($($arg)*);
        $crate::kprint!("\n");
    }};
}

/// Prints a fault report (bare metal, where no host prints it for us).
pub fn print_fault_report(r: &FaultReport) {
    crate::kprintln!(
        "FATAL on cpu {}: {}: {}\n  eip={:#010x} cs={:#x} eflags={:#x} cr2={:#010x} cr3={:#010x} error={:#x}\n  eax={:#010x} ebx={:#010x} ecx={:#010x} edx={:#010x}\n  esi={:#010x} edi={:#010x} ebp={:#010x} esp={:#010x}",
        r.cpu, exception_name(r.vector), r.message(), r.eip, r.cs, r.eflags, r.cr2, r.cr3, r.error_code,
        r.eax, r.ebx, r.ecx, r.edx, r.esi, r.edi, r.ebp, r.esp
    );
}

/// A `fmt::Write` into a fixed byte buffer that truncates.
pub struct FixedWriter<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl Write for FixedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

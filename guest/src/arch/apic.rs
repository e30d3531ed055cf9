//! The local APIC, in x2APIC mode (MSRs; what our VMM offers, so IPIs stay inside
//! KVM) or, where the CPU has no x2APIC (QEMU's TCG), in xAPIC mode through its MMIO
//! page mapped at a fixmap slot.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::arch::cpu;
use crate::mm::layout::{fix_to_virt, FixSlot};

const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2: u64 = 1 << 10;
/// Physical address of the xAPIC's registers.
pub const XAPIC_PHYS: u64 = 0xfee0_0000;

const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 5 << 8;
const ICR_STARTUP: u32 = 6 << 8;

const MODE_X2: u8 = 1;
const MODE_XAPIC: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether this CPU offers x2APIC mode.
pub fn has_x2apic() -> bool {
    cpu::cpuid(1, 0).ecx & (1 << 21) != 0
}

fn x2() -> bool {
    MODE.load(Ordering::Relaxed) == MODE_X2
}

fn read(reg: u32) -> u32 {
    if x2() {
        cpu::rdmsr(0x800 + (reg >> 4)) as u32
    } else {
        // SAFETY: the xAPIC page is mapped uncached at its fixmap slot (see `init`).
        unsafe { core::ptr::read_volatile((fix_to_virt(FixSlot::Apic) + reg) as *const u32) }
    }
}

fn write(reg: u32, v: u32) {
    if x2() {
        // SAFETY: x2APIC registers are MSRs 0x800 + reg/16; every reg used here exists.
        unsafe { cpu::wrmsr(0x800 + (reg >> 4), v as u64) };
    } else {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((fix_to_virt(FixSlot::Apic) + reg) as *mut u32, v) };
    }
}

/// Chooses the mode (boot CPU, once). In xAPIC mode the caller must have mapped the
/// MMIO page at [`FixSlot::Apic`] first.
pub fn choose_mode() {
    MODE.store(if has_x2apic() { MODE_X2 } else { MODE_XAPIC }, Ordering::Relaxed);
}

pub fn is_x2apic() -> bool {
    x2()
}

/// Enables this CPU's APIC: software-enabled, every LVT but the timer masked.
pub fn init_this_cpu(spurious: u8) {
    let base = cpu::rdmsr(MSR_APIC_BASE);
    let want = base | APIC_BASE_ENABLE | if x2() { APIC_BASE_X2 } else { 0 };
    if want != base {
        // SAFETY: enabling the APIC (and x2APIC mode, which the CPU offers).
        unsafe { cpu::wrmsr(MSR_APIC_BASE, want) };
    }
    write(REG_SVR, 0x100 | spurious as u32);
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED);
}

pub fn eoi() {
    write(REG_EOI, 0);
}

fn send_icr(dest: u32, low: u32) {
    if x2() {
        // SAFETY: one write of the 64-bit x2APIC ICR sends the IPI.
        unsafe { cpu::wrmsr(0x830, ((dest as u64) << 32) | low as u64) };
    } else {
        let was_on = cpu::irq_save();
        write(REG_ICR_HI, dest << 24);
        write(REG_ICR_LO, low);
        while read(REG_ICR_LO) & ICR_PENDING != 0 {
            cpu::pause();
        }
        cpu::irq_restore(was_on);
    }
}

/// Sends a fixed IPI to the CPU with this APIC ID.
pub fn send_ipi(dest: u32, vector: u8) {
    send_icr(dest, ICR_ASSERT | vector as u32);
}

/// INIT then two STARTUPs into the real-mode code at `page << 12` (bare metal).
pub fn start_ap(dest: u32, page: u8, delay: impl Fn(u64)) {
    send_icr(dest, ICR_INIT | ICR_ASSERT | (1 << 15)); // level-triggered assert
    delay(10_000);
    send_icr(dest, ICR_STARTUP | page as u32);
    delay(200);
    send_icr(dest, ICR_STARTUP | page as u32);
    delay(200);
}

/// Starts the timer counting down from `count` (÷16), periodic or one-shot, masked
/// or delivering `vector`.
pub fn timer_start(count: u32, periodic: bool, vector: Option<u8>) {
    write(REG_TIMER_DIV, 0x3);
    let lvt = match vector {
        Some(v) => v as u32,
        None => LVT_MASKED,
    } | if periodic { LVT_PERIODIC } else { 0 };
    write(REG_LVT_TIMER, lvt);
    write(REG_TIMER_INIT, count);
}

pub fn timer_current() -> u32 {
    read(REG_TIMER_CUR)
}

pub fn timer_stop() {
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, 0);
}

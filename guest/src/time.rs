//! Time: the TSC (frequency from the VMM, or calibrated against the PIT on bare
//! metal) and the LAPIC timer's periodic tick.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::trap::TIMER_VECTOR;
use crate::arch::{apic, cpu};
use crate::percpu;

static TSC_KHZ: AtomicU32 = AtomicU32::new(0);
/// LAPIC timer counts (at divide 16) per millisecond.
static APIC_PER_MS: AtomicU32 = AtomicU32::new(0);

/// Ticks per second of the periodic timer.
pub const HZ: u32 = 100;

pub fn init(boot_tsc_khz: u32) {
    let khz = if boot_tsc_khz != 0 { boot_tsc_khz } else { calibrate_tsc_with_pit() };
    TSC_KHZ.store(khz.max(1), Ordering::Relaxed);
}

/// Counts TSC cycles over 10 ms of PIT channel 2 (bare metal only).
fn calibrate_tsc_with_pit() -> u32 {
    const PIT_HZ: u32 = 1_193_182;
    let count = PIT_HZ / 100;
    // SAFETY: the PIT's channel 2 and the speaker gate; nothing else uses them.
    unsafe {
        let gate = cpu::inb(0x61);
        cpu::outb(0x61, (gate & !0x02) | 0x01);
        cpu::outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0
        cpu::outb(0x42, count as u8);
        cpu::outb(0x42, (count >> 8) as u8);
        let t0 = cpu::rdtsc();
        while cpu::inb(0x61) & 0x20 == 0 {
            cpu::pause();
        }
        let t1 = cpu::rdtsc();
        ((t1 - t0) / 10) as u32
    }
}

pub fn tsc_khz() -> u32 {
    TSC_KHZ.load(Ordering::Relaxed)
}

pub fn cycles_to_ns(cycles: u64) -> u64 {
    cycles * 1_000_000 / tsc_khz() as u64
}

pub fn delay_us(us: u64) {
    let end = cpu::rdtsc() + us * tsc_khz() as u64 / 1000;
    while cpu::rdtsc() < end {
        cpu::pause();
    }
}

/// Measures the LAPIC timer's rate against the TSC (boot CPU, once).
pub fn calibrate_apic_timer() {
    apic::timer_start(u32::MAX, false, None);
    let start = apic::timer_current();
    delay_us(10_000);
    let elapsed = start - apic::timer_current();
    apic::timer_stop();
    APIC_PER_MS.store((elapsed / 10).max(1), Ordering::Relaxed);
}

/// Starts this CPU's periodic tick at [`HZ`].
pub fn start_tick() {
    let per_tick = APIC_PER_MS.load(Ordering::Relaxed) * (1000 / HZ);
    apic::timer_start(per_tick.max(1), true, Some(TIMER_VECTOR));
}

/// The timer interrupt.
pub fn tick() {
    percpu::this_cpu().ticks.fetch_add(1, Ordering::Relaxed);
}

//! Micro-benchmarks of the VMM interface: hypercall round trip against a bare
//! port-I/O exit, hypercalls from every CPU at once, and IPI round trips.

use core::sync::atomic::{AtomicU32, Ordering};

use shared::config::Config;
use shared::results::GuestResult;

use crate::arch::cpu;
use crate::arch::trap::PING_VECTOR;
use crate::work::idle_until;
use crate::{check, hv, percpu, smp, time};

/// Hypercall round trip next to a bare PIO exit, alternating rounds so that drift
/// hits both alike. Boot CPU only.
pub fn hypercalls(cfg: &Config) {
    if percpu::cpu_id() != 0 {
        return;
    }
    check!(hv::under_vmm(), "hypercall-bench needs the VMM");
    let n = if cfg.iterations != 0 { cfg.iterations } else { 5000 };
    let rounds = 5u64;
    let per_round = (n / rounds).max(1);
    let (mut pio, mut hc) = (0u64, 0u64);
    let mut bad = 0u64;
    for i in 0..32 {
        hv::nop_exit();
        hv::nop(i);
    }
    for _ in 0..rounds {
        let t0 = cpu::rdtsc();
        for _ in 0..per_round {
            hv::nop_exit();
        }
        let t1 = cpu::rdtsc();
        for i in 0..per_round {
            let (rc, ret) = hv::nop(i);
            bad += (rc != 0 || ret != i) as u64;
        }
        let t2 = cpu::rdtsc();
        pio += t1 - t0;
        hc += t2 - t1;
    }
    let calls = per_round * rounds;
    check!(bad == 0, "{} hypercalls returned a wrong result", bad);
    hv::result(GuestResult::PioExitNs, time::cycles_to_ns(pio) / calls);
    hv::result(GuestResult::HypercallNs, time::cycles_to_ns(hc) / calls);
    hv::result(GuestResult::HypercallPerPioPermille, hc * 1000 / pio.max(1));
    hv::result(GuestResult::Calls, calls);
}

/// Every CPU issues hypercalls carrying its own values; every answer must be its own.
pub fn hypercalls_smp(cfg: &Config) {
    let n = if cfg.iterations != 0 { cfg.iterations } else { 2000 };
    let cpu_id = percpu::cpu_id() as u64;
    let mut bad = 0u64;
    for i in 0..n {
        let arg = (cpu_id << 32) | i;
        let (rc, ret) = hv::nop(arg);
        if rc != 0 || ret != arg {
            bad += 1;
        }
    }
    check!(bad == 0, "{} of {} hypercalls returned another's result", bad, n);
    if cpu_id == 0 {
        hv::result(GuestResult::CallsPerCpu, n);
    }
}

static PINGPONG_DONE: AtomicU32 = AtomicU32::new(0);

/// CPU 0 sends a ping to CPU 1, which answers from its interrupt handler; the
/// round trip is timed on CPU 0 while CPU 1 sits halted.
pub fn ipi_pingpong(cfg: &Config) {
    let me = percpu::cpu_id();
    if smp::nr_cpus() < 2 {
        check!(false, "ipi-pingpong needs at least 2 vCPUs");
        return;
    }
    match me {
        0 => {
            let n = if cfg.iterations != 0 { cfg.iterations } else { 2000 } as u32;
            let pc = percpu::this_cpu();
            // Pongs beyond one per ping are counted, not waited past: QEMU-hosted
            // with one TCG thread, the nested KVM now and then delivers an IPI
            // twice (docs/qemu-hosted.md); real hardware never does.
            let mut start = pc.pings.load(Ordering::Acquire);
            let mut duplicates = 0u64;
            let t0 = cpu::rdtsc();
            for i in 1..=n {
                smp::send_ipi(1, PING_VECTOR);
                let deadline = cpu::rdtsc() + time::tsc_khz() as u64 * 1000;
                while pc.pings.load(Ordering::Acquire) < start + i {
                    cpu::sti();
                    cpu::pause();
                    if cpu::rdtsc() > deadline {
                        check!(false, "no pong within 1 s (round trip {})", i);
                        PINGPONG_DONE.store(1, Ordering::Release);
                        return;
                    }
                }
                let extra = pc.pings.load(Ordering::Acquire) - (start + i);
                duplicates += extra as u64;
                start += extra;
            }
            let t1 = cpu::rdtsc();
            PINGPONG_DONE.store(1, Ordering::Release);
            hv::result(GuestResult::IpiRoundtripNs, time::cycles_to_ns(t1 - t0) / n as u64);
            hv::result(GuestResult::RoundTrips, n as u64);
            hv::result(GuestResult::DuplicatePongs, duplicates);
        }
        1 => idle_until(|| PINGPONG_DONE.load(Ordering::Acquire) != 0),
        _ => {}
    }
}

//! Bringing the application processors up, and IPIs between CPUs.

use core::sync::atomic::{AtomicU32, Ordering};

use shared::abi::milestone;
use shared::boot::{BootInfo, AP_TRAMPOLINE_GPA};
use shared::counters::Counter;

use crate::arch::boot::{trampoline_code, AP_RELEASE, AP_STACK_TOPS};
use crate::arch::trap::{self, KICK_VECTOR, PING_VECTOR, PONG_VECTOR, SPURIOUS_VECTOR};
use crate::arch::{apic, cpu};
use crate::mm::layout::{phys_to_virt, PAGE_SIZE};
use crate::mm::{page, pgtable};
use crate::{hv, kprintln, percpu, time};

/// Each application processor's kernel stack: 2^this pages.
const AP_STACK_ORDER: u32 = 2;

static NR_CPUS: AtomicU32 = AtomicU32::new(1);

pub fn nr_cpus() -> u32 {
    NR_CPUS.load(Ordering::Relaxed)
}

/// Starts every other CPU and waits until each is online.
pub fn boot_aps(info: &BootInfo) {
    let n = info.nr_vcpus;
    NR_CPUS.store(n, Ordering::Relaxed);
    for cpu in 1..n {
        let pa = page::alloc_pages(page::Zone::Normal, AP_STACK_ORDER).expect("out of lowmem for AP stacks");
        let top = phys_to_virt(pa) + (PAGE_SIZE << AP_STACK_ORDER);
        AP_STACK_TOPS[cpu as usize].store(top, Ordering::Relaxed);
    }
    AP_RELEASE.store(1, Ordering::Release);
    if !hv::under_vmm() && n > 1 {
        let (start, len) = trampoline_code();
        // SAFETY: low memory below 1 MiB is RAM the kernel does not otherwise use;
        // the trampoline is position dependent on exactly this address.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(start as u64) as *const u8,
                phys_to_virt(AP_TRAMPOLINE_GPA) as *mut u8,
                len,
            )
        };
        for cpu in 1..n {
            apic::start_ap(cpu, (AP_TRAMPOLINE_GPA >> 12) as u8, time::delay_us);
        }
    }
    let deadline = cpu::rdtsc() + 5_000_000 * time::tsc_khz() as u64 / 1000;
    for cpu in 1..n {
        while !percpu::get(cpu).online.load(Ordering::Acquire) {
            if cpu::rdtsc() > deadline {
                panic!("cpu {cpu} did not come online within 5 s");
            }
            cpu::pause();
        }
    }
    kprintln!("smp: {} CPUs online ({})", n, if apic::is_x2apic() { "x2APIC" } else { "xAPIC" });
}

/// Where every application processor enters Rust (from `arch::boot`).
#[no_mangle]
extern "C" fn rust_ap_entry(apic_id: u32) -> ! {
    percpu::init_this_cpu(apic_id);
    crate::sched::init_this_cpu();
    pgtable::switch_to_kernel();
    trap::load_idt();
    apic::init_this_cpu(SPURIOUS_VECTOR);
    time::start_tick();
    percpu::set_online();
    hv::milestone(milestone::CPU_ONLINE, apic_id);
    crate::work::ap_main()
}

/// Sends an IPI to one CPU.
pub fn send_ipi(cpu: u32, vector: u8) {
    percpu::count(Counter::IpisSent, 1);
    apic::send_ipi(cpu, vector);
}

/// Wakes the CPUs of a bitmap that halted waiting for a lock.
pub fn kick(cpus: u32) {
    let me = percpu::cpu_id();
    for cpu in 0..32 {
        if cpus & (1 << cpu) != 0 && cpu != me {
            percpu::count(Counter::LockKicks, 1);
            apic::send_ipi(cpu, KICK_VECTOR);
        }
    }
}

/// The IPIs of the ping-pong benchmark: a ping is answered to CPU 0 at once.
pub fn ipi(vector: u8) {
    match vector {
        PING_VECTOR => send_ipi(0, PONG_VECTOR),
        PONG_VECTOR => {
            percpu::this_cpu().pings.fetch_add(1, Ordering::Release);
        }
        _ => {}
    }
}

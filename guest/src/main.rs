//! A tiny 32-bit x86 PAE kernel for studying highmem pagetables, kmaps, lazy vmap
//! aliases and a Xen-style paravirtual MMU. See `arch::boot` for the entry.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

mod arch;
mod bootinfo;
mod console;
mod contract;
mod fault;
mod hv;
mod mm;
mod percpu;
mod rand;
mod ring3;
mod sched;
mod smp;
mod sync;
mod syscall;
mod task;
mod time;
mod trapback;
mod work;

use shared::abi::milestone;
use shared::boot::BOOT_MAGIC;

use arch::trap::{self, SPURIOUS_VECTOR};
use arch::{apic, cpu};
use mm::layout::{fix_to_virt, FixSlot};

/// Where the boot CPU enters Rust (from `arch::boot`), on the boot pagetables.
#[no_mangle]
extern "C" fn rust_bsp_entry(magic: u32, info_pa: u32) -> ! {
    percpu::init_this_cpu(0);
    trap::init_idt();
    trap::load_idt();
    let under_vmm = magic == BOOT_MAGIC;
    hv::init(under_vmm);
    if !under_vmm {
        console::init_serial();
        // Mask the legacy PICs: the firmware left them delivering the PIT's IRQ 0.
        // SAFETY: the PICs' data ports; writing 0xff masks every line.
        unsafe {
            cpu::outb(0x21, 0xff);
            cpu::outb(0xa1, 0xff);
        }
    }
    let info = bootinfo::obtain(magic, info_pa);
    kprintln!(
        "guest: {} vCPUs, {} MiB, {}",
        info.nr_vcpus,
        info.total_ram() >> 20,
        if under_vmm { "under the VMM" } else { "bare metal (no VMM)" }
    );
    time::init(info.tsc_khz);
    mm::init(info);
    sched::init_this_cpu();
    apic::choose_mode();
    if !apic::is_x2apic() {
        mm::pgtable::set_kernel_pte(fix_to_virt(FixSlot::Apic), apic::XAPIC_PHYS | mm::pgtable::KERNEL_MMIO);
    }
    apic::init_this_cpu(SPURIOUS_VECTOR);
    time::calibrate_apic_timer();
    time::start_tick();
    percpu::set_online();
    hv::milestone(milestone::MAIN, 0);
    hv::milestone(milestone::CPU_ONLINE, 0);
    smp::boot_aps(info);
    work::bsp_main()
}

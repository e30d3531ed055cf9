//! The boot information: what the VMM (or, under bare QEMU, the guest itself from the
//! multiboot data) tells the kernel at entry.
//!
//! Entry contract with the VMM: every vCPU starts in 32-bit protected mode with flat
//! 4 GiB segments, paging off, interrupts off, at the ELF entry point, with
//! `eax` = [`BOOT_MAGIC`] and `ebx` = [`BOOT_INFO_GPA`]. The boot CPU is the one
//! whose initial APIC ID (CPUID leaf 1) is 0; the others wait for it. Under bare QEMU
//! the entry is multiboot's (`eax` = [`MULTIBOOT_MAGIC`], `ebx` = its info).

use crate::config::Config;
use crate::counters::PerCpuCounters;

/// `eax` at entry when started by this project's VMM.
pub const BOOT_MAGIC: u32 = 0x4c41_4231;
/// `eax` at entry when started by a multiboot (v1) loader such as QEMU's `-kernel`.
pub const MULTIBOOT_MAGIC: u32 = 0x2bad_b002;
/// Version of [`BootInfo`]; the guest refuses any other.
pub const BOOT_INFO_VERSION: u32 = 1;

/// Where the VMM puts the [`BootInfo`].
pub const BOOT_INFO_GPA: u64 = 0x9000;
/// Where the per-CPU counters live: `[PerCpuCounters; MAX_VCPUS]`.
pub const COUNTERS_GPA: u64 = 0x10000;
/// Where the bare-metal AP trampoline is copied (real mode needs it below 1 MiB).
pub const AP_TRAMPOLINE_GPA: u64 = 0x7000;
/// Guest-physical memory below this is the VMM's (boot information, counters,
/// trampoline); the kernel is loaded here and allocates only above its image.
pub const LOW_RESERVED_END: u64 = 0x10_0000;

/// Guest-physical frames the host keeps for itself under the PV MMU (the real-mode
/// page 0 and the scratch pages below the AP trampoline): no pagetable entry may
/// point into them and no `mmu_update` may write them (rule V7).
pub const HOST_RESERVED_START: u64 = 0;
pub const HOST_RESERVED_END: u64 = 0x7000;
/// The most vCPUs a guest can have.
pub const MAX_VCPUS: usize = 8;
/// The most RAM regions in the memory map.
pub const MAX_MEM_REGIONS: usize = 8;

/// PAE addresses 36 bits of physical memory: nothing may lie above this.
pub const PHYS_LIMIT: u64 = 1 << 36;
/// RAM below 4 GiB ends here; [LOW_RAM_END, 4 GiB) is the MMIO hole (IOAPIC, LAPIC,
/// the TSS pages some KVMs need), and RAM beyond it continues at 4 GiB.
pub const LOW_RAM_END: u64 = 0xfec0_0000;
pub const HIGH_RAM_START: u64 = 4 << 30;
/// Smallest guest RAM.
pub const MIN_MEM: u64 = 16 << 20;
/// Largest guest RAM: the 36-bit space less the MMIO hole (64 GiB - 20 MiB).
pub const MAX_MEM: u64 = PHYS_LIMIT - (HIGH_RAM_START - LOW_RAM_END);

/// One usable RAM region.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub len: u64,
}

impl MemRegion {
    pub const fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// Flag: the kernel runs under this project's VMM (hypercalls available).
pub const FLAG_VMM: u32 = 1 << 0;

/// The boot information block.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    pub magic: u32,
    pub version: u32,
    /// [`FLAG_VMM`] and future flags.
    pub flags: u32,
    pub nr_vcpus: u32,
    /// The TSC frequency in kHz, or 0 if the guest must calibrate it.
    pub tsc_khz: u32,
    pub nr_regions: u32,
    pub regions: [MemRegion; MAX_MEM_REGIONS],
    /// Guest-physical address of `[PerCpuCounters; MAX_VCPUS]`.
    pub counters_gpa: u64,
    pub config: Config,
}

impl BootInfo {
    /// Boot information for `nr_vcpus` vCPUs and these RAM regions.
    pub fn new(nr_vcpus: u32, tsc_khz: u32, regions: &[MemRegion], config: Config) -> Self {
        let mut r = [MemRegion::default(); MAX_MEM_REGIONS];
        let n = regions.len().min(MAX_MEM_REGIONS);
        r[..n].copy_from_slice(&regions[..n]);
        BootInfo {
            magic: BOOT_MAGIC,
            version: BOOT_INFO_VERSION,
            flags: FLAG_VMM,
            nr_vcpus,
            tsc_khz,
            nr_regions: n as u32,
            regions: r,
            counters_gpa: COUNTERS_GPA,
            config,
        }
    }

    /// The valid part of the memory map.
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..(self.nr_regions as usize).min(MAX_MEM_REGIONS)]
    }

    /// Total RAM in the memory map.
    pub fn total_ram(&self) -> u64 {
        self.regions().iter().map(|r| r.len).sum()
    }
}

/// The RAM regions of a guest with `mem` bytes: from 0 up to the MMIO hole, the rest
/// from 4 GiB. (The first megabyte is RAM too; it holds the VMM's blocks.)
pub fn ram_layout(mem: u64) -> ([MemRegion; 2], usize) {
    let low = mem.min(LOW_RAM_END);
    let mut r = [MemRegion { base: 0, len: low }, MemRegion::default()];
    if mem > low {
        r[1] = MemRegion { base: HIGH_RAM_START, len: mem - low };
        (r, 2)
    } else {
        (r, 1)
    }
}

/// Bytes of the counters block.
pub const COUNTERS_SIZE: usize = MAX_VCPUS * core::mem::size_of::<PerCpuCounters>();

// The layout must not depend on u64's alignment (8 on the host, 4 on the guest).
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(BootInfo, regions) == 24);
    assert!(offset_of!(BootInfo, counters_gpa) == 24 + 16 * MAX_MEM_REGIONS);
    assert!(offset_of!(BootInfo, config) == 32 + 16 * MAX_MEM_REGIONS);
    assert!(size_of::<BootInfo>() == 32 + 16 * MAX_MEM_REGIONS + size_of::<Config>());
    assert!(size_of::<MemRegion>() == 16);
};
const _: () = assert!(COUNTERS_GPA + COUNTERS_SIZE as u64 <= LOW_RESERVED_END);
const _: () = assert!(BOOT_INFO_GPA + core::mem::size_of::<BootInfo>() as u64 <= COUNTERS_GPA);
const _: () = assert!(AP_TRAMPOLINE_GPA + 0x1000 <= BOOT_INFO_GPA);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_splits_at_the_mmio_hole() {
        let (r, n) = ram_layout(MIN_MEM);
        assert_eq!(n, 1);
        assert_eq!(r[0].len, 16 << 20);
        let (r, n) = ram_layout(MAX_MEM);
        assert_eq!(n, 2);
        assert_eq!(r[0].end(), LOW_RAM_END);
        assert_eq!(r[1].base, 4 << 30);
        assert_eq!(r[0].len + r[1].len, MAX_MEM);
        assert_eq!(r[1].end(), PHYS_LIMIT, "the whole 36-bit space is used");
    }
}

//! Where the boot information comes from: the VMM's block, or (bare metal) the
//! multiboot information and the kernel command line.

use shared::boot::{
    BootInfo, MemRegion, BOOT_INFO_VERSION, BOOT_MAGIC, FLAG_VMM, MAX_MEM_REGIONS, MAX_VCPUS, MULTIBOOT_MAGIC,
    PHYS_LIMIT,
};
use shared::config::Config;

use crate::kprintln;
use crate::mm::layout::phys_to_virt;
use crate::sync::Once;

static BOOT_INFO: Once<BootInfo> = Once::new();

/// The boot information (after [`obtain`]).
pub fn get() -> &'static BootInfo {
    BOOT_INFO.get()
}

/// Reads the boot information handed over at entry. Runs on the boot CPU while the
/// boot pagetables still map the first GiB at PAGE_OFFSET.
pub fn obtain(magic: u32, info_pa: u32) -> &'static BootInfo {
    let info = match magic {
        BOOT_MAGIC => {
            // SAFETY: the VMM put a BootInfo at this (low) physical address.
            let info = unsafe { (phys_to_virt(info_pa as u64) as *const BootInfo).read_volatile() };
            if info.magic != BOOT_MAGIC || info.version != BOOT_INFO_VERSION {
                panic!(
                    "boot information: bad magic {:#x} or version {} (want {})",
                    info.magic, info.version, BOOT_INFO_VERSION
                );
            }
            info
        }
        MULTIBOOT_MAGIC => from_multiboot(info_pa),
        _ => panic!("unknown boot protocol (eax={magic:#x})"),
    };
    if info.nr_vcpus == 0 || info.nr_vcpus as usize > MAX_VCPUS {
        panic!("boot information: {} vCPUs (1..={} supported)", info.nr_vcpus, MAX_VCPUS);
    }
    BOOT_INFO.set(info)
}

/// Builds the boot information from multiboot's memory map and command line.
fn from_multiboot(mbi_pa: u32) -> BootInfo {
    let mbi = phys_to_virt(mbi_pa as u64) as *const u32;
    // SAFETY: the multiboot loader put its information block in low memory, which
    // the boot pagetables map.
    let (flags, cmdline, mmap_len, mmap_addr) = unsafe { (*mbi, *mbi.add(4), *mbi.add(11), *mbi.add(12)) };
    let mut regions = [MemRegion::default(); MAX_MEM_REGIONS];
    let mut n = 0;
    if flags & (1 << 6) != 0 {
        let mut p = mmap_addr;
        while p < mmap_addr + mmap_len && n < MAX_MEM_REGIONS {
            let e = phys_to_virt(p as u64) as *const u8;
            // SAFETY: multiboot mmap entries: size (u32), base (u64), len (u64), type (u32).
            let (size, base, len, kind) = unsafe {
                (
                    (e as *const u32).read_unaligned(),
                    (e.add(4) as *const u64).read_unaligned(),
                    (e.add(12) as *const u64).read_unaligned(),
                    (e.add(20) as *const u32).read_unaligned(),
                )
            };
            if kind == 1 && base < PHYS_LIMIT {
                regions[n] = MemRegion { base, len: len.min(PHYS_LIMIT - base) };
                n += 1;
            }
            p += size + 4;
        }
    }
    let mut config = Config::new();
    let mut vcpus = 1u32;
    if flags & (1 << 2) != 0 {
        // SAFETY: a NUL-terminated string in low memory.
        let text = unsafe { cstr(phys_to_virt(cmdline as u64) as *const u8) };
        config.apply_cmdline(text, |word, err| match word.split_once('=') {
            Some(("vcpus", v)) => vcpus = v.parse().unwrap_or(1),
            // Words without '=' are the kernel's path and other loader words.
            _ => {
                if let Some(e) = err {
                    kprintln!("cmdline: {word}: {e}");
                }
            }
        });
    }
    let mut info = BootInfo::new(vcpus, 0, &regions[..n], config);
    info.flags &= !FLAG_VMM;
    info
}

/// # Safety
/// `p` must point at a NUL-terminated string that stays mapped.
unsafe fn cstr(p: *const u8) -> &'static str {
    let mut len = 0;
    // SAFETY: delegated to the caller.
    while unsafe { *p.add(len) } != 0 && len < 4096 {
        len += 1;
    }
    // SAFETY: the caller's string: `len` bytes before its NUL, all mapped.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

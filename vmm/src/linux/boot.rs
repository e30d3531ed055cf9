//! Linux's 32-bit boot protocol (Documentation/arch/x86/boot.rst): the
//! bzImage's protected-mode kernel loaded at `code32_start` (linux-loader),
//! the zero page (`boot_params`) with the setup header, an e820 map and the
//! command line, the initrd, and a GDT with the flat `__BOOT_CS` (0x10) and
//! `__BOOT_DS` (0x18) descriptors the kernel's first instructions load.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use shared::boot::MemRegion;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the boot structures go, all below the EBDA.
pub const GDT_GPA: u64 = 0x500;
pub const ZERO_PAGE_GPA: u64 = 0x7000;
pub const CMDLINE_GPA: u64 = 0x2_0000;
/// The MP tables, in the last KiB of base memory (where Linux looks).
pub const MPTABLE_GPA: u64 = 0x9_fc00;
/// Base memory ends here; 0xa0000..0x100000 is the legacy hole.
const BASE_END: u64 = 0x9_fc00;
const HIGH_START: u64 = 0x10_0000;
/// The selectors the boot protocol requires: flat 4 GiB code and data.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
/// The longest command line we write (the kernel's own limit is in the
/// header, `cmdline_size`).
const CMDLINE_MAX: usize = 4095;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
/// `type_of_loader`: "undefined" (no registered boot loader ID).
const LOADER_UNDEFINED: u8 = 0xff;
/// `loadflags`: the protected-mode kernel is at 0x100000 / the heap end is valid.
const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is no bzImage Linux kernel: {1}")]
    NotBzImage(PathBuf, linux_loader::loader::Error),
    #[error("{0}: boot protocol {1}.{2:02}; vmm needs 2.06 or later (Linux 2.6.22+)")]
    OldProtocol(PathBuf, u16, u16),
    #[error("the kernel command line is {0} bytes; at most {1} fit")]
    CmdlineTooLong(usize, usize),
    #[error("the kernel command line holds a NUL byte")]
    CmdlineNul,
    #[error(
        "the initrd ({0} MiB) does not fit in guest RAM below {1:#x} beside the kernel: give the guest more --mem"
    )]
    InitrdTooBig(u64, u64),
    #[error("the guest needs RAM from 0 to above 1 MiB for Linux")]
    NoLowMemory,
    #[error("writing the boot structures into guest memory failed: {0}")]
    Memory(String),
}

/// Where things were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The 32-bit entry (`code32_start`).
    pub entry: u32,
    pub kernel_end: u64,
    /// The initrd's address and size, if one was given.
    pub initrd: Option<(u64, u64)>,
}

/// The e820 map of guest RAM `regions`: base memory up to the EBDA, the
/// legacy hole reserved, and every region's RAM from 1 MiB on.
pub fn e820(regions: &[MemRegion]) -> Result<Vec<boot_e820_entry>, Error> {
    let low = regions.iter().find(|r| r.base == 0 && r.end() > HIGH_START).ok_or(Error::NoLowMemory)?;
    let mut map = vec![
        boot_e820_entry { addr: 0, size: BASE_END, r#type: E820_RAM },
        boot_e820_entry { addr: BASE_END, size: HIGH_START - BASE_END, r#type: E820_RESERVED },
        boot_e820_entry { addr: HIGH_START, size: low.end() - HIGH_START, r#type: E820_RAM },
    ];
    for r in regions.iter().filter(|r| r.base >= HIGH_START) {
        map.push(boot_e820_entry { addr: r.base, size: r.len, r#type: E820_RAM });
    }
    Ok(map)
}

/// The GDT the boot protocol wants: null, null, flat code (0x10), flat data
/// (0x18).
pub fn gdt() -> [u64; 4] {
    [0, 0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
}

/// Checks that `kernel` is a bzImage this loader boots, before any VM (or
/// QEMU) starts: the setup header's magic, a protected-mode kernel loaded
/// high, and boot protocol 2.06 or later.
pub fn check(kernel: &Path) -> Result<(), Error> {
    let image = std::fs::read(kernel).map_err(|e| Error::Read(kernel.to_owned(), e))?;
    let invalid = || {
        Error::NotBzImage(
            kernel.to_owned(),
            linux_loader::loader::Error::Bzimage(linux_loader::loader::bzimage::Error::InvalidBzImage),
        )
    };
    let word = |at: usize| image.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let magic = image.get(0x202..0x206);
    let (Some(version), Some(&loadflags)) = (word(0x206), image.get(0x211)) else { return Err(invalid()) };
    if magic != Some(b"HdrS") || loadflags & LOADED_HIGH == 0 {
        return Err(invalid());
    }
    if version < 0x0206 {
        return Err(Error::OldProtocol(kernel.to_owned(), version >> 8, version & 0xff));
    }
    Ok(())
}

/// Where an initrd of `size` bytes goes: the first page at or above
/// `needs` (the end of what the kernel takes), if it ends by `top`.
fn initrd_address(needs: u64, size: u64, top: u64) -> Option<u64> {
    let at = needs.checked_next_multiple_of(4096)?;
    at.checked_add(size).is_some_and(|end| end <= top).then_some(at)
}

/// Loads `kernel` (a bzImage), `initrd` and `cmdline` into `mem` and writes
/// the zero page and the GDT.
pub fn load(
    mem: &GuestMemoryMmap,
    regions: &[MemRegion],
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<Loaded, Error> {
    let map = e820(regions)?;
    let image = std::fs::read(kernel).map_err(|e| Error::Read(kernel.to_owned(), e))?;
    let loaded = BzImage::load(mem, None, &mut Cursor::new(&image), Some(GuestAddress(HIGH_START)))
        .map_err(|e| Error::NotBzImage(kernel.to_owned(), e))?;
    let mut hdr = loaded.setup_header.ok_or_else(|| {
        Error::NotBzImage(
            kernel.to_owned(),
            linux_loader::loader::Error::Bzimage(linux_loader::loader::bzimage::Error::InvalidBzImage),
        )
    })?;
    if hdr.version < 0x0206 {
        return Err(Error::OldProtocol(kernel.to_owned(), hdr.version >> 8, hdr.version & 0xff));
    }
    let mem_err = |e: vm_memory::GuestMemoryError| Error::Memory(e.to_string());

    // The command line, NUL-terminated.
    let limit = (hdr.cmdline_size as usize).min(CMDLINE_MAX);
    if cmdline.len() > limit {
        return Err(Error::CmdlineTooLong(cmdline.len(), limit));
    }
    if cmdline.contains('\0') {
        return Err(Error::CmdlineNul);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_GPA)).map_err(mem_err)?;

    // The initrd: just above all the kernel needs (where it decompresses
    // to, pref_address, and the init_size it takes from there; and the
    // image as loaded), page-aligned, and below initrd_addr_max. Low, not as
    // high as allowed: a 32-bit kernel told to keep less lowmem
    // (`vmalloc=`, `highmem=`) cannot reach an initrd above its lowmem
    // (measured: a triple fault before the first console line).
    let mut initrd_at = None;
    if let Some(path) = initrd {
        let data = std::fs::read(path).map_err(|e| Error::Read(path.to_owned(), e))?;
        let low_end = map[2].addr + map[2].size;
        let top = low_end.min(hdr.initrd_addr_max as u64 + 1);
        let size = data.len() as u64;
        let needs = (hdr.pref_address + u64::from(hdr.init_size)).max(loaded.kernel_end);
        let at = initrd_address(needs, size, top).ok_or(Error::InitrdTooBig(size >> 20, top))?;
        mem.write_slice(&data, GuestAddress(at)).map_err(mem_err)?;
        hdr.ramdisk_image = at as u32;
        hdr.ramdisk_size = size as u32;
        initrd_at = Some((at, size));
    }

    hdr.type_of_loader = LOADER_UNDEFINED;
    hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
    hdr.heap_end_ptr = 0xfe00;
    hdr.cmd_line_ptr = CMDLINE_GPA as u32;
    let mut params = boot_params { hdr, ..Default::default() };
    params.e820_entries = map.len() as u8;
    params.e820_table[..map.len()].copy_from_slice(&map);
    mem.write_obj(params, GuestAddress(ZERO_PAGE_GPA)).map_err(mem_err)?;
    for (i, d) in gdt().iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_GPA + 8 * i as u64)).map_err(mem_err)?;
    }
    Ok(Loaded { entry: hdr.code32_start, kernel_end: loaded.kernel_end, initrd: initrd_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(mib: u64) -> Vec<MemRegion> {
        vec![MemRegion { base: 0, len: mib << 20 }]
    }

    #[test]
    fn the_e820_map_keeps_the_legacy_hole_and_every_region() {
        let mut regions = ram(3072);
        regions.push(MemRegion { base: 4 << 30, len: 1 << 30 });
        let map = e820(&regions).unwrap();
        let rows: Vec<(u64, u64, u32)> = map.iter().map(|e| (e.addr, e.size, e.r#type)).collect();
        assert_eq!(
            rows,
            vec![
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED),
                (0x100000, (3072 << 20) - 0x100000, E820_RAM),
                (4 << 30, 1 << 30, E820_RAM)
            ]
        );
        assert!(matches!(e820(&[MemRegion { base: 0, len: 0x80000 }]), Err(Error::NoLowMemory)));
    }

    /// The initrd goes just above what the kernel takes, page-aligned, low
    /// enough for any lowmem the kernel is told to keep; too big is None.
    #[test]
    fn the_initrd_goes_just_above_the_kernel() {
        let (needs, mib) = (0x100_0000 + 0x1e5_4321, 1 << 20);
        assert_eq!(initrd_address(needs, 2 * mib, 0x3800_0000), Some(0x2e5_5000));
        assert_eq!(initrd_address(0x300_0000, 2 * mib, 0x300_0000 + 2 * mib), Some(0x300_0000), "it just fits");
        assert_eq!(initrd_address(0x300_0000, 2 * mib + 1, 0x300_0000 + 2 * mib), None);
        assert_eq!(initrd_address(u64::MAX - 10, 100, u64::MAX), None, "no overflow");
    }

    #[test]
    fn the_gdt_has_flat_boot_code_and_data_where_the_selectors_point() {
        let g = gdt();
        let (code, data) = (g[(BOOT_CS / 8) as usize], g[(BOOT_DS / 8) as usize]);
        // Base 0, limit 0xfffff in pages (4 GiB), 32-bit, present, ring 0.
        for d in [code, data] {
            assert_eq!(d & 0xffff, 0xffff);
            assert_eq!((d >> 48) & 0xf, 0xf);
            assert_eq!((d >> 16) & 0xff_ffff, 0);
            assert_eq!((d >> 55) & 1, 1, "granularity: pages");
            assert_eq!((d >> 54) & 1, 1, "32-bit");
            assert_eq!((d >> 47) & 1, 1, "present");
        }
        assert_eq!((code >> 40) & 0xf, 0xb, "code: execute/read, accessed");
        assert_eq!((data >> 40) & 0xf, 0x3, "data: read/write, accessed");
    }

    #[test]
    fn what_is_no_bzimage_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("vmm-bz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("not-a-kernel");
        std::fs::write(&f, vec![0u8; 8192]).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let e = load(&mem, &ram(64), &f, None, "console=ttyS0").unwrap_err();
        assert!(matches!(e, Error::NotBzImage(..)), "{e}");
        assert!(e.to_string().contains("no bzImage"), "{e}");
        let e = load(&mem, &ram(64), &dir.join("absent"), None, "").unwrap_err();
        assert!(matches!(e, Error::Read(..)), "{e}");
        assert!(matches!(check(&f), Err(Error::NotBzImage(..))));
        assert!(matches!(check(&dir.join("absent")), Err(Error::Read(..))));
        // A header of protocol 2.04 (Linux 2.6.14) is named as too old.
        let mut old = vec![0u8; 8192];
        old[0x202..0x206].copy_from_slice(b"HdrS");
        old[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
        old[0x211] = LOADED_HIGH;
        std::fs::write(&f, &old).unwrap();
        let e = check(&f).unwrap_err();
        assert!(e.to_string().contains("boot protocol 2.04"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

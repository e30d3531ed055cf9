//! Loading an ELF32 i386 kernel image into guest RAM at its physical addresses.

use std::path::{Path, PathBuf};

use vm_memory::GuestMemoryMmap;

use pvmmu::guest_memory as memory;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kernel image {0} not found{1}")]
    Missing(PathBuf, &'static str),
    #[error("cannot read kernel image {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("kernel image {0} is malformed: {1}")]
    Malformed(PathBuf, String),
    #[error("kernel image {path}: segment at {paddr:#x}+{len:#x} does not fit in guest RAM")]
    OutsideRam { path: PathBuf, paddr: u64, len: u64 },
    #[error(
        "kernel image {path}: segment at {paddr:#x}+{len:#x} overlaps the host's boot information and tables \
         below {below:#x}"
    )]
    Reserved { path: PathBuf, paddr: u64, len: u64, below: u64 },
}

/// What the loader found.
#[derive(Clone, Copy, Debug)]
pub struct Loaded {
    pub entry: u32,
    /// The highest physical address the image occupies.
    pub end: u64,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// A parsed image: its entry and its loadable segments.
pub struct Image {
    path: PathBuf,
    bytes: Vec<u8>,
    pub entry: u32,
    /// (physical address, file range, memory size)
    segments: Vec<(u64, std::ops::Range<usize>, u64)>,
    /// Virtual address ranges of the executable segments.
    code: Vec<std::ops::Range<u32>>,
}

impl Image {
    /// Whether `eip` lies in one of the image's executable segments.
    pub fn is_code(&self, eip: u32) -> bool {
        self.code.iter().any(|r| r.contains(&eip))
    }

    /// The contents of the section called `name`, if the image has one (section
    /// headers are optional in an executable: `None` then too).
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        let b = &self.bytes;
        let shoff = u32_at(b, 32)? as usize;
        let (shentsize, shnum, shstrndx) = (u16_at(b, 46)? as usize, u16_at(b, 48)? as usize, u16_at(b, 50)? as usize);
        if shoff == 0 || shentsize < 40 {
            return None;
        }
        let header = |i: usize| {
            let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
            let off = u32_at(b, at + 16)? as usize;
            let size = u32_at(b, at + 20)? as usize;
            Some((u32_at(b, at)? as usize, off..off.checked_add(size)?))
        };
        let (_, strtab) = header(shstrndx)?;
        let strtab = b.get(strtab)?;
        (0..shnum).find_map(|i| {
            let (name_off, range) = header(i)?;
            let rest = strtab.get(name_off..)?;
            let end = rest.iter().position(|&c| c == 0)?;
            (&rest[..end] == name.as_bytes()).then(|| b.get(range)).flatten()
        })
    }

    /// An image with only these code ranges (for tests of code that asks).
    #[cfg(test)]
    pub fn with_code(code: Vec<std::ops::Range<u32>>) -> Self {
        Image { path: PathBuf::new(), bytes: vec![], entry: 0, segments: vec![], code }
    }
}

/// Reads and checks an ELF32 i386 executable without loading it.
pub fn parse(path: &Path) -> Result<Image, Error> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Missing(path.to_owned(), " (build the guest with scripts/build-guest.sh, or pass --kernel FILE)")
        }
        _ => Error::Read(path.to_owned(), e),
    })?;
    let bad = |why: &str| Error::Malformed(path.to_owned(), why.to_owned());
    if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
        return Err(bad("not an ELF file"));
    }
    if bytes[4] != 1 {
        return Err(bad("not ELF32 (the guest is a 32-bit kernel)"));
    }
    if bytes[5] != 1 {
        return Err(bad("not little-endian"));
    }
    let header = |off| u16_at(&bytes, off).ok_or_else(|| bad("truncated header"));
    if header(18)? != 3 {
        return Err(bad("not an i386 image"));
    }
    if header(16)? != 2 {
        return Err(bad("not an executable"));
    }
    let entry = u32_at(&bytes, 24).ok_or_else(|| bad("truncated header"))?;
    let phoff = u32_at(&bytes, 28).ok_or_else(|| bad("truncated header"))? as usize;
    let phentsize = header(42)? as usize;
    let phnum = header(44)? as usize;
    if phentsize < 32 {
        return Err(bad("program header entries too small"));
    }
    let mut segments = Vec::new();
    let mut code = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let field = |k: usize| u32_at(&bytes, ph + 4 * k).ok_or_else(|| bad("program header outside the file"));
        if field(0)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr, filesz, memsz) =
            (field(1)? as usize, field(3)? as u64, field(4)? as usize, field(5)? as u64);
        if memsz == 0 {
            continue;
        }
        if (filesz as u64) > memsz {
            return Err(bad("segment's file size exceeds its memory size"));
        }
        let range = offset..offset.checked_add(filesz).ok_or_else(|| bad("segment outside the file"))?;
        if range.end > bytes.len() {
            return Err(bad("segment outside the file"));
        }
        segments.push((paddr, range, memsz));
        let (vaddr, flags) = (field(2)?, field(6)?);
        if flags & 1 != 0 {
            code.push(vaddr..vaddr.saturating_add(memsz as u32));
        }
    }
    if segments.is_empty() {
        return Err(bad("no loadable segment"));
    }
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (paddr, _, memsz) in &segments {
        let end = paddr.checked_add(*memsz).ok_or_else(|| bad("segment wraps around the address space"))?;
        if let Some((s, e)) = spans.iter().find(|(s, e)| *paddr < *e && *s < end) {
            return Err(Error::Malformed(
                path.to_owned(),
                format!("segments {paddr:#x}..{end:#x} and {s:#x}..{e:#x} overlap"),
            ));
        }
        spans.push((*paddr, end));
    }
    if !code.iter().any(|r| r.contains(&entry)) {
        return Err(Error::Malformed(path.to_owned(), format!("entry point {entry:#x} is in no executable segment")));
    }
    Ok(Image { path: path.to_owned(), bytes, entry, segments, code })
}

impl Image {
    /// Where the image goes, checked against the guest's RAM `regions` and the
    /// host's areas below `reserved_below`: before anything is loaded, and
    /// QEMU-hosted before the appliance starts.
    pub fn check_placement(&self, regions: &[shared::boot::MemRegion], reserved_below: u64) -> Result<(), Error> {
        for (paddr, _, memsz) in &self.segments {
            let (paddr, len) = (*paddr, *memsz);
            if paddr < reserved_below {
                return Err(Error::Reserved { path: self.path.clone(), paddr, len, below: reserved_below });
            }
            let end = paddr.saturating_add(len);
            if !regions.iter().any(|r| r.base <= paddr && end <= r.end()) {
                return Err(Error::OutsideRam { path: self.path.clone(), paddr, len });
            }
        }
        Ok(())
    }
}

/// Loads every PT_LOAD segment at its physical address (zero-filling the rest of
/// its memory size), after [`Image::check_placement`], and returns the entry point.
pub fn load(
    mem: &GuestMemoryMmap,
    regions: &[shared::boot::MemRegion],
    path: &Path,
    reserved_below: u64,
) -> Result<Loaded, Error> {
    let image = parse(path)?;
    image.check_placement(regions, reserved_below)?;
    let mut end = 0u64;
    // The part of a segment past its file contents is a range to zero, a
    // chunk at a time: a `p_memsz` of gigabytes costs no buffer of that size.
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    for (paddr, range, memsz) in &image.segments {
        let (paddr, memsz) = (*paddr, *memsz);
        let outside = || Error::OutsideRam { path: image.path.clone(), paddr, len: memsz };
        let data = &image.bytes[range.clone()];
        memory::write_bytes(mem, paddr, data).map_err(|_| outside())?;
        let mut at = paddr + data.len() as u64;
        while at < paddr + memsz {
            let n = (paddr + memsz - at).min(ZEROS.len() as u64) as usize;
            memory::write_bytes(mem, at, &ZEROS[..n]).map_err(|_| outside())?;
            at += n as u64;
        }
        end = end.max(paddr + memsz);
    }
    Ok(Loaded { entry: image.entry, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmmu::guest_memory::{create, RamSize};

    fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vmm-loader-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A minimal ELF32 i386 executable with one PT_LOAD segment at `paddr`.
    fn elf(paddr: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 84];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&3u16.to_le_bytes());
        b[24..28].copy_from_slice(&paddr.to_le_bytes());
        b[28..32].copy_from_slice(&52u32.to_le_bytes());
        b[42..44].copy_from_slice(&32u16.to_le_bytes());
        b[44..46].copy_from_slice(&1u16.to_le_bytes());
        let ph = [1u32, 84, paddr, paddr, payload.len() as u32, payload.len() as u32 + 16, 5, 4];
        for (i, v) in ph.iter().enumerate() {
            b[52 + 4 * i..56 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn loads_a_segment_and_zero_fills() {
        let mem = create(RamSize::new(16 << 20).unwrap()).unwrap();
        memory::write_bytes(&mem, 0x100004, &[0xff; 16]).unwrap();
        let p = tmp("ok", &elf(0x100000, &[1, 2, 3, 4]));
        let l = load(&mem, &regions(), &p, 0x100000).unwrap();
        assert_eq!(l.entry, 0x100000);
        assert_eq!(memory::read_bytes(&mem, 0x100000, 8).unwrap(), [1, 2, 3, 4, 0, 0, 0, 0]);
    }

    fn regions() -> Vec<shared::boot::MemRegion> {
        RamSize::new(16 << 20).unwrap().regions()
    }

    /// `b` with its first program header's field `k` (0: type .. 7: align) set.
    fn with_ph(mut b: Vec<u8>, k: usize, v: u32) -> Vec<u8> {
        b[52 + 4 * k..56 + 4 * k].copy_from_slice(&v.to_le_bytes());
        b
    }

    #[test]
    fn bad_images_get_clear_errors() {
        let mem = create(RamSize::new(16 << 20).unwrap()).unwrap();
        let r = regions();
        let missing = load(&mem, &r, Path::new("/nonexistent/guest"), 0).unwrap_err();
        assert!(missing.to_string().contains("not found"), "{missing}");
        let garbage = load(&mem, &r, &tmp("garbage", b"hello world, not an elf at all........................"), 0);
        assert!(garbage.unwrap_err().to_string().contains("not an ELF"));
        let mut e64 = elf(0x100000, &[0]);
        e64[4] = 2;
        assert!(load(&mem, &r, &tmp("e64", &e64), 0).unwrap_err().to_string().contains("ELF32"));
        let high = load(&mem, &r, &tmp("high", &elf(0x2000000, &[0])), 0).unwrap_err();
        assert!(high.to_string().contains("does not fit"), "{high}");
        let mut trunc = elf(0x100000, &[0]);
        trunc.truncate(60);
        assert!(load(&mem, &r, &tmp("trunc", &trunc), 0).unwrap_err().to_string().contains("malformed"));
    }

    #[test]
    fn placement_errors_name_what_the_image_collides_with() {
        let mem = create(RamSize::new(16 << 20).unwrap()).unwrap();
        let r = regions();
        // Segments that fit in RAM but overlap the host's areas (boot info at
        // 0x9000, the tables below 1 MiB) say so, not "does not fit".
        for at in [0x0, 0x9000, 0x10000] {
            let e = load(&mem, &r, &tmp("low", &elf(at, &[0])), 0x100000).unwrap_err().to_string();
            assert!(e.contains("overlaps the host's boot information") && e.contains("below 0x100000"), "{e}");
        }
        // An entry point in no executable segment, 0 included.
        for entry in [0u32, 0x50_0000] {
            let mut b = elf(0x100000, &[0x90]);
            b[24..28].copy_from_slice(&entry.to_le_bytes());
            let e = load(&mem, &r, &tmp("entry", &b), 0x100000).unwrap_err().to_string();
            assert!(e.contains("is in no executable segment"), "{e}");
        }
        // A p_memsz of nearly 4 GiB: refused before any buffer is built.
        let huge = with_ph(elf(0x100000, &[0]), 5, 0xffff_f000);
        let e = load(&mem, &r, &tmp("huge", &huge), 0x100000).unwrap_err().to_string();
        assert!(e.contains("does not fit in guest RAM"), "{e}");
        // A large one that fits is zeroed a chunk at a time.
        memory::write_bytes(&mem, 0x200000, &[0xff; 8]).unwrap();
        let big = with_ph(elf(0x100000, &[1]), 5, 0x40_0000);
        load(&mem, &r, &tmp("big", &big), 0x100000).unwrap();
        assert_eq!(memory::read_bytes(&mem, 0x200000, 8).unwrap(), [0; 8]);
        // Two segments over the same memory: the second header (at 84, its
        // data after it at 116) loads 4 bytes at 0x100004, inside the first.
        let mut two = elf(0x100000, &[0; 8]);
        two[44..46].copy_from_slice(&2u16.to_le_bytes());
        let ph2: Vec<u8> = [1u32, 116, 0x100004, 0x100004, 4, 4, 5, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        two.splice(84..84, ph2);
        let two = with_ph(two, 1, 116);
        let e = load(&mem, &r, &tmp("overlap", &two), 0x100000).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }
}

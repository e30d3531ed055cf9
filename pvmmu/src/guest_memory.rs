//! Guest RAM: anonymous `MAP_NORESERVE` mappings (a 64 GiB guest costs only what it
//! touches), laid out as the shared crate's memory map says, and typed access to
//! the ABI's structures in it.

use std::mem::{size_of, MaybeUninit};

use shared::boot::{self, MemRegion};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// RAM a user may ask for, as validated from `--mem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamSize(u64);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "impossible memory size {0} bytes: guest RAM must be between 16 MiB and 64 GiB (the 36-bit PAE limit), in whole pages"
    )]
    BadSize(u64),
    #[error("cannot map {size} MiB of guest RAM: {reason}")]
    Map { size: u64, reason: String },
    #[error("guest-physical range {gpa:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { gpa: u64, len: usize },
}

impl RamSize {
    /// Validates a size in bytes. Up to 64 GiB is accepted; RAM beyond
    /// [`boot::MAX_MEM`] (the 36-bit space less the MMIO hole) is not backed.
    pub fn new(bytes: u64) -> Result<Self, Error> {
        if !(boot::MIN_MEM..=boot::PHYS_LIMIT).contains(&bytes) || !bytes.is_multiple_of(4096) {
            return Err(Error::BadSize(bytes));
        }
        Ok(RamSize(bytes.min(boot::MAX_MEM)))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whether the request was cut to fit the 36-bit space.
    pub fn clipped(requested: u64) -> bool {
        requested > boot::MAX_MEM
    }

    pub fn regions(self) -> Vec<MemRegion> {
        let (r, n) = boot::ram_layout(self.0);
        r[..n].to_vec()
    }
}

/// Maps guest RAM.
pub fn create(size: RamSize) -> Result<GuestMemoryMmap, Error> {
    let ranges: Vec<(GuestAddress, usize)> =
        size.regions().iter().map(|r| (GuestAddress(r.base), r.len as usize)).collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::Map { size: size.bytes() >> 20, reason: e.to_string() })
}

/// Plain-data structures of the ABI: every bit pattern is a valid value.
///
/// # Safety
/// Implementors must be `repr(C)` structs of integers (and arrays of them) with no
/// padding that matters and no invariants.
pub unsafe trait Pod: Copy {}

// SAFETY: all these are repr(C) structs of integer fields (see `shared`).
unsafe impl Pod for shared::abi::HypercallBlock {}
// SAFETY: as above.
unsafe impl Pod for shared::abi::FaultReport {}
// SAFETY: as above.
unsafe impl Pod for shared::boot::BootInfo {}
// SAFETY: as above.
unsafe impl Pod for shared::counters::PerCpuCounters {}
// SAFETY: as above (the PV MMU's request structures).
unsafe impl Pod for shared::abi::pvmmu::MmuUpdate {}
// SAFETY: as above.
unsafe impl Pod for shared::abi::pvmmu::MmuextOp {}
// SAFETY: as above.
unsafe impl Pod for shared::abi::pvmmu::MulticallEntry {}
// SAFETY: a plain integer.
unsafe impl Pod for u64 {}
// SAFETY: a plain integer.
unsafe impl Pod for i32 {}

fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is plain data; its bytes may be read.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

/// Reads a structure of the ABI from guest memory.
pub fn read_obj<T: Pod>(mem: &GuestMemoryMmap, gpa: u64) -> Result<T, Error> {
    let mut v = MaybeUninit::<T>::zeroed();
    // SAFETY: zeroed memory is a valid T (Pod), so viewing it as bytes is sound.
    let buf = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, size_of::<T>()) };
    mem.read_slice(buf, GuestAddress(gpa)).map_err(|_| Error::OutOfRange { gpa, len: size_of::<T>() })?;
    // SAFETY: every byte was written and any bit pattern is a valid T.
    Ok(unsafe { v.assume_init() })
}

/// Writes a structure of the ABI into guest memory.
pub fn write_obj<T: Pod>(mem: &GuestMemoryMmap, gpa: u64, v: &T) -> Result<(), Error> {
    mem.write_slice(bytes_of(v), GuestAddress(gpa)).map_err(|_| Error::OutOfRange { gpa, len: size_of::<T>() })
}

/// Reads bytes from guest memory.
pub fn read_bytes(mem: &GuestMemoryMmap, gpa: u64, len: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(gpa)).map_err(|_| Error::OutOfRange { gpa, len })?;
    Ok(buf)
}

/// Writes bytes into guest memory.
pub fn write_bytes(mem: &GuestMemoryMmap, gpa: u64, data: &[u8]) -> Result<(), Error> {
    mem.write_slice(data, GuestAddress(gpa)).map_err(|_| Error::OutOfRange { gpa, len: data.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_pae_are_refused() {
        assert!(RamSize::new(8 << 20).is_err());
        assert!(RamSize::new((64 << 30) + 4096).is_err());
        assert!(RamSize::new((16 << 20) + 1).is_err());
        assert_eq!(RamSize::new(16 << 20).unwrap().bytes(), 16 << 20);
        assert_eq!(RamSize::new(64 << 30).unwrap().bytes(), boot::MAX_MEM);
    }

    #[test]
    fn a_64g_guest_maps_without_touching_its_ram() {
        let mem = create(RamSize::new(64 << 30).unwrap()).unwrap();
        let block = shared::abi::HypercallBlock { op: 5, rc: -1, args: [1, 2, 3, 4], ret: 9 };
        let top = boot::PHYS_LIMIT - 4096;
        write_obj(&mem, top, &block).unwrap();
        assert_eq!(read_obj::<shared::abi::HypercallBlock>(&mem, top).unwrap(), block);
        assert!(read_obj::<shared::abi::HypercallBlock>(&mem, boot::LOW_RAM_END).is_err(), "the MMIO hole is not RAM");
    }
}

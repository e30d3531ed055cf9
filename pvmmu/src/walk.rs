//! A walk of the guest's own PAE tables, as the CPU makes it for a supervisor
//! write with CR0.WP set: where the host is about to write on the guest's
//! behalf through a guest virtual address (the trap-back's stack frame), it
//! must find what the CPU would, write permission included. KVM_TRANSLATE
//! cannot say: on x86 its `writeable` is always 1.
//!
//! Each entry is read once, from guest memory, and the address the walk ends
//! at is the one written: nothing is fetched twice.

use shared::pae::{self, ADDR_MASK, P, PS, RW};
use vm_memory::GuestMemoryMmap;

use crate::guest_memory as memory;

/// Why a write at a guest virtual address would fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    #[error("{va:#x} is not mapped (no present {level} entry)")]
    NotPresent { va: u32, level: &'static str },
    #[error("{va:#x} is mapped read-only (its {level} entry has no RW)")]
    ReadOnly { va: u32, level: &'static str },
    #[error("the {level} entry of {va:#x} is outside guest RAM")]
    Unreadable { va: u32, level: &'static str },
}

fn entry(mem: &GuestMemoryMmap, gpa: u64, va: u32, level: &'static str) -> Result<u64, WalkError> {
    memory::read_obj::<u64>(mem, gpa).map_err(|_| WalkError::Unreadable { va, level })
}

/// The guest-physical address a supervisor access to `va` reaches under root
/// `cr3` (PAE: CR3 selects a 32-byte PDPT), or why it would fault; `write`:
/// a write, which needs RW at every level. A 2 MiB page (PS in the L2 entry)
/// ends the walk there.
pub fn gpa(mem: &GuestMemoryMmap, cr3: u64, va: u32, write: bool) -> Result<u64, WalkError> {
    let (i3, i2, i1) = pae::indexes(va);
    let l3e = entry(mem, (cr3 & 0xffff_ffe0) + 8 * i3 as u64, va, "L3")?;
    if l3e & P == 0 {
        return Err(WalkError::NotPresent { va, level: "L3" });
    }
    let l2e = entry(mem, (l3e & ADDR_MASK) + 8 * i2 as u64, va, "L2")?;
    if l2e & P == 0 {
        return Err(WalkError::NotPresent { va, level: "L2" });
    }
    if write && l2e & RW == 0 {
        return Err(WalkError::ReadOnly { va, level: "L2" });
    }
    if l2e & PS != 0 {
        return Ok((l2e & ADDR_MASK & !((2 << 20) - 1)) + (va as u64 & ((2 << 20) - 1)));
    }
    let l1e = entry(mem, (l2e & ADDR_MASK) + 8 * i1 as u64, va, "L1")?;
    if l1e & P == 0 {
        return Err(WalkError::NotPresent { va, level: "L1" });
    }
    if write && l1e & RW == 0 {
        return Err(WalkError::ReadOnly { va, level: "L1" });
    }
    Ok((l1e & ADDR_MASK) + (va as u64 & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
    }

    fn set(m: &GuestMemoryMmap, gpa: u64, v: u64) {
        memory::write_obj(m, gpa, &v).unwrap();
    }

    #[test]
    fn a_write_reaches_what_the_cpu_would_reach_or_faults_where_it_would() {
        let m = mem();
        // PDPT at 0x10020 (CR3 selects its 32 bytes), L2 at 0x11000, L1 at 0x12000.
        let cr3 = 0x10020;
        let va: u32 = 0xc040_3010; // L3 3, L2 2, L1 3
        set(&m, 0x10020 + 8 * 3, 0x11000 | P);
        set(&m, 0x11000 + 8 * 2, 0x12000 | P | RW);
        set(&m, 0x12000 + 8 * 3, 0x34000 | P | RW);
        assert_eq!(gpa(&m, cr3, va, true), Ok(0x34010));
        // The PDPT of CR3's own 32 bytes, not the frame's first.
        assert_eq!(gpa(&m, 0x10000, va, true), Err(WalkError::NotPresent { va, level: "L3" }));
        set(&m, 0x12000 + 8 * 3, 0x34000 | P);
        assert_eq!(gpa(&m, cr3, va, true), Err(WalkError::ReadOnly { va, level: "L1" }));
        assert_eq!(gpa(&m, cr3, va, false), Ok(0x34010), "a read needs no RW");
        set(&m, 0x11000 + 8 * 2, 0x12000 | P);
        assert_eq!(gpa(&m, cr3, va, true), Err(WalkError::ReadOnly { va, level: "L2" }));
        set(&m, 0x11000 + 8 * 2, 0x12000 | RW);
        assert_eq!(gpa(&m, cr3, va, true), Err(WalkError::NotPresent { va, level: "L2" }));
        // A 2 MiB page ends the walk at the L2.
        set(&m, 0x11000 + 8 * 2, 0x20_0000 | P | RW | PS);
        assert_eq!(gpa(&m, cr3, va, true), Ok(0x20_0000 + 0x3010));
        // Tables outside RAM cannot be walked.
        set(&m, 0x11000 + 8 * 2, 0x1_0000_0000 | P | RW);
        assert_eq!(gpa(&m, cr3, va, true), Err(WalkError::Unreadable { va, level: "L1" }));
    }
}

//! PAE pagetable entries (64-bit PTEs, PDEs and PDPTEs) as both sides read them.

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Entries in a PAE page table or page directory.
pub const ENTRIES: usize = 512;
/// Entries of a PAE PDPT (the L3) that exist.
pub const L3_ENTRIES: usize = 4;

pub const P: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const PWT: u64 = 1 << 3;
pub const PCD: u64 = 1 << 4;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
/// PAT in an L1 entry; PS (a 2 MiB page) in an L2 entry.
pub const PAT: u64 = 1 << 7;
pub const PS: u64 = 1 << 7;
pub const G: u64 = 1 << 8;
/// Bits 9..11 are free for software.
pub const AVAIL: u64 = 0b111 << 9;
pub const NX: u64 = 1 << 63;
/// The frame address bits of a PAE entry (36-bit physical addresses).
pub const ADDR_MASK: u64 = 0x0000_000f_ffff_f000;
/// What a PDPTE may hold besides the address: P, PWT, PCD and the free bits,
/// and A: the CPU sets it in a live PDPT here (QEMU's emulated SVM under the
/// nested KVM set it in the guest kernel's root as soon as CR3 was loaded), and
/// Xen accepts it too (it strips A from a 32-bit guest's L3 entries).
pub const L3_ALLOWED: u64 = P | PWT | PCD | A | AVAIL;

/// The frame number an entry points at.
pub const fn frame(entry: u64) -> u64 {
    (entry & ADDR_MASK) >> PAGE_SHIFT
}

/// Indexes of a 32-bit virtual address: (L3 index 0..4, L2 index, L1 index).
pub const fn indexes(va: u32) -> (usize, usize, usize) {
    ((va >> 30) as usize, ((va >> 21) & 0x1ff) as usize, ((va >> 12) & 0x1ff) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_split_a_va() {
        assert_eq!(indexes(0xc000_0000), (3, 0, 0));
        assert_eq!(indexes(0xffff_f000), (3, 511, 511));
        assert_eq!(indexes(0x0040_1000), (0, 2, 1));
        assert_eq!(frame(0x0000_000f_ffff_f067 | NX), 0xff_ffff);
    }
}

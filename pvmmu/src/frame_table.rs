//! The frame table: for every guest frame a type, a type count, a general reference
//! count and the pinned flag (Xen's `struct page_info`, cut down to what a 32-bit
//! PAE guest needs). A frame's type holds while its type count is above zero; at
//! zero it is `none` again (Xen keeps the stale type as a cache; nothing here needs
//! it). Pagetable-typed frames with a count are exactly the validated ones.
//!
//! The table is three flat arrays indexed by frame number, allocated zeroed, so a
//! 64 GiB guest costs host memory only for the frames it ever uses.

use serde::Serialize;
use shared::boot::{MemRegion, HOST_RESERVED_END, HOST_RESERVED_START};
use shared::pae::PAGE_SHIFT;

/// What a frame is used as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameType {
    /// Not referenced as writable or as a pagetable.
    None,
    /// Mapped read-write by at least one validated L1 entry.
    Writable,
    L1,
    L2,
    L3,
}

impl FrameType {
    const ALL: [FrameType; 5] = [FrameType::None, FrameType::Writable, FrameType::L1, FrameType::L2, FrameType::L3];

    pub fn is_pagetable(self) -> bool {
        matches!(self, FrameType::L1 | FrameType::L2 | FrameType::L3)
    }

    fn bits(self) -> u8 {
        self as u8
    }

    fn from_bits(b: u8) -> Self {
        Self::ALL[(b & TYPE_MASK) as usize]
    }
}

const TYPE_MASK: u8 = 0x7;
const PINNED: u8 = 0x8;
/// The frame's validation was cut at an exit's budget and is not finished
/// (Xen's PGT_partial): it has its type, but is no validated table yet.
const PARTIAL: u8 = 0x10;

/// A count would pass `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

pub struct FrameTable {
    /// Type in the low bits, [`PINNED`].
    info: Vec<u8>,
    type_count: Vec<u32>,
    refs: Vec<u32>,
    /// Frame ranges `[start, end)` of guest RAM.
    ram: Vec<(u64, u64)>,
    /// Frames that became or stopped being pagetables since the last
    /// [`FrameTable::take_changed`] (what the write protection must follow).
    changed: Vec<u64>,
}

impl FrameTable {
    /// A table covering every frame of `regions` (holes are not guest frames).
    pub fn new(regions: &[MemRegion]) -> Self {
        let ram: Vec<(u64, u64)> =
            regions.iter().map(|r| (r.base >> PAGE_SHIFT, r.end() >> PAGE_SHIFT)).filter(|(s, e)| s < e).collect();
        let frames = ram.iter().map(|&(_, e)| e).max().unwrap_or(0) as usize;
        FrameTable { info: vec![0; frames], type_count: vec![0; frames], refs: vec![0; frames], ram, changed: vec![] }
    }

    /// Frames the table covers (the highest RAM frame number plus one).
    pub fn len(&self) -> u64 {
        self.info.len() as u64
    }

    /// Whether the table covers no frame (a guest with no RAM map).
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }

    /// Whether `pfn` is guest RAM the guest may use (V6, V7): in a RAM region and not
    /// in the host's reserved frames.
    pub fn is_guest_frame(&self, pfn: u64) -> bool {
        let reserved = (HOST_RESERVED_START >> PAGE_SHIFT..HOST_RESERVED_END >> PAGE_SHIFT).contains(&pfn);
        !reserved && self.ram.iter().any(|&(s, e)| (s..e).contains(&pfn))
    }

    /// The frame's type (`none` whenever its type count is zero).
    pub fn ty(&self, pfn: u64) -> FrameType {
        self.info.get(pfn as usize).map_or(FrameType::None, |&b| FrameType::from_bits(b))
    }

    pub fn type_count(&self, pfn: u64) -> u32 {
        self.type_count.get(pfn as usize).copied().unwrap_or(0)
    }

    #[cfg(test)]
    /// General references: one per present entry of a validated table pointing at
    /// the frame, one per pin, one per vCPU using it as its root.
    pub fn refs(&self, pfn: u64) -> u32 {
        self.refs.get(pfn as usize).copied().unwrap_or(0)
    }

    pub fn pinned(&self, pfn: u64) -> bool {
        self.info.get(pfn as usize).is_some_and(|&b| b & PINNED != 0)
    }

    /// A validated pagetable of type `ty` (not one whose validation is unfinished).
    pub fn is_validated(&self, pfn: u64, ty: FrameType) -> bool {
        ty.is_pagetable() && self.ty(pfn) == ty && self.type_count(pfn) > 0 && !self.is_partial(pfn)
    }

    /// Whether the frame's validation was cut at an exit's budget and is not
    /// finished yet.
    pub fn is_partial(&self, pfn: u64) -> bool {
        self.info.get(pfn as usize).is_some_and(|&b| b & PARTIAL != 0)
    }

    pub(super) fn set_partial(&mut self, pfn: u64, on: bool) {
        if let Some(b) = self.info.get_mut(pfn as usize) {
            *b = if on { *b | PARTIAL } else { *b & !PARTIAL };
        }
    }

    // The mutators below take frames already checked with `is_guest_frame`; one
    // outside the table is a host bug, never a reason to panic on guest input.

    pub(super) fn set_pinned(&mut self, pfn: u64, on: bool) {
        if let Some(b) = self.info.get_mut(pfn as usize) {
            *b = if on { *b | PINNED } else { *b & !PINNED };
        }
    }

    pub(super) fn get_ref(&mut self, pfn: u64) -> Result<(), Overflow> {
        let r = self.refs.get_mut(pfn as usize).ok_or(Overflow)?;
        *r = r.checked_add(1).ok_or(Overflow)?;
        Ok(())
    }

    pub(super) fn put_ref(&mut self, pfn: u64) {
        let Some(r) = self.refs.get_mut(pfn as usize) else {
            debug_assert!(false, "frame {pfn:#x} outside the frame table");
            return;
        };
        debug_assert!(*r > 0, "general count of frame {pfn:#x} underflows");
        *r = r.saturating_sub(1);
    }

    /// Takes a type reference: the frame becomes `ty` if its count was zero. The
    /// caller has checked that the type agrees (T1).
    pub(super) fn inc_type(&mut self, pfn: u64, ty: FrameType) -> Result<u32, Overflow> {
        let i = pfn as usize;
        let c = self.type_count.get(i).ok_or(Overflow)?.checked_add(1).ok_or(Overflow)?;
        self.type_count[i] = c;
        if c == 1 {
            self.info[i] = (self.info[i] & PINNED) | ty.bits();
            if ty.is_pagetable() {
                self.changed.push(pfn);
            }
        }
        Ok(c)
    }

    /// Drops a type reference; returns the count left. At zero the type is `none`.
    pub(super) fn dec_type(&mut self, pfn: u64) -> u32 {
        let i = pfn as usize;
        if i >= self.type_count.len() {
            debug_assert!(false, "frame {pfn:#x} outside the frame table");
            return 0;
        }
        debug_assert!(self.type_count[i] > 0, "type count of frame {pfn:#x} underflows");
        let c = self.type_count[i].saturating_sub(1);
        self.type_count[i] = c;
        if c == 0 {
            if FrameType::from_bits(self.info[i]).is_pagetable() {
                self.changed.push(pfn);
            }
            self.info[i] &= PINNED;
        }
        c
    }

    /// The frames whose pagetable-ness may have changed since the last call, each
    /// with whether it is a validated pagetable now.
    pub fn take_changed(&mut self) -> Vec<(u64, bool)> {
        let mut pfns = std::mem::take(&mut self.changed);
        pfns.sort_unstable();
        pfns.dedup();
        pfns.into_iter().map(|p| (p, self.ty(p).is_pagetable() && self.type_count(p) > 0)).collect()
    }

    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Frames of each type (with a count) and how many are pinned.
    pub fn census(&self) -> FrameCensus {
        let mut c = FrameCensus::default();
        for (i, &b) in self.info.iter().enumerate() {
            if self.type_count[i] == 0 {
                continue;
            }
            match FrameType::from_bits(b) {
                FrameType::None => {}
                FrameType::Writable => c.writable += 1,
                FrameType::L1 => c.l1 += 1,
                FrameType::L2 => c.l2 += 1,
                FrameType::L3 => c.l3 += 1,
            }
            if b & PINNED != 0 {
                c.pinned += 1;
            }
            if b & PARTIAL != 0 {
                c.partial += 1;
            }
        }
        c
    }
}

/// Frames by type at a moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FrameCensus {
    pub writable: u64,
    pub l1: u64,
    pub l2: u64,
    pub l3: u64,
    pub pinned: u64,
    /// Of the tables, those whose validation was cut and not finished.
    #[serde(default)]
    pub partial: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> FrameTable {
        FrameTable::new(&[MemRegion { base: 0, len: 16 << 20 }, MemRegion { base: 4 << 30, len: 1 << 20 }])
    }

    #[test]
    fn guest_frames_are_ram_outside_the_reserved_pages() {
        let t = table();
        assert!(!t.is_guest_frame(0), "frame 0 is the host's");
        assert!(!t.is_guest_frame(6));
        assert!(t.is_guest_frame(7));
        assert!(t.is_guest_frame((16 << 20 >> 12) - 1));
        assert!(!t.is_guest_frame(16 << 20 >> 12), "the hole is not RAM");
        assert!(t.is_guest_frame(4 << 30 >> 12));
        assert!(!t.is_guest_frame(((4 << 30) + (1 << 20)) >> 12));
        assert!(!t.is_guest_frame(u64::MAX));
    }

    #[test]
    fn the_type_holds_while_counted_and_is_none_at_zero() {
        let mut t = table();
        assert_eq!(t.inc_type(100, FrameType::L1), Ok(1));
        assert_eq!(t.inc_type(100, FrameType::L1), Ok(2));
        t.set_pinned(100, true);
        assert_eq!((t.ty(100), t.type_count(100), t.pinned(100)), (FrameType::L1, 2, true));
        assert!(t.is_validated(100, FrameType::L1));
        assert_eq!(t.dec_type(100), 1);
        assert_eq!(t.dec_type(100), 0);
        assert_eq!(t.ty(100), FrameType::None);
        assert!(t.pinned(100), "the pin flag is not the type's");
        assert_eq!(t.census(), FrameCensus::default());
    }
}

//! The bitmaps of one per-CPU vmap block, as Linux 2.6.28's `vm_map_ram()` frontend kept them.
//!
//! A block covers up to 1024 pages, one bit each. Allocations are naturally aligned
//! power-of-two regions of bits that were never allocated before; a freed region becomes dirty
//! and is never handed out again (the owner frees the whole block once it is fully dirty).
//! Freed bits are also pending: their mappings are still in the page tables and TLBs until
//! `vm_unmap_aliases()` takes them, first with [`BlockMap::take_pending`] (before its TLB flush)
//! and then with [`BlockMap::take_flushing`] (after it).

/// Words per bitmap.
const WORDS: usize = 32;

/// Why [`BlockMap::free`] refused a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The region does not lie inside the block (or the order is larger than the block).
    OutOfRange,
    /// The offset is not a multiple of the region's size.
    Misaligned,
    /// Some bit of the region was never allocated.
    NotAllocated,
    /// Every bit was allocated, but some bit was already freed.
    AlreadyFree,
}

/// The state of one vmap block: which bits were ever allocated, which were freed (dirty), and
/// which freed bits still await, or are in the middle of, a TLB flush. No heap: four fixed
/// 1024-bit maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMap {
    bits: u32,
    /// Ever allocated.
    alloc: [u32; WORDS],
    /// Freed (a subset of `alloc`).
    dirty: [u32; WORDS],
    /// Freed and not yet taken by `take_pending` (a subset of `dirty`).
    pending: [u32; WORDS],
    /// Taken by `take_pending` and not yet by `take_flushing` (a subset of `dirty`).
    flushing: [u32; WORDS],
}

/// The mask of `count` bits (1..=32) starting at bit `lo` of a word.
fn mask(lo: u32, count: u32) -> u32 {
    if count >= 32 {
        u32::MAX
    } else {
        ((1u32 << count) - 1) << lo
    }
}

/// Calls `f(word_index, mask)` for each word covering bits `[start, end)`, stopping at the
/// first `false` it returns; returns whether it never did.
fn words_of(start: u32, end: u32, mut f: impl FnMut(usize, u32) -> bool) -> bool {
    let mut i = start;
    while i < end {
        let lo = i % 32;
        let count = core::cmp::min(32 - lo, end - i);
        if !f((i / 32) as usize, mask(lo, count)) {
            return false;
        }
        i += count;
    }
    true
}

fn popcount(map: &[u32; WORDS]) -> u32 {
    map.iter().map(|w| w.count_ones()).sum()
}

/// Calls `f(start, end)` for each maximal run of set bits below `bits`, ascending; returns how
/// many bits are set.
fn for_each_run(map: &[u32; WORDS], bits: u32, mut f: impl FnMut(u32, u32)) -> u32 {
    let bit = |i: u32| map[(i / 32) as usize] >> (i % 32);
    let mut total = 0;
    let mut i = 0;
    while i < bits {
        // Skip clear bits.
        let w = bit(i);
        if w == 0 {
            i = (i / 32 + 1) * 32;
            continue;
        }
        i += w.trailing_zeros();
        let start = i;
        // Skip set bits.
        while i < bits {
            let clear = !map[(i / 32) as usize] >> (i % 32);
            if clear == 0 {
                i = (i / 32 + 1) * 32;
            } else {
                i += clear.trailing_zeros();
                break;
            }
        }
        let end = core::cmp::min(i, bits);
        f(start, end);
        total += end - start;
    }
    total
}

impl BlockMap {
    /// The largest block, in bits.
    pub const MAX_BITS: u32 = 1024;

    /// A block of `bits` bits, none allocated. Panics unless `bits` is a power of two in
    /// `2..=1024`.
    pub const fn new(bits: u32) -> Self {
        assert!(
            bits.is_power_of_two() && bits >= 2 && bits <= Self::MAX_BITS,
            "vmspace: block size must be a power of two in 2..=1024"
        );
        BlockMap { bits, alloc: [0; WORDS], dirty: [0; WORDS], pending: [0; WORDS], flushing: [0; WORDS] }
    }

    /// The size of the block in bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The largest order a region can have in this block.
    fn max_order(&self) -> u32 {
        self.bits.trailing_zeros()
    }

    /// The lowest naturally aligned region of `2^order` bits none of which was ever allocated;
    /// marks it allocated and returns its first bit. `None` if there is no such region (always
    /// when `2^order` exceeds the block).
    pub fn alloc(&mut self, order: u32) -> Option<u32> {
        if order > self.max_order() {
            return None;
        }
        let size = 1u32 << order;
        let mut off = 0;
        while off < self.bits {
            if words_of(off, off + size, |w, m| self.alloc[w] & m == 0) {
                words_of(off, off + size, |w, m| {
                    self.alloc[w] |= m;
                    true
                });
                return Some(off);
            }
            off += size;
        }
        None
    }

    /// Frees the live region `[off, off + 2^order)`: its bits become dirty (never to be
    /// allocated again) and pending. A region inside a larger live allocation may be freed on
    /// its own.
    ///
    /// Errors, checked in this order: [`FreeError::OutOfRange`] if `2^order` exceeds the block
    /// or `off` is not inside it, [`FreeError::Misaligned`] if `off` is not a multiple of
    /// `2^order`, [`FreeError::NotAllocated`] if some bit was never allocated,
    /// [`FreeError::AlreadyFree`] if some bit is already dirty. Nothing changes on an error.
    pub fn free(&mut self, off: u32, order: u32) -> Result<(), FreeError> {
        if order > self.max_order() || off >= self.bits {
            return Err(FreeError::OutOfRange);
        }
        let size = 1u32 << order;
        if off & (size - 1) != 0 {
            return Err(FreeError::Misaligned);
        }
        // Aligned, inside, and no larger than the block (which is a multiple of it): it fits.
        let end = off + size;
        if !words_of(off, end, |w, m| self.alloc[w] & m == m) {
            return Err(FreeError::NotAllocated);
        }
        if !words_of(off, end, |w, m| self.dirty[w] & m == 0) {
            return Err(FreeError::AlreadyFree);
        }
        words_of(off, end, |w, m| {
            self.dirty[w] |= m;
            self.pending[w] |= m;
            true
        });
        Ok(())
    }

    /// How many bits were never allocated.
    pub fn free_bits(&self) -> u32 {
        self.bits - popcount(&self.alloc)
    }

    /// How many bits were freed.
    pub fn dirty_bits(&self) -> u32 {
        popcount(&self.dirty)
    }

    /// How many bits are allocated and not freed.
    pub fn live_bits(&self) -> u32 {
        popcount(&self.alloc) - popcount(&self.dirty)
    }

    /// Whether every bit was freed (the block can go).
    pub fn is_fully_dirty(&self) -> bool {
        self.dirty_bits() == self.bits
    }

    /// Linux's `purge_fragmented_blocks()` test: nothing live, something dirty, and not fully
    /// dirty. Such a block maps nothing and still has room, yet would only be freed once fully
    /// dirty; a purge frees it whole instead.
    pub fn is_fragmented(&self) -> bool {
        let dirty = self.dirty_bits();
        self.live_bits() == 0 && dirty > 0 && dirty < self.bits
    }

    /// Whether some freed bits have not been taken by [`BlockMap::take_pending`] yet.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|&w| w != 0)
    }

    /// Whether some bits were taken by [`BlockMap::take_pending`] and not yet by
    /// [`BlockMap::take_flushing`].
    pub fn has_flushing(&self) -> bool {
        self.flushing.iter().any(|&w| w != 0)
    }

    /// Calls `f(start, end)` for each maximal run `[start, end)` of pending bits, ascending, and
    /// moves them to the flushing set; returns how many bits that was.
    pub fn take_pending(&mut self, f: impl FnMut(u32, u32)) -> u32 {
        let n = for_each_run(&self.pending, self.bits, f);
        for (fl, p) in self.flushing.iter_mut().zip(self.pending.iter_mut()) {
            *fl |= *p;
            *p = 0;
        }
        n
    }

    /// Calls `f(start, end)` for each maximal run `[start, end)` of the flushing set, ascending,
    /// and empties it; returns how many bits that was. If [`BlockMap::take_pending`] ran more than
    /// once since the last call, the runs are those of everything it took.
    pub fn take_flushing(&mut self, f: impl FnMut(u32, u32)) -> u32 {
        let n = for_each_run(&self.flushing, self.bits, f);
        self.flushing = [0; WORDS];
        n
    }

    /// Whether bit `i` is live (allocated and not freed); `false` for bits outside the block.
    pub fn is_live(&self, i: u32) -> bool {
        if i >= self.bits {
            return false;
        }
        let (w, b) = ((i / 32) as usize, i % 32);
        (self.alloc[w] & !self.dirty[w]) >> b & 1 != 0
    }
}

#[cfg(test)]
mod tests;

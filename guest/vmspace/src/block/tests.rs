use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bit {
    Free,
    Live,
    Dirty,
}

/// A per-bit model of a block.
struct Model {
    bits: Vec<Bit>,
    pending: Vec<bool>,
    flushing: Vec<bool>,
}

impl Model {
    fn new(n: u32) -> Self {
        let n = n as usize;
        Model { bits: vec![Bit::Free; n], pending: vec![false; n], flushing: vec![false; n] }
    }

    fn n(&self) -> u32 {
        self.bits.len() as u32
    }

    fn alloc(&mut self, order: u32) -> Option<u32> {
        if order >= 32 || (1u64 << order) > u64::from(self.n()) {
            return None;
        }
        let size = 1usize << order;
        let off =
            (0..self.bits.len()).step_by(size).find(|&o| self.bits[o..o + size].iter().all(|&b| b == Bit::Free))?;
        self.bits[off..off + size].fill(Bit::Live);
        Some(off as u32)
    }

    fn free(&mut self, off: u32, order: u32) -> Result<(), FreeError> {
        if order >= 32 || (1u64 << order) > u64::from(self.n()) || off >= self.n() {
            return Err(FreeError::OutOfRange);
        }
        let size = 1u32 << order;
        if !off.is_multiple_of(size) {
            return Err(FreeError::Misaligned);
        }
        let r = off as usize..(off + size) as usize;
        if self.bits[r.clone()].contains(&Bit::Free) {
            return Err(FreeError::NotAllocated);
        }
        if self.bits[r.clone()].contains(&Bit::Dirty) {
            return Err(FreeError::AlreadyFree);
        }
        self.bits[r.clone()].fill(Bit::Dirty);
        self.pending[r].fill(true);
        Ok(())
    }

    fn count(&self, b: Bit) -> u32 {
        self.bits.iter().filter(|&&x| x == b).count() as u32
    }
}

/// Maximal runs of `true`, ascending.
fn runs(v: &[bool]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if v[i] {
            let s = i;
            while i < v.len() && v[i] {
                i += 1;
            }
            out.push((s as u32, i as u32));
        } else {
            i += 1;
        }
    }
    out
}

fn take(f: impl FnOnce(&mut dyn FnMut(u32, u32)) -> u32) -> (Vec<(u32, u32)>, u32) {
    let mut v = Vec::new();
    let n = f(&mut |s, e| v.push((s, e)));
    (v, n)
}

fn take_pending(b: &mut BlockMap) -> (Vec<(u32, u32)>, u32) {
    take(|f| b.take_pending(f))
}

fn take_flushing(b: &mut BlockMap) -> (Vec<(u32, u32)>, u32) {
    take(|f| b.take_flushing(f))
}

fn agree(b: &BlockMap, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(b.bits(), m.n());
    prop_assert_eq!(b.free_bits(), m.count(Bit::Free));
    prop_assert_eq!(b.live_bits(), m.count(Bit::Live));
    prop_assert_eq!(b.dirty_bits(), m.count(Bit::Dirty));
    prop_assert_eq!(b.is_fully_dirty(), m.count(Bit::Dirty) == m.n());
    let (live, dirty) = (m.count(Bit::Live), m.count(Bit::Dirty));
    prop_assert_eq!(b.is_fragmented(), live == 0 && dirty > 0 && dirty < m.n());
    prop_assert_eq!(b.has_pending(), m.pending.contains(&true));
    prop_assert_eq!(b.has_flushing(), m.flushing.contains(&true));
    for i in 0..m.n() + 40 {
        prop_assert_eq!(b.is_live(i), m.bits.get(i as usize) == Some(&Bit::Live), "bit {}", i);
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32),
    Free(u32, u32),
    /// Free (part of) a region this run allocated: (which, sub-order reduction, which piece).
    FreeOwn(usize, u32, u32),
    TakePending,
    TakeFlushing,
    /// take_pending then take_flushing, as vm_unmap_aliases() does around its flush.
    TakeBoth,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![4 => 0u32..=4, 1 => 0u32..=11, 1 => Just(40u32)].prop_map(Op::Alloc),
        2 => (0u32..1100, 0u32..=11).prop_map(|(o, r)| Op::Free(o, r)),
        6 => (any::<usize>(), 0u32..3, any::<u32>()).prop_map(|(i, d, k)| Op::FreeOwn(i, d, k)),
        1 => Just(Op::TakePending),
        1 => Just(Op::TakeFlushing),
        1 => Just(Op::TakeBoth),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn block_matches_model(log in 1u32..=10, ops in proptest::collection::vec(op(), 1..200)) {
        let n = 1u32 << log;
        let mut b = BlockMap::new(n);
        let mut m = Model::new(n);
        let mut allocated: Vec<(u32, u32)> = Vec::new();
        agree(&b, &m)?;
        for op in ops {
            match op {
                Op::Alloc(order) => {
                    let want = m.alloc(order);
                    prop_assert_eq!(b.alloc(order), want);
                    if let Some(off) = want {
                        allocated.push((off, order));
                    }
                }
                Op::Free(off, order) => {
                    prop_assert_eq!(b.free(off, order), m.free(off, order));
                }
                Op::FreeOwn(i, d, k) => {
                    if allocated.is_empty() {
                        continue;
                    }
                    let (off, order) = allocated[i % allocated.len()];
                    let sub = order.saturating_sub(d);
                    let piece = k % (1 << (order - sub));
                    let off = off + (piece << sub);
                    prop_assert_eq!(b.free(off, sub), m.free(off, sub));
                }
                Op::TakePending => {
                    let want = runs(&m.pending);
                    let (got, count) = take_pending(&mut b);
                    prop_assert_eq!(count, want.iter().map(|r| r.1 - r.0).sum::<u32>());
                    prop_assert_eq!(got, want);
                    for i in 0..m.pending.len() {
                        m.flushing[i] |= m.pending[i];
                        m.pending[i] = false;
                    }
                }
                Op::TakeFlushing => {
                    let want = runs(&m.flushing);
                    let (got, count) = take_flushing(&mut b);
                    prop_assert_eq!(count, want.iter().map(|r| r.1 - r.0).sum::<u32>());
                    prop_assert_eq!(got, want);
                    m.flushing.fill(false);
                }
                Op::TakeBoth => {
                    let was_flushing = m.flushing.contains(&true);
                    let want = runs(&m.pending);
                    let (pending, pcount) = take_pending(&mut b);
                    prop_assert_eq!(&pending, &want);
                    for w in pending.windows(2) {
                        prop_assert!(w[0].0 < w[0].1 && w[0].1 < w[1].0, "runs not maximal/ascending: {:?}", pending);
                    }
                    for i in 0..m.pending.len() {
                        m.flushing[i] |= m.pending[i];
                        m.pending[i] = false;
                    }
                    let (flushing, fcount) = take_flushing(&mut b);
                    prop_assert_eq!(&flushing, &runs(&m.flushing));
                    if !was_flushing {
                        prop_assert_eq!(&flushing, &pending);
                        prop_assert_eq!(fcount, pcount);
                    }
                    m.flushing.fill(false);
                }
            }
            agree(&b, &m)?;
        }
    }
}

#[test]
fn allocations_are_aligned_and_never_reused() {
    let mut b = BlockMap::new(64);
    assert_eq!(b.alloc(0), Some(0));
    assert_eq!(b.alloc(2), Some(4));
    assert_eq!(b.alloc(0), Some(1));
    assert_eq!(b.alloc(1), Some(2));
    assert_eq!(b.alloc(4), Some(16));
    assert_eq!(b.alloc(3), Some(8));
    assert_eq!(b.free(4, 2), Ok(()));
    assert_eq!(b.free(4, 2), Err(FreeError::AlreadyFree));
    // The freed bits stay dirty: the next order-2 region is at 32.
    assert_eq!(b.alloc(2), Some(32));
    assert_eq!(b.alloc(6), None);
    assert_eq!(b.alloc(7), None);
    assert_eq!(b.alloc(31), None);
    assert_eq!(b.alloc(32), None);
    assert_eq!(b.alloc(u32::MAX), None);
    assert_eq!((b.free_bits(), b.live_bits(), b.dirty_bits()), (64 - 36, 32, 4));
}

#[test]
fn free_errors() {
    let mut b = BlockMap::new(1024);
    assert_eq!(b.alloc(3), Some(0));
    assert_eq!(b.free(1024, 0), Err(FreeError::OutOfRange));
    assert_eq!(b.free(0, 11), Err(FreeError::OutOfRange));
    assert_eq!(b.free(0, u32::MAX), Err(FreeError::OutOfRange));
    assert_eq!(b.free(2, 2), Err(FreeError::Misaligned));
    assert_eq!(b.free(0, 4), Err(FreeError::NotAllocated));
    assert_eq!(b.free(8, 0), Err(FreeError::NotAllocated));
    // Part of a live allocation may go on its own.
    assert_eq!(b.free(4, 2), Ok(()));
    assert_eq!(b.free(0, 3), Err(FreeError::AlreadyFree));
    assert_eq!(b.free(0, 2), Ok(()));
    assert!(b.is_fragmented());
    assert!(!b.is_fully_dirty());
}

#[test]
fn runs_cross_word_boundaries_and_two_stages() {
    let mut b = BlockMap::new(1024);
    assert_eq!(b.alloc(10), Some(0));
    // Free 16..48 in two pieces, then 64..128, then 1023.
    b.free(16, 4).unwrap();
    b.free(32, 4).unwrap();
    b.free(64, 6).unwrap();
    b.free(1023, 0).unwrap();
    assert!(b.has_pending());
    let (runs, n) = take_pending(&mut b);
    assert_eq!(runs, [(16, 48), (64, 128), (1023, 1024)]);
    assert_eq!(n, 32 + 64 + 1);
    assert!(!b.has_pending() && b.has_flushing());
    // Freed between the two stages: pending again, not part of this flush.
    b.free(48, 4).unwrap();
    let (runs, n) = take_flushing(&mut b);
    assert_eq!(runs, [(16, 48), (64, 128), (1023, 1024)]);
    assert_eq!(n, 97);
    assert!(!b.has_flushing());
    assert_eq!(take_flushing(&mut b), (vec![], 0));
    assert_eq!(take_pending(&mut b), (vec![(48, 64)], 16));
    // Everything dirty; what is pending is what was not taken before.
    for off in 0..1024 {
        let _ = b.free(off, 0);
    }
    assert!(b.is_fully_dirty());
    assert!(!b.is_fragmented());
    assert_eq!(b.live_bits(), 0);
    let (runs, n) = take_pending(&mut b);
    assert_eq!((runs, n), (vec![(0, 16), (128, 1023)], 16 + 895));
    // 48..64 was taken by the previous take_pending and not flushed yet: it joins this flush.
    let (runs, n) = take_flushing(&mut b);
    assert_eq!((runs, n), (vec![(0, 16), (48, 64), (128, 1023)], 16 + 16 + 895));
}

#[test]
fn fresh_block_is_not_fragmented() {
    let b = BlockMap::new(2);
    assert!(!b.is_fragmented());
    assert!(!b.is_fully_dirty());
    assert_eq!(b.free_bits(), 2);
    const B: BlockMap = BlockMap::new(BlockMap::MAX_BITS);
    assert_eq!(B.bits(), 1024);
}

#[test]
#[should_panic(expected = "power of two")]
fn new_rejects_non_power_of_two() {
    let _ = BlockMap::new(48);
}

#[test]
#[should_panic(expected = "power of two")]
fn new_rejects_too_large() {
    let _ = BlockMap::new(2048);
}

#[test]
#[should_panic(expected = "power of two")]
fn new_rejects_one() {
    let _ = BlockMap::new(1);
}

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

/// The model's view of one area, keyed by its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct M {
    end: u32,
    id: AreaId,
    state: AreaState,
    data: u32,
    link: u32,
}

/// First fit by brute force over the model's gaps (in u64, so nothing overflows).
fn model_fit(m: &BTreeMap<u32, M>, size: u32, align: u32, vstart: u32, vend: u32) -> Option<u32> {
    let (size, align, vstart, vend) = (u64::from(size), u64::from(align), u64::from(vstart), u64::from(vend));
    let mut gap_start = 0u64;
    let bounds = m.iter().map(|(&s, a)| (u64::from(s), u64::from(a.end))).chain([(1u64 << 32, 1u64 << 32)]);
    for (s, e) in bounds {
        let lo = gap_start.max(vstart);
        let a = lo.div_ceil(align) * align;
        let hi = s.min(vend);
        if a + size <= hi {
            return Some(a as u32);
        }
        gap_start = e;
    }
    None
}

fn model_find(m: &BTreeMap<u32, M>, addr: u32) -> Option<AreaId> {
    m.range(..=addr).next_back().filter(|(_, a)| a.end > addr).map(|(_, a)| a.id)
}

/// check() passes, and the areas walked by first/next (and back by prev) equal the model.
fn agree(t: &AreaTree, m: &BTreeMap<u32, M>) -> Result<(), TestCaseError> {
    prop_assert_eq!(t.check(), Ok(()));
    prop_assert_eq!(t.len() as usize, m.len());
    prop_assert_eq!(t.is_empty(), m.is_empty());
    let mut walked = Vec::new();
    let mut cur = t.first();
    let mut last = None;
    while let Some(id) = cur {
        prop_assert_eq!(t.prev(id), last);
        let a = t.area(id);
        walked.push((a.start, M { end: a.end, id, state: a.state, data: a.data, link: a.link }));
        last = Some(id);
        cur = t.next(id);
    }
    let want: Vec<(u32, M)> = m.iter().map(|(&s, &a)| (s, a)).collect();
    prop_assert_eq!(walked, want);
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: u32, align_log: u32, vstart: u32, vend: u32 },
    Insert { start: u32, len: u32 },
    Remove { pick: usize },
    Find { addr: u32 },
    Set { pick: usize, state: u8, data: u32, link: u32 },
    Grow { nodes: usize },
}

/// Mostly a small address space, sometimes the very top (to reach the overflow paths).
fn addr() -> impl Strategy<Value = u32> {
    prop_oneof![9 => 0u32..(1 << 16) + 600, 1 => (u32::MAX - 3000)..=u32::MAX]
}

fn op() -> impl Strategy<Value = Op> {
    let vend =
        prop_oneof![8 => (0u32..=1 << 16).prop_map(Some), 1 => Just(None), 1 => addr().prop_map(|a| Some(a ^ 1))];
    prop_oneof![
        6 => (1u32..=512, 0u32..=12, addr(), vend).prop_map(|(size, align_log, vstart, w)| {
            // w: a window size (the usual case), "to the top", or an unrelated end (maybe below vstart).
            let vend = match w {
                Some(w) if w & 1 == 0 => vstart.saturating_add(w),
                Some(w) => w,
                None => u32::MAX,
            };
            Op::Alloc { size, align_log, vstart, vend }
        }),
        2 => (addr(), 1u32..=600).prop_map(|(start, len)| Op::Insert { start, len }),
        3 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        2 => addr().prop_map(|addr| Op::Find { addr }),
        1 => (any::<usize>(), 0u8..3, any::<u32>(), any::<u32>())
            .prop_map(|(pick, state, data, link)| Op::Set { pick, state, data, link }),
        1 => (0usize..=6).prop_map(|nodes| Op::Grow { nodes }),
    ]
}

fn pick(m: &BTreeMap<u32, M>, pick: usize) -> Option<u32> {
    (!m.is_empty()).then(|| *m.keys().nth(pick % m.len()).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_model(cap in 0usize..=48, ops in proptest::collection::vec(op(), 1..300)) {
        let mut storage = vec![Node::EMPTY; cap];
        let mut cap = cap;
        let mut t = AreaTree::new(&mut storage);
        prop_assert_eq!(t.capacity() as usize, cap);
        let mut m: BTreeMap<u32, M> = BTreeMap::new();
        agree(&t, &m)?;
        for op in ops {
            match op {
                Op::Alloc { size, align_log, vstart, vend } => {
                    let align = 1u32 << align_log;
                    let want = if m.len() == cap {
                        Err(AllocError::NoNodes)
                    } else {
                        model_fit(&m, size, align, vstart, vend).ok_or(AllocError::NoSpace)
                    };
                    let got = t.alloc(size, align, vstart, vend);
                    prop_assert_eq!(got.map(|f| f.start), want);
                    if let Ok(f) = got {
                        // The descent (at most a red-black tree's height, 2 log2(n + 1))
                        // plus the walk along the list, which meets each area once.
                        let n = m.len() as u32;
                        let height = 2 * (u32::BITS - (n + 1).leading_zeros());
                        prop_assert!(f.visited <= height + n, "visited {} of {} areas", f.visited, n);
                        let a = t.area(f.id);
                        prop_assert_eq!(a, Area { start: f.start, end: f.start + size, state: AreaState::Busy, data: 0, link: NIL });
                        m.insert(f.start, M { end: f.start + size, id: f.id, state: AreaState::Busy, data: 0, link: NIL });
                    }
                }
                Op::Insert { start, len } => {
                    let end = start.saturating_add(len);
                    if end == start {
                        continue;
                    }
                    let overlaps = m.range(..end).next_back().is_some_and(|(_, a)| a.end > start);
                    let want = if m.len() == cap {
                        Err(AllocError::NoNodes)
                    } else if overlaps {
                        Err(AllocError::NoSpace)
                    } else {
                        Ok(())
                    };
                    let got = t.insert(start, end);
                    prop_assert_eq!(got.map(|_| ()), want);
                    if let Ok(id) = got {
                        m.insert(start, M { end, id, state: AreaState::Busy, data: 0, link: NIL });
                    }
                }
                Op::Remove { pick: p } => {
                    if let Some(s) = pick(&m, p) {
                        let id = m.remove(&s).unwrap().id;
                        prop_assert_eq!(t.find_start(s), Some(id));
                        t.remove(id);
                        prop_assert_eq!(t.find_start(s), None);
                    }
                }
                Op::Find { addr } => {
                    prop_assert_eq!(t.find(addr), model_find(&m, addr));
                    prop_assert_eq!(t.find_start(addr), m.get(&addr).map(|a| a.id));
                }
                Op::Set { pick: p, state, data, link } => {
                    if let Some(s) = pick(&m, p) {
                        let a = m.get_mut(&s).unwrap();
                        a.state = [AreaState::Busy, AreaState::Lazy, AreaState::Purging][state as usize];
                        a.data = data;
                        a.link = link;
                        t.set_state(a.id, a.state);
                        t.set_data(a.id, data);
                        t.set_link(a.id, link);
                    }
                }
                Op::Grow { nodes } => {
                    let ids: Vec<AreaId> = m.values().map(|a| a.id).collect();
                    let more = vec![Node::EMPTY; nodes].leak();
                    let want = if t.chunks() == MAX_CHUNKS { Err(GrowError::Full) } else { Ok(()) };
                    prop_assert_eq!(t.grow(more), want);
                    if want.is_ok() {
                        cap += nodes;
                    }
                    prop_assert_eq!(t.capacity() as usize, cap);
                    // No area moved.
                    prop_assert_eq!(m.values().map(|a| a.id).collect::<Vec<_>>(), ids);
                }
            }
            agree(&t, &m)?;
        }
        // Empty it again, in an order mixing low and high areas.
        while let Some(s) = pick(&m, m.len() / 2) {
            let id = m.remove(&s).unwrap().id;
            t.remove(id);
            agree(&t, &m)?;
        }
    }
}

#[test]
fn alignment_leaves_gaps_that_small_allocs_fill() {
    let mut storage = [Node::EMPTY; 16];
    let mut t = AreaTree::new(&mut storage);
    let a = t.alloc(1, 1, 0, 1 << 20).unwrap();
    assert_eq!(a.start, 0);
    // Aligned to 4096: skips 1..4096.
    let b = t.alloc(16, 4096, 0, 1 << 20).unwrap();
    assert_eq!(b.start, 4096);
    // Aligned past b: 4096 + 16 rounds up to 8192.
    let c = t.alloc(8, 4096, 0, 1 << 20).unwrap();
    assert_eq!(c.start, 8192);
    // Small ones fill the gaps, lowest first.
    assert_eq!(t.alloc(100, 1, 0, 1 << 20).unwrap().start, 1);
    assert_eq!(t.alloc(64, 64, 0, 1 << 20).unwrap().start, 128);
    // 4096 - 192 = 3904 bytes left before b: too small for 4000, which goes after b.
    assert_eq!(t.alloc(4000, 1, 0, 1 << 20).unwrap().start, 4096 + 16);
    assert_eq!(t.alloc(3904, 1, 0, 1 << 20).unwrap().start, 192);
    // The gap 101..128 still takes a 27-byte area; a 28-byte one goes to the gap before c.
    assert_eq!(t.alloc(28, 1, 0, 1 << 20).unwrap().start, 8112);
    assert_eq!(t.alloc(27, 1, 0, 1 << 20).unwrap().start, 101);
    // vstart past everything, and a window too small after alignment.
    assert_eq!(t.alloc(8, 4096, 9000, 1 << 20).unwrap().start, 12288);
    assert_eq!(t.alloc(8, 4096, 12289, 16384 + 7), Err(AllocError::NoSpace));
    assert_eq!(t.check(), Ok(()));
    assert_eq!(t.len(), 10);
}

#[test]
fn top_of_the_address_space() {
    let mut storage = [Node::EMPTY; 4];
    let mut t = AreaTree::new(&mut storage);
    // Aligning up from near the top overflows: no space rather than a wrap.
    assert_eq!(t.alloc(1, 0x1000, u32::MAX - 0x10, u32::MAX), Err(AllocError::NoSpace));
    let f = t.alloc(1, 1, u32::MAX - 1, u32::MAX).unwrap();
    assert_eq!(t.area(f.id).end, u32::MAX);
    // Re-aligning past an area that ends at the top overflows too.
    assert_eq!(t.alloc(1, 2, u32::MAX - 1, u32::MAX), Err(AllocError::NoSpace));
    assert_eq!(
        t.alloc(1, 0x1000, u32::MAX - 0x2000, u32::MAX),
        Ok(Fit { id: 1, start: u32::MAX - 0x1fff, visited: 1 })
    );
    // Past the area just made, the next aligned candidate does not fit below the top.
    assert_eq!(t.alloc(0x1000, 0x1000, u32::MAX - 0x1fff, u32::MAX), Err(AllocError::NoSpace));
    assert_eq!(t.find(u32::MAX - 1), Some(f.id));
    assert_eq!(t.find(u32::MAX), None);
    assert_eq!(t.check(), Ok(()));
}

fn busy_list_cost(n: u32) -> Fit {
    let mut storage = vec![Node::EMPTY; n as usize + 1];
    let mut t = AreaTree::new(&mut storage);
    for i in 0..n {
        t.insert(i, i + 1).unwrap();
    }
    assert_eq!(t.check(), Ok(()));
    // Nothing fits below n: no gap at all.
    assert_eq!(t.alloc(1, 1, 0, n), Err(AllocError::NoSpace));
    let f = t.alloc(1, 1, 0, 2 * n).unwrap();
    assert_eq!(f.start, n);
    assert_eq!(t.check(), Ok(()));
    // The arena is full now.
    assert_eq!(t.alloc(1, 1, 0, 2 * n), Err(AllocError::NoNodes));
    assert_eq!(t.insert(3 * n, 3 * n + 1), Err(AllocError::NoNodes));
    f
}

#[test]
fn long_busy_list_is_walked() {
    let small = busy_list_cost(100);
    let big = busy_list_cost(10_000);
    // The descent is O(log n), the walk along the busy list O(n).
    assert!((100..100 + 16).contains(&small.visited), "{small:?}");
    assert!((10_000..10_000 + 32).contains(&big.visited), "{big:?}");
    assert!(big.visited > 50 * small.visited);
}

#[test]
fn vstart_skips_the_busy_prefix() {
    let mut storage = vec![Node::EMPTY; 1001];
    let mut t = AreaTree::new(&mut storage);
    for i in 0..1000 {
        t.insert(i, i + 1).unwrap();
    }
    let f = t.alloc(1, 1, 990, 2000).unwrap();
    assert_eq!(f.start, 1000);
    // The descent lands on area 990: about log2(1000) nodes plus the ten after it.
    assert!(f.visited < 30, "{f:?}");
}

#[test]
fn remove_with_two_children_keeps_ids() {
    let mut storage = [Node::EMPTY; 64];
    let mut t = AreaTree::new(&mut storage);
    let ids: Vec<AreaId> = (0..64).map(|i| t.insert(i * 10, i * 10 + 5).unwrap()).collect();
    let mut live: Vec<(AreaId, u32)> = ids.iter().enumerate().map(|(i, &id)| (id, i as u32 * 10)).collect();
    // Remove nodes with two children (the root, then any) until none is left with two.
    let mut removed_two = 0;
    loop {
        let victim = live.iter().position(|&(id, _)| {
            let n = t.n(id);
            n.left != NIL && n.right != NIL
        });
        let Some(k) = victim else { break };
        let (id, start) = live.remove(k);
        t.remove(id);
        removed_two += 1;
        assert_eq!(t.check(), Ok(()));
        assert_eq!(t.find(start), None);
        for &(id, start) in &live {
            assert_eq!(t.area(id).start, start);
            assert_eq!(t.find(start + 4), Some(id));
        }
    }
    assert!(removed_two >= 20, "{removed_two}");
    // A freed id is reused by the next insert.
    let freed: Vec<AreaId> = ids.iter().copied().filter(|id| !live.iter().any(|l| l.0 == *id)).collect();
    let id = t.insert(10_000, 10_001).unwrap();
    assert!(freed.contains(&id));
    assert_eq!(t.check(), Ok(()));
}

#[test]
fn remove_two_children_both_successor_shapes() {
    // Successor is the right child itself.
    let mut storage = [Node::EMPTY; 8];
    let mut t = AreaTree::new(&mut storage);
    let b = t.insert(20, 30).unwrap();
    let a = t.insert(10, 20).unwrap();
    let c = t.insert(30, 40).unwrap();
    assert_eq!(t.root, b);
    assert_eq!(t.n(b).right, t.n(b).next);
    t.remove(b);
    assert_eq!(t.check(), Ok(()));
    assert_eq!((t.area(a).start, t.area(c).start), (10, 30));
    assert_eq!(t.root, c);

    // Successor deeper in the right subtree.
    let mut storage = [Node::EMPTY; 8];
    let mut t = AreaTree::new(&mut storage);
    let ids: Vec<AreaId> = [40, 20, 60, 10, 50, 70, 55].iter().map(|&s| t.insert(s, s + 1).unwrap()).collect();
    assert_eq!(t.root, ids[0]);
    assert_eq!(t.n(ids[0]).next, ids[1 + 3]); // 50, the leftmost of the right subtree
    assert_ne!(t.n(ids[0]).right, t.n(ids[0]).next);
    t.remove(ids[0]);
    assert_eq!(t.check(), Ok(()));
    assert_eq!(t.root, ids[4]);
    for (&id, s) in ids[1..].iter().zip([20, 60, 10, 50, 70, 55]) {
        assert_eq!(t.area(id).start, s);
    }
}

#[test]
fn empty_arena() {
    let mut t = AreaTree::new(&mut []);
    assert_eq!(t.capacity(), 0);
    assert_eq!(t.alloc(1, 1, 0, 100), Err(AllocError::NoNodes));
    assert_eq!(t.insert(0, 1), Err(AllocError::NoNodes));
    assert_eq!(t.first(), None);
    assert_eq!(t.find(0), None);
    assert_eq!(t.check(), Ok(()));
}

#[test]
fn a_full_arena_grows_and_keeps_its_areas() {
    let mut first = [Node::EMPTY; 2];
    let mut t = AreaTree::new(&mut first);
    let a = t.alloc(10, 1, 0, 1000).unwrap();
    let b = t.alloc(10, 1, 0, 1000).unwrap();
    assert_eq!(t.alloc(10, 1, 0, 1000), Err(AllocError::NoNodes));
    let mut more = [Node::EMPTY; 3];
    t.grow(&mut more).unwrap();
    assert_eq!((t.capacity(), t.chunks()), (5, 2));
    let c = t.alloc(10, 1, 0, 1000).unwrap();
    assert_eq!(c.start, 20);
    assert_eq!((t.area(a.id).start, t.area(b.id).start), (0, 10));
    t.remove(a.id);
    assert_eq!(t.insert(0, 5).map(|id| t.area(id).end), Ok(5));
    assert_eq!(t.check(), Ok(()));
    // A node of the new slice is found by address like any other.
    assert_eq!(t.find(25), Some(c.id));
}

#[test]
fn grow_refuses_beyond_its_limits() {
    let mut t = AreaTree::new(&mut []);
    for _ in 1..MAX_CHUNKS {
        t.grow(&mut []).unwrap();
    }
    assert_eq!(t.grow(&mut []), Err(GrowError::Full));
    let mut t = AreaTree::new(&mut []);
    let big = vec![Node::EMPTY; MAX_CHUNK_NODES + 1].leak();
    assert_eq!(t.grow(big), Err(GrowError::TooLarge));
    assert_eq!(t.capacity(), 0);
}

#[test]
fn check_catches_corruption() {
    let mut storage = [Node::EMPTY; 8];
    let mut t = AreaTree::new(&mut storage);
    for s in [10, 20, 30, 40, 50] {
        t.insert(s, s + 5).unwrap();
    }
    assert_eq!(t.check(), Ok(()));
    let root = t.root;
    let bad = |f: &dyn Fn(&mut AreaTree)| {
        let mut storage2: Vec<Node> = t.chunks[0].to_vec();
        let mut t2 = AreaTree::new(&mut []);
        t2.chunks[0] = &mut storage2;
        (t2.nr_chunks, t2.capacity, t2.root, t2.head, t2.free, t2.len) = (1, t.capacity, t.root, t.head, t.free, t.len);
        f(&mut t2);
        assert!(t2.check().is_err());
    };
    bad(&|t| t.m(root).height += 1);
    bad(&|t| t.len += 1);
    bad(&|t| t.free = NIL);
    bad(&|t| {
        let l = t.n(root).left;
        t.m(l).parent = NIL;
    });
    bad(&|t| {
        let h = t.head;
        t.m(h).end = 21;
    });
    bad(&|t| {
        let h = t.head;
        let n = t.n(h).next;
        t.m(n).prev = NIL;
    });
    bad(&|t| {
        let l = t.n(root).left;
        t.m(l).left = 7;
    });
}

#[test]
#[should_panic(expected = "size 0")]
fn alloc_size_zero_panics() {
    let mut storage = [Node::EMPTY; 2];
    let _ = AreaTree::new(&mut storage).alloc(0, 1, 0, 100);
}

#[test]
#[should_panic(expected = "not a power of two")]
fn alloc_bad_align_panics() {
    let mut storage = [Node::EMPTY; 2];
    let _ = AreaTree::new(&mut storage).alloc(1, 3, 0, 100);
}

#[test]
#[should_panic(expected = "not a live area")]
fn removed_id_panics() {
    let mut storage = [Node::EMPTY; 2];
    let mut t = AreaTree::new(&mut storage);
    let id = t.insert(1, 2).unwrap();
    t.remove(id);
    let _ = t.area(id);
}

#[test]
fn large_random_churn() {
    // xorshift32: deterministic, no dependency.
    let mut x = 0x1234_5678u32;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut storage = vec![Node::EMPTY; 1024];
    let mut t = AreaTree::new(&mut storage);
    let mut live: Vec<(AreaId, u32)> = Vec::new();
    for step in 0..20_000 {
        if live.len() < 1000 && rnd() % 3 != 0 {
            let size = 1 + rnd() % 64;
            let align = 1 << (rnd() % 5);
            if let Ok(f) = t.alloc(size, align, rnd() % (1 << 16), 1 << 17) {
                live.push((f.id, f.start));
            }
        } else if !live.is_empty() {
            let (id, start) = live.swap_remove(rnd() as usize % live.len());
            t.remove(id);
            assert_eq!(t.find(start), None);
        }
        if step % 256 == 0 {
            assert_eq!(t.check(), Ok(()));
            for &(id, start) in &live {
                assert_eq!(t.find(start), Some(id));
            }
        }
    }
    assert_eq!(t.check(), Ok(()));
    assert_eq!(t.len() as usize, live.len());
}

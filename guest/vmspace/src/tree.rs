//! The vmap areas: disjoint half-open ranges `[start, end)` of `u32` addresses.
//!
//! As in Linux 2.6.28, the areas sit in a balanced search tree keyed by `start` (there an rbtree,
//! here an AVL tree) and, beside it, on a doubly linked list in address order (`vmap_area_list`).
//! The nodes live in an arena of slices that the caller provides: one when the tree is made, more
//! as it fills ([`AreaTree::grow`]), as Linux's vmap areas came from a slab that grows. A node's
//! place in the arena (its chunk and its index there) is the area's [`AreaId`], which stays valid
//! until that area is removed, whatever happens to the others. Free nodes are chained into a free
//! list through their `next` links.
//!
//! Nothing here recurses: tree walks follow parent links.

use core::cmp::max;

/// The "no node" index (an absent child, parent, list neighbour, or the end of the free list).
pub const NIL: u32 = u32::MAX;

/// An area's index in the arena; valid from its insertion until its removal.
pub type AreaId = u32;

/// What an area is used for, as far as the lazy-purge machinery cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaState {
    /// In use (mapped, or about to be).
    Busy,
    /// Freed by its user, its mappings not yet flushed from the TLBs.
    Lazy,
    /// Taken by a purge that is flushing it.
    Purging,
}

/// A copy of one area's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    /// The first address of the area.
    pub start: u32,
    /// One past the last address of the area.
    pub end: u32,
    /// The area's state.
    pub state: AreaState,
    /// A word for the caller (0 when inserted).
    pub data: u32,
    /// Another word for the caller, for example to chain areas into a list ([`NIL`] when inserted).
    pub link: u32,
}

/// One slot of the arena an [`AreaTree`] keeps its areas in.
#[derive(Clone, Copy)]
pub struct Node {
    start: u32,
    end: u32,
    data: u32,
    link: u32,
    left: u32,
    right: u32,
    parent: u32,
    prev: u32,
    /// The next area in address order, or the next free node when the node is free.
    next: u32,
    height: u8,
    state: AreaState,
    live: bool,
}

impl Node {
    /// A free slot, to initialise arenas with: `[Node::EMPTY; N]`.
    pub const EMPTY: Node = Node {
        start: 0,
        end: 0,
        data: 0,
        link: NIL,
        left: NIL,
        right: NIL,
        parent: NIL,
        prev: NIL,
        next: NIL,
        height: 0,
        state: AreaState::Busy,
        live: false,
    };
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if !self.live {
            return write!(f, "Node(free, next {:#x})", self.next);
        }
        write!(
            f,
            "Node({:#x}..{:#x} {:?} data {:#x} link {:#x}; l {:#x} r {:#x} p {:#x} h {}; prev {:#x} next {:#x})",
            self.start,
            self.end,
            self.state,
            self.data,
            self.link,
            self.left,
            self.right,
            self.parent,
            self.height,
            self.prev,
            self.next
        )
    }
}

/// Why an area could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// No room in the requested window (or the given range overlaps an area).
    NoSpace,
    /// Every node of the arena is in use.
    NoNodes,
}

/// Why [`AreaTree::grow`] could not add a slice to the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError {
    /// The slice has more than [`MAX_CHUNK_NODES`] nodes.
    TooLarge,
    /// The arena has [`MAX_CHUNKS`] slices already.
    Full,
}

/// The result of a successful [`AreaTree::alloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// The new area.
    pub id: AreaId,
    /// Its start address (its end is `start + size`).
    pub start: u32,
    /// How many existing areas the search looked at: the nodes met on the way down the tree,
    /// plus each further area stepped to on the address-ordered list. The cost of the search.
    pub visited: u32,
}

/// The most slices an arena holds: the one it was made with and those [`AreaTree::grow`] added.
pub const MAX_CHUNKS: usize = 64;
/// The most nodes one slice of the arena may have.
pub const MAX_CHUNK_NODES: usize = 1 << CHUNK_SHIFT;
/// An [`AreaId`] is its chunk's number shifted by this, ORed with the node's index in the chunk.
const CHUNK_SHIFT: u32 = 20;
const INDEX_MASK: u32 = (1 << CHUNK_SHIFT) - 1;

/// The set of areas, in a caller-provided arena of [`Node`]s.
pub struct AreaTree<'a> {
    chunks: [&'a mut [Node]; MAX_CHUNKS],
    nr_chunks: usize,
    capacity: u32,
    root: u32,
    /// The lowest area (head of the address-ordered list).
    head: u32,
    /// Head of the free list.
    free: u32,
    len: u32,
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
fn align_up(x: u32, align: u32) -> Option<u32> {
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// Whether `[a, a + size)` ends at or below `limit`, without overflowing.
fn ends_by(a: u32, size: u32, limit: u32) -> bool {
    u64::from(a) + u64::from(size) <= u64::from(limit)
}

impl<'a> AreaTree<'a> {
    /// An empty tree using `storage` as its arena (whatever it held is overwritten); its capacity
    /// is `storage.len()`, which must be at most [`MAX_CHUNK_NODES`] (panics otherwise).
    pub fn new(storage: &'a mut [Node]) -> Self {
        let mut t = AreaTree {
            chunks: core::array::from_fn(|_| -> &'a mut [Node] { &mut [] }),
            nr_chunks: 0,
            capacity: 0,
            root: NIL,
            head: NIL,
            free: NIL,
            len: 0,
        };
        if let Err(GrowError::TooLarge) = t.grow(storage) {
            panic!("vmspace: an arena slice holds at most {MAX_CHUNK_NODES} nodes");
        }
        t
    }

    /// Adds `storage` to the arena (whatever it held is overwritten): its nodes go on the free
    /// list, so that the next [`AreaTree::alloc`] or [`AreaTree::insert`] can use them. No
    /// existing area moves or changes its id.
    ///
    /// Errors: [`GrowError::TooLarge`] for a slice of more than [`MAX_CHUNK_NODES`] nodes,
    /// [`GrowError::Full`] when the arena already has [`MAX_CHUNKS`] slices; the tree is unchanged.
    pub fn grow(&mut self, storage: &'a mut [Node]) -> Result<(), GrowError> {
        if storage.len() > MAX_CHUNK_NODES {
            return Err(GrowError::TooLarge);
        }
        if self.nr_chunks == MAX_CHUNKS {
            return Err(GrowError::Full);
        }
        let base = (self.nr_chunks as u32) << CHUNK_SHIFT;
        let len = storage.len() as u32;
        for (i, n) in storage.iter_mut().enumerate() {
            *n = Node::EMPTY;
            let i = i as u32;
            n.next = if i + 1 < len { base | (i + 1) } else { self.free };
        }
        if len > 0 {
            self.free = base;
        }
        self.chunks[self.nr_chunks] = storage;
        self.nr_chunks += 1;
        self.capacity += len;
        Ok(())
    }

    /// How many areas there are.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are no areas.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many areas the arena can hold.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// How many slices the arena has.
    pub fn chunks(&self) -> usize {
        self.nr_chunks
    }

    fn n(&self, i: u32) -> &Node {
        &self.chunks[(i >> CHUNK_SHIFT) as usize][(i & INDEX_MASK) as usize]
    }

    fn m(&mut self, i: u32) -> &mut Node {
        &mut self.chunks[(i >> CHUNK_SHIFT) as usize][(i & INDEX_MASK) as usize]
    }

    /// The node `i` names, if it names one.
    fn get(&self, i: u32) -> Option<&Node> {
        let c = (i >> CHUNK_SHIFT) as usize;
        if c >= self.nr_chunks {
            return None;
        }
        self.chunks[c].get((i & INDEX_MASK) as usize)
    }

    /// The node of a live area; panics on a free or out-of-range id.
    fn live(&self, id: AreaId) -> &Node {
        match self.get(id) {
            Some(n) if n.live => n,
            _ => panic!("vmspace: area id {id:#x} is not a live area"),
        }
    }

    fn live_mut(&mut self, id: AreaId) -> &mut Node {
        match self.get(id) {
            Some(n) if n.live => self.m(id),
            _ => panic!("vmspace: area id {id:#x} is not a live area"),
        }
    }

    fn h(&self, i: u32) -> u8 {
        if i == NIL {
            0
        } else {
            self.n(i).height
        }
    }

    fn update_height(&mut self, i: u32) {
        let n = self.n(i);
        let h = 1 + max(self.h(n.left), self.h(n.right));
        self.m(i).height = h;
    }

    /// Makes `new` the child of `parent` that `old` was (or the root if `parent` is NIL).
    /// The caller sets `new`'s parent link.
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            self.root = new;
        } else if self.n(parent).left == old {
            self.m(parent).left = new;
        } else {
            self.m(parent).right = new;
        }
    }

    /// Rotates `x` down to the left; returns the subtree's new root (x's right child).
    fn rotate_left(&mut self, x: u32) -> u32 {
        let y = self.n(x).right;
        let b = self.n(y).left;
        let p = self.n(x).parent;
        self.m(x).right = b;
        if b != NIL {
            self.m(b).parent = x;
        }
        self.m(y).left = x;
        self.m(x).parent = y;
        self.m(y).parent = p;
        self.replace_child(p, x, y);
        self.update_height(x);
        self.update_height(y);
        y
    }

    /// Rotates `x` down to the right; returns the subtree's new root (x's left child).
    fn rotate_right(&mut self, x: u32) -> u32 {
        let y = self.n(x).left;
        let b = self.n(y).right;
        let p = self.n(x).parent;
        self.m(x).left = b;
        if b != NIL {
            self.m(b).parent = x;
        }
        self.m(y).right = x;
        self.m(x).parent = y;
        self.m(y).parent = p;
        self.replace_child(p, x, y);
        self.update_height(x);
        self.update_height(y);
        y
    }

    /// Fixes heights and balance from `i` up to the root.
    fn rebalance_from(&mut self, mut i: u32) {
        while i != NIL {
            self.update_height(i);
            let n = *self.n(i);
            let bf = i32::from(self.h(n.left)) - i32::from(self.h(n.right));
            if bf > 1 {
                let l = self.n(n.left);
                if self.h(l.left) < self.h(l.right) {
                    self.rotate_left(n.left);
                }
                i = self.rotate_right(i);
            } else if bf < -1 {
                let r = self.n(n.right);
                if self.h(r.right) < self.h(r.left) {
                    self.rotate_right(n.right);
                }
                i = self.rotate_left(i);
            }
            i = self.n(i).parent;
        }
    }

    /// The lowest area whose end is above `addr` (NIL if none), and how many nodes the descent met.
    fn lowest_ending_after(&self, addr: u32) -> (u32, u32) {
        let mut best = NIL;
        let mut visited = 0;
        let mut cur = self.root;
        while cur != NIL {
            visited += 1;
            let n = self.n(cur);
            if n.end > addr {
                best = cur;
                cur = n.left;
            } else {
                cur = n.right;
            }
        }
        (best, visited)
    }

    /// Takes a free node and links `[start, end)` into the tree and the list. The caller has
    /// checked that a node is free and that the range overlaps nothing.
    fn link_new(&mut self, start: u32, end: u32) -> AreaId {
        let id = self.free;
        debug_assert!(id != NIL);
        self.free = self.n(id).next;

        let mut parent = NIL;
        let mut go_left = false;
        let mut cur = self.root;
        while cur != NIL {
            parent = cur;
            go_left = start < self.n(cur).start;
            cur = if go_left { self.n(cur).left } else { self.n(cur).right };
        }
        // A new leaf's list neighbours: a left child goes between its parent and the parent's
        // predecessor, a right child between the parent and its successor.
        let (prev, next) = if parent == NIL {
            (NIL, NIL)
        } else if go_left {
            (self.n(parent).prev, parent)
        } else {
            (parent, self.n(parent).next)
        };
        *self.m(id) = Node {
            start,
            end,
            data: 0,
            link: NIL,
            left: NIL,
            right: NIL,
            parent,
            prev,
            next,
            height: 1,
            state: AreaState::Busy,
            live: true,
        };
        if parent == NIL {
            self.root = id;
        } else if go_left {
            self.m(parent).left = id;
        } else {
            self.m(parent).right = id;
        }
        if prev == NIL {
            self.head = id;
        } else {
            self.m(prev).next = id;
        }
        if next != NIL {
            self.m(next).prev = id;
        }
        self.len += 1;
        self.rebalance_from(parent);
        id
    }

    /// First fit: the lowest address `a` with `a % align == 0`, `vstart <= a` and
    /// `a + size <= vend` (without overflow) such that `[a, a + size)` overlaps no area, whatever
    /// its state. Inserts it as a [`AreaState::Busy`] area with `data` 0 and `link` [`NIL`].
    ///
    /// The search is Linux 2.6.28's: down the tree to the lowest area ending above the aligned
    /// `vstart`, then along the list, moving the candidate past (and re-aligning it after) each
    /// area it overlaps, until the gap before the next area holds `size` or the candidate passes
    /// `vend`. [`Fit::visited`] counts the areas it looked at.
    ///
    /// Errors: [`AllocError::NoNodes`] when the arena is full (checked first),
    /// [`AllocError::NoSpace`] when nothing fits.
    ///
    /// Panics if `size` is 0 or `align` is not a power of two.
    pub fn alloc(&mut self, size: u32, align: u32, vstart: u32, vend: u32) -> Result<Fit, AllocError> {
        assert!(size > 0, "vmspace: alloc of size 0");
        assert!(align.is_power_of_two(), "vmspace: alloc alignment {align:#x} is not a power of two");
        if self.free == NIL {
            return Err(AllocError::NoNodes);
        }
        let mut addr = align_up(vstart, align).ok_or(AllocError::NoSpace)?;
        if !ends_by(addr, size, vend) {
            return Err(AllocError::NoSpace);
        }
        let (mut cur, mut visited) = self.lowest_ending_after(addr);
        while cur != NIL {
            let n = *self.n(cur);
            // An area ending at or below the candidate (possible after a re-alignment jumped
            // past it) does not constrain it.
            if n.end > addr {
                if ends_by(addr, size, n.start) {
                    break;
                }
                addr = align_up(n.end, align).ok_or(AllocError::NoSpace)?;
                if !ends_by(addr, size, vend) {
                    return Err(AllocError::NoSpace);
                }
            }
            cur = n.next;
            if cur != NIL {
                visited += 1;
            }
        }
        let id = self.link_new(addr, addr + size);
        Ok(Fit { id, start: addr, visited })
    }

    /// Inserts the area `[start, end)` as [`AreaState::Busy`] with `data` 0 and `link` [`NIL`].
    ///
    /// Errors: [`AllocError::NoNodes`] when the arena is full (checked first),
    /// [`AllocError::NoSpace`] when the range overlaps an area.
    ///
    /// Panics if `start >= end`.
    pub fn insert(&mut self, start: u32, end: u32) -> Result<AreaId, AllocError> {
        assert!(start < end, "vmspace: insert of an empty range {start:#x}..{end:#x}");
        if self.free == NIL {
            return Err(AllocError::NoNodes);
        }
        let (cur, _) = self.lowest_ending_after(start);
        if cur != NIL && self.n(cur).start < end {
            return Err(AllocError::NoSpace);
        }
        Ok(self.link_new(start, end))
    }

    /// The area containing `addr`, if any. O(log n).
    pub fn find(&self, addr: u32) -> Option<AreaId> {
        let mut cur = self.root;
        while cur != NIL {
            let n = self.n(cur);
            if addr < n.start {
                cur = n.left;
            } else if addr >= n.end {
                cur = n.right;
            } else {
                return Some(cur);
            }
        }
        None
    }

    /// The area starting exactly at `start`, if any. O(log n).
    pub fn find_start(&self, start: u32) -> Option<AreaId> {
        let mut cur = self.root;
        while cur != NIL {
            let n = self.n(cur);
            if start < n.start {
                cur = n.left;
            } else if start > n.start {
                cur = n.right;
            } else {
                return Some(cur);
            }
        }
        None
    }

    /// A copy of the area `id`. Panics if `id` is not a live area.
    pub fn area(&self, id: AreaId) -> Area {
        let n = self.live(id);
        Area { start: n.start, end: n.end, state: n.state, data: n.data, link: n.link }
    }

    /// Sets the state of area `id`. Panics if `id` is not a live area.
    pub fn set_state(&mut self, id: AreaId, s: AreaState) {
        self.live_mut(id).state = s;
    }

    /// Sets the `data` word of area `id`. Panics if `id` is not a live area.
    pub fn set_data(&mut self, id: AreaId, v: u32) {
        self.live_mut(id).data = v;
    }

    /// Sets the `link` word of area `id`. Panics if `id` is not a live area.
    pub fn set_link(&mut self, id: AreaId, v: u32) {
        self.live_mut(id).link = v;
    }

    /// Removes the area `id`; its node goes back to the free list, and the ids of all other
    /// areas stay valid (nodes are relinked, never copied). Panics if `id` is not a live area.
    pub fn remove(&mut self, id: AreaId) {
        let z = *self.live(id);
        if z.left == NIL || z.right == NIL {
            let c = if z.left != NIL { z.left } else { z.right };
            if c != NIL {
                self.m(c).parent = z.parent;
            }
            self.replace_child(z.parent, id, c);
            self.rebalance_from(z.parent);
        } else {
            // Two children: the successor (lowest of the right subtree, which is also the next
            // area on the list) has no left child; it takes z's place in the tree.
            let y = z.next;
            let fix_from = if y == z.right {
                y
            } else {
                let yp = self.n(y).parent;
                let x = self.n(y).right;
                self.m(yp).left = x;
                if x != NIL {
                    self.m(x).parent = yp;
                }
                self.m(y).right = z.right;
                self.m(z.right).parent = y;
                yp
            };
            self.m(y).left = z.left;
            self.m(z.left).parent = y;
            self.m(y).parent = z.parent;
            self.m(y).height = z.height;
            self.replace_child(z.parent, id, y);
            self.rebalance_from(fix_from);
        }

        if z.prev == NIL {
            self.head = z.next;
        } else {
            self.m(z.prev).next = z.next;
        }
        if z.next != NIL {
            self.m(z.next).prev = z.prev;
        }

        let free = self.free;
        *self.m(id) = Node::EMPTY;
        self.m(id).next = free;
        self.free = id;
        self.len -= 1;
    }

    /// The lowest area, if any.
    pub fn first(&self) -> Option<AreaId> {
        (self.head != NIL).then_some(self.head)
    }

    /// The area after `id` in address order. Panics if `id` is not a live area.
    pub fn next(&self, id: AreaId) -> Option<AreaId> {
        let n = self.live(id).next;
        (n != NIL).then_some(n)
    }

    /// The area before `id` in address order. Panics if `id` is not a live area.
    pub fn prev(&self, id: AreaId) -> Option<AreaId> {
        let p = self.live(id).prev;
        (p != NIL).then_some(p)
    }

    /// Checks every invariant: in-order keys strictly increasing and areas non-empty and
    /// non-overlapping, AVL heights right and balance factors in -1..=1, parent links consistent,
    /// list links matching the in-order walk, `len` matching, free list + live nodes = capacity.
    /// On failure, a message naming the broken invariant. Never panics, even on a corrupt arena.
    pub fn check(&self) -> Result<(), &'static str> {
        let cap = self.capacity();
        let ok = |i: u32| i == NIL || self.get(i).is_some();

        let live = self.chunks[..self.nr_chunks].iter().flat_map(|c| c.iter()).filter(|n| n.live).count() as u32;
        if live != self.len {
            return Err("len does not match the number of live nodes");
        }

        let mut f = self.free;
        let mut free_count = 0u32;
        while f != NIL {
            if !ok(f) {
                return Err("free list index out of range");
            }
            if self.n(f).live {
                return Err("live node on the free list");
            }
            free_count += 1;
            if free_count > cap {
                return Err("free list has a cycle");
            }
            f = self.n(f).next;
        }
        if free_count + self.len != cap {
            return Err("free list + live nodes != capacity");
        }

        if !ok(self.root) || !ok(self.head) {
            return Err("root or list head index out of range");
        }
        if self.root != NIL && self.n(self.root).parent != NIL {
            return Err("root has a parent");
        }

        // In-order walk by parent links, bounded by len so that a corrupt tree cannot loop.
        let mut steps = 0u32;
        let mut cur = self.root;
        if cur != NIL {
            while self.n(cur).left != NIL {
                cur = self.n(cur).left;
                steps += 1;
                if !ok(cur) || steps > self.len {
                    return Err("broken left spine");
                }
            }
        }
        let mut prev = NIL;
        let mut seen = 0u32;
        while cur != NIL {
            seen += 1;
            if seen > self.len {
                return Err("tree has more nodes than len");
            }
            let n = self.n(cur);
            if !n.live {
                return Err("free node in the tree");
            }
            if n.start >= n.end {
                return Err("empty or inverted area");
            }
            if !ok(n.left) || !ok(n.right) || !ok(n.parent) || !ok(n.prev) || !ok(n.next) {
                return Err("link index out of range");
            }
            for c in [n.left, n.right] {
                if c != NIL && self.n(c).parent != cur {
                    return Err("child's parent link does not point back");
                }
            }
            if n.parent != NIL && self.n(n.parent).left != cur && self.n(n.parent).right != cur {
                return Err("parent link to a node that does not have it as a child");
            }
            let (hl, hr) = (u32::from(self.h(n.left)), u32::from(self.h(n.right)));
            if u32::from(n.height) != 1 + max(hl, hr) {
                return Err("AVL height wrong");
            }
            if hl.abs_diff(hr) > 1 {
                return Err("AVL balance factor out of -1..=1");
            }
            if prev == NIL {
                if self.head != cur {
                    return Err("list head is not the lowest area");
                }
            } else {
                let p = self.n(prev);
                if p.start >= n.start {
                    return Err("in-order keys not strictly increasing");
                }
                if p.end > n.start {
                    return Err("areas overlap");
                }
                if p.next != cur {
                    return Err("list next link does not match the in-order walk");
                }
            }
            if n.prev != prev {
                return Err("list prev link does not match the in-order walk");
            }
            prev = cur;

            // In-order successor.
            if n.right != NIL {
                cur = n.right;
                let mut depth = 0u32;
                while self.n(cur).left != NIL {
                    cur = self.n(cur).left;
                    depth += 1;
                    if !ok(cur) || depth > self.len {
                        return Err("broken left spine");
                    }
                }
            } else {
                let mut c = cur;
                let mut depth = 0u32;
                loop {
                    let p = self.n(c).parent;
                    if !ok(p) {
                        return Err("link index out of range");
                    }
                    if p == NIL || self.n(p).left == c {
                        cur = p;
                        break;
                    }
                    c = p;
                    depth += 1;
                    if depth > self.len {
                        return Err("parent links loop");
                    }
                }
            }
        }
        if seen != self.len {
            return Err("tree has fewer nodes than len");
        }
        if prev == NIL {
            if self.head != NIL {
                return Err("list head set in an empty tree");
            }
        } else if self.n(prev).next != NIL {
            return Err("last area's next link is not NIL");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

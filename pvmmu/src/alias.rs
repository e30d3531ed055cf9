//! The alias check: how many validated L1 entries map a frame read-write. Asked on
//! every pin and every type change to a pagetable type; three implementations with
//! different costs (`--host-check`), which must always agree:
//!
//! - `typecount`: Xen's answer, free: a frame of type `writable` has exactly its
//!   type count of RW mappings (O(1)).
//! - `scan`: read every validated L1 (the host's copy of it, which is what guest
//!   memory says while the table is protected) and count the RW entries that point
//!   at the frame (O(L1 tables x 512)); what a host without type counts does.
//! - `rmap`: a reverse map from each frame to the L1 entries that map it RW, kept
//!   up to date on every entry change (O(1) to ask, a cost on every update).

use std::collections::{HashMap, HashSet};

use super::validate::Table;
use shared::pae;

pub use shared::config::HostCheck;

/// An L1 entry's place: `l1 frame << 9 | index`.
type Slot = u64;

fn slot(l1: u64, idx: usize) -> Slot {
    (l1 << 9) | idx as u64
}

/// The reverse map: frame -> the L1 entries mapping it RW.
#[derive(Default)]
pub struct Rmap {
    map: HashMap<u64, Vec<Slot>>,
}

impl Rmap {
    pub fn add(&mut self, target: u64, l1: u64, idx: usize) {
        self.map.entry(target).or_default().push(slot(l1, idx));
    }

    pub fn remove(&mut self, target: u64, l1: u64, idx: usize) {
        let s = slot(l1, idx);
        if let Some(v) = self.map.get_mut(&target) {
            if let Some(i) = v.iter().position(|&x| x == s) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.map.remove(&target);
            }
        }
    }

    pub fn writable_mappings(&self, target: u64) -> u64 {
        self.map.get(&target).map_or(0, |v| v.len() as u64)
    }
}

/// Counts the RW entries pointing at `target` in every L1 of `l1s`, as validated.
pub fn scan(tables: &HashMap<u64, Box<Table>>, l1s: &HashSet<u64>, target: u64) -> u64 {
    let rw = pae::P | pae::RW;
    l1s.iter()
        .filter_map(|l1| tables.get(l1))
        .map(|t| t.iter().filter(|&&e| e & rw == rw && pae::frame(e) == target).count() as u64)
        .sum()
}

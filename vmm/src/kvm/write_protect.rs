//! Write protection of validated pagetable frames with read-only memslots.
//!
//! Guest RAM is registered with KVM as fixed-size chunks, one memslot each. To
//! protect frames, the host re-registers the chunk holding them as a run of slots,
//! the protected runs with `KVM_MEM_READONLY`: the guest still reads them, and its
//! writes arrive as MMIO exits with address and data (a 6.1 KVM gives no address
//! for a write to an mprotect'ed page, only -EFAULT). KVM zaps the chunk's
//! mappings when its slots change, which also empties the combined TLB entries of
//! the frame (rule T3).
//!
//! KVM cannot change a slot's read-only flag in place: the chunk's slots are
//! deleted and made again, and a vCPU touching the chunk in between would find no
//! memory there, so the caller stops every other vCPU around [`WriteProtect::apply`].
//! The host's own writes go through its own mapping, which stays writable.
//!
//! Validated tables that no read-only slot covers (L3s, and every table on a QEMU
//! TCG host once the guest runs on them) are watched with KVM's dirty log instead
//! (`--host-write-watch dirty-log`, [`super::dirty_log`]): [`WriteProtect::harvest`]
//! names the ones the guest wrote since it last looked, and the host compares
//! them with what it validated.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use shared::pae::PAGE_SHIFT;

/// The chunk size for a guest of `ram` bytes with `max_slots` memslots: 2 MiB, or
/// more so that the chunks take at most a quarter of the slots (the rest are for
/// the splits).
pub fn chunk_bytes(ram: u64, max_slots: usize) -> u64 {
    let budget = (max_slots / 4).max(1) as u64;
    let mut c = 2u64 << 20;
    while ram.div_ceil(c) > budget {
        c *= 2;
    }
    c
}

/// One run of a chunk: `[gpa, gpa + len)`, read-only or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub gpa: u64,
    pub len: u64,
    pub read_only: bool,
}

/// The runs of the chunk `[gpa, gpa + len)` with these frames protected.
pub fn layout(gpa: u64, len: u64, protected: &BTreeSet<u64>) -> Vec<Run> {
    let first = gpa >> PAGE_SHIFT;
    let end = (gpa + len) >> PAGE_SHIFT;
    let mut runs: Vec<Run> = Vec::new();
    let mut at = first;
    for &p in protected.range(first..end) {
        if p > at {
            runs.push(Run { gpa: at << PAGE_SHIFT, len: (p - at) << PAGE_SHIFT, read_only: false });
        }
        match runs.last_mut() {
            Some(r) if r.read_only && r.gpa + r.len == p << PAGE_SHIFT => r.len += 1 << PAGE_SHIFT,
            _ => runs.push(Run { gpa: p << PAGE_SHIFT, len: 1 << PAGE_SHIFT, read_only: true }),
        }
        at = p + 1;
    }
    if at < end {
        runs.push(Run { gpa: at << PAGE_SHIFT, len: (end - at) << PAGE_SHIFT, read_only: false });
    }
    runs
}

#[derive(Default)]
struct Chunk {
    gpa: u64,
    len: u64,
    /// Host address of the chunk's first byte.
    host: u64,
    protected: BTreeSet<u64>,
    /// Validated tables outside the read-only runs, watched with the dirty log.
    watched: BTreeSet<u64>,
    /// Those of them found written lately: compared at every harvest whatever
    /// their log bit says, which is left set (see [`WriteProtect::harvest`]).
    hot: BTreeSet<u64>,
    /// (slot id, run) registered now.
    slots: Vec<(u32, Run)>,
}

pub use pvmmu::protection::{DirtyLogStats, ProtectStats};

/// Every this many harvests the hot tables (compared every time, their log bits
/// left set) are cleared and write-protected again.
pub const HOT_HARVESTS: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("KVM_SET_USER_MEMORY_REGION failed for {gpa:#x}+{len:#x}: {source}")]
    Slot { gpa: u64, len: u64, source: kvm_ioctls::Error },
    #[error("out of memslots ({0}) for the write protection of pagetables")]
    NoSlots(usize),
    #[error("the dirty log of slot {slot} ({gpa:#x}+{len:#x}): {source}")]
    DirtyLog { slot: u32, gpa: u64, len: u64, source: kvm_ioctls::Error },
}

pub struct WriteProtect {
    vm: Arc<VmFd>,
    chunks: Vec<Chunk>,
    max_slots: usize,
    used: usize,
    free_ids: Vec<u32>,
    next_id: u32,
    /// Chunks holding watched tables: the harvest, at every hypercall exit,
    /// reads only these (a large guest has thousands of chunks).
    watched_chunks: BTreeSet<usize>,
    pub stats: ProtectStats,
}

impl WriteProtect {
    /// Registers guest RAM (`(gpa, len, host address)` regions) as chunks; with
    /// `dirty_log`, every writable slot logs (the tables to watch come later).
    pub fn new(
        vm: Arc<VmFd>,
        regions: &[(u64, u64, u64)],
        max_slots: usize,
        available: bool,
        dirty_log: bool,
    ) -> Result<Self, Error> {
        let ram: u64 = regions.iter().map(|r| r.1).sum();
        let chunk = chunk_bytes(ram, max_slots);
        let mut log = DirtyLogStats::default();
        if dirty_log {
            match super::dirty_log::enable(&vm) {
                Ok(()) => log.on = true,
                Err(why) => {
                    log::warn!("direct writes to unprotected tables will be found by the end-of-run audit only: {why}");
                    log.unavailable = Some(why);
                }
            }
        }
        let mut wp = WriteProtect {
            vm,
            chunks: Vec::new(),
            max_slots,
            used: 0,
            free_ids: Vec::new(),
            next_id: 0,
            watched_chunks: BTreeSet::new(),
            stats: ProtectStats { available, chunk_bytes: chunk, dirty_log: log, ..Default::default() },
        };
        for &(gpa, len, host) in regions {
            let mut off = 0;
            while off < len {
                let l = chunk.min(len - off);
                let mut c = Chunk { gpa: gpa + off, len: l, host: host + off, ..Default::default() };
                wp.register(&mut c)?;
                wp.chunks.push(c);
                off += l;
            }
        }
        Ok(wp)
    }

    fn set_slot(&self, id: u32, run: Run, host: u64) -> Result<(), Error> {
        let r = kvm_userspace_memory_region {
            slot: id,
            flags: match (run.read_only && run.len > 0, self.stats.dirty_log.on) {
                (true, _) => KVM_MEM_READONLY,
                (false, true) => KVM_MEM_LOG_DIRTY_PAGES,
                (false, false) => 0,
            },
            guest_phys_addr: run.gpa,
            memory_size: run.len,
            userspace_addr: host,
        };
        // SAFETY: `host` points into guest RAM's mapping, which lives as long as the
        // VM (the Hypervisor holds both); slots never overlap: a chunk's runs tile
        // it, and a chunk's old slots are deleted before its new ones are made.
        unsafe { self.vm.set_user_memory_region(r) }.map_err(|source| Error::Slot {
            gpa: run.gpa,
            len: run.len,
            source,
        })
    }

    /// Registers the chunk's runs (its old slots must be gone).
    fn register(&mut self, c: &mut Chunk) -> Result<(), Error> {
        let runs = layout(c.gpa, c.len, &c.protected);
        if self.used + runs.len() > self.max_slots {
            return Err(Error::NoSlots(self.max_slots));
        }
        for run in runs {
            let id = self.free_ids.pop().unwrap_or_else(|| {
                self.next_id += 1;
                self.next_id - 1
            });
            self.set_slot(id, run, c.host + (run.gpa - c.gpa))?;
            self.used += 1;
            c.slots.push((id, run));
        }
        Ok(())
    }

    /// Whether `gpa` lies in a protected frame.
    pub fn is_protected(&self, gpa: u64) -> bool {
        let pfn = gpa >> PAGE_SHIFT;
        self.chunk_of(gpa).is_some_and(|i| self.chunks[i].protected.contains(&pfn))
    }

    fn chunk_of(&self, gpa: u64) -> Option<usize> {
        let i = self.chunks.partition_point(|c| c.gpa + c.len <= gpa);
        (i < self.chunks.len() && self.chunks[i].gpa <= gpa).then_some(i)
    }

    /// Makes each frame of `changes` protected or not (`(pfn, protect)`), re-registering
    /// the chunks that change. Every other vCPU must be stopped.
    pub fn apply(&mut self, changes: &[(u64, bool)]) -> Result<(), Error> {
        if !self.stats.available || changes.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let mut touched = BTreeSet::new();
        for &(pfn, on) in changes {
            let Some(i) = self.chunk_of(pfn << PAGE_SHIFT) else { continue };
            let set = &mut self.chunks[i].protected;
            let changed = if on { set.insert(pfn) } else { set.remove(&pfn) };
            if on {
                self.unwatch(i, pfn);
            }
            if changed {
                touched.insert(i);
                if on {
                    self.stats.protected += 1;
                } else {
                    self.stats.protected -= 1;
                }
            }
        }
        for i in touched {
            let mut c = std::mem::take(&mut self.chunks[i]);
            let result = self.reregister(&mut c);
            self.chunks[i] = c;
            result?;
            self.stats.chunk_updates += 1;
        }
        self.stats.protected_max = self.stats.protected_max.max(self.stats.protected);
        self.stats.update_ns += start.elapsed().as_nanos() as u64;
        Ok(())
    }

    /// Makes every frame writable again and protects nothing from now on; the
    /// dirty log (if on) watches the tables that were protected.
    pub fn switch_off(&mut self, why: &str) -> Result<(), Error> {
        let all: Vec<(u64, bool)> =
            self.chunks.iter().flat_map(|c| c.protected.iter().map(|&p| (p, false))).collect::<Vec<_>>();
        self.apply(&all)?;
        self.stats.available = false;
        self.stats.switched_off = Some(why.to_owned());
        let tables: Vec<(u64, bool)> = all.iter().map(|&(pfn, _)| (pfn, true)).collect();
        self.watch(&tables);
        Ok(())
    }

    /// Frames that became validated tables (`true`) or stopped being tables: the
    /// dirty log watches those that no read-only slot covers. Call after
    /// [`WriteProtect::apply`] with the same frames.
    pub fn watch(&mut self, tables: &[(u64, bool)]) {
        if !self.stats.dirty_log.on {
            return;
        }
        for &(pfn, table) in tables {
            let Some(i) = self.chunk_of(pfn << PAGE_SHIFT) else { continue };
            if !table || self.chunks[i].protected.contains(&pfn) {
                self.unwatch(i, pfn);
            } else if self.chunks[i].watched.insert(pfn) {
                self.watched_chunks.insert(i);
                self.stats.dirty_log.watched += 1;
            }
        }
        self.stats.dirty_log.watched_max = self.stats.dirty_log.watched_max.max(self.stats.dirty_log.watched);
    }

    /// Stops watching frame `pfn` of chunk `i` (it stopped being a table, or a
    /// read-only slot covers it now).
    fn unwatch(&mut self, i: usize, pfn: u64) {
        let c = &mut self.chunks[i];
        c.hot.remove(&pfn);
        if c.watched.remove(&pfn) {
            self.stats.dirty_log.watched -= 1;
            if c.watched.is_empty() {
                self.watched_chunks.remove(&i);
            }
        }
    }

    /// The watched tables the guest may have written since the last harvest, in
    /// frame order: the caller compares each with what it validated.
    ///
    /// A table whose log bit is set (written, or just watched: a slot's log starts
    /// all set) becomes hot and is handed on at every harvest with its bit left
    /// set; every [`HOT_HARVESTS`]th harvest clears the bits of all hot tables at
    /// once (so a table stays hot for 1 to that many harvests), which
    /// write-protects each in KVM until the guest next writes it.
    /// Clearing at once would be exact too, but QEMU's emulated SVM writes every
    /// table it walks, so a live table would take a write fault in KVM after every
    /// harvest (~30 us QEMU-hosted) where comparing it costs the host far less.
    pub fn harvest(&mut self) -> Result<Vec<u64>, Error> {
        if !self.stats.dirty_log.on || self.watched_chunks.is_empty() {
            return Ok(vec![]);
        }
        let start = Instant::now();
        let cool = (self.stats.dirty_log.harvests + 1).is_multiple_of(HOT_HARVESTS);
        let (mut written, mut reads, mut cleared) = (Vec::new(), 0, 0);
        for &i in &self.watched_chunks {
            let c = &mut self.chunks[i];
            for &(slot, run) in &c.slots {
                let first = run.gpa >> PAGE_SHIFT;
                let end = first + (run.len >> PAGE_SHIFT);
                if run.read_only || c.watched.range(first..end).next().is_none() {
                    continue;
                }
                let fail = |source| Error::DirtyLog { slot, gpa: run.gpa, len: run.len, source };
                let bits = super::dirty_log::read(&self.vm, slot, run.len).map_err(fail)?;
                reads += 1;
                let mut clear = vec![0u64; bits.len()];
                let mut any = false;
                for &pfn in c.watched.range(first..end) {
                    let (word, bit) = (((pfn - first) / 64) as usize, (pfn - first) % 64);
                    let dirty = bits.get(word).is_some_and(|w| w >> bit & 1 == 1);
                    if dirty {
                        c.hot.insert(pfn);
                    }
                    if c.hot.contains(&pfn) {
                        written.push(pfn);
                        if cool {
                            clear[word] |= 1 << bit;
                            any = true;
                        }
                    }
                }
                if any {
                    super::dirty_log::clear(&self.vm, slot, end - first, &mut clear).map_err(fail)?;
                    cleared += clear.iter().map(|w| w.count_ones() as u64).sum::<u64>();
                }
            }
            if cool {
                c.hot.clear();
            }
        }
        let log = &mut self.stats.dirty_log;
        log.harvests += 1;
        log.slot_reads += reads;
        log.tables_written += written.len() as u64;
        log.tables_cleared += cleared;
        log.harvest_ns += start.elapsed().as_nanos() as u64;
        Ok(written)
    }

    /// Adds host time spent comparing harvested tables.
    pub fn add_compare_ns(&mut self, ns: u64) {
        self.stats.dirty_log.compare_ns += ns;
    }

    fn reregister(&mut self, c: &mut Chunk) -> Result<(), Error> {
        for (id, run) in std::mem::take(&mut c.slots) {
            self.set_slot(id, Run { len: 0, ..run }, c.host + (run.gpa - c.gpa))?;
            self.used -= 1;
            self.free_ids.push(id);
        }
        self.register(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pfns: &[u64]) -> BTreeSet<u64> {
        pfns.iter().copied().collect()
    }

    #[test]
    fn a_chunk_splits_around_its_protected_frames() {
        let r = |gpa: u64, pages: u64, read_only| Run { gpa, len: pages << 12, read_only };
        assert_eq!(layout(0x200000, 0x200000, &set(&[])), [r(0x200000, 512, false)]);
        assert_eq!(
            layout(0x200000, 0x200000, &set(&[0x201, 0x202, 0x210, 0x3ff, 0x400])),
            [
                r(0x200000, 1, false),
                r(0x201000, 2, true),
                r(0x203000, 13, false),
                r(0x210000, 1, true),
                r(0x211000, 0x3ff - 0x211, false),
                r(0x3ff000, 1, true),
            ]
        );
        assert_eq!(layout(0, 0x2000, &set(&[0, 1])), [r(0, 2, true)]);
    }

    #[test]
    fn chunks_leave_most_slots_for_splits() {
        assert_eq!(chunk_bytes(256 << 20, 32764), 2 << 20);
        assert_eq!(chunk_bytes(64 << 30, 32764), 16 << 20);
        assert_eq!(chunk_bytes(64 << 30, 509), 1 << 30);
    }
}

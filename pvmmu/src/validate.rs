//! Validation: the references a pagetable entry takes on what it points at, the
//! type changes (promotion of a frame to a pagetable with every entry checked, and
//! devalidation when its type count drops to zero), and the alias check on pins and
//! type changes. Rules V1-V6 and T1-T2 of the contract.

use shared::abi::errno::{EBUSY, EINVAL, ERANGE};
use shared::pae::{self, ENTRIES, L3_ALLOWED, L3_ENTRIES, PAGE_SHIFT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::alias::{self, HostCheck};
use super::frame_table::FrameType;
use super::{PvMmu, Refusal, Rule};

/// L1 flags a guest may not set (V3): cache control and global pages.
pub const L1_FORBIDDEN: u64 = pae::PWT | pae::PCD | pae::PAT | pae::G;
/// Bits 36..62 of an L1 or L2 entry: above the 36-bit frame field, below NX.
pub const ADDR_BITS_ABOVE_36: u64 = 0x7fff_fff0_0000_0000;
/// The first frame an L3 may not lie in (CR3 is 32 bits in PAE mode).
pub const L3_LIMIT_PFN: u64 = (4u64 << 30) >> PAGE_SHIFT;

/// A pagetable's entries.
pub type Table = [u64; ENTRIES];

/// Bits the CPU sets in entries of live tables by itself (accessed, dirty): guest
/// memory may have them where the host's copy does not.
pub const HARDWARE_BITS: u64 = pae::A | pae::D;

/// The bits the CPU may set by itself in an entry of a table of type `ty`:
/// accessed and dirty in L1s and L2s; in an L3 (PAE's PDPTEs, which no CPU
/// writes) only accessed, which QEMU's emulated SVM sets as it walks them
/// (docs/qemu-hosted.md). Bit 6, dirty elsewhere, is reserved in a PDPTE: a
/// change there is the guest's, and must be seen.
pub fn hardware_bits(ty: FrameType) -> u64 {
    if ty == FrameType::L3 {
        pae::A
    } else {
        HARDWARE_BITS
    }
}

/// A table's entries as read from guest memory.
pub(super) fn read_table(mem: &GuestMemoryMmap, pfn: u64) -> Option<Table> {
    let mut bytes = [0u8; 4096];
    mem.read_slice(&mut bytes, GuestAddress(pfn << PAGE_SHIFT)).ok()?;
    let mut t = [0u64; ENTRIES];
    for (e, b) in t.iter_mut().zip(bytes.chunks_exact(8)) {
        *e = u64::from_le_bytes(b.try_into().ok()?);
    }
    Some(t)
}

/// A table's bytes as guest memory holds them (little-endian, as this host).
pub(super) fn as_bytes(t: &Table) -> &[u8; 4096] {
    const _: () = assert!(cfg!(target_endian = "little") && std::mem::size_of::<Table>() == 4096);
    // SAFETY: a `[u64; 512]` is 4096 initialised bytes without padding, aligned
    // more strictly than bytes, and the view borrows it immutably.
    unsafe { &*(t as *const Table).cast::<[u8; 4096]>() }
}

fn present(e: u64) -> bool {
    e & pae::P != 0
}

/// Entries of a table of type `ty` that the host validates (an L3 has four).
pub fn entries_of(ty: FrameType) -> usize {
    if ty == FrameType::L3 {
        L3_ENTRIES
    } else {
        ENTRIES
    }
}

impl PvMmu {
    /// A general reference on a frame the guest may map.
    pub(super) fn get_frame(&mut self, pfn: u64) -> Result<(), Refusal> {
        if !self.frames.is_guest_frame(pfn) {
            let rule = if self.frames.len() > pfn { Rule::V7 } else { Rule::V6 };
            return Err(Refusal::new(rule, EINVAL, pfn, "frame is not guest RAM"));
        }
        self.frames.get_ref(pfn).map_err(|_| Refusal::new(Rule::T1, EINVAL, pfn, "reference count overflow"))
    }

    /// How many validated L1 entries map `pfn` read-write, by the selected check
    /// (and, when cross-checking, by all three; a disagreement is counted).
    pub(super) fn writable_mappings(&mut self, pfn: u64) -> u64 {
        let t = std::time::Instant::now();
        let n = self.check_with(self.check, pfn);
        self.stats.alias_check_ns += t.elapsed().as_nanos() as u64;
        self.stats.alias_checks += 1;
        if self.cross_check {
            let by = |c: HostCheck| if c == self.check { n } else { self.check_with(c, pfn) };
            let (typecount, scan, rmap) = (by(HostCheck::Typecount), by(HostCheck::Scan), by(HostCheck::Rmap));
            if typecount != scan || scan != rmap {
                self.stats.check_disagreements += 1;
                log::warn!("alias checks disagree on frame {pfn:#x}: typecount {typecount}, scan {scan}, rmap {rmap}");
                if self.stats.disagreements.len() < super::MAX_DISAGREEMENTS {
                    self.stats.disagreements.push(super::Disagreement { frame: pfn, typecount, scan, rmap });
                }
            }
        }
        n
    }

    fn check_with(&self, check: HostCheck, pfn: u64) -> u64 {
        match check {
            HostCheck::Typecount => {
                if self.frames.ty(pfn) == FrameType::Writable {
                    self.frames.type_count(pfn) as u64
                } else {
                    0
                }
            }
            HostCheck::Scan => alias::scan(&self.tables, &self.l1s, pfn),
            HostCheck::Rmap => self.rmap.writable_mappings(pfn),
        }
    }

    /// Takes a type reference of `ty` on `pfn` (the caller holds a general one),
    /// validating the frame if it becomes a pagetable. `pin` forces the alias check
    /// even when the frame already has the type.
    pub(super) fn get_type(
        &mut self,
        mem: &GuestMemoryMmap,
        pfn: u64,
        ty: FrameType,
        pin: bool,
    ) -> Result<(), Refusal> {
        let cur = self.frames.ty(pfn);
        let count = self.frames.type_count(pfn);
        let overflow = || Refusal::new(Rule::T1, EINVAL, pfn, "type count overflow");
        if ty == FrameType::Writable {
            if count > 0 && cur.is_pagetable() && self.weaken != super::HostWeaken::V1 {
                return Err(Refusal::new(Rule::V1, EBUSY, pfn, "RW mapping of a pagetable"));
            }
            return self.frames.inc_type(pfn, ty).map(drop).map_err(|_| overflow());
        }
        // A validation cut at an earlier exit's budget goes on where it stopped,
        // for whichever request asks next (as Xen's PGT_partial).
        if let Some(&next) = self.partial.get(&pfn) {
            if cur != ty {
                return Err(Refusal::new(Rule::T1, EINVAL, pfn, "frame already has another type"));
            }
            return self.validate_from(mem, pfn, ty, next, true);
        }
        if count == 0 || cur != ty || pin {
            let n = self.writable_mappings(pfn);
            if n > 0 {
                self.stats.alias_refusals += 1;
                return Err(Refusal {
                    alias: true,
                    ..Refusal::new(Rule::T1, EINVAL, pfn, "frame has writable mappings")
                });
            }
        }
        if count > 0 {
            if cur != ty && self.weaken != super::HostWeaken::T1 {
                return Err(Refusal::new(Rule::T1, EINVAL, pfn, "frame already has another type"));
            }
            // (Weakened: the frame keeps the type it has, and its counts stay right.)
            return self.frames.inc_type(pfn, cur).map(drop).map_err(|_| overflow());
        }
        if ty == FrameType::L3 && pfn >= L3_LIMIT_PFN && self.weaken != super::HostWeaken::V5 {
            return Err(Refusal::new(Rule::V5, ERANGE, pfn, "L3 above 4 GiB"));
        }
        let Some(entries) = read_table(mem, pfn) else {
            return Err(Refusal::new(Rule::V6, EINVAL, pfn, "frame is not guest RAM"));
        };
        // The frame has its type while its entries are checked, so that an entry
        // mapping the table itself read-write is refused (V1). Its entries are
        // read once: a validation cut at the budget goes on with this copy.
        self.frames.inc_type(pfn, ty).map_err(|_| overflow())?;
        self.tables.insert(pfn, Box::new(entries));
        self.validate_from(mem, pfn, ty, 0, false)
    }

    /// Validates the entries `start..` of `pfn` (typed `ty`, its entries in
    /// `tables`). Past the exit's budget, between two entries of an L2 or an L3
    /// (an L1's 512 are never cut), it stops (Xen's PGT_partial): the entries
    /// before hold their references, the frame keeps its type and a general
    /// reference of its own, and the answer is a restart. `resumed`: this
    /// continues such a cut validation, which holds that reference.
    fn validate_from(
        &mut self,
        mem: &GuestMemoryMmap,
        pfn: u64,
        ty: FrameType,
        start: usize,
        resumed: bool,
    ) -> Result<(), Refusal> {
        let Some(entries) = self.tables.get(&pfn).map(|t| **t) else {
            debug_assert!(false, "table {pfn:#x} under validation has no copy");
            return Err(Refusal::new(Rule::T1, EINVAL, pfn, "table under validation has no copy"));
        };
        self.partial.remove(&pfn);
        self.frames.set_partial(pfn, false);
        for i in start..entries_of(ty) {
            let cut_here = i > start && ty != FrameType::L1 && self.over_budget();
            let r = if cut_here { Err(Refusal::restart(pfn)) } else { self.get_entry(mem, ty, pfn, i, entries[i]) };
            let Err(r) = r else {
                self.work += 1;
                continue;
            };
            // A cut (here, or in the table entry i points at): entries 0..i
            // stay validated, and the frame waits for the request to come again.
            if r.restart && (resumed || self.frames.get_ref(pfn).is_ok()) {
                self.partial.insert(pfn, i);
                self.frames.set_partial(pfn, true);
                self.stats.validations_cut += 1;
                return Err(r);
            }
            for j in (0..i).rev() {
                self.put_entry(mem, ty, pfn, j, entries[j]);
            }
            self.tables.remove(&pfn);
            self.frames.dec_type(pfn);
            if resumed {
                self.frames.put_ref(pfn);
            }
            return Err(if r.restart { Refusal::new(Rule::T1, EINVAL, pfn, "reference count overflow") } else { r });
        }
        if resumed {
            // The caller holds its own general reference; the cut one goes.
            self.frames.put_ref(pfn);
        }
        self.stats.validations += 1;
        if ty == FrameType::L1 {
            self.l1s.insert(pfn);
        }
        Ok(())
    }

    /// Drops a type reference; at zero a pagetable is devalidated: every reference
    /// its entries held is dropped (T2).
    pub(super) fn put_type(&mut self, mem: &GuestMemoryMmap, pfn: u64) {
        let ty = self.frames.ty(pfn);
        if self.frames.dec_type(pfn) != 0 || !ty.is_pagetable() {
            return;
        }
        self.stats.devalidations += 1;
        if ty == FrameType::L1 {
            self.l1s.remove(&pfn);
        }
        // The entries as validated, not as memory says now: a write the host never
        // saw (one that slipped past the protection, or any write on a host that
        // cannot protect) must not make it drop references it never took.
        let entries = self.tables.remove(&pfn);
        debug_assert!(entries.is_some(), "validated table {pfn:#x} has no copy");
        if let Some(entries) = entries.filter(|_| self.weaken != super::HostWeaken::T2) {
            self.work += entries_of(ty) as u64;
            for (i, &e) in entries.iter().enumerate().take(entries_of(ty)) {
                self.put_entry(mem, ty, pfn, i, e);
            }
        }
    }

    /// The references entry `idx` (value `e`) of table `table` of type `ty` takes.
    pub(super) fn get_entry(
        &mut self,
        mem: &GuestMemoryMmap,
        ty: FrameType,
        table: u64,
        idx: usize,
        e: u64,
    ) -> Result<(), Refusal> {
        if !present(e) {
            return Ok(());
        }
        let target = pae::frame(e);
        // PAE's frame field is 36 bits here (the guest's RAM ends at 64 GiB),
        // but a CPU with a wider MAXPHYADDR reads bits 36..51 as address and
        // 52..62 as reserved: an entry that sets them maps another frame than
        // the one validated, or faults. Refused as a frame outside RAM.
        if matches!(ty, FrameType::L1 | FrameType::L2)
            && e & ADDR_BITS_ABOVE_36 != 0
            && self.weaken != super::HostWeaken::V6
        {
            return Err(Refusal::new(Rule::V6, EINVAL, target, "address or reserved bits above bit 35"));
        }
        match ty {
            FrameType::L1 => {
                if e & L1_FORBIDDEN != 0 && self.weaken != super::HostWeaken::V3 {
                    return Err(Refusal::new(Rule::V3, EINVAL, target, "PWT, PCD, PAT or G in an L1 entry"));
                }
                match self.get_frame(target) {
                    // Weakened: the entry is taken, with no reference (there is
                    // no frame to count; put_entry skips it likewise).
                    Err(r) if r.rule == Rule::V6 && self.weaken == super::HostWeaken::V6 => return Ok(()),
                    r => r?,
                }
                if e & pae::RW != 0 {
                    if let Err(r) = self.get_type(mem, target, FrameType::Writable, false) {
                        self.frames.put_ref(target);
                        return Err(r);
                    }
                    if self.keep_rmap {
                        self.rmap.add(target, table, idx);
                    }
                }
                Ok(())
            }
            FrameType::L2 => {
                if e & pae::PS != 0 {
                    return Err(Refusal::new(Rule::V4, EINVAL, target, "2 MiB page (PSE) in an L2 entry"));
                }
                self.get_frame(target)?;
                // Only a table whose validation is done can be a linear
                // target: through one cut halfway, the CPU would read entries
                // nobody checked.
                let r = if self.frames.is_validated(target, FrameType::L2) {
                    self.get_linear(table, target, e)
                } else {
                    self.get_type(mem, target, FrameType::L1, false)
                };
                r.inspect_err(|_| self.frames.put_ref(target))
            }
            FrameType::L3 => {
                if e & !(pae::ADDR_MASK | L3_ALLOWED) != 0 && self.weaken != super::HostWeaken::V5 {
                    return Err(Refusal::new(Rule::V5, EINVAL, target, "L3 entry flags other than P and cache bits"));
                }
                self.get_frame(target)?;
                self.get_type(mem, target, FrameType::L2, false).inspect_err(|_| self.frames.put_ref(target))
            }
            FrameType::None | FrameType::Writable => Ok(()),
        }
    }

    /// A linear pagetable entry: an L2 entry pointing at another validated L2,
    /// read-only, one level deep (the target holds no linear entries and the table
    /// holding the entry is no linear target).
    fn get_linear(&mut self, table: u64, target: u64, e: u64) -> Result<(), Refusal> {
        let deny = |why| Refusal::new(Rule::V4, EINVAL, target, why);
        if e & pae::RW != 0 && self.weaken != super::HostWeaken::V4 {
            return Err(deny("linear L2 entry is writable"));
        }
        if target == table {
            return Err(deny("linear L2 entry maps its own table"));
        }
        let (tbl_entries, tbl_uses) = self.linear.get(&table).copied().unwrap_or((0, 0));
        let (tgt_entries, _) = self.linear.get(&target).copied().unwrap_or((0, 0));
        if tbl_uses != 0 || tgt_entries != 0 {
            return Err(deny("linear L2 entries more than one level deep"));
        }
        self.frames.inc_type(target, FrameType::L2).map_err(|_| deny("type count overflow"))?;
        self.linear.insert(table, (tbl_entries + 1, tbl_uses));
        self.linear.entry(target).or_insert((0, 0)).1 += 1;
        Ok(())
    }

    /// Drops the references an entry held (the entry was validated).
    pub(super) fn put_entry(&mut self, mem: &GuestMemoryMmap, ty: FrameType, table: u64, idx: usize, e: u64) {
        if !present(e) || !ty.is_pagetable() {
            return;
        }
        let target = pae::frame(e);
        if self.weaken == super::HostWeaken::V6 && !self.frames.is_guest_frame(target) {
            // Only a V6-weakened host validates such an entry, taking nothing.
            return;
        }
        match ty {
            FrameType::L1 if e & pae::RW != 0 => {
                if self.keep_rmap {
                    self.rmap.remove(target, table, idx);
                }
                self.frames.dec_type(target);
            }
            FrameType::L2 | FrameType::L3 => {
                // A read-only L2 entry at another L2, from a table holding linear
                // entries, is one of them.
                if ty == FrameType::L2
                    && e & pae::RW == 0
                    && target != table
                    && self.frames.ty(target) == FrameType::L2
                    && self.linear.get(&table).is_some_and(|l| l.0 > 0)
                {
                    self.put_linear(table, target);
                }
                self.put_type(mem, target);
            }
            _ => {}
        }
        self.frames.put_ref(target);
    }

    fn put_linear(&mut self, table: u64, target: u64) {
        for (pfn, uses) in [(table, false), (target, true)] {
            if let Some(l) = self.linear.get_mut(&pfn) {
                if uses {
                    l.1 -= 1;
                } else {
                    l.0 -= 1;
                }
                if *l == (0, 0) {
                    self.linear.remove(&pfn);
                }
            }
        }
    }
}

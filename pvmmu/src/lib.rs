//! The host as a Xen-style paravirtual MMU (the rules: [`rules`], docs/pvmmu-rules.md):
//! a frame table, validated pagetable updates (`mmu_update`), pins, roots and
//! flushes (`mmuext_op`), `update_va_mapping`, `multicall`, and the alias check with
//! its trap-back into the guest.
//!
//! One lock (the caller's) covers the whole state: a batch runs under it as one
//! exit. Nothing a guest sends can make this code panic; every refusal names the
//! contract rule it enforces.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod alias;
pub mod frame_table;
pub mod guest_memory;
pub mod ops;
pub mod pin_cost;
pub mod protection;
pub mod rules;
#[cfg(test)]
mod tests;
pub mod validate;
pub mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use shared::boot::MAX_VCPUS;

pub use alias::HostCheck;
pub use frame_table::{FrameCensus, FrameTable, FrameType};
pub use rules::Rule;
pub use shared::config::{HostWeaken, OnViolation};

/// Why a request was refused: the rule, the negative errno the guest gets, the
/// frame concerned, and whether the only problem was writable mappings of a frame
/// that was to become a pagetable (what the trap-back can fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub errno: i32,
    pub pfn: u64,
    pub alias: bool,
    /// Not a refusal: the validation of `pfn` was cut at the exit's budget
    /// (`-ERESTART`); the same request issued again goes on with it.
    pub restart: bool,
    pub why: &'static str,
}

impl Refusal {
    /// A refusal of `rule` with the (positive) errno `errno`, about frame `pfn`.
    pub fn new(rule: Rule, errno: i32, pfn: u64, why: &'static str) -> Self {
        Refusal { rule, errno: -errno, pfn, alias: false, restart: false, why }
    }

    /// The validation of `pfn` stopped at the exit's budget, to go on when the
    /// request is issued again (H2).
    pub fn restart(pfn: u64) -> Self {
        Refusal {
            restart: true,
            ..Refusal::new(Rule::Request, shared::abi::errno::ERESTART, pfn, "validation cut at the exit budget")
        }
    }
}

/// How the host is set up.
#[derive(Clone, Copy, Debug)]
pub struct PvMmuConfig {
    pub check: HostCheck,
    /// Ask all three alias checks every time and count disagreements.
    pub cross_check: bool,
    /// Test only: a rule deliberately not enforced, to show the contract suite fail.
    pub weaken: HostWeaken,
    /// Stop the guest at a violation, or record it and go on.
    pub on_violation: OnViolation,
}

impl PvMmuConfig {
    pub fn from_config(c: &shared::config::Config) -> Self {
        PvMmuConfig {
            check: c.host_check(),
            cross_check: c.host_cross_check(),
            weaken: c.host_weaken(),
            on_violation: c.host_on_violation(),
        }
    }
}

/// The PV MMU's part of the run report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PvMmuReport {
    pub host_check: String,
    pub cross_check: bool,
    /// The read-only memslots over validated tables (absent without a VM).
    #[serde(default)]
    pub write_protect: Option<protection::ProtectStats>,
    /// Frames by type at the end of the run.
    pub frames: FrameCensus,
    #[serde(flatten)]
    pub stats: PvMmuStats,
}

/// What the PV MMU did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PvMmuStats {
    /// Applied requests by kind (`mmu_update`, `pin_l1_table`, ...).
    pub applied: BTreeMap<String, u64>,
    /// Refused requests by rule.
    pub refused: BTreeMap<String, u64>,
    pub validations: u64,
    pub devalidations: u64,
    pub alias_checks: u64,
    /// Host time in the selected alias check.
    pub alias_check_ns: u64,
    /// Pins or type changes refused because the frame had writable mappings.
    pub alias_refusals: u64,
    /// The three checks disagreed (only counted with cross-checking on).
    pub check_disagreements: u64,
    /// The first [`MAX_DISAGREEMENTS`] of them: the frame and what each check said.
    #[serde(default)]
    pub disagreements: Vec<Disagreement>,
    /// Pins that trapped back into the guest, and those that still failed after it.
    pub traps_back: u64,
    pub trap_back_failures: u64,
    /// Direct guest writes to protected tables applied through the assist.
    pub emulated_writes: u64,
    /// Direct guest writes to watched (unprotected) tables found by the dirty
    /// log at a hypercall exit: each applied through the assist (and counted in
    /// `emulated_writes` too) or undone as a violation.
    #[serde(default)]
    pub writes_found: u64,
    /// Contract violations (with `--host-on-violation continue`; otherwise the
    /// first one ends the run), the first [`MAX_VIOLATIONS`] in detail.
    pub violations_total: u64,
    pub violations: Vec<ViolationRecord>,
    /// The end-of-run audit of the frame table against guest memory ([`Audit`]):
    /// all must be 0.
    pub audit_rw_pagetables: u64,
    pub audit_count_mismatches: u64,
    /// Validated L1s/L2s, and L3s, whose memory differs from the host's copy.
    #[serde(default)]
    pub audit_tables_diverged: u64,
    #[serde(default)]
    pub audit_l3_diverged: u64,
    /// Flushes of guest TLBs the host carried out, by reason.
    pub flushes: BTreeMap<String, u64>,
    /// Batches cut at the exit budget (`-ERESTART`), between two requests or
    /// inside one whose tree validation was cut.
    #[serde(default)]
    pub exit_restarts: u64,
    /// Validations of an L2 or L3 cut at the exit budget (Xen's PGT_partial),
    /// each to go on when its request is issued again.
    #[serde(default)]
    pub validations_cut: u64,
    /// The longest PV MMU exit: its host time, the entries it validated or
    /// dropped, and the call.
    #[serde(default)]
    pub max_exit_ns: u64,
    #[serde(default)]
    pub max_exit_entries: u64,
    #[serde(default)]
    pub max_exit_call: String,
}

/// The end-of-run audit (every figure must be 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// RW entries of validated L1s that map a pagetable.
    pub rw_pagetables: u64,
    /// Writable frames whose type count differs from their RW mappings.
    pub count_mismatches: u64,
    /// Validated L1s and L2s whose memory differs from what the host validated (a
    /// direct write the host never saw: possible only where the tables are not
    /// protected, i.e. on a QEMU TCG host once the guest runs on them).
    pub tables_diverged: u64,
    /// The same for L3s, which are never write-protected (see
    /// [`PvMmu::take_protection_changes`]): only a guest with a writable mapping
    /// of its own L3, i.e. one not running on validated tables, can do it.
    pub l3_diverged: u64,
}

/// How many check disagreements a report lists in detail.
pub const MAX_DISAGREEMENTS: usize = 8;

/// The three alias checks gave different counts of writable mappings of `frame`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Disagreement {
    pub frame: u64,
    pub typecount: u64,
    pub scan: u64,
    pub rmap: u64,
}

/// How many violations a report lists in detail.
pub const MAX_VIOLATIONS: usize = 64;

/// One contract violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ViolationRecord {
    pub vcpu: u32,
    pub rule: Rule,
    pub frame: u64,
    pub entry: u64,
    pub detail: String,
}

/// A pin that trapped back into the guest: the batch resumes at `done` when the
/// guest re-issues the same block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub block_gpa: u64,
    /// The batch's array and count, as the call named them.
    pub ops: (u64, u64),
    pub done: u64,
    pub pfn: u64,
}

/// The bits of a PAE CR3 that select a 32-byte PDPT inside its frame.
pub const CR3_SLOT_MASK: u64 = 0xfe0;

pub struct PvMmu {
    frames: FrameTable,
    check: HostCheck,
    cross_check: bool,
    weaken: HostWeaken,
    on_violation: OnViolation,
    /// Kept when the rmap check is selected or cross-checking is on.
    keep_rmap: bool,
    rmap: alias::Rmap,
    /// Validated L1 tables (what the scan check reads).
    l1s: HashSet<u64>,
    /// Linear L2 entries: table -> (linear entries it holds, linear entries at it).
    linear: HashMap<u64, (u32, u32)>,
    /// Each vCPU's root (an L3 frame) announced with NEW_BASEPTR.
    roots: [Option<u64>; MAX_VCPUS],

    /// Where the guest wants alias fixups delivered (`set_callbacks`).
    fixup_entry: Option<u64>,
    pending: [Option<Continuation>; MAX_VCPUS],
    /// Every validated table as validated and updated through the host since: the
    /// host's truth about what its entries reference. At protection time memory
    /// must still say the same, or a direct write slipped in before the protection
    /// (it is undone); devalidation drops what this copy holds, not what memory says.
    tables: HashMap<u64, Box<validate::Table>>,
    /// Xen's writable-pagetables assist: direct writes to protected tables are
    /// emulated as validated updates instead of stopping the guest.
    assist: bool,
    /// Entries validated or dropped in the current exit (the budget's measure).
    work: u64,
    /// Validations cut at an exit's budget (Xen's PGT_partial): the frame and
    /// the entry to go on from. The entries as first read are in `tables`.
    partial: HashMap<u64, usize>,
    pub stats: PvMmuStats,
}

/// What became of frames that became or stopped being pagetables, for the
/// write protection ([`PvMmu::take_protection_changes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableChanges {
    /// Frames to put in read-only memslots (`true`) or take out.
    pub protect: Vec<(u64, bool)>,
    /// Frames that became validated tables (`true`) or stopped being tables: the
    /// dirty log watches those not protected.
    pub tables: Vec<(u64, bool)>,
    /// Direct writes that slipped into tables validated since the last call,
    /// undone ([`Fate::Late`]).
    pub late: Vec<DirectWrite>,
    /// A frame became an L3: every vCPU's TLB must be flushed, since no
    /// read-only memslot revokes a writable entry of it that a TLB kept (T3).
    pub new_l3: bool,
}

/// A direct guest write the host found in a validated table: by the dirty log
/// in a watched table, or in a table written between its validation and its
/// protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectWrite {
    pub pfn: u64,
    pub index: usize,
    /// The entry the host validated.
    pub validated: u64,
    /// What the guest wrote.
    pub found: u64,
    pub fate: Fate,
}

/// What the host did with a direct write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Applied as a validated one-entry update (the writable-pagetables assist).
    Applied,
    /// Undone: the guest did not turn the assist on.
    NoAssist,
    /// Undone: the write came before the table was protected.
    Late,
    /// Undone: the update it amounts to is refused.
    Refused(Refusal),
}

impl DirectWrite {
    /// A write that was undone as a violation: the rule it broke (the refused
    /// update's, else the contract's ban on direct writes) and what happened;
    /// `found_at` says how it was found (a late write's text says when it
    /// happened instead). None for a write that was applied.
    pub fn violation(&self, found_at: &str) -> Option<(Rule, String)> {
        let written = format!(
            "frame {:#x} entry {} was written directly ({:#x} -> {:#x})",
            self.pfn, self.index, self.validated, self.found
        );
        let undone = "the write is undone";
        match self.fate {
            Fate::Applied => None,
            Fate::NoAssist => Some((
                Rule::DirectWrite,
                format!("{written}, {found_at}: the writable-pagetables assist is off; {undone}"),
            )),
            Fate::Refused(r) => Some((
                r.rule,
                format!("{written}, {found_at}: the update is refused ({}: {}); {undone}", r.rule, r.why),
            )),
            Fate::Late => {
                Some((Rule::DirectWrite, format!("{written} between its validation and its protection; {undone}")))
            }
        }
    }
}

impl PvMmu {
    pub fn new(regions: &[shared::boot::MemRegion], config: PvMmuConfig) -> Self {
        PvMmu {
            frames: FrameTable::new(regions),
            check: config.check,
            cross_check: config.cross_check,
            weaken: config.weaken,
            on_violation: config.on_violation,
            keep_rmap: config.check == HostCheck::Rmap || config.cross_check,
            rmap: alias::Rmap::default(),
            l1s: HashSet::new(),
            linear: HashMap::new(),
            roots: [None; MAX_VCPUS],

            fixup_entry: None,
            pending: [None; MAX_VCPUS],
            tables: HashMap::new(),
            assist: false,
            work: 0,
            partial: HashMap::new(),
            stats: PvMmuStats::default(),
        }
    }

    /// Whether frames became or stopped being pagetables since the last
    /// [`PvMmu::take_protection_changes`].
    pub fn protection_pending(&self) -> bool {
        self.frames.has_changes()
    }

    /// The frames to protect (`true`) or unprotect, and the direct writes that
    /// slipped into tables validated since the last call, before their protection
    /// (found by comparing memory with the validated copy). Each such write is
    /// undone: memory gets the validated entry back, so what the CPU walks is what
    /// the host checked. Call with every vCPU stopped.
    pub fn take_protection_changes(&mut self, mem: &vm_memory::GuestMemoryMmap) -> TableChanges {
        // L3s are left writable in the memslots: the CPU reads a PDPT at every CR3
        // load, and QEMU's emulated SVM (the QEMU-hosted KVM) then sets the
        // accessed bit of its entries; a read-only memslot turns that write into
        // a nested page fault KVM retries forever (the guest hung in `mov cr3`,
        // 500,000 exits in 30 s). A guest cannot map an L3 writable (V1), so what
        // would be lost is the revocation of stale writable TLB entries (T3) for
        // L3 frames: a flush of every vCPU's TLB does it instead (`new_l3`); see
        // docs/pvmmu.md.
        let changed = self.frames.take_changed();
        let mut late = vec![];
        for &(pfn, validated) in &changed {
            if validated {
                late.extend(self.undo_unseen_writes(mem, pfn));
            }
        }
        let revoke = self.weaken != HostWeaken::T3;
        let protect =
            changed.iter().map(|&(pfn, on)| (pfn, on && revoke && self.frames.ty(pfn) != FrameType::L3)).collect();
        if !late.is_empty() {
            self.flushed("late_write_undone");
        }
        let new_l3 = revoke && changed.iter().any(|&(pfn, on)| on && self.frames.ty(pfn) == FrameType::L3);
        if new_l3 {
            self.flushed("new_l3");
        }
        TableChanges { protect, tables: if revoke { changed } else { vec![] }, late, new_l3 }
    }

    /// Compares the tables `pfns` (found written by the dirty log) with what the
    /// host validated. Each entry that differs (beyond the bits the CPU sets) is a
    /// direct guest write: with the assist on it is applied as a validated
    /// one-entry update, otherwise, or if the update is refused, memory gets the
    /// validated entry back. Returns the writes and whether TLBs must be flushed
    /// (an applied update that needs it, or any write undone: the CPUs may have
    /// cached translations through it).
    pub fn reconcile(&mut self, mem: &vm_memory::GuestMemoryMmap, pfns: &[u64]) -> (Vec<DirectWrite>, bool) {
        let (mut found, mut flush) = (vec![], false);
        if self.weaken == HostWeaken::DirectWrite {
            return (found, flush);
        }
        for &pfn in pfns {
            for (index, validated, value) in self.unseen_writes(mem, pfn) {
                let at = (pfn << shared::pae::PAGE_SHIFT) + index as u64 * 8;
                self.stats.writes_found += 1;
                let fate = if self.assist {
                    self.stats.emulated_writes += 1;
                    match self.update_entry(mem, at, value) {
                        Ok(f) => {
                            flush |= f;
                            Fate::Applied
                        }
                        Err(r) => {
                            self.refused(&r);
                            Fate::Refused(r)
                        }
                    }
                } else {
                    Fate::NoAssist
                };
                if fate != Fate::Applied {
                    let _ = crate::guest_memory::write_obj(mem, at, &validated);
                }
                found.push(DirectWrite { pfn, index, validated, found: value, fate });
            }
        }
        // Until now the CPUs walked what the guest wrote: a TLB may hold a
        // translation through an entry that was undone.
        let undone = found.iter().any(|w| w.fate != Fate::Applied);
        if undone {
            self.flushed("direct_write_undone");
        } else if flush {
            self.flushed("l2_l3_update");
        }
        (found, flush || undone)
    }

    /// Entries of table `pfn` whose memory differs from the validated copy (other
    /// than in the bits the CPU sets), each written back as validated.
    fn undo_unseen_writes(&mut self, mem: &vm_memory::GuestMemoryMmap, pfn: u64) -> Vec<DirectWrite> {
        let mut late = vec![];
        for (index, validated, found) in self.unseen_writes(mem, pfn) {
            let at = (pfn << shared::pae::PAGE_SHIFT) + index as u64 * 8;
            let _ = crate::guest_memory::write_obj(mem, at, &validated);
            late.push(DirectWrite { pfn, index, validated, found, fate: Fate::Late });
        }
        late
    }

    /// The bits the CPU may set in an entry of a table of type `ty`
    /// ([`validate::hardware_bits`]; test only: both A and D in an L3 under
    /// `--host-weaken l3-hardware-bits`).
    fn hardware_bits(&self, ty: FrameType) -> u64 {
        if self.weaken == HostWeaken::L3HardwareBits {
            validate::HARDWARE_BITS
        } else {
            validate::hardware_bits(ty)
        }
    }

    /// Entries of validated table `pfn` whose memory differs from the host's copy
    /// other than in the bits the CPU sets: `(index, validated, in memory)`. One
    /// memcmp settles the usual case, a table only walked; the copy takes up the
    /// bits the CPU set, so that the next look is that cheap too (they hold no
    /// reference: the copy is what the references count on).
    fn unseen_writes(&mut self, mem: &vm_memory::GuestMemoryMmap, pfn: u64) -> Vec<(usize, u64, u64)> {
        let mut bytes = [0u8; 4096];
        let at = vm_memory::GuestAddress(pfn << shared::pae::PAGE_SHIFT);
        let hardware = self.hardware_bits(self.frames.ty(pfn));
        let Some(copy) = self.tables.get_mut(&pfn) else { return vec![] };
        if vm_memory::Bytes::read_slice(mem, &mut bytes, at).is_err() || validate::as_bytes(copy) == &bytes {
            return vec![];
        }
        let mut differ = vec![];
        for (i, (v, b)) in copy.iter_mut().zip(bytes.chunks_exact(8)).enumerate() {
            let found = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            if (*v ^ found) & !hardware != 0 {
                differ.push((i, *v, found));
            } else {
                *v = found;
            }
        }
        differ
    }

    /// `vm_assist(cmd, type)`: only the writable-pagetables assist (type 2).
    pub fn vm_assist(&mut self, cmd: u64, kind: u64) -> ops::BatchResult {
        use shared::abi::pvmmu::vmasst;
        let rc = match (cmd, kind) {
            (vmasst::CMD_ENABLE, vmasst::TYPE_WRITABLE_PAGETABLES) => {
                self.assist = true;
                0
            }
            (vmasst::CMD_DISABLE, vmasst::TYPE_WRITABLE_PAGETABLES) => {
                self.assist = false;
                0
            }
            _ => -shared::abi::errno::EINVAL,
        };
        ops::BatchResult { rc, ..Default::default() }
    }

    pub fn assist(&self) -> bool {
        self.assist
    }

    pub fn on_violation(&self) -> OnViolation {
        self.on_violation
    }

    /// Records a violation for the report.
    pub fn record_violation(&mut self, v: ViolationRecord) {
        self.stats.violations_total += 1;
        if self.stats.violations.len() < MAX_VIOLATIONS {
            self.stats.violations.push(v);
        }
    }

    /// Checks the frame table against guest memory: no validated L1 maps a
    /// pagetable writable, every writable frame's type count is its number of RW
    /// mappings, and every validated table says in memory what the host validated.
    pub fn audit(&self, mem: &vm_memory::GuestMemoryMmap) -> Audit {
        let (mut diverged, mut l3_diverged) = (0, 0);
        for (&pfn, copy) in &self.tables {
            let ty = self.frames.ty(pfn);
            // Every entry, an L3's 4..511 too: the host validates only an L3's
            // first four, but keeps the rest as they were (docs/pvmmu.md).
            let entries = if ty == FrameType::L3 && self.weaken == HostWeaken::L3Audit {
                shared::pae::L3_ENTRIES
            } else {
                copy.len()
            };
            let hardware = self.hardware_bits(ty);
            let differs = validate::read_table(mem, pfn)
                .is_none_or(|now| copy.iter().zip(now.iter()).take(entries).any(|(a, b)| (a ^ b) & !hardware != 0));
            if differs {
                log::warn!("audit: {} differs in memory from what the host validated", self.describe_frame(pfn));
                *(if ty == FrameType::L3 { &mut l3_diverged } else { &mut diverged }) += 1;
            }
        }
        let mut rw: HashMap<u64, u32> = HashMap::new();
        let mut bad = 0;
        for &l1 in &self.l1s {
            let Some(t) = validate::read_table(mem, l1) else { continue };
            for e in t {
                if e & (shared::pae::P | shared::pae::RW) == shared::pae::P | shared::pae::RW {
                    let target = shared::pae::frame(e);
                    if self.frames.ty(target).is_pagetable() {
                        bad += 1;
                    }
                    *rw.entry(target).or_insert(0) += 1;
                }
            }
        }
        let mismatches = rw
            .iter()
            .filter(|&(&pfn, &n)| !self.frames.ty(pfn).is_pagetable() && self.frames.type_count(pfn) != n)
            .count() as u64;
        Audit { rw_pagetables: bad, count_mismatches: mismatches, tables_diverged: diverged, l3_diverged }
    }

    /// The rule this host was told not to enforce (test only).
    pub fn weaken(&self) -> HostWeaken {
        self.weaken
    }

    /// The guest wrote `data` directly at `gpa` inside a protected table, with the
    /// assist on: the write is applied as a validated one-entry update (a 4-byte
    /// write is completed with the entry's other half from memory). Returns whether
    /// TLBs must be flushed.
    pub fn emulate_direct_write(
        &mut self,
        mem: &vm_memory::GuestMemoryMmap,
        gpa: u64,
        data: &[u8],
    ) -> Result<bool, Refusal> {
        let entry_at = gpa & !7;
        let old = crate::guest_memory::read_obj::<u64>(mem, entry_at).unwrap_or(0);
        let mut bytes = old.to_le_bytes();
        let off = (gpa - entry_at) as usize;
        if off + data.len() > 8 || data.is_empty() {
            return Err(Refusal::new(
                Rule::Request,
                shared::abi::errno::EINVAL,
                gpa >> 12,
                "a direct write across two entries",
            ));
        }
        bytes[off..off + data.len()].copy_from_slice(data);
        self.stats.emulated_writes += 1;
        let r = self.update_entry(mem, entry_at, u64::from_le_bytes(bytes));
        if let Err(e) = &r {
            self.refused(e);
        }
        r
    }

    /// Where the guest registered its alias fixup.
    pub fn fixup_entry(&self) -> Option<u64> {
        self.fixup_entry
    }

    /// Whether `pfn` is a validated L3: a root a vCPU may run on. Not one whose
    /// validation was cut and is unfinished.
    pub fn is_validated_root(&self, pfn: u64) -> bool {
        self.frames.is_validated(pfn, FrameType::L3)
    }

    /// Whether the host may write `len` bytes at `gpa` on the guest's behalf (a
    /// hypercall's answer, a multicall's results, a trap-back frame): only
    /// where the guest itself could have written. Not into a frame the host
    /// validated as a pagetable: the host writes through its own mapping, which
    /// neither a read-only memslot nor the dirty log sees, so guest-chosen
    /// numbers would become unvalidated entries. Not into the host's reserved
    /// frames or outside RAM either. Every such write checks here first.
    pub fn check_host_write(&self, gpa: u64, len: u64) -> Result<(), String> {
        let end = gpa.checked_add(len.max(1) - 1).ok_or_else(|| format!("{gpa:#x}+{len} wraps"))?;
        for pfn in (gpa >> shared::pae::PAGE_SHIFT)..=(end >> shared::pae::PAGE_SHIFT) {
            if !self.frames.is_guest_frame(pfn) {
                return Err(format!(
                    "{:#x} is a host-reserved frame or outside guest RAM",
                    pfn << shared::pae::PAGE_SHIFT
                ));
            }
            let ty = self.frames.ty(pfn);
            if ty.is_pagetable() && self.frames.type_count(pfn) > 0 && self.weaken != HostWeaken::HostWrite {
                return Err(format!("{:#x} is a validated {ty:?} table", pfn << shared::pae::PAGE_SHIFT));
            }
        }
        Ok(())
    }

    /// Whether the CPU, loaded with `cr3`, walks only what the host validated.
    /// In PAE mode CR3 selects a 32-byte PDPT anywhere in its frame (bits
    /// 5..11), and the CPU reads the four entries there. A pin of an L3
    /// validates entries 0..3 only, so a CR3 must select slot 0 of a validated
    /// L3, as a Xen pv32pae guest's must: `L3 + 32` would run the guest on
    /// entries 4..7, which nobody checked.
    pub fn is_validated_cr3(&self, cr3: u64) -> bool {
        let slot_ok = cr3 & CR3_SLOT_MASK == 0 || self.weaken == HostWeaken::Cr3Slot;
        slot_ok && self.is_validated_root((cr3 & 0xffff_f000) >> 12)
    }

    /// Frame `pfn` as a report names it: its address, type, type count, pin.
    pub fn describe_frame(&self, pfn: u64) -> String {
        let pinned = if self.frames.pinned(pfn) { ", pinned" } else { "" };
        format!("{:#x} ({:?}, type count {}{pinned})", pfn << 12, self.frames.ty(pfn), self.frames.type_count(pfn))
    }

    /// The root vCPU `vcpu` announced last.
    pub fn root(&self, vcpu: u32) -> Option<u64> {
        self.roots.get(vcpu as usize).copied().flatten()
    }

    pub fn report(&self) -> PvMmuReport {
        PvMmuReport {
            host_check: self.check.as_str().to_owned(),
            cross_check: self.cross_check,
            write_protect: None,
            frames: self.frames.census(),
            stats: self.stats.clone(),
        }
    }

    /// An exit's PV MMU call begins: its work is counted from zero.
    pub fn begin_exit(&mut self) {
        self.work = 0;
    }

    /// An exit's call `what` ended after `ns` of host time: kept if it is the
    /// longest so far.
    pub fn end_exit(&mut self, what: &str, ns: u64) {
        if ns > self.stats.max_exit_ns {
            self.stats.max_exit_ns = ns;
            self.stats.max_exit_entries = self.work;
            self.stats.max_exit_call = what.to_owned();
        }
    }

    /// Whether the exit has spent its budget (a batch then stops between two
    /// requests with `-ERESTART`).
    fn over_budget(&self) -> bool {
        self.work >= shared::abi::pvmmu::EXIT_BUDGET && self.weaken != HostWeaken::Budget
    }

    fn applied(&mut self, what: &str) {
        *self.stats.applied.entry(what.to_owned()).or_insert(0) += 1;
    }

    fn refused(&mut self, r: &Refusal) {
        if r.restart {
            // Not refused: cut at the budget, answered with -ERESTART.
            self.stats.exit_restarts += 1;
            return;
        }
        *self.stats.refused.entry(r.rule.name().to_owned()).or_insert(0) += 1;
    }

    fn flushed(&mut self, why: &str) {
        *self.stats.flushes.entry(why.to_owned()).or_insert(0) += 1;
    }
}

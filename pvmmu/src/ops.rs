//! The PV MMU hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping`,
//! `multicall` and `set_callbacks`, with Xen's batching (requests run in order and
//! stop at the first failure; `done` counts those applied) and error codes.
//!
//! The host cannot reach into a vCPU's TLB from here: each call returns the vCPUs
//! whose TLBs must be flushed before the guest goes on ([`BatchResult::flush`]),
//! and the vCPU loop carries the flushes out.

use shared::abi::errno::{EBUSY, EFAULT, EINVAL, ENOSYS, ERESTART};
use shared::abi::pvmmu::{
    cmd, uvmf, MmuUpdate, MmuextOp, MulticallEntry, MAX_BATCH, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD,
};
use shared::abi::Hypercall;
use shared::boot::MAX_VCPUS;
use shared::pae::{self, PAGE_SHIFT};
use vm_memory::GuestMemoryMmap;

use crate::guest_memory::{self as memory, Pod};

use super::frame_table::FrameType;
use super::{Continuation, PvMmu, Refusal, Rule};

/// Every vCPU.
pub const ALL_VCPUS: u64 = (1 << MAX_VCPUS) - 1;

/// The outcome of one PV MMU hypercall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// 0 or the first failure's negative errno.
    pub rc: i32,
    /// Requests applied.
    pub done: u64,
    /// vCPUs (bit per vCPU) whose TLBs must be flushed before the caller resumes.
    pub flush: u64,
    /// A pin met writable aliases and the guest registered a fixup: deliver it with
    /// this frame, and do not complete the call (the guest re-issues it).
    pub trap: Option<u64>,
}

impl BatchResult {
    fn fail(r: &Refusal, done: u64, flush: u64) -> Self {
        BatchResult { rc: r.errno, done, flush, trap: None }
    }
}

fn request_error(why: &'static str) -> Refusal {
    Refusal::new(Rule::Request, EINVAL, 0, why)
}

fn enosys(why: &'static str) -> Refusal {
    Refusal::new(Rule::Request, ENOSYS, 0, why)
}

/// Reads `count` structures of `size` bytes at `gpa`, all or nothing.
fn read_array<T: Pod>(mem: &GuestMemoryMmap, gpa: u64, count: u64, size: u64) -> Result<Vec<T>, Refusal> {
    if count > MAX_BATCH {
        return Err(request_error("batch larger than MAX_BATCH"));
    }
    if !gpa.is_multiple_of(8) {
        return Err(request_error("request array misaligned"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = gpa.checked_add(i * size).ok_or_else(|| request_error("request array wraps"))?;
        out.push(memory::read_obj::<T>(mem, at).map_err(|_| request_error("request array outside guest RAM"))?);
    }
    Ok(out)
}

impl PvMmu {
    /// A batch's request array, all or nothing; a bad one is counted and answered.
    fn requests<T: Pod>(
        &mut self,
        mem: &GuestMemoryMmap,
        gpa: u64,
        count: u64,
        size: u64,
    ) -> Result<Vec<T>, BatchResult> {
        read_array(mem, gpa, count, size).map_err(|r| {
            self.refused(&r);
            BatchResult::fail(&r, 0, 0)
        })
    }

    fn read_u64(&self, mem: &GuestMemoryMmap, gpa: u64) -> Option<u64> {
        memory::read_obj::<u64>(mem, gpa).ok()
    }

    /// One validated entry write (`ptr` with its command bits). Returns whether the
    /// guest's TLBs must be flushed (an L2 or L3 entry changed).
    pub(super) fn update_entry(&mut self, mem: &GuestMemoryMmap, ptr: u64, val: u64) -> Result<bool, Refusal> {
        let command = ptr & 3;
        if command != MMU_NORMAL_PT_UPDATE && command != MMU_PT_UPDATE_PRESERVE_AD {
            return Err(enosys("mmu_update command"));
        }
        let ptr = ptr & !3;
        let pfn = ptr >> PAGE_SHIFT;
        let bad_ptr = Refusal::new(Rule::V7, EINVAL, pfn, "entry address");
        let misaligned = !ptr.is_multiple_of(8);
        if (misaligned && self.weaken != super::HostWeaken::V7) || !self.frames.is_guest_frame(pfn) {
            return Err(bad_ptr);
        }
        // (Weakened: the entry the address falls in.)
        let ptr = ptr & !7;
        let in_memory = self.read_u64(mem, ptr).ok_or(bad_ptr)?;
        let val = if command == MMU_PT_UPDATE_PRESERVE_AD { val | (in_memory & (pae::A | pae::D)) } else { val };
        let ty = self.frames.ty(pfn);
        let idx = ((ptr & 0xfff) / 8) as usize;
        // What the entry held as far as the host knows (memory may say otherwise
        // after a write the host never saw).
        let old = self.tables.get(&pfn).map_or(in_memory, |t| t[idx]);
        if !ty.is_pagetable() {
            // An entry of a `writable` frame is a plain checked write; one of a
            // frame of no type is refused (Xen's "Bad type"): a frame nothing
            // maps writable is not the guest's to write through the host.
            if ty == FrameType::None && self.weaken != super::HostWeaken::UntypedWrite {
                return Err(Refusal::new(Rule::T1, EINVAL, pfn, "entry of a frame of no type"));
            }
            memory::write_obj(mem, ptr, &val).map_err(|_| bad_ptr)?;
            return Ok(false);
        }
        if self.frames.is_partial(pfn) {
            return Err(Refusal::new(Rule::T1, EBUSY, pfn, "entry of a table whose validation is unfinished"));
        }
        if ty == FrameType::L3 && idx >= pae::L3_ENTRIES {
            return Err(Refusal::new(Rule::V5, EINVAL, pfn, "L3 entry 4..511"));
        }
        self.get_entry(mem, ty, pfn, idx, val)?;
        if memory::write_obj(mem, ptr, &val).is_err() {
            self.put_entry(mem, ty, pfn, idx, val);
            return Err(bad_ptr);
        }
        self.put_entry(mem, ty, pfn, idx, old);
        if let Some(t) = self.tables.get_mut(&pfn) {
            t[idx] = val;
        }
        Ok(ty != FrameType::L1)
    }

    /// `mmu_update(reqs, count)`.
    pub fn mmu_update(&mut self, mem: &GuestMemoryMmap, reqs_gpa: u64, count: u64) -> BatchResult {
        let reqs: Vec<MmuUpdate> = match self.requests(mem, reqs_gpa, count, MmuUpdate::SIZE) {
            Ok(v) => v,
            Err(refused) => return refused,
        };
        let mut flush = 0;
        for (i, req) in reqs.iter().enumerate() {
            match self.update_entry(mem, req.ptr, req.val) {
                Ok(f) => {
                    self.applied("mmu_update");
                    if f {
                        flush = ALL_VCPUS;
                        self.flushed("l2_l3_update");
                    }
                    if self.over_budget() && i + 1 < reqs.len() {
                        self.stats.exit_restarts += 1;
                        return BatchResult { rc: -ERESTART, done: i as u64 + 1, flush, trap: None };
                    }
                }
                Err(r) => {
                    self.refused(&r);
                    return BatchResult::fail(&r, i as u64, flush);
                }
            }
        }
        BatchResult { rc: 0, done: reqs.len() as u64, flush, trap: None }
    }

    fn pin(&mut self, mem: &GuestMemoryMmap, pfn: u64, ty: FrameType) -> Result<(), Refusal> {
        if self.frames.is_guest_frame(pfn) && self.frames.pinned(pfn) && self.weaken != super::HostWeaken::T4 {
            return Err(Refusal::new(Rule::T4, EINVAL, pfn, "already pinned"));
        }
        self.get_frame(pfn)?;
        if let Err(r) = self.get_type(mem, pfn, ty, true) {
            self.frames.put_ref(pfn);
            return Err(r);
        }
        self.frames.set_pinned(pfn, true);
        Ok(())
    }

    /// One `mmuext_op`; returns the vCPUs to flush.
    fn mmuext_one(&mut self, mem: &GuestMemoryMmap, vcpu: u32, op: &MmuextOp) -> Result<u64, Refusal> {
        let me = 1u64 << vcpu;
        let pfn = op.arg1;
        match op.cmd {
            cmd::PIN_L1_TABLE => self.pin(mem, pfn, FrameType::L1).map(|_| 0),
            cmd::PIN_L2_TABLE => self.pin(mem, pfn, FrameType::L2).map(|_| 0),
            cmd::PIN_L3_TABLE => self.pin(mem, pfn, FrameType::L3).map(|_| 0),
            cmd::UNPIN_TABLE => {
                if !self.frames.is_guest_frame(pfn) || !self.frames.pinned(pfn) {
                    return Err(Refusal::new(Rule::T4, EINVAL, pfn, "not pinned"));
                }
                self.frames.set_pinned(pfn, false);
                self.put_type(mem, pfn);
                self.frames.put_ref(pfn);
                Ok(0)
            }
            cmd::NEW_BASEPTR => {
                self.get_frame(pfn)?;
                if let Err(r) = self.get_type(mem, pfn, FrameType::L3, false) {
                    self.frames.put_ref(pfn);
                    return Err(r);
                }
                if let Some(old) = self.roots[vcpu as usize].replace(pfn) {
                    self.put_type(mem, old);
                    self.frames.put_ref(old);
                }
                Ok(me)
            }
            cmd::TLB_FLUSH_LOCAL | cmd::INVLPG_LOCAL => Ok(me),
            cmd::TLB_FLUSH_ALL | cmd::INVLPG_ALL => Ok(ALL_VCPUS),
            cmd::TLB_FLUSH_MULTI | cmd::INVLPG_MULTI => {
                let mask = self.read_u64(mem, op.arg2).ok_or_else(|| request_error("vCPU mask outside guest RAM"))?;
                if mask & !ALL_VCPUS != 0 {
                    return Err(request_error("vCPU mask names no vCPU"));
                }
                Ok(mask)
            }
            _ => Err(enosys("mmuext_op command")),
        }
    }

    /// `mmuext_op(ops, count)` from the block at `block_gpa` of vCPU `vcpu`. A pin
    /// refused only for writable aliases, with a fixup registered, traps back; the
    /// same block issued again resumes where it stopped, and if the alias is still
    /// there the guest gets the error.
    pub fn mmuext_op(
        &mut self,
        mem: &GuestMemoryMmap,
        vcpu: u32,
        block_gpa: u64,
        ops_gpa: u64,
        count: u64,
        may_trap: bool,
    ) -> BatchResult {
        let v = vcpu as usize % MAX_VCPUS;
        let ops: Vec<MmuextOp> = match self.requests(mem, ops_gpa, count, MmuextOp::SIZE) {
            Ok(v) => v,
            Err(refused) => return refused,
        };
        // Only the retry itself resumes the batch: the fixup's own calls (the
        // flushes of vm_unmap_aliases) and an interrupt's come from the same
        // block in between and must neither consume nor drop the continuation,
        // or the retry would redo the ops before the trap.
        let retry = self.pending[v].is_some_and(|c| may_trap && c.block_gpa == block_gpa && c.ops == (ops_gpa, count));
        let resume = if retry { self.pending[v].take() } else { None };
        let start = resume.map_or(0, |c| c.done);
        let mut flush = 0;
        for (i, op) in ops.iter().enumerate().skip(start as usize) {
            match self.mmuext_one(mem, vcpu, op) {
                Ok(f) => {
                    flush |= f;
                    if f != 0 {
                        self.flushed(cmd::name(op.cmd));
                    }
                    self.applied(cmd::name(op.cmd));
                    if self.over_budget() && i + 1 < ops.len() {
                        self.stats.exit_restarts += 1;
                        return BatchResult { rc: -ERESTART, done: i as u64 + 1, flush, trap: None };
                    }
                }
                Err(r) => {
                    self.refused(&r);
                    let i = i as u64;
                    if r.alias && may_trap && self.fixup_entry.is_some() && self.weaken != super::HostWeaken::TrapBack {
                        if resume.is_some_and(|c| c.done == i && c.pfn == r.pfn) {
                            self.stats.trap_back_failures += 1;
                            return BatchResult::fail(&r, i, flush);
                        }
                        // One continuation per vCPU: a pin inside the fixup
                        // that meets an alias of its own gets the error, not a
                        // second trap that would overwrite the first (whose
                        // retry would then redo applied ops, or never end).
                        if self.pending[v].is_some() {
                            self.stats.trap_back_failures += 1;
                            return BatchResult::fail(&r, i, flush);
                        }
                        self.stats.traps_back += 1;
                        self.pending[v] = Some(Continuation { block_gpa, ops: (ops_gpa, count), done: i, pfn: r.pfn });
                        return BatchResult { rc: 0, done: i, flush, trap: Some(r.pfn) };
                    }
                    return BatchResult::fail(&r, i, flush);
                }
            }
        }
        BatchResult { rc: 0, done: ops.len() as u64, flush, trap: None }
    }

    /// `update_va_mapping(va, val, flags)`: the L1 entry of `va` under the calling
    /// vCPU's root.
    pub fn update_va_mapping(
        &mut self,
        mem: &GuestMemoryMmap,
        vcpu: u32,
        va: u64,
        val: u64,
        flags: u64,
    ) -> BatchResult {
        let r = self.update_va(mem, vcpu, va, val, flags);
        match r {
            Ok(flush) => {
                self.applied("update_va_mapping");
                BatchResult { rc: 0, done: 1, flush, trap: None }
            }
            Err(r) => {
                self.refused(&r);
                BatchResult::fail(&r, 0, 0)
            }
        }
    }

    fn update_va(&mut self, mem: &GuestMemoryMmap, vcpu: u32, va: u64, val: u64, flags: u64) -> Result<u64, Refusal> {
        let flush_type = flags & uvmf::FLUSHTYPE_MASK;
        if flags & !(uvmf::FLUSHTYPE_MASK | uvmf::ALL) != 0 || flush_type == uvmf::FLUSHTYPE_MASK {
            return Err(request_error("update_va_mapping flags"));
        }
        let va = u32::try_from(va).map_err(|_| request_error("virtual address above 4 GiB"))?;
        let root = self.root(vcpu).ok_or_else(|| request_error("no root announced"))?;
        let (i3, i2, i1) = pae::indexes(va);
        let no_l1 = request_error("no L1 table maps the address");
        // The walk reads the tables as the host validated them, not guest
        // memory: a write that slipped past the protection cannot steer it.
        let entry = |table: u64, ty: FrameType, i: usize| {
            let e = self.tables.get(&table).filter(|_| self.frames.is_validated(table, ty))?[i];
            Some(e).filter(|e| e & pae::P != 0).map(pae::frame)
        };
        let l2 = entry(root, FrameType::L3, i3).ok_or(no_l1)?;
        let l1 = entry(l2, FrameType::L2, i2).ok_or(no_l1)?;
        if !self.frames.is_validated(l1, FrameType::L1) {
            return Err(no_l1);
        }
        self.update_entry(mem, (l1 << PAGE_SHIFT) + i1 as u64 * 8, val)?;
        Ok(match (flush_type, flags & uvmf::ALL != 0) {
            (uvmf::NONE, _) => 0,
            (_, false) => 1 << vcpu,
            (_, true) => ALL_VCPUS,
        })
    }

    /// `multicall(entries, n)`: each entry runs on its own and gets its own result;
    /// a failing entry does not stop the batch. No trap-back inside a multicall.
    pub fn multicall(&mut self, mem: &GuestMemoryMmap, vcpu: u32, entries_gpa: u64, n: u64) -> BatchResult {
        let entries: Vec<MulticallEntry> = match self.requests(mem, entries_gpa, n, MulticallEntry::SIZE) {
            Ok(v) => v,
            Err(refused) => return refused,
        };
        let mut flush = 0;
        for (i, e) in entries.iter().enumerate() {
            // Only the MMU's own calls run inside a multicall.
            let r = match Hypercall::decode(e.op, e.args) {
                Some(Hypercall::MmuUpdate { reqs, count }) => self.mmu_update(mem, reqs, count),
                Some(Hypercall::MmuextOp { ops, count }) => self.mmuext_op(mem, vcpu, u64::MAX, ops, count, false),
                Some(Hypercall::UpdateVaMapping { va, val, flags }) => {
                    self.update_va_mapping(mem, vcpu, va, val, flags)
                }
                _ => BatchResult { rc: -ENOSYS, ..Default::default() },
            };
            flush |= r.flush;
            let at = entries_gpa + i as u64 * MulticallEntry::SIZE;
            // The results go back only where the guest could write them: an
            // entry may have made the array's own frame a pagetable. Then the
            // batch stops there: `ret` counts the entries run, this one
            // included, whose result could not be written.
            if self.check_host_write(at, MulticallEntry::SIZE).is_err() {
                return BatchResult { rc: -EFAULT, done: i as u64 + 1, flush, trap: None };
            }
            let _ = memory::write_obj(mem, at + MulticallEntry::RESULT_OFFSET, &r.rc);
            let _ = memory::write_obj(mem, at + MulticallEntry::RET_OFFSET, &r.done);
            // The exit's budget holds across the entries too: past it, the
            // multicall stops after this entry and is issued again from `ret`.
            if self.over_budget() && i + 1 < entries.len() {
                self.stats.exit_restarts += 1;
                return BatchResult { rc: -ERESTART, done: i as u64 + 1, flush, trap: None };
            }
        }
        BatchResult { rc: 0, done: entries.len() as u64, flush, trap: None }
    }

    /// `set_callbacks(alias_fixup_entry)`: 0 removes the fixup.
    pub fn set_callbacks(&mut self, entry: u64) -> BatchResult {
        if entry > u32::MAX as u64 {
            return BatchResult { rc: -EINVAL, ..Default::default() };
        }
        self.fixup_entry = (entry != 0).then_some(entry);
        BatchResult { rc: 0, ..Default::default() }
    }
}

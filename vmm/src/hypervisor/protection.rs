//! The write protection of validated tables, and the direct writes it or the
//! dirty log finds: applied through the writable-pagetables assist, or undone
//! and reported as violations.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;

impl Hypervisor {
    /// Hands the hypervisor the VM's write protection.
    pub fn set_write_protect(&self, wp: WriteProtect) {
        self.watching.store(wp.stats.dirty_log.on, Ordering::Relaxed);
        if let Ok(mut p) = self.protect.lock() {
            *p = Some(wp);
        }
    }

    /// Whether the write protection lags behind the frame table.
    pub fn protection_pending(&self) -> bool {
        self.protect_pending.load(Ordering::Acquire)
    }

    /// Whether nothing is write-protected any more (a QEMU TCG host once the
    /// guest runs on validated tables, see [`TCG_NO_PROTECTION`]): then
    /// [`Hypervisor::apply_protection`] changes no memslot and needs no stopped world.
    pub fn protection_off(&self) -> bool {
        crate::kvm::vcpu::host_is_tcg() && self.protection_switched_off.load(Ordering::Acquire)
    }

    /// Brings the write protection up to date. Call with every other vCPU stopped,
    /// unless [`Hypervisor::protection_off`].
    /// A direct write found in a table validated since the last call is a
    /// violation (it was not seen by the host when it happened); undone, it asks
    /// for every vCPU's TLB to be flushed, as one the dirty log finds does.
    pub fn apply_protection(&self, vcpu: u32) -> Then {
        self.protect_pending.store(false, Ordering::Release);
        if crate::kvm::vcpu::host_is_tcg()
            && self.on_validated_roots.load(Ordering::Acquire)
            && !self.protection_switched_off.swap(true, Ordering::AcqRel)
        {
            if let Ok(mut p) = self.protect.lock() {
                if let Some(Err(e)) = p.as_mut().map(|wp| wp.switch_off(super::roots::TCG_NO_PROTECTION)) {
                    return self.vmm_error(&e.to_string());
                }
            }
        }
        let changes = match self.pv_locked() {
            Ok(mut pv) => pv.take_protection_changes(&self.mem),
            Err(stop) => return stop,
        };
        for w in &changes.late {
            if let Some(stop) = self.direct_write_found(vcpu, w, "") {
                return stop;
            }
        }
        // With the protection off (check_cr3) `apply` changes no memslot; the
        // dirty log still takes up the new tables.
        let applied = |wp: &mut WriteProtect| {
            wp.apply(&changes.protect)?;
            wp.watch(&changes.tables);
            Ok::<_, crate::kvm::write_protect::Error>(())
        };
        match self.protect_locked() {
            Ok(mut p) => match p.as_mut().map(applied) {
                Some(Err(e)) => self.vmm_error(&e.to_string()),
                _ if !changes.late.is_empty() || changes.new_l3 => Then::Flush(pvmmu::ops::ALL_VCPUS),
                _ => Then::Continue,
            },
            Err(stop) => stop,
        }
    }

    /// Direct writes to the tables the dirty log watches (those no read-only
    /// memslot covers), looked for at every hypercall exit before the call runs:
    /// each is applied as a validated update when the guest turned on the
    /// writable-pagetables assist, otherwise undone (every TLB flushed: the CPUs
    /// may have walked it) and reported as a violation.
    /// The log names no vCPU: the report names the one at whose exit it was found.
    pub fn find_direct_writes(&self, vcpu: u32) -> Then {
        if !self.watching.load(Ordering::Relaxed) {
            return Then::Continue;
        }
        // The write protection's lock, then the PV MMU's (as everywhere both are
        // held), for the harvest and the comparison alike.
        let mut p = match self.protect_locked() {
            Ok(p) => p,
            Err(stop) => return stop,
        };
        let Some(wp) = p.as_mut() else { return Then::Continue };
        let written = match wp.harvest() {
            Ok(w) if w.is_empty() => return Then::Continue,
            Ok(w) => w,
            Err(e) => return self.vmm_error(&e.to_string()),
        };
        let compared = Instant::now();
        let (found, flush) = match self.pv_locked() {
            Ok(mut pv) => {
                let r = pv.reconcile(&self.mem, &written);
                if pv.protection_pending() {
                    self.protect_pending.store(true, Ordering::Release);
                }
                r
            }
            Err(stop) => return stop,
        };
        wp.add_compare_ns(compared.elapsed().as_nanos() as u64);
        drop(p);
        let found_at = format!("found by the dirty log at vCPU {vcpu}'s hypercall exit");
        for w in &found {
            if let Some(stop) = self.direct_write_found(vcpu, w, &found_at) {
                return stop;
            }
        }
        if flush {
            Then::Flush(pvmmu::ops::ALL_VCPUS)
        } else {
            Then::Continue
        }
    }

    /// A direct write the host undid is a violation (one it applied through the
    /// assist is not).
    fn direct_write_found(&self, vcpu: u32, w: &DirectWrite, found_at: &str) -> Option<Then> {
        let (rule, detail) = w.violation(found_at)?;
        self.violation(ViolationRecord { vcpu, rule, frame: w.pfn, entry: w.index as u64, detail })
    }

    /// A violation: recorded, and the guest stopped unless the host was told to
    /// go on (`--host-on-violation continue`).
    pub(super) fn violation(&self, v: ViolationRecord) -> Option<Then> {
        let mut pv = match self.pv_locked() {
            Ok(pv) => pv,
            Err(stop) => return Some(stop),
        };
        let stop = pv.on_violation() == OnViolation::Stop;
        let outcome = Outcome::Violation { vcpu: v.vcpu, rule: v.rule, detail: v.detail.clone() };
        pv.record_violation(v);
        stop.then_some(Then::Stop(outcome))
    }

    /// A guest write that KVM could not apply (an MMIO exit). Inside a protected
    /// pagetable it is either emulated as a validated update (with the
    /// writable-pagetables assist) or a violation; anywhere else it is a write to
    /// nothing, ignored.
    pub fn direct_write(&self, vcpu: u32, gpa: u64, data: &[u8]) -> Then {
        let protected = self.protect.lock().ok().and_then(|p| p.as_ref().map(|wp| wp.is_protected(gpa)));
        if protected != Some(true) {
            return Then::Continue;
        }
        let mut pv = match self.pv_locked() {
            Ok(pv) => pv,
            Err(stop) => return stop,
        };
        let (pfn, entry) = (gpa >> 12, (gpa & 0xfff) / 8);
        let record = |rule: Rule, why: &str| ViolationRecord {
            vcpu,
            rule,
            frame: pfn,
            entry,
            detail: format!(
                "direct write of {} bytes {:02x?} to pagetable frame {pfn:#x} entry {entry}: {why}",
                data.len(),
                data
            ),
        };
        if pv.weaken() == pvmmu::HostWeaken::DirectWrite {
            return Then::Continue;
        }
        let r = if pv.assist() {
            pv.emulate_direct_write(&self.mem, gpa, data).map_err(|e| record(e.rule, e.why))
        } else {
            Err(record(Rule::DirectWrite, "the writable-pagetables assist is off"))
        };
        if pv.protection_pending() {
            self.protect_pending.store(true, Ordering::Release);
        }
        drop(pv);
        match r {
            Ok(true) => Then::Flush(pvmmu::ops::ALL_VCPUS),
            Ok(false) => Then::Continue,
            Err(v) => self.violation(v).unwrap_or(Then::Continue),
        }
    }
}

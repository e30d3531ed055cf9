//! The CR3 check: a vCPU that has announced a validated root runs on one at
//! every later hypercall exit; the first time one does, a QEMU TCG host turns
//! the write protection off.

use std::sync::atomic::Ordering;

use super::*;

/// Why the write protection is switched off on a QEMU TCG host once the guest
/// runs on validated tables.
pub(super) const TCG_NO_PROTECTION: &str =
    "QEMU 7.2's emulated SVM translates every guest page-table access as a write, so a \
vCPU walking a read-only table hangs in KVM; the guest runs on validated tables, so nothing is memslot-protected";

impl Hypervisor {
    /// Whether the CR3 check wants this vCPU's CR3 at its hypercall exits: once
    /// any root was announced (there is nothing to check before).
    pub fn wants_cr3(&self, vcpu: u32) -> bool {
        self.cr3_armed.get(vcpu as usize).is_some_and(|a| a.load(Ordering::Relaxed))
            || self.pvmmu.lock().map(|pv| pv.root(vcpu).is_some()).unwrap_or(false)
    }

    /// The CR3 check at a hypercall exit of `vcpu`: a vCPU that has run on a
    /// validated root it announced must run on a validated one at every later exit; a vCPU running on one tells
    /// the host the guest lives on validated tables (on a QEMU TCG host the write
    /// protection then goes off: see [`TCG_NO_PROTECTION`]).
    pub fn check_cr3(&self, vcpu: u32, cr3: u64) -> Then {
        let v = vcpu as usize % shared::boot::MAX_VCPUS;
        let pfn = (cr3 & 0xffff_f000) >> 12;
        let (validated, announced) = match self.pv_locked() {
            Ok(pv) => (pv.is_validated_cr3(cr3), pv.root(vcpu).is_some()),
            Err(stop) => return stop,
        };
        // The switch itself changes memslots, so it waits for the next
        // protection update, which runs with every other vCPU stopped: a vCPU
        // still in the guest while its memory's slot is re-registered would
        // find no memory there (KVM: "emulation failed").
        if validated && !self.on_validated_roots.swap(true, Ordering::AcqRel) && crate::kvm::vcpu::host_is_tcg() {
            self.protect_pending.store(true, Ordering::Release);
        }
        if self.cr3_armed[v].load(Ordering::Relaxed) && !validated {
            let record = ViolationRecord {
                vcpu,
                rule: Rule::Cr3,
                frame: pfn,
                entry: 0,
                detail: match cr3 & pvmmu::CR3_SLOT_MASK {
                    0 => format!("vCPU {vcpu} runs on root {cr3:#x}, which the host did not validate"),
                    off => format!(
                        "vCPU {vcpu} runs on root {cr3:#x}: CR3 selects the PDPT at offset {off:#x} of frame {:#x}, \
                         whose entries {}..{} the host never validated (only offset 0's four are)",
                        pfn << 12,
                        off / 8,
                        off / 8 + 3
                    ),
                },
            };
            if let Some(stop) = self.violation(record) {
                return stop;
            }
        }
        // Armed once this vCPU has been seen on a validated root and has announced
        // one: a guest that only announces roots (the contract scenarios) and
        // keeps running on its own tables is not checked.
        if announced && validated {
            self.cr3_armed[v].store(true, Ordering::Relaxed);
        }
        Then::Continue
    }
}

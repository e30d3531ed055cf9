//! One hypercall's work: decoded once (`shared::abi::Hypercall`); the PV
//! MMU's calls run under its lock, with the exit's time and work recorded.

use std::sync::atomic::Ordering;
use std::time::Instant;

use shared::abi::{errno, milestone, FaultReport, Hypercall, HypercallBlock};

use super::record::{MAX_MILESTONES, MAX_RESULTS, RESULTS_DROPPED};
use super::*;

fn milestone_name(id: u32) -> String {
    milestone::name_of(id).map_or_else(|| format!("milestone_{id}"), str::to_owned)
}

impl Hypervisor {
    /// Runs one PV MMU call under the PV MMU's lock.
    fn pv(
        &self,
        block: u64,
        what: &str,
        call: impl FnOnce(&mut PvMmu, &GuestMemoryMmap) -> BatchResult,
    ) -> (i32, u64, Then) {
        let mut pv = match self.pv_locked() {
            Ok(pv) => pv,
            Err(stop) => return (-errno::EINVAL, 0, stop),
        };
        if pv.weaken() == pvmmu::HostWeaken::StuckCall && what == "mmuext_op" {
            // Test only: a host call that never ends, holding the PV MMU.
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        // The call's host time and work, for the longest exit of the run.
        let t0 = Instant::now();
        pv.begin_exit();
        let r = call(&mut pv, &self.mem);
        pv.end_exit(what, u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if pv.protection_pending() {
            self.protect_pending.store(true, Ordering::Release);
        }
        let then = match (r.trap, pv.fixup_entry()) {
            (Some(pfn), Some(entry)) => Then::TrapBack { flush: r.flush, pfn, entry, block },
            _ if r.flush != 0 => Then::Flush(r.flush),
            _ => Then::Continue,
        };
        (r.rc, r.done, then)
    }

    /// Runs one call: `(rc, ret, what next)`.
    pub(super) fn dispatch(&self, vcpu: u32, gpa: u64, b: &HypercallBlock) -> (i32, u64, Then) {
        use Then::Continue;
        let Some(call) = Hypercall::decode(b.op, b.args) else {
            return (-errno::ENOSYS, 0, Continue);
        };
        let name = call.name();
        match call {
            Hypercall::MmuUpdate { reqs, count } => self.pv(gpa, name, |pv, mem| pv.mmu_update(mem, reqs, count)),
            Hypercall::MmuextOp { ops, count } => {
                self.pv(gpa, name, |pv, mem| pv.mmuext_op(mem, vcpu, gpa, ops, count, true))
            }
            Hypercall::UpdateVaMapping { va, val, flags } => {
                self.pv(gpa, name, |pv, mem| pv.update_va_mapping(mem, vcpu, va, val, flags))
            }
            Hypercall::Multicall { entries, count } => {
                self.pv(gpa, name, |pv, mem| pv.multicall(mem, vcpu, entries, count))
            }
            Hypercall::SetCallbacks { fixup_entry } => self.pv(gpa, name, |pv, _| pv.set_callbacks(fixup_entry)),
            Hypercall::VmAssist { cmd, kind } => self.pv(gpa, name, |pv, _| pv.vm_assist(cmd, kind)),
            Hypercall::Nop { arg } => (0, arg, Continue),
            Hypercall::ConsoleWrite { buf: a0, len: a1 } => {
                if a1 > CONSOLE_MAX {
                    return (-errno::EINVAL, 0, Continue);
                }
                match memory::read_bytes(&self.mem, a0, a1 as usize) {
                    Ok(bytes) => {
                        if let Ok(mut c) = self.console.lock() {
                            let _ = c.write_all(&bytes);
                            let _ = c.flush();
                        }
                        (0, a1, Continue)
                    }
                    Err(_) => (-errno::EFAULT, 0, Continue),
                }
            }
            Hypercall::Milestone { which, arg } => {
                let rec = MilestoneRecord {
                    name: milestone_name(which as u32),
                    arg: arg as u32,
                    vcpu,
                    ms: self.start.elapsed().as_secs_f64() * 1000.0,
                };
                if let Ok(mut m) = self.milestones.lock() {
                    // A guest-driven list: the first MAX_MILESTONES are kept.
                    if m.len() < MAX_MILESTONES {
                        m.push(rec);
                    }
                }
                (0, 0, Continue)
            }
            Hypercall::Result { name: a0, len: a1, value: a2 } => {
                if a1 == 0 || a1 > RESULT_NAME_MAX {
                    return (-errno::EINVAL, 0, Continue);
                }
                match memory::read_bytes(&self.mem, a0, a1 as usize) {
                    Ok(name) => {
                        let name = String::from_utf8_lossy(&name).into_owned();
                        if name.starts_with("vmm.") {
                            // The host's own results: no guest may set them.
                            return (-errno::EINVAL, 0, Continue);
                        }
                        if let Ok(mut r) = self.results.lock() {
                            // Names are the guest's: past MAX_RESULTS distinct
                            // ones, new names are counted, not kept.
                            if r.contains_key(&name) || r.len() < MAX_RESULTS {
                                r.insert(name, a2);
                            } else {
                                let n = r.entry(RESULTS_DROPPED.to_owned()).or_insert(0);
                                *n = n.saturating_add(1);
                            }
                        }
                        (0, 0, Continue)
                    }
                    Err(_) => (-errno::EFAULT, 0, Continue),
                }
            }
            // A status that does not fit the report's 32 bits is a failure, not
            // its low half (`shutdown(1 << 32)` would read as success).
            Hypercall::Shutdown { code } => {
                let code = u32::try_from(code).unwrap_or(u32::MAX);
                (0, 0, Then::Stop(Outcome::Shutdown { code }))
            }
            Hypercall::GuestFault { report } => match memory::read_obj::<FaultReport>(&self.mem, report) {
                Ok(r) => {
                    let mut info = FaultInfo::from(&r);
                    info.vcpu = vcpu;
                    (0, 0, Then::Stop(Outcome::GuestFault(info)))
                }
                Err(_) => (-errno::EFAULT, 0, Continue),
            },
        }
    }
}

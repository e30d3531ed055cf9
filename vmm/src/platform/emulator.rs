//! The QEMU-hosted emulator's known fault, and how to tell it from the guest's.
//!
//! QEMU's TCG emulation of SVM (7.2 and 10.0 alike) sometimes delivers the event
//! KVM injects at VMRUN with the host kernel's (L1's) registers: the nested guest
//! then carries on at an L1 address, or the event frame lands on L1's stack. Seen
//! here as a guest triple fault, as a vCPU running outside the kernel's code, or
//! (QEMU 10) as a panic of the appliance's kernel. It grows with the number of vCPUs
//! per appliance CPU, which is why the appliance gets one CPU per guest vCPU.
//! docs/qemu-hosted.md has the evidence and the measured rates.

use shared::config::Workload;

use crate::kvm::loader::Image;
use shared::abi::FaultReport;

use crate::report::{Outcome, RunReport};

/// Why a QEMU-hosted report looks like the emulator's fault, if it does.
pub fn diagnose(report: &RunReport, kernel: &Image) -> Option<String> {
    let workload = report.config.get("workload").map(String::as_str);
    let deliberate = [Workload::FaultTriple, Workload::FaultPage, Workload::FaultStack, Workload::Hang]
        .iter()
        .any(|w| Some(w.as_str()) == workload);
    if deliberate {
        return None;
    }
    match &report.outcome {
        Outcome::TripleFault(t) => Some(format!(
            "vCPU {} triple-faulted (its registers are lost: KVM on SVM resets a vCPU after a shutdown); \
             outside the fault workloads this is the QEMU-hosted emulator's known fault",
            t.at.vcpu
        )),
        Outcome::Timeout { vcpus, .. } => vcpus.iter().find(|v| !kernel.is_code(v.eip)).map(|v| {
            format!(
                "vCPU {} stopped at eip={:#010x}, outside the kernel's code: the QEMU-hosted emulator's known fault",
                v.vcpu, v.eip
            )
        }),
        // A panic is the guest's own report (its eip is not an exception's).
        Outcome::GuestFault(f)
            if f.vector != FaultReport::PANIC
                && !kernel.is_code(f.eip)
                && f.regs.get("cs").is_some_and(|cs| cs & 3 == 0) =>
        {
            Some(format!(
                "vCPU {} faulted at eip={:#010x}, outside the kernel's code: the QEMU-hosted emulator's known fault",
                f.vcpu, f.eip
            ))
        }
        _ => None,
    }
}

/// Why a QEMU-hosted report of a stock Linux (`vmm run --linux`) looks like
/// the emulator's fault, if it does: the watchdog ended the run. About one
/// boot in eight hangs so QEMU-hosted, in the spinlock and interrupt paths
/// the fault reaches (docs/linux.md), before the program ran or after it
/// reported (at the reboot); either way the run is made again, whole.
pub fn diagnose_linux(report: &RunReport) -> Option<String> {
    if !report.config.contains_key("linux") {
        return None;
    }
    let when = match report.results.len() {
        0 => "before its program reported a result".to_owned(),
        1 => "after its program reported (1 result; the run is made again, whole)".to_owned(),
        n => format!("after its program reported ({n} results; the run is made again, whole)"),
    };
    match &report.outcome {
        Outcome::Timeout { after_s, .. } => Some(format!(
            "Linux hung (the watchdog fired after {after_s:.0} s) {when}: \
             QEMU-hosted, about one boot in eight hangs so, the emulator's known fault (docs/linux.md)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{FaultInfo, TripleFault, VcpuSnapshot};

    fn report(workload: &str, outcome: Outcome) -> RunReport {
        let mut r = RunReport::of_outcome(outcome);
        r.vcpus = 2;
        r.config = [("workload".to_owned(), workload.to_owned())].into_iter().collect();
        r
    }

    fn timeout_at(eip: u32) -> Outcome {
        Outcome::Timeout {
            after_s: 60.0,
            vcpus: vec![VcpuSnapshot { vcpu: 1, eip, ..Default::default() }],
            stuck_in_host: vec![],
        }
    }

    #[test]
    fn only_outcomes_with_the_emulators_fingerprint_are_flagged() {
        let kernel = Image::with_code(vec![0xc010_0000..0xc011_0000, 0xc020_0000..0xc020_1000]);
        let triple = Outcome::TripleFault(TripleFault::default());
        assert!(diagnose(&report("boot", triple.clone()), &kernel).is_some());
        assert!(diagnose(&report("fault-triple", triple), &kernel).is_none(), "deliberate");
        assert!(diagnose(&report("boot", timeout_at(0xc039_d20c)), &kernel).unwrap().contains("0xc039d20c"));
        assert!(diagnose(&report("boot", timeout_at(0xc010_5000)), &kernel).is_none(), "a real hang in kernel code");
        assert!(diagnose(&report("hang", timeout_at(0xc039_d20c)), &kernel).is_none());
        assert!(diagnose(&report("boot", Outcome::Shutdown { code: 1 }), &kernel).is_none());
        let fault = |vector| {
            let regs = [("cs".to_owned(), 0)].into_iter().collect();
            Outcome::GuestFault(FaultInfo { vector, eip: 0, regs, ..Default::default() })
        };
        assert!(diagnose(&report("mm-all", fault(13)), &kernel).is_some(), "#GP at eip 0 in ring 0");
        assert!(diagnose(&report("mm-all", fault(FaultReport::PANIC)), &kernel).is_none(), "a guest panic");
    }

    #[test]
    fn a_linux_that_hangs_is_flagged_before_or_after_its_program_reported() {
        let linux = |outcome, results: &[(&str, u64)]| {
            let mut r = RunReport::of_outcome(outcome);
            r.config = [("linux".to_owned(), "vmlinuz".to_owned())].into_iter().collect();
            r.results = results.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            r
        };
        assert!(diagnose_linux(&linux(timeout_at(0xc100_0000), &[])).unwrap().contains("before its program"));
        let late = diagnose_linux(&linux(timeout_at(0xc100_0000), &[("lowmem_tasks", 3)])).unwrap();
        assert!(late.contains("after its program reported (1 result;"), "{late}");
        assert!(diagnose_linux(&linux(Outcome::Shutdown { code: 0 }, &[])).is_none());
        assert!(diagnose_linux(&report("boot", timeout_at(0xc039_d20c))).is_none(), "our guest");
    }
}

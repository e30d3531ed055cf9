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
        Outcome::TripleFault(s) => Some(format!(
            "vCPU {} triple-faulted (its registers are lost: KVM on SVM resets a vCPU after a shutdown); \
             outside the fault workloads this is the QEMU-hosted emulator's known fault",
            s.vcpu
        )),
        Outcome::Timeout { vcpus, .. } => vcpus.iter().find(|v| !kernel.is_code(v.eip)).map(|v| {
            format!(
                "vCPU {} stopped at eip={:#010x}, outside the kernel's code: the QEMU-hosted emulator's known fault",
                v.vcpu, v.eip
            )
        }),
        Outcome::GuestFault(f) if !kernel.is_code(f.eip) && f.regs.get("cs").is_some_and(|cs| cs & 3 == 0) => {
            Some(format!(
                "vCPU {} faulted at eip={:#010x}, outside the kernel's code: the QEMU-hosted emulator's known fault",
                f.vcpu, f.eip
            ))
        }
        _ => None,
    }
}

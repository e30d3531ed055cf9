//! One run of our guest: the VM from the KVM layer's blocks, the kernel image
//! and its boot information, the hypervisor that gives its exits their
//! meaning, and the run's report (with the PV MMU's end-of-run audit).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::boot::{BootInfo, BOOT_INFO_GPA, COUNTERS_GPA, LOW_RESERVED_END, MAX_VCPUS};
use shared::config::Config;
use shared::counters::PerCpuCounters;

use crate::gdb::{self, GdbSpec, GuestWriter};
use crate::hypervisor::{ConsoleSink, Hypervisor};
use crate::kvm::vm;
use crate::kvm::{loader, vcpu};
use crate::report::{self, HostInfo, Outcome, RunReport, Timing};
use pvmmu::guest_memory as memory;

/// Why a run of our guest could not start: the VM's errors, or the gdb stub's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Vm(#[from] vm::Error),
    #[error("{0}")]
    Gdb(#[from] gdb::Error),
}

impl From<pvmmu::guest_memory::Error> for Error {
    fn from(e: pvmmu::guest_memory::Error) -> Self {
        Error::Vm(e.into())
    }
}

impl From<loader::Error> for Error {
    fn from(e: loader::Error) -> Self {
        Error::Vm(e.into())
    }
}

impl From<vcpu::Error> for Error {
    fn from(e: vcpu::Error) -> Self {
        Error::Vm(e.into())
    }
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub kernel: PathBuf,
    pub mem: memory::RamSize,
    pub vcpus: u32,
    pub timeout: Duration,
    pub config: Config,
    /// When `vmm` started (timings are measured from here).
    pub start: Instant,
    /// A gdb stub (`--gdb`).
    pub gdb: Option<GdbSpec>,
}

/// Runs the guest on the local KVM and reports how it went. A guest that faults or
/// hangs is a report (`Ok`), not an error; errors are the host's.
pub fn run(spec: &RunSpec, console: ConsoleSink, host: HostInfo) -> Result<RunReport, Error> {
    if spec.vcpus == 0 || spec.vcpus as usize > MAX_VCPUS {
        return Err(vm::Error::BadVcpus(spec.vcpus).into());
    }
    let (kvm, vm) = vm::create_vm()?;
    let mem = memory::create(spec.mem)?;
    let dirty_log = spec.config.host_write_watch() == shared::config::WriteWatch::DirtyLog;
    let wp = vm::map_memory(&kvm, &vm, &mem, dirty_log)?;
    let image = loader::load(&mem, &spec.mem.regions(), &spec.kernel, LOW_RESERVED_END)?;

    let base_cpuid = vm::supported_cpuid(&kvm)?;
    let mut vcpus = Vec::new();
    for i in 0..spec.vcpus {
        let v = vm::create_vcpu(&vm, i)?;
        vcpu::configure(&v, i, &base_cpuid, image.entry)?;
        vcpus.push(v);
    }
    let tsc_khz = vcpus[0].get_tsc_khz().unwrap_or(0);
    let info = BootInfo::new(spec.vcpus, tsc_khz, &spec.mem.regions(), spec.config);
    memory::write_obj(&mem, BOOT_INFO_GPA, &info)?;
    log::debug!("kernel entry {:#x}, image end {:#x}, tsc {} kHz", image.entry, image.end, tsc_khz);

    let pv = pvmmu::PvMmuConfig::from_config(&spec.config);
    let hv = Arc::new(Hypervisor::new(mem, spec.start, console, pv));
    hv.set_write_protect(wp);
    let debugger = match &spec.gdb {
        Some(g) => {
            // The debugger writes guest memory as the host does: through the
            // one path that checks the target frame's type.
            let w = hv.clone();
            let write: GuestWriter = Arc::new(move |gpa, data| w.write_guest_all(&[(gpa, data)]));
            Some(gdb::start(g, spec.vcpus, hv.mem.clone(), write)?)
        }
        None => None,
    };
    let vm::RunEnd { outcome, results, stuck_in_host } = vm::run_vcpus(vcpus, hv.clone(), spec.timeout, debugger)?;
    if !stuck_in_host.is_empty() {
        hv.vcpus_left_behind();
    }
    let to_end_ms = spec.start.elapsed().as_secs_f64() * 1000.0;
    let counters: Vec<PerCpuCounters> = (0..spec.vcpus as u64)
        .map(|i| {
            memory::read_obj(&hv.mem, COUNTERS_GPA + i * std::mem::size_of::<PerCpuCounters>() as u64)
                .unwrap_or_default()
        })
        .collect();
    let (counters, counter_totals) = report::counter_maps(&counters);
    let pvmmu = hv.pvmmu_report();
    let outcome = audited(outcome, pvmmu.as_ref());
    let milestones = hv.milestones();
    let to_main_ms = milestones.iter().find(|m| m.name == "main").map(|m| m.ms);
    Ok(RunReport {
        vmm_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: spec.kernel.display().to_string(),
        host,
        vcpus: spec.vcpus,
        mem_bytes: spec.mem.bytes(),
        config: report::config_map(&spec.config),
        exit_code: outcome.exit_code(),
        outcome,
        timing: Timing { to_main_ms, to_end_ms, milestones },
        exits: results.iter().map(vcpu::VcpuResult::report).collect(),
        hypercalls: hv.call_counts(),
        pvmmu,
        results: hv.results(),
        counters,
        counter_totals,
        emulator_fault: None,
    })
}

/// A run whose end-of-run audit found the tables in memory other than the host
/// validated them (a pagetable mapped writable, a type count that disagrees, a
/// table changed behind the host's back) failed, whatever the guest said: the
/// guest ran on unvalidated entries. Only a guest's own word (a shutdown) gives
/// way; a fault, a violation or a timeout already says more.
fn audited(outcome: Outcome, pv: Option<&pvmmu::PvMmuReport>) -> Outcome {
    let Some(st) = pv.map(|p| &p.stats) else { return outcome };
    let errors = [
        (st.audit_rw_pagetables, "RW mappings of pagetables"),
        (st.audit_count_mismatches, "type-count mismatches"),
        (st.audit_tables_diverged, "tables that differ from what the host validated"),
        (st.audit_l3_diverged, "L3s that differ from what the host validated"),
    ];
    let found: Vec<String> = errors.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
    match outcome {
        Outcome::Shutdown { .. } if !found.is_empty() => Outcome::Violation {
            vcpu: 0,
            rule: pvmmu::Rule::Audit,
            detail: format!("the end-of-run audit found {}", found.join(", ")),
        },
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_audit_is_a_failed_run_whatever_the_guest_said() {
        let mut pv = pvmmu::PvMmuReport::default();
        let ok = Outcome::Shutdown { code: 0 };
        assert_eq!(audited(ok.clone(), None), ok);
        assert_eq!(audited(ok.clone(), Some(&pv)), ok, "a clean audit changes nothing");
        pv.stats.audit_tables_diverged = 2;
        pv.stats.audit_rw_pagetables = 1;
        match audited(ok, Some(&pv)) {
            Outcome::Violation { rule, detail, .. } => {
                assert_eq!(rule, pvmmu::Rule::Audit);
                assert!(detail.contains("1 RW mappings of pagetables") && detail.contains("2 tables"), "{detail}");
            }
            o => panic!("{o:?}"),
        }
        let t = Outcome::Timeout { after_s: 1.0, vcpus: vec![], stuck_in_host: vec![] };
        assert_eq!(audited(t.clone(), Some(&pv)), t, "the timeout says more");
    }
}

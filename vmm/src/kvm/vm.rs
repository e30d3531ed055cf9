//! One guest run on the local KVM: create the VM (in-kernel irqchip), map RAM, load
//! the kernel, write the boot information, start one thread per vCPU, and wait for
//! the guest to finish or the watchdog to fire.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Cap, Kvm};
use shared::boot::{BootInfo, BOOT_INFO_GPA, COUNTERS_GPA, LOW_RESERVED_END, MAX_VCPUS};
use shared::config::Config;
use shared::counters::PerCpuCounters;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::write_protect::{self, WriteProtect};
use super::{loader, vcpu};
use crate::hypervisor::{ConsoleSink, Hypervisor};
use crate::report::{self, HostInfo, Outcome, RunReport, Timing, VcpuExits};
use pvmmu::guest_memory as memory;

/// Where KVM on Intel wants its TSS and identity-map pages (in the MMIO hole).
const KVM_TSS_ADDR: usize = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no {0} on this machine (is the kvm module loaded?)")]
    NoKvm(String),
    #[error("no permission to open {0} (run as root or join the kvm group)")]
    KvmPermission(String),
    #[error("cannot open {0}: {1}")]
    KvmOpen(String, kvm_ioctls::Error),
    #[error("{what} failed: {source}")]
    Kvm { what: &'static str, source: kvm_ioctls::Error },
    #[error("{0}")]
    Memory(#[from] memory::Error),
    #[error("{0}")]
    Loader(#[from] loader::Error),
    #[error("{0}")]
    Vcpu(#[from] vcpu::Error),
    #[error("--vcpus {0}: between 1 and {MAX_VCPUS} vCPUs are supported")]
    BadVcpus(u32),
    #[error("cannot start a vCPU thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    WriteProtect(#[from] write_protect::Error),
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
        let t = Outcome::Timeout { after_s: 1.0, vcpus: vec![] };
        assert_eq!(audited(t.clone(), Some(&pv)), t, "the timeout says more");
    }

    #[test]
    fn open_errors_say_what_is_wrong() {
        let e = |n| open_error("/dev/kvm".into(), kvm_ioctls::Error::new(n)).to_string();
        assert!(e(libc::ENOENT).starts_with("no /dev/kvm"));
        assert!(e(libc::EACCES).contains("no permission"));
        assert!(e(libc::EIO).starts_with("cannot open /dev/kvm"));
    }
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

/// The KVM device (`VMM_KVM_DEV` overrides /dev/kvm).
pub fn kvm_path() -> String {
    std::env::var("VMM_KVM_DEV").unwrap_or_else(|_| "/dev/kvm".to_owned())
}

/// Why opening the KVM device failed, from its errno.
fn open_error(path: String, e: kvm_ioctls::Error) -> Error {
    match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => Error::NoKvm(path),
        libc::EACCES | libc::EPERM => Error::KvmPermission(path),
        _ => Error::KvmOpen(path, e),
    }
}

/// Opens the KVM device, telling apart "missing" and "not allowed".
pub fn open_kvm() -> Result<Kvm, Error> {
    let path = kvm_path();
    let c = std::ffi::CString::new(path.clone()).map_err(|_| Error::NoKvm(path.clone()))?;
    Kvm::new_with_path(&c).map_err(|e| open_error(path, e))
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
}

/// Runs the guest on the local KVM and reports how it went. A guest that faults or
/// hangs is a report (`Ok`), not an error; errors are the host's.
pub fn run(spec: &RunSpec, console: ConsoleSink, host: HostInfo) -> Result<RunReport, Error> {
    if spec.vcpus == 0 || spec.vcpus as usize > MAX_VCPUS {
        return Err(Error::BadVcpus(spec.vcpus));
    }
    let kvm = open_kvm()?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    // Only VMX needs these; elsewhere they may fail harmlessly.
    let _ = vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR);
    let _ = vm.set_tss_address(KVM_TSS_ADDR);

    let mem = memory::create(spec.mem)?;
    let vm = Arc::new(vm);
    let mut regions = Vec::new();
    for region in mem.iter() {
        let host_addr = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| Error::Memory(memory::Error::Map { size: region.len() >> 20, reason: e.to_string() }))?;
        regions.push((region.start_addr().0, region.len(), host_addr as u64));
    }
    // Guest RAM goes to KVM in chunks that the write protection of pagetables can
    // split into read-only and writable slots.
    let dirty_log = spec.config.host_write_watch() == shared::config::WriteWatch::DirtyLog;
    let wp = WriteProtect::new(
        vm.clone(),
        &regions,
        kvm.get_nr_memslots(),
        kvm.check_extension(Cap::ReadonlyMem),
        dirty_log,
    )?;
    let image = loader::load(&mem, &spec.mem.regions(), &spec.kernel, LOW_RESERVED_END)?;

    let base_cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::new();
    for i in 0..spec.vcpus {
        let v = vm.create_vcpu(i as u64).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        vcpu::configure(&v, i, &base_cpuid, image.entry)?;
        vcpus.push(v);
    }
    let tsc_khz = vcpus[0].get_tsc_khz().unwrap_or(0);
    let info = BootInfo::new(spec.vcpus, tsc_khz, &spec.mem.regions(), spec.config);
    memory::write_obj(&mem, BOOT_INFO_GPA, &info)?;
    log::debug!("kernel entry {:#x}, image end {:#x}, tsc {} kHz", image.entry, image.end, tsc_khz);

    vcpu::install_kick_handler();
    let pv = pvmmu::PvMmuConfig::from_config(&spec.config);
    let hv = Arc::new(Hypervisor::new(mem, spec.start, console, pv));
    hv.set_write_protect(wp);
    let ctl = vcpu::Control::new();
    let mut threads = Vec::new();
    for (i, v) in vcpus.into_iter().enumerate() {
        let (hv, ctl) = (hv.clone(), ctl.clone());
        let t = std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || vcpu::run(v, i as u32, hv, ctl))
            .map_err(Error::Thread)?;
        threads.push(t);
    }

    let watchdog_start = Instant::now();
    let outcome = match ctl.wait(spec.timeout) {
        Some(o) => o,
        None => {
            ctl.finish(Outcome::Timeout { after_s: watchdog_start.elapsed().as_secs_f64(), vcpus: Vec::new() });
            ctl.outcome().unwrap_or(Outcome::VmmError { message: "no outcome".into() })
        }
    };
    let to_end_ms = spec.start.elapsed().as_secs_f64() * 1000.0;
    let mut results: Vec<vcpu::VcpuResult> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    results.sort_by_key(|r| r.index);
    let outcome = match outcome {
        Outcome::Timeout { after_s, .. } => {
            Outcome::Timeout { after_s, vcpus: results.iter().map(|r| r.last).collect() }
        }
        o => o,
    };

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
        exits: results
            .iter()
            .map(|r| VcpuExits { vcpu: r.index, user: r.exits, kvm: r.kvm_stats.iter().cloned().collect() })
            .collect(),
        hypercalls: hv.call_counts(),
        pvmmu,
        results: hv.results(),
        counters,
        counter_totals,
        emulator_fault: None,
    })
}

//! A VM on the local KVM, as building blocks: create it (in-kernel irqchip),
//! hand it guest RAM, create vCPUs, and run them, one thread each, until the
//! run ends or the watchdog fires. What a guest is (its image, its boot
//! information, what its exits mean) is the layer above's: `machine` for
//! our guest.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use shared::boot::MAX_VCPUS;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::debug::Debugger;
use super::write_protect::{self, WriteProtect};
use super::{loader, vcpu};
use crate::report::Outcome;
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

/// A new VM with KVM's in-kernel irqchip (local APICs, IOAPIC, PIC), and the
/// KVM device it came from.
pub fn create_vm() -> Result<(Kvm, Arc<VmFd>), Error> {
    let kvm = open_kvm()?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    // Only VMX needs these; elsewhere they may fail harmlessly.
    let _ = vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR);
    let _ = vm.set_tss_address(KVM_TSS_ADDR);
    Ok((kvm, Arc::new(vm)))
}

/// Guest RAM handed to KVM: the memslots, in chunks that the write protection
/// of pagetables can split into read-only and writable slots (a guest with no
/// PV MMU never protects one).
pub fn map_memory(kvm: &Kvm, vm: &Arc<VmFd>, mem: &GuestMemoryMmap, dirty_log: bool) -> Result<WriteProtect, Error> {
    let mut regions = Vec::new();
    for region in mem.iter() {
        let host_addr = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| Error::Memory(memory::Error::Map { size: region.len() >> 20, reason: e.to_string() }))?;
        regions.push((region.start_addr().0, region.len(), host_addr as u64));
    }
    Ok(WriteProtect::new(
        vm.clone(),
        &regions,
        kvm.get_nr_memslots(),
        kvm.check_extension(Cap::ReadonlyMem),
        dirty_log,
    )?)
}

/// The CPUID KVM supports here, which each vCPU's is made from.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, Error> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))
}

/// Creates vCPU `index`.
pub fn create_vcpu(vm: &VmFd, index: u32) -> Result<VcpuFd, Error> {
    if index as usize >= MAX_VCPUS {
        return Err(Error::BadVcpus(index + 1));
    }
    vm.create_vcpu(index as u64).map_err(kvm_err("KVM_CREATE_VCPU"))
}

/// How long the vCPU threads have, once the run has ended, to come back from
/// what they are doing. A vCPU in the guest is kicked out at once; one inside a
/// host call that does not end is left behind after this.
const HOST_CALL_GRACE: Duration = Duration::from_secs(3);

/// How a run ended: its outcome, what each vCPU thread that came back handed
/// back (by index), and the vCPUs left behind inside a host call.
pub struct RunEnd {
    pub outcome: Outcome,
    pub results: Vec<vcpu::VcpuResult>,
    /// While these run, the locks they may hold must not be waited for.
    pub stuck_in_host: Vec<u32>,
}

impl RunEnd {
    /// `m` locked for the report; with a vCPU left behind, only if it is free
    /// now (that vCPU may hold it for ever).
    pub fn lock<'a, T>(&self, m: &'a Mutex<T>) -> Option<MutexGuard<'a, T>> {
        lock_or_skip(m, self.stuck_in_host.is_empty())
    }
}

/// `m` locked, waiting for it if `wait`, else only if it is free now.
pub fn lock_or_skip<T>(m: &Mutex<T>, wait: bool) -> Option<MutexGuard<'_, T>> {
    if wait {
        m.lock().ok()
    } else {
        m.try_lock().ok()
    }
}

/// Runs every vCPU on its own thread, each exit handed to `exits`, until the
/// run ends or the watchdog fires after `timeout`. The threads then have
/// [`HOST_CALL_GRACE`] to come back; one that does not (a host call that will
/// not end) is left running, so `--timeout` always ends the run.
pub fn run_vcpus(
    vcpus: Vec<VcpuFd>,
    exits: Arc<dyn vcpu::Exits>,
    timeout: Duration,
    debugger: Option<Arc<Debugger>>,
) -> Result<RunEnd, Error> {
    vcpu::install_kick_handler();
    let ctl = vcpu::Control::new();
    if let Some(d) = &debugger {
        d.attach(ctl.clone());
    }
    let mut threads = Vec::new();
    for (i, v) in vcpus.into_iter().enumerate() {
        let (exits, ctl, debugger) = (exits.clone(), ctl.clone(), debugger.clone());
        let t = std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || vcpu::run(v, i as u32, exits, ctl, debugger))
            .map_err(Error::Thread)?;
        threads.push((i as u32, t));
    }
    let watchdog_start = Instant::now();
    // Under a debugger the watchdog counts only the time gdb does not hold
    // the guest: a user may keep it stopped as long as they like.
    let (ended, ran) = match &debugger {
        Some(d) => wait_running(&ctl, timeout, &|| d.holds_guest()),
        None => (ctl.wait(timeout), watchdog_start.elapsed()),
    };
    let outcome = match ended {
        Some(o) => o,
        None => {
            let timed_out =
                Outcome::Timeout { after_s: ran.as_secs_f64(), vcpus: Vec::new(), stuck_in_host: Vec::new() };
            ctl.finish(timed_out);
            ctl.outcome().unwrap_or(Outcome::VmmError { message: "no outcome".into() })
        }
    };
    let (finished, stuck) = come_back(threads, HOST_CALL_GRACE);
    let mut results: Vec<vcpu::VcpuResult> = finished.into_iter().filter_map(|t| t.join().ok()).collect();
    results.sort_by_key(|r| r.index);
    let outcome = match outcome {
        Outcome::Timeout { after_s, .. } => {
            Outcome::Timeout { after_s, vcpus: results.iter().map(|r| r.last).collect(), stuck_in_host: stuck.clone() }
        }
        // The guest ended the run, but a vCPU never left the host: the host
        // failed, whatever the guest said.
        _ if !stuck.is_empty() => Outcome::VmmError {
            message: format!(
                "vCPU {stuck:?} did not come back from a host call within {} s of the run's end",
                HOST_CALL_GRACE.as_secs()
            ),
        },
        o => o,
    };
    Ok(RunEnd { outcome, results, stuck_in_host: stuck })
}

/// How often a debugged run's watchdog looks whether gdb holds the guest.
const WATCHDOG_TICK: Duration = Duration::from_millis(50);

/// Waits for the run's end while the time the guest runs, that is while
/// `held` says no, stays within `timeout`: the outcome if the run ended, and
/// the running time counted.
fn wait_running(ctl: &vcpu::Control, timeout: Duration, held: &dyn Fn() -> bool) -> (Option<Outcome>, Duration) {
    let mut ran = Duration::ZERO;
    while ran < timeout {
        let t0 = Instant::now();
        if let Some(o) = ctl.wait((timeout - ran).min(WATCHDOG_TICK)) {
            return (Some(o), ran);
        }
        if !held() {
            ran += t0.elapsed();
        }
    }
    (None, ran)
}

/// Splits the vCPU threads into those that ended within `grace` and the
/// indexes of those that did not.
fn come_back<T>(
    threads: Vec<(u32, std::thread::JoinHandle<T>)>,
    grace: Duration,
) -> (Vec<std::thread::JoinHandle<T>>, Vec<u32>) {
    let start = Instant::now();
    while start.elapsed() < grace && !threads.iter().all(|(_, t)| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (done, left): (Vec<_>, Vec<_>) = threads.into_iter().partition(|(_, t)| t.is_finished());
    (done.into_iter().map(|(_, t)| t).collect(), left.into_iter().map(|(i, _)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watchdog of a debugged run counts only the time nothing holds the
    /// guest: held, it never fires; let go, it fires after `timeout` more.
    #[test]
    fn a_debugged_runs_watchdog_counts_only_the_time_the_guest_runs() {
        let ctl = vcpu::Control::new();
        let held = std::sync::atomic::AtomicBool::new(true);
        let t0 = Instant::now();
        let releaser = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(400));
                held.store(false, std::sync::atomic::Ordering::Relaxed);
            });
            wait_running(&ctl, Duration::from_millis(300), &|| held.load(std::sync::atomic::Ordering::Relaxed))
        });
        let (ended, ran) = releaser;
        assert!(ended.is_none());
        assert!(ran >= Duration::from_millis(300) && ran < Duration::from_millis(400), "{ran:?}");
        assert!(t0.elapsed() >= Duration::from_millis(650), "{:?}: the held time was counted", t0.elapsed());
    }

    /// A thread that ends is joined; one that never does is left behind by
    /// index after the grace, and the caller does not wait for it.
    #[test]
    fn threads_that_do_not_come_back_are_left_behind() {
        let quick = std::thread::spawn(|| 1);
        let stuck = std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(60));
        });
        let t0 = Instant::now();
        let (done, left) = come_back(vec![(0, quick), (1, stuck)], Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(done.into_iter().map(|t| t.join().unwrap()).collect::<Vec<i32>>(), [1]);
        assert_eq!(left, [1]);
    }

    #[test]
    fn open_errors_say_what_is_wrong() {
        let e = |n| open_error("/dev/kvm".into(), kvm_ioctls::Error::new(n)).to_string();
        assert!(e(libc::ENOENT).starts_with("no /dev/kvm"));
        assert!(e(libc::EACCES).contains("no permission"));
        assert!(e(libc::EIO).starts_with("cannot open /dev/kvm"));
    }
}

//! Can the local KVM run a 32-bit guest with PAE paging?
//!
//! KVM on VMX or SVM hardware can; `kvm_pvm` (software virtualization) refuses
//! paging outside long mode. Rather than guess from module names, the probe runs a
//! few instructions in a throwaway VM with PAE paging on (a 2 MiB identity page)
//! and checks that their port write arrives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kvm_bindings::{kvm_regs, kvm_userspace_memory_region};
use kvm_ioctls::VcpuExit;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::kvm::vm::open_kvm;

/// The port the probe's guest writes to.
const PROBE_PORT: u16 = 0x510;
const PROBE_VALUE: u8 = 0x5a;

/// Why the local KVM cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    NoKvm(String),
    Refuses(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoKvm(why) => f.write_str(why),
            Unavailable::Refuses(why) => {
                let module = kvm_module();
                write!(f, "the local KVM ({module}) cannot run a 32-bit PAE guest: {why}")
            }
        }
    }
}

/// Which KVM module provides /dev/kvm.
pub fn kvm_module() -> &'static str {
    for m in ["kvm_pvm", "kvm_intel", "kvm_amd"] {
        if std::path::Path::new("/sys/module").join(m).exists() {
            return m;
        }
    }
    "kvm"
}

/// Runs the probe. `Ok(())` means the local KVM runs PAE guests.
pub fn probe() -> Result<(), Unavailable> {
    let kvm = open_kvm().map_err(|e| Unavailable::NoKvm(e.to_string()))?;
    let refuse = |what: &str, e: kvm_ioctls::Error| Unavailable::Refuses(format!("{what} failed: {e}"));
    let vm = kvm.create_vm().map_err(|e| refuse("KVM_CREATE_VM", e))?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)])
        .map_err(|e| Unavailable::Refuses(format!("cannot map probe memory: {e}")))?;
    let region = mem.iter().next().ok_or_else(|| Unavailable::Refuses("no probe memory".into()))?;
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(0))
        .map_err(|e| Unavailable::Refuses(format!("cannot map probe memory: {e}")))?;
    let r = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
    };
    // SAFETY: `mem` outlives the VM (both dropped at the end of this function).
    unsafe { vm.set_user_memory_region(r) }.map_err(|e| refuse("KVM_SET_USER_MEMORY_REGION", e))?;
    // PDPT at 0x1000 -> PD at 0x2000 whose first entry maps 2 MiB at 0 (P|RW|PS).
    let write = |gpa: u64, bytes: &[u8]| mem.write_slice(bytes, GuestAddress(gpa));
    let code = [0x66, 0xba, PROBE_PORT as u8, (PROBE_PORT >> 8) as u8, 0xb0, PROBE_VALUE, 0xee, 0xf4];
    write(0x1000, &(0x2000u64 | 1).to_le_bytes())
        .and_then(|_| write(0x2000, &0x83u64.to_le_bytes()))
        .and_then(|_| write(0x3000, &code))
        .map_err(|e| Unavailable::Refuses(format!("cannot write probe memory: {e}")))?;

    let mut vcpu = vm.create_vcpu(0).map_err(|e| refuse("KVM_CREATE_VCPU", e))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| refuse("KVM_GET_SREGS", e))?;
    crate::kvm::vcpu::flat_protected_mode(&mut sregs);
    sregs.cr3 = 0x1000;
    sregs.cr4 = 0x20; // PAE
    sregs.cr0 = 0x8000_0011; // PG | ET | PE
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(|e| refuse("KVM_SET_SREGS (32-bit PAE paging)", e))?;
    vcpu.set_regs(&kvm_regs { rip: 0x3000, rflags: 2, ..Default::default() }).map_err(|e| refuse("KVM_SET_REGS", e))?;

    // A guest that hangs must not hang the probe: kick the vCPU after a while.
    crate::kvm::vcpu::install_kick_handler();
    let done = Arc::new(AtomicBool::new(false));
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while !done.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !done.load(Ordering::Acquire) {
                // SAFETY: the probing thread is alive until `done` is set and joined.
                unsafe { libc::pthread_kill(me, libc::SIGRTMIN()) };
            }
        })
    };
    // The kick handler reads immediate_exit through this thread's registered run
    // pointer; without one a signal still makes KVM_RUN return EINTR.
    let result = match vcpu.run() {
        Ok(VcpuExit::IoOut(PROBE_PORT, data)) if data.first() == Some(&PROBE_VALUE) => Ok(()),
        Ok(other) => Err(Unavailable::Refuses(format!("the probe guest exited with {other:?}"))),
        Err(e) if e.errno() == libc::EINTR => Err(Unavailable::Refuses("the probe guest did not finish in 3 s".into())),
        Err(e) => Err(refuse("KVM_RUN in 32-bit PAE mode", e)),
    };
    done.store(true, Ordering::Release);
    let _ = watchdog.join();
    result
}

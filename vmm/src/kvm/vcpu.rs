//! A vCPU: its initial state (32-bit protected mode, paging off, at the kernel's
//! entry), and the exit loop that runs on its own thread.
//!
//! Stopping: any thread may end the run through [`Control::finish`]; every vCPU
//! thread is then kicked out of `KVM_RUN` by a real-time signal whose handler sets
//! `immediate_exit` in that thread's `kvm_run` (Firecracker's scheme), so a vCPU
//! spinning in the guest stops as promptly as one that is halted.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::Duration;

use kvm_bindings::{kvm_mp_state, kvm_regs, kvm_run, kvm_segment, kvm_sregs, CpuId, KVM_MP_STATE_RUNNABLE};
use kvm_ioctls::{VcpuExit, VcpuFd};
use shared::abi::{HYPERCALL_PORT, NOP_EXIT_PORT};
use shared::boot::{BOOT_INFO_GPA, BOOT_MAGIC};

use crate::report::{ExitCounts, Outcome, TripleFault, VcpuExits, VcpuSnapshot};

use super::binary_stats;
use super::debug::{Debugger, Stop};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up vCPU {index}: {what}: {source}")]
    Setup { index: u32, what: &'static str, source: kvm_ioctls::Error },
}

/// What a vCPU does next, once the layer above has handled an exit.
#[derive(Debug, PartialEq)]
pub enum Then {
    Continue,
    /// Flush the TLBs of these vCPUs (a bit per vCPU) before the caller goes on.
    Flush(u64),
    /// After the flushes, deliver an alias fixup for frame `pfn` at the guest's
    /// registered `entry`; the guest re-issues the call in the block at `block`.
    TrapBack {
        flush: u64,
        pfn: u64,
        entry: u64,
        block: u64,
    },
    /// The run ends.
    Stop(Outcome),
}

/// The layer above the KVM layer, as a vCPU's exit loop sees it: what an
/// exit means for this guest. The KVM layer owns the trait and knows no
/// implementation: the hypervisor (our guest's hypercalls and its PV MMU)
/// is one, a guest with only port I/O devices another. The PV MMU's hooks
/// have defaults that do nothing, for a guest without one.
pub trait Exits: Send + Sync {
    /// A hypercall, its block at this guest-physical address.
    fn hypercall(&self, vcpu: u32, gpa: u64) -> Then;
    /// A guest write into a read-only memslot (a protected table).
    fn direct_write(&self, vcpu: u32, gpa: u64, data: &[u8]) -> Then;
    /// The vCPU shut down (a triple fault): what the report says of it.
    fn triple_fault(&self, at: VcpuSnapshot) -> TripleFault;
    /// An `out` to a port the KVM layer does not know.
    fn port_out(&self, _vcpu: u32, _port: u16, _data: &[u8]) -> Then {
        Then::Continue
    }
    /// An `in` from a port the KVM layer does not know: fills `data` (all
    /// ones, as a bus with nothing on it, unless a device answers).
    fn port_in(&self, _vcpu: u32, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    /// Write protection of tables waits to be applied (in a stopped world).
    fn protection_pending(&self) -> bool {
        false
    }
    /// No memslot changes with the protection: no need to stop the world.
    fn protection_off(&self) -> bool {
        true
    }
    fn apply_protection(&self, _vcpu: u32) -> Then {
        Then::Continue
    }
    /// Whether this vCPU's CR3 must be checked at its hypercalls.
    fn wants_cr3(&self, _vcpu: u32) -> bool {
        false
    }
    fn check_cr3(&self, _vcpu: u32, _cr3: u64) -> Then {
        Then::Continue
    }
    /// Direct writes to unprotected tables (the dirty log), before a hypercall.
    fn find_direct_writes(&self, _vcpu: u32) -> Then {
        Then::Continue
    }
    /// Where the trap-back frame's three words go: guest-physical addresses
    /// of `vas` under `cr3`, each writable by the guest, or why not.
    fn writable_gpas(&self, _cr3: u64, _vas: [u32; 3]) -> Result<[u64; 3], String> {
        Err("this guest has no trap-back".into())
    }
    /// Writes the pieces into guest memory, all or none, through the host's
    /// one checked write path.
    fn write_guest_all(&self, _pieces: &[(u64, &[u8])]) -> Result<(), String> {
        Err("this guest has no trap-back".into())
    }
    /// How the run ends when the guest's stack cannot take the trap-back's
    /// frame (the guest's fault: the layer above names the rule).
    fn trap_back_refused(&self, vcpu: u32, detail: String) -> Outcome {
        Outcome::VmmError { message: format!("vCPU {vcpu}: the trap-back frame: {detail}") }
    }
}

/// A flat 4 GiB 32-bit segment (base 0, page granular, present, ring 0) of
/// this selector and type (0xb: code, execute/read; 0x3: data, read/write).
pub fn flat(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment { limit: 0xffff_ffff, selector, type_, present: 1, db: 1, s: 1, g: 1, ..Default::default() }
}

/// Flat 4 GiB 32-bit segments (code 0x08, data 0x10), a TSS, an empty GDT and IDT:
/// the segment state every vCPU (and the PAE probe) starts from.
pub fn flat_protected_mode(sregs: &mut kvm_sregs) {
    sregs.cs = flat(0x08, 0xb);
    sregs.ds = flat(0x10, 0x3);
    sregs.es = sregs.ds;
    sregs.fs = sregs.ds;
    sregs.gs = sregs.ds;
    sregs.ss = sregs.ds;
    sregs.tr = kvm_segment { limit: 0x67, type_: 0xb, present: 1, ..Default::default() };
    sregs.ldt = kvm_segment { limit: 0xffff, type_: 0x2, present: 1, ..Default::default() };
    sregs.gdt.base = 0;
    sregs.gdt.limit = 0;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
}

/// Sets vCPU `index`'s CPUID from KVM's supported one: its APIC ID, and
/// x2APIC offered (KVM's in-kernel local APIC emulates it).
pub fn set_cpuid(vcpu: &VcpuFd, index: u32, base_cpuid: &CpuId) -> Result<(), Error> {
    let mut cpuid = base_cpuid.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (index << 24);
                e.ecx |= 1 << 21;
            }
            0xb | 0x1f => e.edx = index,
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(|source| Error::Setup { index, what: "KVM_SET_CPUID2", source })
}

/// Sets a vCPU's CPUID (its APIC ID, x2APIC offered), registers and segments for
/// the kernel's entry. Application processors are made runnable at once.
pub fn configure(vcpu: &VcpuFd, index: u32, base_cpuid: &CpuId, entry: u32) -> Result<(), Error> {
    let err = |what| move |source| Error::Setup { index, what, source };
    set_cpuid(vcpu, index, base_cpuid)?;

    let mut sregs = vcpu.get_sregs().map_err(err("KVM_GET_SREGS"))?;
    flat_protected_mode(&mut sregs);
    sregs.cr0 = 0x11; // PE | ET: protected mode, paging off
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;

    let regs =
        kvm_regs { rip: entry as u64, rflags: 0x2, rax: BOOT_MAGIC as u64, rbx: BOOT_INFO_GPA, ..Default::default() };
    vcpu.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;
    if index != 0 {
        vcpu.set_mp_state(kvm_mp_state { mp_state: KVM_MP_STATE_RUNNABLE }).map_err(err("KVM_SET_MP_STATE"))?;
    }
    Ok(())
}

thread_local! {
    /// This thread's `kvm_run`, for the kick signal's handler.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(|r| r.get());
    if !run.is_null() {
        // SAFETY: the pointer is this thread's live kvm_run mapping; a byte store is
        // async-signal-safe, and KVM reads the flag at its next entry.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// Installs the kick signal's handler (once per process).
pub fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The handler only stores a byte; registering it cannot fail for SIGRTMIN.
        let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
    });
}

/// The run's shared stop state, and the TLB flushes one vCPU asks of others.
pub struct Control {
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
    /// (vCPU index, thread) of every running vCPU thread.
    threads: Mutex<Vec<(u32, libc::pthread_t)>>,
    /// vCPUs that must flush their TLB before they next enter the guest.
    flush_pending: AtomicU64,
    flushed: Condvar,
    flush_lock: Mutex<()>,
    /// The stopped world: which vCPU stopped it, and who is parked.
    world: Mutex<World>,
    world_changed: Condvar,
    /// Whether some vCPU has the world stopped: the exit loop's check without the
    /// lock (set before the kicks, so a vCPU that missed it is kicked out again).
    world_stopping: AtomicBool,
}

#[derive(Default)]
struct World {
    stopped_by: Option<u32>,
    parked: u64,
}

/// How long a vCPU waits for the others to carry out its flush request before it
/// gives up on them (only a vCPU that no longer runs can take that long).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Whether this host is QEMU's TCG (CPUID's hypervisor leaf says
/// "TCGTCGTCGTCG"): the QEMU-hosted appliance.
pub fn host_is_tcg() -> bool {
    static TCG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TCG.get_or_init(|| {
        let leaf = std::arch::x86_64::__cpuid(0x4000_0000);
        let vendor: Vec<u8> = [leaf.ebx, leaf.ecx, leaf.edx].iter().flat_map(|r| r.to_le_bytes()).collect();
        vendor == b"TCGTCGTCGTCG"
    })
}

/// This machine's CPU clock in kHz, from /proc/cpuinfo: the host's, or inside
/// the appliance the TSC rate its kernel was handed (`tsc_early_khz`).
pub fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse().ok()?;
    Some((mhz * 1000.0) as u64)
}

/// Flushes this vCPU's TLB: KVM_SET_SREGS of its own state reloads the PAE PDPTEs
/// and resets KVM's MMU context, which flushes the vCPU's TLB at its next entry.
///
/// On QEMU's TCG (the QEMU-hosted appliance) nothing is done: QEMU keeps no
/// ASID-tagged TLB, so every entry into the guest starts with an empty one (a
/// stale entry read before a flush request was already gone after the exit),
/// and a KVM_SET_SREGS there made QEMU's emulated SVM abort the appliance at the
/// guest's next entry into the kernel from ring 3 ("invalid tss type").
fn flush_own_tlb(vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
    if host_is_tcg() {
        return Ok(());
    }
    let sregs = vcpu.get_sregs()?;
    vcpu.set_sregs(&sregs)
}

impl Control {
    pub fn new() -> Arc<Self> {
        Arc::new(Control {
            outcome: Mutex::new(None),
            done: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            flush_pending: AtomicU64::new(0),
            flushed: Condvar::new(),
            flush_lock: Mutex::new(()),
            world: Mutex::new(World::default()),
            world_changed: Condvar::new(),
            world_stopping: AtomicBool::new(false),
        })
    }

    /// Parks this vCPU while another one has the world stopped.
    fn park_if_stopped(&self, index: u32) {
        if !self.world_stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut w) = self.world.lock() else { return };
        if w.stopped_by.is_none_or(|by| by == index) {
            return;
        }
        w.parked |= 1 << index;
        self.world_changed.notify_all();
        while w.stopped_by.is_some_and(|by| by != index) && !self.stopped() {
            match self.world_changed.wait_timeout(w, Duration::from_millis(10)) {
                Ok((g, _)) => w = g,
                Err(_) => return,
            }
        }
        w.parked &= !(1 << index);
    }

    /// Runs `f` with every other running vCPU out of the guest and parked (what a
    /// memslot change needs). Waits its turn if another vCPU has the world stopped.
    fn with_world_stopped<T>(&self, index: u32, f: impl FnOnce() -> T) -> T {
        loop {
            self.park_if_stopped(index);
            match self.world.lock() {
                Ok(mut w) if w.stopped_by.is_none() => {
                    w.stopped_by = Some(index);
                    self.world_stopping.store(true, Ordering::Release);
                    break;
                }
                Ok(_) => continue,
                Err(_) => return f(),
            }
        }
        let others = self.kick(!(1u64 << index), |_| {});
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        if let Ok(mut w) = self.world.lock() {
            while w.parked & others != others && !self.stopped() && std::time::Instant::now() < deadline {
                match self.world_changed.wait_timeout(w, Duration::from_millis(1)) {
                    Ok((g, _)) => w = g,
                    Err(_) => break,
                }
            }
        }
        let r = f();
        if let Ok(mut w) = self.world.lock() {
            w.stopped_by = None;
            self.world_stopping.store(false, Ordering::Release);
        }
        self.world_changed.notify_all();
        r
    }

    /// Carries out a flush another vCPU asked of `index`, if any.
    fn serve_flush(&self, index: u32, vcpu: &VcpuFd) -> Result<(), kvm_ioctls::Error> {
        let bit = 1u64 << index;
        if self.flush_pending.load(Ordering::Acquire) & bit == 0 {
            return Ok(());
        }
        let r = flush_own_tlb(vcpu);
        self.flush_pending.fetch_and(!bit, Ordering::AcqRel);
        let _g = self.flush_lock.lock();
        self.flushed.notify_all();
        r
    }

    /// Flushes the TLBs of `targets` (a bit per vCPU): this vCPU's at once, the
    /// others' by kicking them out of the guest, and waits until every running one
    /// has done it (serving requests for itself meanwhile, so that two vCPUs asking
    /// each other cannot deadlock). A parked vCPU (this one stopped the world) is
    /// not waited for: it serves the request before it enters the guest again.
    fn flush(&self, index: u32, vcpu: &VcpuFd, targets: u64) -> Result<(), kvm_ioctls::Error> {
        let me = 1u64 << index;
        if targets & me != 0 {
            flush_own_tlb(vcpu)?;
        }
        let parked = self.world.lock().map(|w| w.parked).unwrap_or(0);
        let wait_for = self.kick(targets & !me, |i| {
            self.flush_pending.fetch_or(1 << i, Ordering::AcqRel);
        }) & !parked;
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        while self.flush_pending.load(Ordering::Acquire) & wait_for != 0 && !self.stopped() {
            self.park_if_stopped(index);
            self.serve_flush(index, vcpu)?;
            let Ok(g) = self.flush_lock.lock() else { break };
            let _ = self.flushed.wait_timeout(g, Duration::from_millis(1));
            if std::time::Instant::now() > deadline {
                log::warn!("vCPU {index}: TLB flush of vCPUs {wait_for:#x} not done after {FLUSH_WAIT:?}");
                break;
            }
        }
        Ok(())
    }

    pub fn stopped(&self) -> bool {
        self.outcome.lock().map(|o| o.is_some()).unwrap_or(true)
    }

    /// Ends the run with `outcome` (the first one wins) and kicks every vCPU.
    pub fn finish(&self, outcome: Outcome) {
        if let Ok(mut o) = self.outcome.lock() {
            if o.is_none() {
                *o = Some(outcome);
            }
        }
        self.done.notify_all();
        self.kick_all();
    }

    pub(super) fn kick_all(&self) {
        self.kick(u64::MAX, |_| {});
    }

    /// Kicks every running vCPU but `index` out of the guest.
    pub(super) fn kick_others(&self, index: u32) {
        self.kick(!(1u64 << index), |_| {});
    }

    /// Kicks the running vCPUs of `mask` out of the guest, calling `before` for each
    /// first; returns the vCPUs kicked.
    fn kick(&self, mask: u64, before: impl Fn(u32)) -> u64 {
        let Ok(threads) = self.threads.lock() else { return 0 };
        let mut kicked = 0;
        for &(i, t) in threads.iter().filter(|(i, _)| mask & (1 << i) != 0) {
            before(i);
            // SAFETY: `t` is a live vCPU thread (it unregisters before exiting).
            unsafe { libc::pthread_kill(t, kick_signal()) };
            kicked |= 1 << i;
        }
        kicked
    }

    /// Waits for the outcome; `None` after `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<Outcome> {
        let guard = self.outcome.lock().ok()?;
        let (guard, _) = self.done.wait_timeout_while(guard, timeout, |o| o.is_none()).ok()?;
        guard.clone()
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }

    fn register(&self, index: u32) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Ok(mut t) = self.threads.lock() {
            t.push((index, me));
        }
    }

    fn unregister(&self) {
        // SAFETY: as above.
        let me = unsafe { libc::pthread_self() };
        if let Ok(mut t) = self.threads.lock() {
            t.retain(|&(_, x)| x != me);
        }
    }
}

/// Does what a hypercall or a direct write asked of this vCPU before it goes on:
/// flushes, the alias fixup's delivery, or the end of the run.
fn carry_out(then: Then, index: u32, vcpu: &mut VcpuFd, hv: &dyn Exits, ctl: &Control) -> Option<Outcome> {
    let flush = |vcpu: &VcpuFd, targets| {
        ctl.flush(index, vcpu, targets).map_err(|e| format!("TLB flush for vCPU {index} failed: {e}"))
    };
    let done = match then {
        Then::Continue => Ok(()),
        Then::Flush(targets) => flush(vcpu, targets),
        Then::TrapBack { flush: targets, pfn, entry, block } => {
            if let Err(message) = flush(vcpu, targets) {
                return Some(Outcome::VmmError { message });
            }
            return deliver_fixup(vcpu, hv, index, pfn, entry, block).err();
        }
        Then::Stop(o) => return Some(o),
    };
    done.err().map(|message| Outcome::VmmError { message })
}

/// Starts the guest's alias fixup: pushes the return address (after the `out` of
/// the hypercall), the frame and the hypercall block on the guest's stack, and
/// jumps to `entry`. No register but ESP and EIP changes.
///
/// A 6.1 KVM steps RIP past the `out` only when it is next run (kvm_pvm did it
/// before the exit), so the pending I/O is completed first: KVM_RUN with
/// `immediate_exit` set finishes it and returns at once without entering the guest.
fn deliver_fixup(
    vcpu: &mut VcpuFd,
    hv: &dyn Exits,
    index: u32,
    pfn: u64,
    entry: u64,
    block: u64,
) -> Result<(), Outcome> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Outcome::VmmError {
        message: format!("cannot deliver the alias fixup: {what}: {e}"),
    };
    // A stack the guest chose that cannot take the frame is the guest's fault.
    let refuse = |detail: String| hv.trap_back_refused(index, detail);
    vcpu.set_kvm_immediate_exit(1);
    let completed = match vcpu.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(e) => Err(fail("completing the hypercall's I/O", &e)),
        Ok(exit) => Err(Outcome::VmmError {
            message: format!("cannot deliver the alias fixup: KVM entered the guest ({exit:?})"),
        }),
    };
    vcpu.set_kvm_immediate_exit(0);
    completed?;
    let mut regs = vcpu.get_regs().map_err(|e| fail("KVM_GET_REGS", &e))?;
    let esp = (regs.rsp as u32).wrapping_sub(12);
    // Each word is translated at its first byte: a word that crossed a page
    // would spill into whatever frame follows in guest-physical memory.
    if !esp.is_multiple_of(4) {
        return Err(refuse(format!("the guest stack pointer {:#x} is not 4-byte aligned", regs.rsp)));
    }
    // Every word is checked before any is written: a frame half written would
    // already have changed guest memory. The guest's own tables say where each
    // word goes and whether a push there would fault (a read-only stack page).
    let cr3 = vcpu.get_sregs().map_err(|e| fail("KVM_GET_SREGS", &e))?.cr3;
    let vas = [0, 4, 8].map(|off| esp.wrapping_add(off));
    let at = hv
        .writable_gpas(cr3, vas)
        .map_err(|why| refuse(format!("the trap-back frame at ESP {esp:#x}: the guest stack: {why}")))?;
    let words = [block as u32, pfn as u32, regs.rip as u32].map(u32::to_le_bytes);
    let pieces: Vec<(u64, &[u8])> = at.iter().zip(&words).map(|(gpa, w)| (*gpa, &w[..])).collect();
    hv.write_guest_all(&pieces).map_err(|why| refuse(format!("the trap-back frame at ESP {esp:#x}: {why}")))?;
    regs.rsp = esp as u64;
    regs.rip = entry;
    vcpu.set_regs(&regs).map_err(|e| fail("KVM_SET_REGS", &e))
}

/// What a vCPU thread hands back when it stops.
pub struct VcpuResult {
    pub index: u32,
    pub exits: ExitCounts,
    pub kvm_stats: Vec<(String, u64)>,
    pub last: VcpuSnapshot,
}

impl VcpuResult {
    /// The vCPU's exits as the run's report gives them.
    pub fn report(&self) -> VcpuExits {
        VcpuExits { vcpu: self.index, user: self.exits, kvm: self.kvm_stats.iter().cloned().collect() }
    }
}

fn snapshot(vcpu: &VcpuFd, index: u32) -> VcpuSnapshot {
    let regs = vcpu.get_regs().unwrap_or_default();
    let sregs = vcpu.get_sregs().unwrap_or_default();
    VcpuSnapshot {
        vcpu: index,
        eip: regs.rip as u32,
        esp: regs.rsp as u32,
        eflags: regs.rflags as u32,
        cr0: sregs.cr0 as u32,
        cr2: sregs.cr2 as u32,
        cr3: sregs.cr3 as u32,
    }
}

/// The bytes of an MMIO write, copied out of `kvm_run` without a heap
/// allocation on the exit path.
#[derive(Debug, PartialEq, Eq)]
pub struct MmioData {
    bytes: [u8; 8],
    len: usize,
}

impl MmioData {
    fn new(data: &[u8]) -> Self {
        let mut bytes = [0; 8];
        let len = data.len().min(8);
        bytes[..len].copy_from_slice(&data[..len]);
        MmioData { bytes, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What KVM says of an internal error, from this thread's `kvm_run`: the
/// suberror and its data words (for an emulation failure, the instruction's
/// bytes and, on newer kernels, the guest-physical address).
fn internal_error_detail() -> String {
    let run = KVM_RUN.with(|r| r.get());
    if run.is_null() {
        return "emulation failed".into();
    }
    // SAFETY: this thread's live kvm_run mapping, after KVM_RUN returned an
    // internal error, so the union's `internal` member is the one KVM filled.
    let internal = unsafe { (*run).__bindgen_anon_1.internal };
    let what = match internal.suberror {
        1 => "emulation failed",
        2 => "simultaneous exceptions",
        3 => "an exception while delivering an event",
        4 => "an exit KVM did not expect",
        _ => "suberror unknown",
    };
    let n = (internal.ndata as usize).min(internal.data.len());
    format!("{what}, suberror {}, data {:x?}", internal.suberror, &internal.data[..n])
}

/// What the exit loop does about one exit, decided from the exit alone.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Nothing more: enter the guest again.
    Continue,
    /// A hypercall, its block at this guest-physical address.
    Hypercall(u64),
    /// A guest write into a read-only memslot (a protected table): its
    /// address and bytes (KVM's MMIO data, at most 8).
    DirectWrite(u64, MmioData),
    /// An `out` to a port of the layer above's devices: the port and bytes.
    PortOut(u16, MmioData),
    /// The vCPU shut down: a triple fault.
    TripleFault,
    /// KVM_RUN returned early (a kick, a signal): clear the immediate exit and
    /// go on.
    Interrupted,
    /// A debug exit (a step done, a hardware breakpoint met): its DR6.
    Debug(u64),
    /// The run ends.
    Stop(Outcome),
}

/// One exit of vCPU `index`, as KVM_RUN returned it: counted in `exits`,
/// answered where it needs nothing else (an MMIO read of nothing reads all
/// ones; an `in` is the devices' of `hv`), and turned into what the loop does
/// next. No KVM, PV MMU or other vCPU is touched here, so the tests give it
/// made-up exits.
pub fn on_exit(
    run: Result<VcpuExit<'_>, kvm_ioctls::Error>,
    index: u32,
    exits: &mut ExitCounts,
    hv: &dyn Exits,
) -> Action {
    match run {
        Ok(VcpuExit::IoOut(HYPERCALL_PORT, data)) if data.len() == 4 => {
            exits.hypercall += 1;
            Action::Hypercall(u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as u64)
        }
        Ok(VcpuExit::IoOut(NOP_EXIT_PORT, _)) => {
            exits.nop_exit += 1;
            Action::Continue
        }
        Ok(VcpuExit::IoOut(port, data)) => {
            exits.other_io += 1;
            Action::PortOut(port, MmioData::new(data))
        }
        Ok(VcpuExit::IoIn(port, data)) => {
            exits.other_io += 1;
            hv.port_in(index, port, data);
            Action::Continue
        }
        Ok(VcpuExit::MmioRead(_, data)) => {
            exits.mmio += 1;
            data.fill(0xff);
            Action::Continue
        }
        Ok(VcpuExit::MmioWrite(gpa, data)) => {
            exits.mmio += 1;
            Action::DirectWrite(gpa, MmioData::new(data))
        }
        Ok(VcpuExit::Hlt) => {
            exits.hlt += 1;
            Action::Continue
        }
        Ok(VcpuExit::Intr) => {
            exits.intr += 1;
            Action::Continue
        }
        Ok(VcpuExit::Shutdown) => {
            exits.shutdown += 1;
            Action::TripleFault
        }
        Ok(VcpuExit::Debug(arch)) => {
            exits.debug += 1;
            Action::Debug(arch.dr6)
        }
        Ok(VcpuExit::FailEntry(reason, _)) => Action::Stop(Outcome::VmmError {
            message: format!("KVM could not enter vCPU {index} (hardware entry failure reason {reason:#x})"),
        }),
        Ok(VcpuExit::InternalError) => Action::Stop(Outcome::VmmError {
            message: format!("KVM internal error on vCPU {index} ({})", internal_error_detail()),
        }),
        Ok(VcpuExit::SystemEvent(kind, _)) => Action::Stop(Outcome::VmmError {
            message: format!("vCPU {index} raised system event {kind} (reset or crash)"),
        }),
        Ok(other) => Action::Stop(Outcome::VmmError { message: format!("unexpected exit on vCPU {index}: {other:?}") }),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            exits.intr += 1;
            Action::Interrupted
        }
        Err(e) => Action::Stop(Outcome::VmmError { message: format!("KVM_RUN failed on vCPU {index}: {e}") }),
    }
}

/// The exit loop of one vCPU, until the run ends.
pub fn run(
    mut vcpu: VcpuFd,
    index: u32,
    hv: Arc<dyn Exits>,
    ctl: Arc<Control>,
    debugger: Option<Arc<Debugger>>,
) -> VcpuResult {
    let run_ptr: *mut kvm_run = vcpu.get_kvm_run();
    KVM_RUN.with(|r| r.set(run_ptr));
    ctl.register(index);
    if let Some(d) = &debugger {
        d.started(index);
    }
    let mut exits = ExitCounts::default();
    while !ctl.stopped() {
        ctl.park_if_stopped(index);
        if let Some(d) = debugger.as_ref().filter(|d| d.wants_stop()) {
            if let Err(e) = d.park(index, &mut vcpu, None) {
                ctl.finish(Outcome::VmmError { message: format!("KVM_SET_GUEST_DEBUG of vCPU {index} failed: {e}") });
                break;
            }
            continue;
        }
        if hv.protection_pending() {
            // Whether the guest already runs on the tables about to be protected
            // decides, on a QEMU TCG host, whether they can be (check_cr3).
            if host_is_tcg() {
                let cr3 = vcpu.get_sregs().map(|s| s.cr3).unwrap_or(0);
                if let Then::Stop(o) = hv.check_cr3(index, cr3) {
                    ctl.finish(o);
                    break;
                }
            }
            // Stopping the world costs a kick and a wait for every other vCPU
            // (about 0.3 ms a pin QEMU-hosted, docs/pvmmu.md); with no memslot
            // to change there is nothing to stop it for.
            // A stop, or the flush that writes undone need (the stopped
            // vCPUs flush before they enter the guest again).
            let stop = if hv.protection_off() {
                carry_out(hv.apply_protection(index), index, &mut vcpu, &*hv, &ctl)
            } else {
                ctl.with_world_stopped(index, || carry_out(hv.apply_protection(index), index, &mut vcpu, &*hv, &ctl))
            };
            if let Some(o) = stop {
                ctl.finish(o);
                break;
            }
        }
        if let Err(e) = ctl.serve_flush(index, &vcpu) {
            ctl.finish(Outcome::VmmError { message: format!("TLB flush of vCPU {index} failed: {e}") });
            break;
        }
        let outcome = match on_exit(vcpu.run(), index, &mut exits, &*hv) {
            Action::Continue => None,
            Action::Hypercall(gpa) => {
                // Direct writes to unprotected tables first: the call must
                // find the frame table as the guest left it.
                if let Some(o) = carry_out(hv.find_direct_writes(index), index, &mut vcpu, &*hv, &ctl) {
                    ctl.finish(o);
                    break;
                }
                let mut then = hv.hypercall(index, gpa);
                if matches!(then, Then::Continue | Then::Flush(_)) && hv.wants_cr3(index) {
                    match vcpu.get_sregs() {
                        Ok(sregs) => {
                            if let Then::Stop(o) = hv.check_cr3(index, sregs.cr3) {
                                then = Then::Stop(o);
                            }
                        }
                        Err(e) => {
                            then = Then::Stop(Outcome::VmmError {
                                message: format!("KVM_GET_SREGS of vCPU {index} failed: {e}"),
                            })
                        }
                    }
                }
                carry_out(then, index, &mut vcpu, &*hv, &ctl)
            }
            Action::DirectWrite(gpa, data) => {
                let then = hv.direct_write(index, gpa, data.as_slice());
                carry_out(then, index, &mut vcpu, &*hv, &ctl)
            }
            Action::PortOut(port, data) => {
                let then = hv.port_out(index, port, data.as_slice());
                carry_out(then, index, &mut vcpu, &*hv, &ctl)
            }
            Action::TripleFault => Some(Outcome::TripleFault(hv.triple_fault(snapshot(&vcpu, index)))),
            Action::Interrupted => {
                vcpu.set_kvm_immediate_exit(0);
                None
            }
            Action::Debug(dr6) => match &debugger {
                Some(d) => {
                    let stop = Stop::of_exit(dr6, &d.armed(index));
                    d.park(index, &mut vcpu, Some(stop)).err().map(|e| Outcome::VmmError {
                        message: format!("KVM_SET_GUEST_DEBUG of vCPU {index} failed: {e}"),
                    })
                }
                None => Some(Outcome::VmmError { message: format!("a debug exit on vCPU {index} with no debugger") }),
            },
            Action::Stop(o) => Some(o),
        };
        if let Some(o) = outcome {
            ctl.finish(o);
        }
    }
    ctl.unregister();
    if let Some(d) = &debugger {
        d.finished(index);
    }
    KVM_RUN.with(|r| r.set(std::ptr::null_mut()));
    let last = snapshot(&vcpu, index);
    let kvm_stats = binary_stats::read_vcpu(&vcpu).unwrap_or_default();
    VcpuResult { index, exits, kvm_stats, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(e: i32) -> Result<VcpuExit<'static>, kvm_ioctls::Error> {
        Err(kvm_ioctls::Error::new(e))
    }

    /// A vCPU that reaches its exit loop's check while another has the world
    /// stopped parks, and makes no progress until the stop ends; the stopper
    /// runs its work only once every other registered vCPU is parked.
    #[test]
    fn the_stopped_world_parks_every_other_vcpu_until_it_ends() {
        use std::sync::atomic::AtomicU64;
        let ctl = Control::new();
        let progress = Arc::new(AtomicU64::new(0));
        let quit = Arc::new(AtomicBool::new(false));
        let vcpu1 = {
            let (ctl, progress, quit) = (ctl.clone(), progress.clone(), quit.clone());
            std::thread::spawn(move || {
                ctl.register(1);
                while !quit.load(Ordering::Acquire) {
                    ctl.park_if_stopped(1);
                    progress.fetch_add(1, Ordering::AcqRel);
                    std::thread::sleep(Duration::from_micros(200));
                }
                ctl.unregister();
            })
        };
        install_kick_handler();
        while progress.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (parked, before, after) = ctl.with_world_stopped(0, || {
            let parked = ctl.world.lock().unwrap().parked;
            let before = progress.load(Ordering::Acquire);
            std::thread::sleep(Duration::from_millis(30));
            (parked, before, progress.load(Ordering::Acquire))
        });
        assert_eq!(parked, 1 << 1, "vCPU 1 parked before the work ran");
        assert_eq!(before, after, "vCPU 1 made no progress while the world was stopped");
        let resumed = progress.load(Ordering::Acquire);
        while progress.load(Ordering::Acquire) == resumed {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(ctl.world.lock().unwrap().parked, 0, "and it left the park when the stop ended");
        quit.store(true, Ordering::Release);
        vcpu1.join().unwrap();
    }

    /// The end of the run releases a parked vCPU (it must not wait for a stop
    /// that will never end), and the first outcome wins.
    #[test]
    fn the_end_of_the_run_releases_a_parked_vcpu() {
        let ctl = Control::new();
        // vCPU 0 holds the world stopped as if its work never ended.
        {
            let mut w = ctl.world.lock().unwrap();
            w.stopped_by = Some(0);
        }
        ctl.world_stopping.store(true, Ordering::Release);
        let parked = {
            let ctl = ctl.clone();
            std::thread::spawn(move || ctl.park_if_stopped(1))
        };
        while ctl.world.lock().unwrap().parked == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        ctl.finish(Outcome::Shutdown { code: 0 });
        ctl.finish(Outcome::Shutdown { code: 9 });
        parked.join().unwrap();
        assert_eq!(ctl.outcome(), Some(Outcome::Shutdown { code: 0 }));
        assert!(ctl.stopped());
    }

    /// A kick reaches a vCPU thread blocked in a system call (as one is in
    /// KVM_RUN) and makes the call return: here `pause()`, which only a signal
    /// ends. A thread that left is not kicked.
    #[test]
    fn a_kick_interrupts_a_vcpu_thread_blocked_in_the_kernel() {
        install_kick_handler();
        let ctl = Control::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = {
            let ctl = ctl.clone();
            std::thread::spawn(move || {
                ctl.register(2);
                tx.send(()).unwrap();
                // SAFETY: pause has no preconditions; it returns when a handled
                // signal arrives.
                let r = unsafe { libc::pause() };
                ctl.unregister();
                (r, std::io::Error::last_os_error().raw_os_error())
            })
        };
        rx.recv().unwrap();
        // The thread may not be inside pause() yet: kick until it returns.
        let mut kicked = 0;
        while !t.is_finished() {
            kicked |= ctl.kick(1 << 2, |_| {});
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(t.join().unwrap(), (-1, Some(libc::EINTR)));
        assert_eq!(kicked, 1 << 2);
        assert_eq!(ctl.kick(u64::MAX, |_| {}), 0, "an unregistered thread is not kicked");
    }

    /// Made-up devices: port 0x3fd answers 0x60, every other reads nothing.
    struct Devices;
    impl Exits for Devices {
        fn hypercall(&self, _: u32, _: u64) -> Then {
            Then::Continue
        }
        fn direct_write(&self, _: u32, _: u64, _: &[u8]) -> Then {
            Then::Continue
        }
        fn triple_fault(&self, at: VcpuSnapshot) -> TripleFault {
            TripleFault::new(at)
        }
        fn port_in(&self, _: u32, port: u16, data: &mut [u8]) {
            data.fill(if port == 0x3fd { 0x60 } else { 0xff });
        }
    }

    /// Every kind of exit, made up, gives the action and the count the loop
    /// relies on: a hypercall's block address from the 32-bit `out`, all ones
    /// for reads of nothing, a protected table's write with its bytes, a kick
    /// that only re-enters, and a clear outcome for what ends the run.
    #[test]
    fn each_exit_becomes_one_action_and_one_count() {
        let mut n = ExitCounts::default();
        let dev = Devices;
        let gpa = 0x0012_3450u32.to_le_bytes();
        assert_eq!(on_exit(Ok(VcpuExit::IoOut(HYPERCALL_PORT, &gpa)), 0, &mut n, &dev), Action::Hypercall(0x12_3450));
        // A hypercall port written with another width is no hypercall: the
        // devices' (which ignore it).
        assert_eq!(
            on_exit(Ok(VcpuExit::IoOut(HYPERCALL_PORT, &gpa[..2])), 0, &mut n, &dev),
            Action::PortOut(HYPERCALL_PORT, MmioData::new(&gpa[..2]))
        );
        assert_eq!(on_exit(Ok(VcpuExit::IoOut(NOP_EXIT_PORT, &[0; 4])), 0, &mut n, &dev), Action::Continue);
        assert_eq!(
            on_exit(Ok(VcpuExit::IoOut(0x80, &[1])), 0, &mut n, &dev),
            Action::PortOut(0x80, MmioData::new(&[1]))
        );
        let mut port = [0u8; 2];
        assert_eq!(on_exit(Ok(VcpuExit::IoIn(0x71, &mut port)), 0, &mut n, &dev), Action::Continue);
        assert_eq!(port, [0xff; 2], "an in of nothing reads all ones");
        let mut port = [0u8; 1];
        assert_eq!(on_exit(Ok(VcpuExit::IoIn(0x3fd, &mut port)), 0, &mut n, &dev), Action::Continue);
        assert_eq!(port, [0x60], "a device's in reads what the device answers");
        let mut mmio = [0u8; 4];
        assert_eq!(on_exit(Ok(VcpuExit::MmioRead(0xfee0_0000, &mut mmio)), 0, &mut n, &dev), Action::Continue);
        assert_eq!(mmio, [0xff; 4]);
        let entry = 0x8000_0000_0012_3067u64.to_le_bytes();
        assert_eq!(
            on_exit(Ok(VcpuExit::MmioWrite(0x0120_0018, &entry)), 0, &mut n, &dev),
            Action::DirectWrite(0x0120_0018, MmioData::new(&entry))
        );
        // A 4-byte write keeps exactly its 4 bytes.
        match on_exit(Ok(VcpuExit::MmioWrite(0x0120_001c, &entry[..4])), 0, &mut n, &dev) {
            Action::DirectWrite(0x0120_001c, d) => assert_eq!(d.as_slice(), &entry[..4]),
            a => panic!("{a:?}"),
        }
        assert_eq!(on_exit(Ok(VcpuExit::Hlt), 0, &mut n, &dev), Action::Continue);
        assert_eq!(on_exit(Ok(VcpuExit::Intr), 0, &mut n, &dev), Action::Continue);
        assert_eq!(on_exit(Ok(VcpuExit::Shutdown), 0, &mut n, &dev), Action::TripleFault);
        assert_eq!(on_exit(errno(libc::EINTR), 0, &mut n, &dev), Action::Interrupted);
        assert_eq!(on_exit(errno(libc::EAGAIN), 0, &mut n, &dev), Action::Interrupted);
        let want =
            ExitCounts { hypercall: 1, nop_exit: 1, other_io: 4, mmio: 3, hlt: 1, intr: 3, shutdown: 1, debug: 0 };
        assert_eq!(n, want);
        // What ends the run says which vCPU and why.
        let stop = |r| match on_exit(r, 3, &mut ExitCounts::default(), &dev) {
            Action::Stop(Outcome::VmmError { message }) => message,
            a => panic!("{a:?}"),
        };
        assert!(
            stop(Ok(VcpuExit::FailEntry(0x80000021, 0))).contains("vCPU 3 (hardware entry failure reason 0x80000021)")
        );
        assert!(stop(Ok(VcpuExit::InternalError)).contains("internal error on vCPU 3"));
        assert!(stop(Ok(VcpuExit::SystemEvent(2, &[]))).contains("vCPU 3 raised system event 2"));
        assert!(stop(errno(libc::EFAULT)).contains("KVM_RUN failed on vCPU 3"));
    }
}

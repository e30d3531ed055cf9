//! The vCPU side of a debugger (the gdb stub above it, the `gdb` module).
//!
//! gdb sees the machine in all-stop mode: when one vCPU finishes a step or
//! meets a hardware breakpoint, or the debugger asks (an attach, a Ctrl-C),
//! every vCPU stops. A stopped vCPU parks in [`Debugger::park`] on its own
//! thread and serves the debugger's requests there, on its own `VcpuFd`
//! (KVM's vCPU ioctls wait for a vCPU that is inside KVM_RUN, so only the
//! thread that runs it asks them). Before it enters the guest again it arms
//! what the debugger set: single-step, and the four debug-register
//! breakpoints (`KVM_SET_GUEST_DEBUG`).
//!
//! Breakpoints are the debug registers, as Firecracker and cloud-hypervisor
//! set them: an `int3` written into the guest would be taken by the guest's
//! own IDT under a QEMU-hosted nested KVM (QEMU's TCG raises it as a
//! software interrupt, which KVM's #BP intercept does not see). QEMU-hosted
//! the debug registers do not stop the guest either (see [`Debugger::new`]);
//! single-step does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP};
use kvm_ioctls::VcpuFd;

use super::vcpu::Control;

/// Hardware breakpoints a vCPU has (DR0..DR3).
pub const BREAKPOINTS: usize = 4;

/// What a vCPU arms before it enters the guest again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arm {
    /// Stop after one instruction.
    pub step: bool,
    /// Execution breakpoints at these linear addresses.
    pub breakpoints: [Option<u32>; BREAKPOINTS],
}

impl Arm {
    /// The `KVM_SET_GUEST_DEBUG` argument: nothing armed is guest debug off
    /// (the guest's own debug registers back).
    pub fn guest_debug(&self) -> kvm_guest_debug {
        let mut d = kvm_guest_debug::default();
        let any = self.breakpoints.iter().any(Option::is_some);
        if !self.step && !any {
            return d;
        }
        d.control = KVM_GUESTDBG_ENABLE;
        if self.step {
            d.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if any {
            d.control |= KVM_GUESTDBG_USE_HW_BP;
            // DR7: GE (bit 9) and the always-one bit 10; each slot's global
            // enable; R/W and LEN zero: break on execution of one byte.
            let mut dr7 = 0x600u64;
            for (i, bp) in self.breakpoints.iter().enumerate() {
                if let Some(addr) = bp {
                    d.arch.debugreg[i] = *addr as u64;
                    dr7 |= 2 << (i * 2);
                }
            }
            d.arch.debugreg[7] = dr7;
        }
        d
    }
}

/// Why a vCPU stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It finished a single step.
    Step,
    /// It met a hardware breakpoint.
    Breakpoint,
}

impl Stop {
    /// The stop a `KVM_EXIT_DEBUG` reports: DR6's B0..B3 bits are a
    /// breakpoint (a step onto one included), else a step.
    pub fn of_exit(dr6: u64, armed: &Arm) -> Stop {
        if dr6 & 0xf != 0 && armed.breakpoints.iter().any(Option::is_some) {
            Stop::Breakpoint
        } else {
            Stop::Step
        }
    }
}

/// The registers of a 32-bit vCPU as a debugger sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// eax, ecx, edx, ebx, esp, ebp, esi, edi (gdb's order).
    pub gpr: [u32; 8],
    pub eip: u32,
    pub eflags: u32,
    /// The selectors of cs, ss, ds, es, fs, gs (read only: never written).
    pub segments: [u32; 6],
    /// The x87 and SSE state (read only: never written).
    pub fpu: Fpu,
}

/// What a register write changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writable {
    /// eax, ecx, edx, ebx, esp, ebp, esi, edi.
    pub gpr: [u32; 8],
    pub eip: u32,
    pub eflags: u32,
}

/// The x87 and SSE registers as gdb's i386 target shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fpu {
    /// st0..st7, 80 bits each.
    pub st: [[u8; 10]; 8],
    pub fctrl: u32,
    pub fstat: u32,
    /// The full tag word (two bits a register), from KVM's abridged one: a
    /// register in use is "valid", the others "empty".
    pub ftag: u32,
    /// The last instruction's and operand's offsets, and its opcode.
    pub fioff: u32,
    pub fooff: u32,
    pub fop: u32,
    pub xmm: [u128; 8],
    pub mxcsr: u32,
}

impl Fpu {
    fn of(f: &kvm_bindings::kvm_fpu) -> Fpu {
        let mut st = [[0u8; 10]; 8];
        for (d, s) in st.iter_mut().zip(&f.fpr) {
            d.copy_from_slice(&s[..10]);
        }
        let mut xmm = [0u128; 8];
        for (d, s) in xmm.iter_mut().zip(&f.xmm) {
            *d = u128::from_le_bytes(*s);
        }
        let ftag = (0..8).filter(|i| f.ftwx & (1 << i) == 0).fold(0u32, |t, i| t | (3 << (2 * i)));
        Fpu {
            st,
            fctrl: f.fcw.into(),
            fstat: f.fsw.into(),
            ftag,
            fioff: f.last_ip as u32,
            fooff: f.last_dp as u32,
            fop: f.last_opcode.into(),
            xmm,
            mxcsr: f.mxcsr,
        }
    }
}

/// A request of the debugger to one stopped vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    ReadRegs,
    /// The general registers, eip and eflags (segments are not written:
    /// KVM_SET_SREGS made QEMU's SVM abort; nor is the x87 and SSE state).
    WriteRegs(Writable),
    /// The guest-physical address of a linear address, under this vCPU's
    /// paging (`KVM_TRANSLATE`).
    Translate(u32),
}

/// A vCPU's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Regs(Box<Regs>),
    Written,
    Translated(Option<u64>),
    Failed(String),
}

#[derive(Default)]
struct State {
    /// Every vCPU is to stop (until the next resume).
    stop: bool,
    /// vCPUs parked in the debugger, and vCPUs whose thread runs.
    parked: u64,
    running: u64,
    /// Stops the vCPUs reported, oldest first.
    events: VecDeque<(u32, Stop)>,
    request: Option<(u32, Request)>,
    reply: Option<Reply>,
    /// What each vCPU arms when it leaves the debugger.
    arm: Vec<Arm>,
    /// A gdb session is attached.
    session: bool,
}

/// The rendezvous of the vCPU threads and the debugger.
pub struct Debugger {
    state: Mutex<State>,
    changed: Condvar,
    /// The exit loop's check, without the lock.
    stop: AtomicBool,
    control: OnceLock<Arc<Control>>,
    /// Whether the debug registers stop this host's guest (see [`Debugger::new`]).
    breakpoints: bool,
}

/// How long a wait sleeps before it looks at the run's end again.
const TICK: Duration = Duration::from_millis(10);

impl Debugger {
    /// A debugger for `vcpus` vCPUs; with `wait`, they stop before their
    /// first instruction (`--gdb-wait`). `breakpoints`: whether this host's
    /// debug registers stop the guest. QEMU-hosted they do not: the nested
    /// KVM arms them and the guest runs past (measured, 2026-12-05: a
    /// breakpoint at the guest's `bsp_main` never fired, while single-step
    /// stopped after each instruction). Finding breakpoints by stepping
    /// instead was tried and is no answer: each `rep stos` iteration traps,
    /// and the guest's own `popf` clears the trap flag.
    pub fn new(vcpus: u32, wait: bool, breakpoints: bool) -> Arc<Self> {
        let state = State { stop: wait, arm: vec![Arm::default(); vcpus as usize], ..State::default() };
        Arc::new(Debugger {
            state: Mutex::new(state),
            changed: Condvar::new(),
            stop: AtomicBool::new(wait),
            control: OnceLock::new(),
            breakpoints,
        })
    }

    /// Whether breakpoints stop this host's guest.
    pub fn has_breakpoints(&self) -> bool {
        self.breakpoints
    }

    /// The vCPUs' control (run_vcpus sets it before they start): how the
    /// debugger kicks them out of the guest and learns that the run ended.
    pub(super) fn attach(&self, ctl: Arc<Control>) {
        let _ = self.control.set(ctl);
    }

    /// Whether the run has ended.
    pub fn run_ended(&self) -> bool {
        self.control.get().is_some_and(|c| c.stopped())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the vCPUs are to stop: the exit loop's check.
    pub fn wants_stop(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(super) fn started(&self, index: u32) {
        self.lock().running |= 1 << index;
        self.changed.notify_all();
    }

    pub(super) fn finished(&self, index: u32) {
        let mut s = self.lock();
        s.running &= !(1 << index);
        s.parked &= !(1 << index);
        drop(s);
        self.changed.notify_all();
    }

    /// vCPU `index` stops (`why`: a debug exit; None: it was asked) and
    /// serves the debugger's requests until it resumes it, then arms what
    /// it set. Returns the arming's error, if any.
    pub(super) fn park(&self, index: u32, vcpu: &mut VcpuFd, why: Option<Stop>) -> Result<(), kvm_ioctls::Error> {
        let arm = self.park_serving(index, why, &mut |req| serve(vcpu, req));
        vcpu.set_guest_debug(&arm.guest_debug())
    }

    /// [`Debugger::park`] with the requests served by `serve`; returns what
    /// the vCPU is to arm.
    fn park_serving(&self, index: u32, why: Option<Stop>, serve: &mut dyn FnMut(Request) -> Reply) -> Arm {
        let bit = 1u64 << index;
        let mut s = self.lock();
        if let Some(w) = why {
            s.events.push_back((index, w));
            // One stop is every vCPU's: the others leave the guest too.
            s.stop = true;
            self.stop.store(true, Ordering::Release);
            if let Some(c) = self.control.get() {
                c.kick_others(index);
            }
        }
        s.parked |= bit;
        self.changed.notify_all();
        while s.stop && !self.run_ended() {
            if let Some((to, req)) = s.request.filter(|(to, _)| *to == index) {
                debug_assert_eq!(to, index);
                s.request = None;
                s.reply = Some(serve(req));
                self.changed.notify_all();
                continue;
            }
            s = self.changed.wait_timeout(s, TICK).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        let arm = s.arm.get(index as usize).copied().unwrap_or_default();
        s.parked &= !bit;
        drop(s);
        self.changed.notify_all();
        arm
    }

    /// What vCPU `index` has armed (to tell a step from a breakpoint).
    pub fn armed(&self, index: u32) -> Arm {
        self.lock().arm.get(index as usize).copied().unwrap_or_default()
    }

    /// Stops every vCPU and waits until each running one is parked; false if
    /// the run ended first.
    pub fn stop_all(&self) -> bool {
        let mut s = self.lock();
        s.stop = true;
        self.stop.store(true, Ordering::Release);
        if let Some(c) = self.control.get() {
            c.kick_all();
        }
        while s.parked & s.running != s.running {
            if self.run_ended() {
                return false;
            }
            s = self.changed.wait_timeout(s, TICK).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    /// The next stop a vCPU reported, waiting at most `timeout`.
    pub fn next_stop(&self, timeout: Duration) -> Option<(u32, Stop)> {
        let mut s = self.lock();
        if s.events.is_empty() {
            s = self.changed.wait_timeout(s, timeout).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        s.events.pop_front()
    }

    /// Forgets the stops not yet reported (those of vCPUs that raced the
    /// first one to a stop: gdb resumes them all anyway).
    pub fn drop_stops(&self) {
        self.lock().events.clear();
    }

    /// Asks stopped vCPU `index`; `Failed` if it is not stopped or the run ends.
    pub fn request(&self, index: u32, req: Request) -> Reply {
        let mut s = self.lock();
        if s.parked & (1 << index) == 0 {
            return Reply::Failed(format!("vCPU {index} is not stopped"));
        }
        s.request = Some((index, req));
        s.reply = None;
        self.changed.notify_all();
        loop {
            if let Some(r) = s.reply.take() {
                return r;
            }
            if self.run_ended() || s.parked & (1 << index) == 0 {
                s.request = None;
                return Reply::Failed(format!("vCPU {index} left the debugger"));
            }
            s = self.changed.wait_timeout(s, TICK).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// A gdb session begins (its first byte came) or ends (gdb detached or
    /// went away).
    pub fn set_session(&self, attached: bool) {
        self.lock().session = attached;
    }

    /// Whether gdb holds the guest: a session is attached, or the vCPUs are
    /// held for gdb (`--gdb-wait` before the first session). The watchdog
    /// counts none of that time ([`super::vm::run_vcpus`]).
    pub fn holds_guest(&self) -> bool {
        let s = self.lock();
        s.session || s.stop
    }

    /// Resumes every vCPU, each arming `arm` of its own.
    pub fn resume(&self, arm: &[Arm]) {
        let mut s = self.lock();
        for (slot, a) in s.arm.iter_mut().zip(arm) {
            *slot = *a;
        }
        s.stop = false;
        self.stop.store(false, Ordering::Release);
        drop(s);
        self.changed.notify_all();
    }
}

/// One request, on the stopped vCPU's own fd.
fn serve(vcpu: &mut VcpuFd, req: Request) -> Reply {
    let failed = |what: &str, e: kvm_ioctls::Error| Reply::Failed(format!("{what}: {e}"));
    match req {
        Request::ReadRegs => {
            let (r, s, f) = match (vcpu.get_regs(), vcpu.get_sregs(), vcpu.get_fpu()) {
                (Ok(r), Ok(s), Ok(f)) => (r, s, f),
                (Err(e), _, _) => return failed("KVM_GET_REGS", e),
                (_, Err(e), _) => return failed("KVM_GET_SREGS", e),
                (_, _, Err(e)) => return failed("KVM_GET_FPU", e),
            };
            Reply::Regs(Box::new(Regs {
                gpr: [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi].map(|x| x as u32),
                eip: r.rip as u32,
                eflags: r.rflags as u32,
                segments: [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].map(|x| x.selector as u32),
                fpu: Fpu::of(&f),
            }))
        }
        Request::WriteRegs(g) => {
            let mut r = match vcpu.get_regs() {
                Ok(r) => r,
                Err(e) => return failed("KVM_GET_REGS", e),
            };
            let [ax, cx, dx, bx, sp, bp, si, di] = g.gpr.map(u64::from);
            (r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi) = (ax, cx, dx, bx, sp, bp, si, di);
            r.rip = g.eip.into();
            // Bit 1 is always one.
            r.rflags = u64::from(g.eflags) | 2;
            match vcpu.set_regs(&r) {
                Ok(()) => Reply::Written,
                Err(e) => failed("KVM_SET_REGS", e),
            }
        }
        Request::Translate(va) => match vcpu.translate_gva(va.into()) {
            Ok(t) if t.valid != 0 => Reply::Translated(Some(t.physical_address)),
            Ok(_) => Reply::Translated(None),
            Err(e) => failed("KVM_TRANSLATE", e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arming_sets_the_debug_registers_gdb_asked_for() {
        assert_eq!(Arm::default().guest_debug().control, 0, "nothing armed: guest debug off");
        let step = Arm { step: true, ..Arm::default() }.guest_debug();
        assert_eq!(step.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
        assert_eq!(step.arch.debugreg, [0; 8]);
        let arm = Arm { step: false, breakpoints: [None, Some(0xc010_0000), None, Some(0x1234)] };
        let bp = arm.guest_debug();
        assert_eq!(bp.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP);
        assert_eq!(bp.arch.debugreg[1], 0xc010_0000);
        assert_eq!(bp.arch.debugreg[3], 0x1234);
        // G1 and G3, GE and bit 10; execute, one byte.
        assert_eq!(bp.arch.debugreg[7], 0x600 | (2 << 2) | (2 << 6));
    }

    #[test]
    fn a_debug_exit_says_whether_it_was_a_step_or_a_breakpoint() {
        let bp = Arm { step: false, breakpoints: [Some(0x1000), None, None, None] };
        let step = Arm { step: true, ..Arm::default() };
        assert_eq!(Stop::of_exit(0xffff_4ff0, &step), Stop::Step);
        assert_eq!(Stop::of_exit(0xffff_0ff1, &bp), Stop::Breakpoint);
        // Stepping onto a breakpoint: the breakpoint is what gdb is told.
        assert_eq!(Stop::of_exit(0xffff_4ff1, &Arm { step: true, ..bp }), Stop::Breakpoint);
    }

    #[test]
    fn the_fpu_state_is_shown_as_gdb_reads_it() {
        let mut f =
            kvm_bindings::kvm_fpu { fcw: 0x37f, fsw: 0x3800, ftwx: 0b1000_0001, mxcsr: 0x1f80, ..Default::default() };
        f.fpr[0] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee];
        f.xmm[1] = 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128.to_le_bytes();
        let g = Fpu::of(&f);
        assert_eq!(g.st[0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "80 bits, the padding dropped");
        assert_eq!(g.xmm[1], 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        assert_eq!((g.fctrl, g.fstat, g.mxcsr), (0x37f, 0x3800, 0x1f80));
        // st0 and st7 in use (valid, 00); st1..st6 empty (11).
        assert_eq!(g.ftag, 0b0011_1111_1111_1100);
    }

    /// The rendezvous without KVM: a thread stands in for a vCPU; it parks
    /// when asked and answers requests with made-up registers. The debugger
    /// waits for it to park, its request is served, and a resume lets it go
    /// with what was armed.
    #[test]
    fn stop_all_waits_for_every_running_vcpu_and_resume_releases_them() {
        let d = Debugger::new(1, false, false);
        d.started(0);
        let quit = Arc::new(AtomicBool::new(false));
        let (d2, q2) = (d.clone(), quit.clone());
        let vcpu = std::thread::spawn(move || {
            let mut arms = Vec::new();
            while !q2.load(Ordering::Acquire) {
                if d2.wants_stop() {
                    let regs = Regs { eip: 0xc010_0042, ..Regs::default() };
                    arms.push(d2.park_serving(0, None, &mut |_| Reply::Regs(Box::new(regs))));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            arms
        });
        assert!(d.stop_all());
        assert_eq!(d.lock().parked, 1);
        assert!(matches!(d.request(0, Request::ReadRegs), Reply::Regs(r) if r.eip == 0xc010_0042));
        let step = Arm { step: true, ..Arm::default() };
        d.resume(&[step]);
        while d.lock().parked != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A vCPU not stopped answers no request.
        assert!(matches!(d.request(0, Request::ReadRegs), Reply::Failed(_)));
        quit.store(true, Ordering::Release);
        assert_eq!(vcpu.join().unwrap(), vec![step]);
        assert_eq!(d.armed(0), step);
    }

    /// A vCPU's own stop (a breakpoint) is reported, and stops the others.
    #[test]
    fn a_vcpus_stop_is_reported_and_stops_every_vcpu() {
        let d = Debugger::new(2, false, false);
        d.started(0);
        d.started(1);
        let d2 = d.clone();
        let hit = std::thread::spawn(move || d2.park_serving(1, Some(Stop::Breakpoint), &mut |_| Reply::Written));
        assert_eq!(d.next_stop(Duration::from_secs(5)), Some((1, Stop::Breakpoint)));
        assert!(d.wants_stop(), "the other vCPUs are to stop too");
        d.resume(&[Arm::default(); 2]);
        assert_eq!(hit.join().unwrap(), Arm::default());
        assert!(!d.wants_stop());
    }
}

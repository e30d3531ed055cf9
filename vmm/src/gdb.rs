//! A gdb stub for every guest (`vmm run --gdb PORT [--gdb-wait]`): gdb's
//! remote protocol (the gdbstub crate) over TCP on 127.0.0.1, or, inside the
//! QEMU-hosted appliance, over its second serial port, which QEMU forwards to
//! the same TCP port on the host. The vCPU side, where each stopped vCPU
//! answers on its own thread, is `kvm::debug`.
//!
//! gdb sees one thread per vCPU (thread n is vCPU n-1), all-stop. Breakpoints
//! are the debug registers: four at most, `break` and `hbreak` alike (an
//! `int3` would not stop a QEMU-hosted guest, see `kvm::debug`), and none
//! QEMU-hosted, where the debug registers do not fire either: there gdb
//! attaches, stops (Ctrl-C, `--gdb-wait`), steps, and reads and writes
//! registers and memory, but a breakpoint is refused. Memory is
//! read through the stopped vCPU's own paging (`KVM_TRANSLATE`), and written
//! through the host's one checked write path. The registers are the general
//! ones, eip, eflags, the segment selectors and the x87 and SSE state; a
//! write changes the general registers, eip and eflags only.
//! While gdb holds the guest stopped there is no watchdog.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86CoreRegs;
use gdbstub_arch::x86::X86_SSE;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::kvm::debug::{Arm, Debugger, Regs, Reply, Request, Stop, Writable, BREAKPOINTS};

/// Where the stub talks to gdb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP port on 127.0.0.1 (a local run).
    Tcp(u16),
    /// A serial device (the appliance's second port, forwarded by QEMU).
    Serial(PathBuf),
}

/// `--gdb` and `--gdb-wait`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GdbSpec {
    /// The port gdb connects to (forwarded, when `listen` is a serial device).
    pub port: u16,
    pub listen: Listen,
    /// The vCPUs stop before their first instruction, until gdb resumes them.
    pub wait: bool,
}

/// Writes guest-physical memory for the debugger: the host's checked path.
pub type GuestWriter = Arc<dyn Fn(u64, &[u8]) -> Result<(), String> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gdb: cannot listen on 127.0.0.1:{0}: {1}")]
    Listen(u16, std::io::Error),
    #[error("gdb: cannot open {0}: {1}")]
    Serial(PathBuf, std::io::Error),
    #[error("gdb: cannot start the stub's thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the stub for `vcpus` vCPUs over `mem`: the debugger the vCPUs stop
/// in, and a thread that serves gdb sessions, one after another, until the
/// process ends. Errors are the host's (the port is taken, the device will
/// not open), said before any vCPU runs.
pub fn start(spec: &GdbSpec, vcpus: u32, mem: GuestMemoryMmap, write: GuestWriter) -> Result<Arc<Debugger>, Error> {
    let debugger = Debugger::new(vcpus, spec.wait, !crate::kvm::vcpu::host_is_tcg());
    let source = match &spec.listen {
        Listen::Tcp(port) => Source::Tcp(TcpListener::bind(("127.0.0.1", *port)).map_err(|e| Error::Listen(*port, e))?),
        Listen::Serial(path) => Source::Serial(open_serial(path).map_err(|e| Error::Serial(path.clone(), e))?),
    };
    // The line users (and the tests) wait for: from here gdb's bytes reach the stub.
    eprintln!("vmm: gdb: waiting for gdb on 127.0.0.1:{} (target remote :{})", spec.port, spec.port);
    let mut target = GdbTarget::new(debugger.clone(), vcpus, mem, write);
    std::thread::Builder::new().name("gdb".into()).spawn(move || serve(source, &mut target)).map_err(Error::Thread)?;
    Ok(debugger)
}

enum Source {
    Tcp(TcpListener),
    Serial(File),
}

/// gdb sessions, one after another: each begins at gdb's first byte (the
/// vCPUs then stop, as gdb expects of a target it attaches to) and ends
/// with everything gdb armed taken off and the vCPUs resumed.
fn serve(source: Source, target: &mut GdbTarget) {
    let serial = match &source {
        Source::Serial(f) => f.try_clone().ok(),
        Source::Tcp(_) => None,
    };
    loop {
        let io = match (&source, &serial) {
            (Source::Tcp(l), _) => match l.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    Io::Tcp(s)
                }
                Err(e) => {
                    log::warn!("gdb: accept: {e}");
                    return;
                }
            },
            (Source::Serial(_), Some(f)) => match f.try_clone() {
                Ok(f) => Io::Serial(f),
                Err(_) => return,
            },
            (Source::Serial(_), None) => return,
        };
        let mut conn = Conn { io, pending: None };
        match conn.read() {
            Ok(b) => conn.pending = Some(b),
            Err(_) => continue,
        }
        target.debugger.set_session(true);
        if !target.debugger.stop_all() {
            return;
        }
        target.debugger.drop_stops();
        target.breakpoints = [None; BREAKPOINTS];
        match GdbStub::new(conn).run_blocking::<EventLoop>(target) {
            Ok(reason) => log::info!("gdb: session ended ({reason:?})"),
            // A serial line has no connection to lose: bytes that were no
            // session (gdb's, sent before the device was raw, echoed back)
            // end in an error, and the guest stays stopped for the next.
            Err(e) if serial.is_some() => {
                log::warn!("gdb: session ended: {e}; the guest stays stopped");
                continue;
            }
            // Over TCP an error is gdb gone: the guest goes on.
            Err(e) => log::warn!("gdb: session ended: {e}"),
        }
        target.breakpoints = [None; BREAKPOINTS];
        target.debugger.resume(&vec![Arm::default(); target.vcpus as usize]);
        target.debugger.set_session(false);
        if target.debugger.run_ended() {
            return;
        }
    }
}

/// A serial device in raw mode: every byte as it is, no echo.
fn open_serial(path: &PathBuf) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    // SAFETY: a termios filled by tcgetattr on our own open descriptor,
    // changed in place and written back to the same descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(f.as_raw_fd(), &mut t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // What arrived before the line was raw is no session's.
        libc::tcflush(f.as_raw_fd(), libc::TCIFLUSH);
    }
    Ok(f)
}

enum Io {
    Tcp(TcpStream),
    Serial(File),
}

impl Io {
    fn fd(&self) -> RawFd {
        match self {
            Io::Tcp(s) => s.as_raw_fd(),
            Io::Serial(f) => f.as_raw_fd(),
        }
    }

    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Io::Tcp(s) => s,
            Io::Serial(f) => f,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One gdb connection, with a byte read ahead (the first, or a peek's).
struct Conn {
    io: Io,
    pending: Option<u8>,
}

impl Conn {
    /// Whether a byte can be read now.
    fn readable(&self) -> std::io::Result<bool> {
        let mut p = libc::pollfd { fd: self.io.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd of our own, for a descriptor we hold open.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n > 0)
    }
}

impl Connection for Conn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.io.stream().write_all(&[byte])
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.io.stream().write_all(buf)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.io.stream().flush()
    }
}

impl ConnectionExt for Conn {
    fn read(&mut self) -> Result<u8, Self::Error> {
        if let Some(b) = self.pending.take() {
            return Ok(b);
        }
        let mut b = [0u8];
        match self.io.stream().read(&mut b)? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(b[0]),
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Self::Error> {
        if self.pending.is_none() && self.readable()? {
            self.pending = Some(self.read()?);
        }
        Ok(self.pending)
    }
}

/// The machine as gdb sees it.
struct GdbTarget {
    debugger: Arc<Debugger>,
    vcpus: u32,
    mem: GuestMemoryMmap,
    write: GuestWriter,
    /// The debug-register breakpoints, every vCPU's.
    breakpoints: [Option<u32>; BREAKPOINTS],
    /// The vCPUs gdb asked to step at the next resume.
    step: Vec<bool>,
}

fn tid(vcpu: u32) -> Tid {
    NonZeroUsize::new(vcpu as usize + 1).unwrap_or(NonZeroUsize::MIN)
}

fn vcpu(tid: Tid) -> u32 {
    (tid.get() - 1) as u32
}

impl GdbTarget {
    fn new(debugger: Arc<Debugger>, vcpus: u32, mem: GuestMemoryMmap, write: GuestWriter) -> Self {
        GdbTarget { debugger, vcpus, mem, write, breakpoints: [None; BREAKPOINTS], step: vec![false; vcpus as usize] }
    }

    /// The guest-physical address of `va` under vCPU `tid`'s paging.
    fn translate(&self, va: u32, tid: Tid) -> TargetResult<u64, Self> {
        match self.debugger.request(vcpu(tid), Request::Translate(va)) {
            Reply::Translated(Some(gpa)) => Ok(gpa),
            Reply::Translated(None) => Err(TargetError::Errno(libc::EFAULT as u8)),
            Reply::Failed(e) => Err(TargetError::Fatal(e)),
            other => Err(TargetError::Fatal(format!("KVM_TRANSLATE answered {other:?}"))),
        }
    }

    /// Sets a breakpoint at `addr` in a free debug register: false when all
    /// four are taken, or when this host's debug registers do not stop the
    /// guest (QEMU-hosted: gdb then says it cannot insert the breakpoint).
    fn add_breakpoint(&mut self, addr: u32) -> bool {
        if !self.debugger.has_breakpoints() {
            log::warn!("gdb: no breakpoint at {addr:#x}: QEMU-hosted, the guest's debug registers do not fire");
            return false;
        }
        if self.breakpoints.contains(&Some(addr)) {
            return true;
        }
        match self.breakpoints.iter_mut().find(|b| b.is_none()) {
            Some(slot) => {
                *slot = Some(addr);
                true
            }
            None => false,
        }
    }

    fn remove_breakpoint(&mut self, addr: u32) -> bool {
        match self.breakpoints.iter_mut().find(|b| **b == Some(addr)) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }
}

/// Pages of `len` bytes from `va`, as (address, offset into the buffer, length).
fn pages(va: u32, len: usize) -> impl Iterator<Item = (u32, usize, usize)> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = va.wrapping_add(done as u32);
        let n = (4096 - (at as usize & 0xfff)).min(len - done);
        let piece = (at, done, n);
        done += n;
        Some(piece)
    })
}

impl Target for GdbTarget {
    type Arch = X86_SSE;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut X86CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        match self.debugger.request(vcpu(tid), Request::ReadRegs) {
            Reply::Regs(r) => {
                *regs = core_regs(&r);
                Ok(())
            }
            Reply::Failed(e) => Err(TargetError::Fatal(e)),
            other => Err(TargetError::Fatal(format!("the registers answered {other:?}"))),
        }
    }

    fn write_registers(&mut self, regs: &X86CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        match self.debugger.request(vcpu(tid), Request::WriteRegs(our_regs(regs))) {
            Reply::Written => Ok(()),
            Reply::Failed(e) => Err(TargetError::Fatal(e)),
            other => Err(TargetError::Fatal(format!("the register write answered {other:?}"))),
        }
    }

    fn read_addrs(&mut self, start: u32, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let mut read = 0;
        for (va, at, n) in pages(start, data.len()) {
            let gpa = match self.translate(va, tid) {
                Ok(gpa) => gpa,
                Err(e) if read == 0 => return Err(e),
                Err(_) => break,
            };
            if self.mem.read_slice(&mut data[at..at + n], GuestAddress(gpa)).is_err() {
                if read == 0 {
                    return Err(TargetError::Errno(libc::EFAULT as u8));
                }
                break;
            }
            read += n;
        }
        Ok(read)
    }

    fn write_addrs(&mut self, start: u32, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        for (va, at, n) in pages(start, data.len()) {
            let gpa = self.translate(va, tid)?;
            (self.write)(gpa, &data[at..at + n]).map_err(|e| {
                log::warn!("gdb: write of {n} bytes at {va:#x}: {e}");
                TargetError::Errno(libc::EPERM as u8)
            })?;
        }
        Ok(())
    }

    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        (0..self.vcpus).for_each(|i| thread_is_active(tid(i)));
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for GdbTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        let arms: Vec<Arm> = self.step.iter().map(|&step| Arm { step, breakpoints: self.breakpoints }).collect();
        self.debugger.resume(&arms);
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.step.fill(false);
        Ok(())
    }

    fn set_resume_action_continue(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        if let Some(s) = self.step.get_mut(vcpu(tid) as usize) {
            *s = false;
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for GdbTarget {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        match self.step.get_mut(vcpu(tid) as usize) {
            Some(s) => {
                *s = true;
                Ok(())
            }
            None => Err(format!("no vCPU {}", vcpu(tid))),
        }
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

/// `break` too takes a debug register: an `int3` written into the guest
/// would not stop it QEMU-hosted.
impl SwBreakpoint for GdbTarget {
    fn add_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_breakpoint(addr))
    }

    fn remove_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_breakpoint(addr))
    }
}

impl HwBreakpoint for GdbTarget {
    fn add_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_breakpoint(addr))
    }

    fn remove_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_breakpoint(addr))
    }
}

fn core_regs(r: &Regs) -> X86CoreRegs {
    let [eax, ecx, edx, ebx, esp, ebp, esi, edi] = r.gpr;
    let [cs, ss, ds, es, fs, gs] = r.segments;
    let f = &r.fpu;
    let mut c = X86CoreRegs {
        eax,
        ecx,
        edx,
        ebx,
        esp,
        ebp,
        esi,
        edi,
        eip: r.eip,
        eflags: r.eflags,
        st: f.st,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
        ..Default::default()
    };
    c.fpu.fctrl = f.fctrl;
    c.fpu.fstat = f.fstat;
    c.fpu.ftag = f.ftag;
    c.fpu.fioff = f.fioff;
    c.fpu.fooff = f.fooff;
    c.fpu.fop = f.fop;
    c.segments.cs = cs;
    c.segments.ss = ss;
    c.segments.ds = ds;
    c.segments.es = es;
    c.segments.fs = fs;
    c.segments.gs = gs;
    c
}

/// What a write of gdb's registers changes (see `kvm::debug::Request::WriteRegs`).
fn our_regs(c: &X86CoreRegs) -> Writable {
    Writable { gpr: [c.eax, c.ecx, c.edx, c.ebx, c.esp, c.ebp, c.esi, c.edi], eip: c.eip, eflags: c.eflags }
}

/// How often the event loop looks at the connection while the guest runs.
const POLL: Duration = Duration::from_millis(20);

enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = GdbTarget;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u32>;

    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut Conn,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<String, std::io::Error>> {
        loop {
            if let Some((i, stop)) = target.debugger.next_stop(POLL) {
                target.debugger.stop_all();
                // Stops that raced this one: gdb resumes every vCPU anyway.
                target.debugger.drop_stops();
                let tid = tid(i);
                return Ok(Event::TargetStopped(match stop {
                    Stop::Breakpoint => MultiThreadStopReason::HwBreak(tid),
                    Stop::Step => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
                }));
            }
            if target.debugger.run_ended() {
                return Ok(Event::TargetStopped(MultiThreadStopReason::Exited(0)));
            }
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                return conn.read().map(Event::IncomingData).map_err(WaitForStopReasonError::Connection);
            }
        }
    }

    fn on_interrupt(target: &mut GdbTarget) -> Result<Option<Self::StopReason>, String> {
        target.debugger.stop_all();
        target.debugger.drop_stops();
        Ok(Some(MultiThreadStopReason::SignalWithThread { tid: tid(0), signal: Signal::SIGINT }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_page_by_page() {
        let p: Vec<_> = pages(0xc000_0ff0, 0x30).collect();
        assert_eq!(p, vec![(0xc000_0ff0, 0, 0x10), (0xc000_1000, 0x10, 0x20)]);
        assert_eq!(pages(0x1000, 0).count(), 0);
        assert_eq!(pages(0x1000, 8192).count(), 2);
    }

    #[test]
    fn registers_go_to_gdb_and_back() {
        let fpu = crate::kvm::debug::Fpu { fctrl: 0x37f, mxcsr: 0x1f80, xmm: [7; 8], ..Default::default() };
        let segments = [8, 16, 16, 16, 0, 0];
        let r = Regs { gpr: [1, 2, 3, 4, 5, 6, 7, 8], eip: 0xc010_0000, eflags: 0x202, segments, fpu };
        let c = core_regs(&r);
        assert_eq!((c.eax, c.edi, c.eip, c.eflags, c.segments.cs, c.segments.ss), (1, 8, 0xc010_0000, 0x202, 8, 16));
        assert_eq!((c.fpu.fctrl, c.mxcsr, c.xmm[3]), (0x37f, 0x1f80, 7));
        // Back: what a write changes (the segments and the x87 and SSE state are not written).
        assert_eq!(our_regs(&c), Writable { gpr: r.gpr, eip: r.eip, eflags: r.eflags });
    }

    #[test]
    fn four_breakpoints_at_most_shared_by_break_and_hbreak() {
        let d = Debugger::new(1, false, true);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4096)]).unwrap();
        let mut t = GdbTarget::new(d, 1, mem, Arc::new(|_, _| Ok(())));
        for a in [0x100, 0x200, 0x300, 0x400] {
            assert!(t.add_breakpoint(a));
        }
        assert!(t.add_breakpoint(0x200), "the same address again: already set");
        assert!(!t.add_breakpoint(0x500), "a fifth: no debug register left");
        assert!(t.remove_breakpoint(0x200));
        assert!(!t.remove_breakpoint(0x200));
        assert!(t.add_breakpoint(0x500));
        assert_eq!(t.breakpoints, [Some(0x100), Some(0x500), Some(0x300), Some(0x400)]);
        // Each vCPU resumes with them armed, the stepped one stepping.
        t.step = vec![true];
        t.resume().unwrap();
        assert_eq!(t.debugger.armed(0), Arm { step: true, breakpoints: t.breakpoints });
        // A host whose debug registers do not stop the guest takes none.
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4096)]).unwrap();
        let mut qemu = GdbTarget::new(Debugger::new(1, false, false), 1, mem, Arc::new(|_, _| Ok(())));
        assert!(!qemu.add_breakpoint(0x100));
        assert_eq!(qemu.breakpoints, [None; BREAKPOINTS]);
    }
}

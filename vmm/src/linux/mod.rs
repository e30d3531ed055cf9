//! `vmm run --linux`: a stock Linux bzImage on the same KVM layer as our
//! guest, as the real-Linux control for the highpte claims. It gets what a
//! minimal PC without ACPI offers: the 32-bit boot protocol ([`boot`]), MP
//! tables for its CPUs ([`mptable`]), KVM's in-kernel irqchip and PIT, and a
//! 16550 UART on COM1 (vm-superio) as its console. A reboot (the keyboard
//! controller's reset, Linux's `reboot=k`) ends the run; a kernel panic
//! on the console is a guest fault. No PV MMU: its exits are only devices.

pub mod boot;
pub mod input;
pub mod mptable;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_pit_config, kvm_regs, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VcpuFd;
use shared::abi::FaultReport;
use vm_memory::{Bytes, GuestAddress};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::kvm::vcpu::{self, Exits, Then};
use crate::kvm::vm::{self, Error as VmError};
use crate::report::{FaultInfo, HostInfo, Outcome, RunReport, Timing, TripleFault, VcpuSnapshot};
use pvmmu::guest_memory as memory;

/// COM1's ports and IRQ.
const COM1: u16 = 0x3f8;
const COM1_IRQ: u32 = 4;
/// The keyboard controller's data and command ports; 0xfe on the command
/// port pulses the CPU's reset line.
const I8042_DATA: u16 = 0x60;
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;
/// What every run's command line starts with: the console on COM1, and
/// reboots through the keyboard controller (there is no ACPI to power off).
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=k";
/// What the console shows when Linux panics.
const PANIC_MARK: &str = "Kernel panic - not syncing";
/// A console line `vmm-result: NAME VALUE` from a program in the guest (such
/// as guest/linux-probe) is a result of the run, as our guest's `hv::result`.
const RESULT_MARK: &str = "vmm-result: ";
/// At most this many results are kept (a guest chooses their names).
const MAX_RESULTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Boot(#[from] boot::Error),
    #[error("{0}")]
    Vm(#[from] VmError),
    #[error("{0}")]
    Memory(#[from] memory::Error),
    #[error("cannot set up Linux's devices: {0}")]
    Device(String),
    #[error("cannot set up vCPU {0}: {1}")]
    Vcpu(u32, String),
    #[error("{0}")]
    Gdb(#[from] crate::gdb::Error),
}

/// Everything a Linux run needs.
#[derive(Clone, Debug)]
pub struct LinuxSpec {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// What the user adds to [`BASE_CMDLINE`].
    pub cmdline: String,
    pub mem: memory::RamSize,
    pub vcpus: u32,
    pub timeout: Duration,
    pub start: Instant,
    /// A gdb stub (`--gdb`).
    pub gdb: Option<crate::gdb::GdbSpec>,
}

impl LinuxSpec {
    /// The whole kernel command line: QEMU-hosted with the TSC's rate
    /// ([`clock_words`]).
    pub fn cmdline(&self) -> String {
        let tsc_khz = vcpu::host_is_tcg().then(vcpu::host_tsc_khz).flatten();
        self.cmdline_with(tsc_khz)
    }

    fn cmdline_with(&self, tsc_khz: Option<u64>) -> String {
        let user = self.cmdline.trim();
        let words = [BASE_CMDLINE.to_owned(), clock_words(user, tsc_khz), user.to_owned()];
        words.into_iter().filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
    }
}

/// The clock words added QEMU-hosted, unless the user's command line has its
/// own: `tsc_early_khz=` with the TSC's rate and `tsc=reliable`, as the
/// appliance's kernel gets. There the emulated TSC runs at the appliance's
/// clock, Linux's calibrations of it against the PIT fail ("Unable to
/// calibrate against PIT"), and Linux kept time by counting timer
/// interrupts (refined-jiffies), and hung in boot far more often: 5 of 8
/// boots without these words, 0 of 8 with them (docs/linux.md).
fn clock_words(user: &str, tsc_khz: Option<u64>) -> String {
    let own = user.split_whitespace().any(|w| w.starts_with("tsc_early_khz=") || w.starts_with("tsc="));
    match tsc_khz {
        Some(khz) if !own => format!("tsc_early_khz={khz} tsc=reliable"),
        _ => String::new(),
    }
}

/// The UART's interrupt: an eventfd KVM turns into IRQ 4 (irqfd).
struct IrqLine(EventFd);

impl Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The console: the UART's bytes to the sink, line by line, watching for a
/// kernel panic.
struct Console {
    sink: Box<dyn Write + Send>,
    line: Vec<u8>,
    panic: Arc<Mutex<Option<String>>>,
    results: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// A console line is cut here (a guest that never sends a newline).
const LINE_MAX: usize = 4096;

impl Write for Console {
    /// The bytes go to the sink as they come, so a prompt shows before its
    /// line ends; whole lines are read for panics and results.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            match b {
                b'\r' => {}
                b'\n' => self.end_line()?,
                _ => {
                    self.line.push(b);
                    if self.line.len() >= LINE_MAX {
                        self.end_line()?;
                    }
                }
            }
        }
        let shown: Vec<u8> = buf.iter().copied().filter(|&b| b != b'\r').collect();
        self.sink.write_all(&shown)?;
        self.sink.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }
}

impl Console {
    fn end_line(&mut self) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if let Some(at) = text.find(PANIC_MARK) {
            if let Ok(mut p) = self.panic.lock() {
                p.get_or_insert_with(|| text[at..].trim().to_owned());
            }
        }
        if let Some((name, value)) = parse_result(&text) {
            if let Ok(mut r) = self.results.lock() {
                if r.len() < MAX_RESULTS || r.contains_key(name) {
                    r.insert(name.to_owned(), value);
                }
            }
        }
        Ok(())
    }
}

/// A `vmm-result: NAME VALUE` line's name and value: a name of at most 64
/// letters, digits or `_`, a decimal value.
fn parse_result(line: &str) -> Option<(&str, u64)> {
    let rest = line.strip_prefix(RESULT_MARK)?;
    let (name, value) = rest.trim().split_once(' ')?;
    let ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(())?;
    Some((name, value.trim().parse().ok()?))
}

/// What Linux's exits mean: its devices.
struct Devices {
    serial: Mutex<Serial<IrqLine, vm_superio::serial::NoEvents, Console>>,
    panic: Arc<Mutex<Option<String>>>,
}

impl Devices {
    fn panicked(&self, vcpu: u32) -> Option<Then> {
        let message = self.panic.lock().ok()?.clone()?;
        Some(Then::Stop(Outcome::GuestFault(FaultInfo {
            vcpu,
            vector: FaultReport::PANIC,
            name: "kernel panic".into(),
            message,
            eip: 0,
            cr2: 0,
            cr3: 0,
            error_code: 0,
            eflags: 0,
            regs: BTreeMap::new(),
        })))
    }
}

impl Exits for Devices {
    fn hypercall(&self, _vcpu: u32, _gpa: u64) -> Then {
        Then::Continue
    }
    fn direct_write(&self, _vcpu: u32, _gpa: u64, _data: &[u8]) -> Then {
        Then::Continue
    }
    fn triple_fault(&self, at: VcpuSnapshot) -> TripleFault {
        TripleFault::new(at)
    }
    fn port_out(&self, vcpu: u32, port: u16, data: &[u8]) -> Then {
        match (port, data.first()) {
            (COM1..=0x3ff, Some(&b)) => {
                if let Ok(mut s) = self.serial.lock() {
                    if let Err(e) = s.write((port - COM1) as u8, b) {
                        return Then::Stop(Outcome::VmmError { message: format!("the UART failed: {e:?}") });
                    }
                }
                self.panicked(vcpu).unwrap_or(Then::Continue)
            }
            (I8042_COMMAND, Some(&I8042_RESET)) => Then::Stop(Outcome::Shutdown { code: 0 }),
            _ => Then::Continue,
        }
    }
    fn port_in(&self, _vcpu: u32, port: u16, data: &mut [u8]) {
        let value = match port {
            COM1..=0x3ff => self.serial.lock().map(|mut s| s.read((port - COM1) as u8)).unwrap_or(0xff),
            // A keyboard controller with nothing to say (no data, ready).
            I8042_DATA | I8042_COMMAND => 0,
            _ => 0xff,
        };
        data.fill(value);
    }
}

impl input::Receiver for Devices {
    fn room(&self) -> usize {
        self.serial.lock().map(|s| s.fifo_capacity()).unwrap_or(0)
    }
    fn put(&self, bytes: &[u8]) -> bool {
        self.serial.lock().is_ok_and(|mut s| s.enqueue_raw_bytes(bytes).is_ok())
    }
}

/// CPUID.1:ECX's "running under a hypervisor" bit: Linux looks for KVM's
/// leaves (kvm-clock, paravirtual features) only when it is set. Not set
/// QEMU-hosted: there the nested kvm-clock stalls Linux's timers (measured:
/// 6.1 686-pae hung after SMP bring-up on 2 vCPUs, at the first modules on
/// 1), so Linux runs as on bare hardware, timing with the PIT and jiffies.
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;

/// CPUID.1:ECX's XSAVE, OSXSAVE and AVX (which needs XSAVE). QEMU-hosted,
/// the nested KVM never sees the guest's XSETBV (QEMU's emulated SVM does
/// not pass it up), so its CPUID.0xD size for the enabled features stays
/// that of x87 and SSE (576 bytes) while the processor saves 832: Linux
/// warns at every boot ("XSAVE consistency problem", with a stack trace)
/// and would size state buffers from the smaller figure. Without XSAVE
/// Linux saves the FPU with FXSAVE, and boots without the warning.
const CPUID1_ECX_XSAVE: u32 = 1 << 26;
const CPUID1_ECX_OSXSAVE: u32 = 1 << 27;
const CPUID1_ECX_AVX: u32 = 1 << 28;

/// Sets a vCPU's CPUID (QEMU-hosted: no XSAVE and no hypervisor bit;
/// elsewhere the hypervisor bit on) and, for the boot CPU, the boot protocol's entry
/// state: protected mode, paging off, the boot GDT's flat `__BOOT_CS` and
/// `__BOOT_DS`, interrupts off, `esi` at the zero page. The others wait for
/// Linux's INIT and SIPI (KVM's in-kernel local APIC holds them).
fn configure(v: &VcpuFd, index: u32, cpuid: &kvm_bindings::CpuId, entry: u32) -> Result<(), Error> {
    let err = |what: &str, e: kvm_ioctls::Error| Error::Vcpu(index, format!("{what}: {e}"));
    let mut cpuid = cpuid.clone();
    let tcg = vcpu::host_is_tcg();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 if tcg => e.ecx &= !(CPUID1_ECX_XSAVE | CPUID1_ECX_OSXSAVE | CPUID1_ECX_AVX),
            1 => e.ecx |= CPUID1_ECX_HYPERVISOR,
            _ => {}
        }
    }
    vcpu::set_cpuid(v, index, &cpuid).map_err(|e| Error::Vcpu(index, e.to_string()))?;
    if index != 0 {
        return Ok(());
    }
    let mut sregs = v.get_sregs().map_err(|e| err("KVM_GET_SREGS", e))?;
    sregs.cs = vcpu::flat(boot::BOOT_CS, 0xb);
    sregs.ds = vcpu::flat(boot::BOOT_DS, 0x3);
    sregs.es = sregs.ds;
    sregs.ss = sregs.ds;
    sregs.fs = sregs.ds;
    sregs.gs = sregs.ds;
    sregs.gdt.base = boot::GDT_GPA;
    sregs.gdt.limit = (boot::gdt().len() * 8 - 1) as u16;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    v.set_sregs(&sregs).map_err(|e| err("KVM_SET_SREGS", e))?;
    let regs = kvm_regs { rip: entry as u64, rsi: boot::ZERO_PAGE_GPA, rflags: 0x2, ..Default::default() };
    v.set_regs(&regs).map_err(|e| err("KVM_SET_REGS", e))
}

/// Boots Linux on the local KVM and reports how the run went. The console's
/// output goes to `console`, and `input`'s bytes, if given, to the UART as
/// typed keys ([`input::feed`]). A panic, a hang or a triple fault is a
/// report (`Ok`); errors are the host's or the input's.
pub fn run(
    spec: &LinuxSpec,
    console: Box<dyn Write + Send>,
    input: Option<Box<dyn Read + Send>>,
    host: HostInfo,
) -> Result<RunReport, Error> {
    if spec.vcpus == 0 || spec.vcpus as usize > shared::boot::MAX_VCPUS {
        return Err(VmError::BadVcpus(spec.vcpus).into());
    }
    let (kvm, vmfd) = vm::create_vm()?;
    let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
    vmfd.create_pit2(pit).map_err(|e| Error::Device(format!("KVM_CREATE_PIT2: {e}")))?;
    let mem = memory::create(spec.mem)?;
    let _slots = vm::map_memory(&kvm, &vmfd, &mem, false)?;
    let regions = spec.mem.regions();
    let loaded = boot::load(&mem, &regions, &spec.kernel, spec.initrd.as_deref(), &spec.cmdline())?;
    let mp = mptable::build(spec.vcpus as u8, boot::MPTABLE_GPA as u32);
    mem.write_slice(&mp, GuestAddress(boot::MPTABLE_GPA)).map_err(|e| Error::Device(format!("MP table: {e}")))?;

    let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Device(format!("eventfd: {e}")))?;
    vmfd.register_irqfd(&irq, COM1_IRQ).map_err(|e| Error::Device(format!("KVM_IRQFD: {e}")))?;
    let panic = Arc::new(Mutex::new(None));
    let figures = Arc::new(Mutex::new(BTreeMap::new()));
    let out = Console { sink: console, line: Vec::new(), panic: panic.clone(), results: figures.clone() };
    let devices = Arc::new(Devices { serial: Mutex::new(Serial::new(IrqLine(irq), out)), panic });

    let cpuid = vm::supported_cpuid(&kvm)?;
    let mut vcpus = Vec::new();
    for i in 0..spec.vcpus {
        let v = vm::create_vcpu(&vmfd, i)?;
        configure(&v, i, &cpuid, loaded.entry)?;
        vcpus.push(v);
    }
    log::debug!("Linux entry {:#x}, kernel end {:#x}, initrd {:?}", loaded.entry, loaded.kernel_end, loaded.initrd);
    let debugger = match &spec.gdb {
        // No PV MMU here: the debugger writes guest memory directly.
        Some(g) => {
            let m = mem.clone();
            let write: crate::gdb::GuestWriter =
                Arc::new(move |gpa, data: &[u8]| m.write_slice(data, GuestAddress(gpa)).map_err(|e| e.to_string()));
            Some(crate::gdb::start(g, spec.vcpus, mem.clone(), write)?)
        }
        None => None,
    };
    if let Some(from) = input {
        // Left behind at the end of the run, blocked in a read of the input.
        let to = devices.clone();
        std::thread::spawn(move || input::feed(from, &*to));
    }
    let end = vm::run_vcpus(vcpus, devices.clone(), spec.timeout, debugger)?;
    if let Some(mut s) = end.lock(&devices.serial) {
        let _ = s.writer_mut().end_line_if_any();
    }
    let to_end_ms = spec.start.elapsed().as_secs_f64() * 1000.0;
    let config = BTreeMap::from([
        ("linux".to_owned(), spec.kernel.display().to_string()),
        ("initrd".to_owned(), spec.initrd.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
        ("cmdline".to_owned(), spec.cmdline()),
    ]);
    Ok(RunReport {
        vmm_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: spec.kernel.display().to_string(),
        host,
        vcpus: spec.vcpus,
        mem_bytes: spec.mem.bytes(),
        config,
        exit_code: end.outcome.exit_code(),
        results: end.lock(&figures).map(|r| r.clone()).unwrap_or_default(),
        exits: end.results.iter().map(vcpu::VcpuResult::report).collect(),
        outcome: end.outcome,
        timing: Timing { to_main_ms: None, to_end_ms, milestones: Vec::new() },
        hypercalls: BTreeMap::new(),
        pvmmu: None,
        counters: Vec::new(),
        counter_totals: BTreeMap::new(),
        emulator_fault: None,
    })
}

impl Console {
    /// Ends a last line the guest left without a newline.
    fn end_line_if_any(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        self.end_line()?;
        writeln!(self.sink)?;
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn devices() -> (Devices, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let panic = Arc::new(Mutex::new(None));
        let results = Arc::new(Mutex::new(BTreeMap::new()));
        let out = Console { sink: Box::new(Shared(seen.clone())), line: Vec::new(), panic: panic.clone(), results };
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (Devices { serial: Mutex::new(Serial::new(IrqLine(irq), out)), panic }, seen)
    }

    fn say(d: &Devices, text: &str) -> Then {
        let mut last = Then::Continue;
        for b in text.bytes() {
            last = d.port_out(0, COM1, &[b]);
        }
        last
    }

    /// The UART's transmitter carries the console line by line (carriage
    /// returns dropped); the line status says it is ready to send.
    #[test]
    fn the_uart_prints_lines_and_is_ready_to_send() {
        let (d, seen) = devices();
        assert_eq!(say(&d, "Linux version 6.1\r\n"), Then::Continue);
        assert_eq!(String::from_utf8_lossy(&seen.lock().unwrap()), "Linux version 6.1\n");
        let mut lsr = [0u8];
        d.port_in(0, COM1 + 5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "THR empty and transmitter idle");
        let mut other = [0u8; 1];
        d.port_in(0, 0x2f8, &mut other);
        assert_eq!(other, [0xff], "no UART on COM2");
    }

    /// A prompt shows before its line ends (an interactive shell's).
    #[test]
    fn output_shows_as_it_comes_not_a_line_late() {
        let (d, seen) = devices();
        say(&d, "/ # ");
        assert_eq!(String::from_utf8_lossy(&seen.lock().unwrap()), "/ # ");
    }

    /// Typed keys reach the guest: the UART says data is ready, and its
    /// receive register gives the bytes in order; the FIFO's room is what
    /// the feeder waits on.
    #[test]
    fn typed_keys_reach_the_guest_through_the_uart() {
        use input::Receiver;
        let (d, _) = devices();
        let room = d.room();
        assert!(room >= 16, "a 16550's FIFO: {room}");
        input::feed(&b"ls\n"[..], &d);
        assert_eq!(d.room(), room - 3);
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut lsr = [0u8];
            d.port_in(0, COM1 + 5, &mut lsr);
            assert_eq!(lsr[0] & 1, 1, "data ready");
            let mut rbr = [0u8];
            d.port_in(0, COM1, &mut rbr);
            got.push(rbr[0]);
        }
        assert_eq!(got, b"ls\n");
        let mut lsr = [0u8];
        d.port_in(0, COM1 + 5, &mut lsr);
        assert_eq!(lsr[0] & 1, 0, "nothing more");
    }

    /// A panic on the console ends the run as a guest fault with its
    /// message, once the line is complete; the keyboard controller's reset
    /// ends it cleanly.
    #[test]
    fn a_panic_is_a_guest_fault_and_a_reset_a_clean_end() {
        let (d, _) = devices();
        assert_eq!(say(&d, "Kernel panic - not syncing: VFS: Unable to mount root fs"), Then::Continue);
        match say(&d, "\n") {
            Then::Stop(Outcome::GuestFault(f)) => {
                assert_eq!(f.vector, FaultReport::PANIC);
                assert_eq!(f.message, "Kernel panic - not syncing: VFS: Unable to mount root fs");
                assert_eq!(Outcome::GuestFault(f).exit_code(), crate::report::exit_code::GUEST_FAULT);
            }
            t => panic!("{t:?}"),
        }
        let (d, _) = devices();
        assert_eq!(d.port_out(0, I8042_COMMAND, &[0xd1]), Then::Continue, "another command is no reset");
        assert_eq!(d.port_out(0, I8042_COMMAND, &[I8042_RESET]), Then::Stop(Outcome::Shutdown { code: 0 }));
    }

    /// A program's `vmm-result:` lines become results; anything else, or a
    /// malformed one, does not.
    #[test]
    fn result_lines_are_results_and_nothing_else_is() {
        assert_eq!(
            parse_result("vmm-result: sparse_zap_cycles_per_pte 1234"),
            Some(("sparse_zap_cycles_per_pte", 1234))
        );
        for bad in ["vmm-result: x", "vmm-result: a-b 1", "vmm-result: x -1", "[ 1.0] vmm-result: x 1", "x 1"] {
            assert_eq!(parse_result(bad), None, "{bad}");
        }
        let (d, _) = devices();
        say(&d, "vmm-result: pagetables_kb 260\r\n");
        let s = d.serial.lock().unwrap();
        assert_eq!(s.writer().results.lock().unwrap().get("pagetables_kb"), Some(&260));
    }

    #[test]
    fn the_command_line_always_has_the_console() {
        let spec = |c: &str| LinuxSpec {
            kernel: "bz".into(),
            initrd: None,
            cmdline: c.into(),
            mem: memory::RamSize::new(256 << 20).unwrap(),
            vcpus: 1,
            timeout: Duration::from_secs(1),
            start: Instant::now(),
            gdb: None,
        };
        assert_eq!(spec("").cmdline_with(None), "console=ttyS0 reboot=k");
        assert_eq!(spec(" rdinit=/init ").cmdline_with(None), "console=ttyS0 reboot=k rdinit=/init");
        // QEMU-hosted, the TSC's rate, unless the user gave a clock word.
        assert_eq!(
            spec("rdinit=/init").cmdline_with(Some(2_596_138)),
            "console=ttyS0 reboot=k tsc_early_khz=2596138 tsc=reliable rdinit=/init"
        );
        assert_eq!(spec("tsc=unstable").cmdline_with(Some(1)), "console=ttyS0 reboot=k tsc=unstable");
    }
}

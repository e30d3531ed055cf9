//! The QEMU-hosted appliance: where the local KVM cannot run a 32-bit PAE guest,
//! `qemu-system-x86_64` (TCG, `-cpu EPYC`, which emulates SVM with nested paging)
//! boots Debian's kernel with a small initramfs: busybox, the kvm and kvm_amd
//! modules, this very `vmm` binary and the guest image. Inside, `/dev/kvm` is a real
//! KVM, and `vmm appliance-init` runs the same `vmm` commands ("jobs") there,
//! framing their output on the serial console so the outer `vmm` can stream it back.
//!
//! The initramfs is cached under `target/appliance/`, keyed by a hash of everything
//! in it, so it is rebuilt exactly when the `vmm` binary or the guest changes. Each
//! run appends a small second archive holding its jobs (and any `--kernel` image).
//!
//! Frames, one per line on the serial console:
//! `@@vmm:ready <ms>`, `@@vmm:fatal <text>`, `@@vmm:done`, and per job `i`:
//! `@@vmm:<i> out <line>`, `@@vmm:<i> err <line>`, `@@vmm:<i> json <report>`,
//! `@@vmm:<i> exit <code>`.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cpio::CpioWriter;
use super::paths;

use super::frame::{Frame, JobFrame};
/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// Modules loaded in the appliance, in dependency order.
pub const MODULES: &[&str] = &["irqbypass", "ccp", "kvm", "kvm-amd"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{QEMU} is not installed (run scripts/setup.sh)")]
    NoQemu,
    #[error("the appliance's kernel is missing: {0} (run scripts/setup.sh)")]
    NoKernel(PathBuf),
    #[error("the appliance needs a static busybox at {0} (run scripts/setup.sh)")]
    NoBusybox(PathBuf),
    #[error("cannot build the appliance: {0}")]
    Build(#[from] std::io::Error),
    #[error("QEMU-hosted run failed: {0}")]
    Run(String),
    #[error("QEMU-hosted run timed out after {secs:.0} s (console in {})", log.display())]
    Timeout { secs: f64, log: PathBuf },
    #[error("the appliance did not come up within {secs:.0} s, {attempts} times (console in {})", log.display())]
    BootHang { secs: f64, attempts: u32, log: PathBuf },
    #[error("stopped on request (Ctrl-C)")]
    Stopped,
}

/// Set (from a signal handler's thread) to stop the running appliance: QEMU is
/// killed and [`run`] returns [`Error::Stopped`] within a fraction of a second.
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running (and later) appliance to stop.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Exit status of a run of jobs stopped with Ctrl-C (the shell's convention
/// for SIGINT).
pub const INTERRUPTED: i32 = 130;

/// Makes Ctrl-C stop the jobs after those that have ended ([`request_stop`]),
/// and a second Ctrl-C quit at once; `who` prefixes the lines it prints
/// ("bench", "vmm: batch").
pub fn stop_on_ctrl_c(who: &'static str) {
    let _ = ctrlc::set_handler(move || {
        if stop_requested() {
            eprintln!("\n{who} stopped at once");
            std::process::exit(INTERRUPTED);
        }
        eprintln!("\n{who} stopping after the jobs finished so far (Ctrl-C again to quit at once)");
        request_stop();
    });
}

/// How often the appliance's loop looks at the stop request.
const STOP_POLL: Duration = Duration::from_millis(200);

/// The appliance is ready in about 3 s; one that is not after this long hung in
/// its own boot (a rare hang of the emulated machine) and is started again.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Appliance boots tried before giving up.
const BOOT_ATTEMPTS: u32 = 3;

/// One `vmm` command to run inside the appliance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Job {
    /// Arguments after `vmm`.
    pub args: Vec<String>,
    /// Collect the job's JSON report (appends `--json FILE`).
    pub json: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct JobsFile {
    jobs: Vec<Job>,
}

/// What a job did.
#[derive(Clone, Debug, Default)]
pub struct JobResult {
    pub exit_code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    pub json: Option<String>,
}

/// Streamed while the appliance runs.
pub enum Event<'a> {
    Ready {
        boot_ms: f64,
    },
    Out {
        job: usize,
        line: &'a str,
    },
    Err {
        job: usize,
        line: &'a str,
    },
    /// The job exited (the next one, if any, starts now).
    Done {
        job: usize,
        result: &'a JobResult,
    },
}

pub struct BatchOutcome {
    pub results: Vec<JobResult>,
    /// From starting QEMU to the appliance being ready to run jobs.
    pub boot_ms: Option<f64>,
    /// The job during which the appliance stopped making progress or died; the
    /// jobs after it did not run.
    pub stalled: Option<Stall>,
}

/// A job the appliance could not finish.
pub struct Stall {
    /// Its index in the batch.
    pub job: usize,
    /// What happened, for the job's record.
    pub why: String,
}

/// How long past a job's own `--timeout` the appliance may stay silent before
/// it counts as stuck.
const STALL_GRACE: Duration = Duration::from_secs(60);

/// The most a job may take before its appliance counts as stuck: under gdb
/// (`--gdb`), which stops the guest as long as its user likes, a year.
fn job_budget(job: &Job) -> Duration {
    if job.args.iter().any(|a| a == "--gdb") {
        return Duration::from_secs(365 * 86_400);
    }
    let timeout = job
        .args
        .iter()
        .position(|a| a == "--timeout")
        .and_then(|i| job.args.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(60.0);
    Duration::from_secs_f64(timeout) + STALL_GRACE
}

/// QEMU's sizing, and how the nested KVM pages.
#[derive(Clone, Copy, Debug)]
pub struct ApplianceOptions {
    pub mem_mib: u64,
    pub cpus: u32,
    pub paging: NestedPaging,
    /// A TCP port of 127.0.0.1 that QEMU forwards to the appliance's second
    /// serial port (COM2, /dev/ttyS1): `vmm run --gdb` inside it.
    pub gdb_port: Option<u16>,
    /// QEMU reads `vmm`'s standard input into the appliance's console (a
    /// single `vmm run --linux`: the keys the user types); otherwise it reads
    /// nothing.
    pub console_input: bool,
}

/// How the appliance's kvm_amd translates its guests' memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedPaging {
    /// Nested paging (NPT), kvm_amd's default: our guest's runs, whose
    /// figures every stored measurement was made with.
    Npt,
    /// Shadow paging (`kvm_amd npt=0`), for a stock Linux. QEMU's emulated
    /// SVM sets the accessed bit in PAE PDPTEs as it walks them, and KVM's
    /// PDPTE check calls that bit reserved: under NPT the nested KVM then
    /// refuses Linux's `mov cr4` that turns PSE, PGE or SMEP on (#GP), and
    /// cannot step a user-mode CPUID (QEMU gives no next RIP, so KVM decodes
    /// it, through PDPTEs it cannot load). Under shadow paging QEMU walks
    /// KVM's tables, not the guest's, and neither happens.
    Shadow,
}

impl Default for ApplianceOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2).clamp(1, 8);
        ApplianceOptions { mem_mib: 2048, cpus, paging: NestedPaging::Npt, gdb_port: None, console_input: false }
    }
}

/// Whether QEMU is on PATH.
pub fn qemu_available() -> Result<(), Error> {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(QEMU).is_file())).unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(Error::NoQemu)
    }
}

fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t tmpfs tmp /tmp
for m in {modules}; do
  p=""; [ "$m" = kvm-amd ] && p="$vmm_kvm_amd"
  /bin/busybox insmod /lib/modules/$m.ko $p || echo "{insmod_failed}"
done
echo 1 > /proc/sys/vm/overcommit_memory
echo 0 > /proc/sys/vm/compact_unevictable_allowed
exec /vmm appliance-init /jobs.json
"#,
        modules = MODULES.join(" "),
        // The shell fills in $m.
        insmod_failed = Frame::Fatal("insmod $m failed".into()).render(),
    )
}

/// The inputs that come from Debian's packages.
/// QEMU's arguments for a second 16550 (COM2) whose other end is a TCP
/// server on 127.0.0.1:`port`: gdb connects there.
fn gdb_serial(port: Option<u16>) -> Vec<String> {
    let Some(port) = port else { return Vec::new() };
    vec![
        "-chardev".into(),
        format!("socket,id=gdb,host=127.0.0.1,port={port},server=on,wait=off"),
        "-device".into(),
        "isa-serial,chardev=gdb,iobase=0x2f8,irq=3".into(),
    ]
}

struct Inputs {
    vmlinux: PathBuf,
    modules: Vec<PathBuf>,
    busybox: PathBuf,
}

fn inputs() -> Result<Inputs, Error> {
    let dir = paths::appliance_kernel_dir();
    let vmlinux = dir.join("vmlinux");
    if !vmlinux.is_file() {
        return Err(Error::NoKernel(vmlinux));
    }
    let mut modules = Vec::new();
    for m in MODULES {
        let p = dir.join("modules").join(format!("{m}.ko"));
        if !p.is_file() {
            return Err(Error::NoKernel(p));
        }
        modules.push(p);
    }
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() {
        return Err(Error::NoBusybox(busybox));
    }
    Ok(Inputs { vmlinux, modules, busybox })
}

/// Builds (or finds in the cache) the base initramfs holding `vmm` and `guest`.
fn base_initramfs(inputs: &Inputs, vmm: &Path, guest: Option<&Path>) -> Result<PathBuf, Error> {
    let vmm_bytes = std::fs::read(vmm)?;
    let guest_bytes = match guest {
        Some(g) => Some(std::fs::read(g)?),
        None => None,
    };
    let busybox = std::fs::read(&inputs.busybox)?;
    let modules: Vec<Vec<u8>> = inputs.modules.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let init = init_script();
    let mut h = DefaultHasher::new();
    (&vmm_bytes, &guest_bytes, &busybox, &modules, &init).hash(&mut h);
    let key = format!("{:016x}", h.finish());
    let dir = paths::appliance_cache_dir();
    let path = dir.join(format!("base-{key}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    // Drop stale archives: only the newest is ever used.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("base-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = dir.join(format!(".base-{key}.{}", std::process::id()));
    let mut w = CpioWriter::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "kernels"] {
        w.dir(d)?;
    }
    w.file("init", init.as_bytes(), true)?;
    w.file("bin/busybox", &busybox, true)?;
    w.file("vmm", &vmm_bytes, true)?;
    if let Some(g) = &guest_bytes {
        w.file("guest", g, false)?;
    }
    for (m, bytes) in MODULES.iter().zip(&modules) {
        w.file(&format!("lib/modules/{m}.ko"), bytes, false)?;
    }
    w.finish()?.flush()?;
    std::fs::rename(&tmp, &path)?;
    log::info!("built appliance initramfs {}", path.display());
    Ok(path)
}

/// Runs jobs in one appliance boot. `extra` files are added to the initramfs (for
/// example `kernels/0` for a `--kernel` image). An appliance that hangs in its own
/// boot (before any job ran) is started again, up to [`BOOT_ATTEMPTS`] times.
pub fn run(
    jobs: &[Job],
    extra: &[(String, PathBuf)],
    guest: Option<&Path>,
    opts: ApplianceOptions,
    deadline: Duration,
    mut on_event: impl FnMut(Event),
) -> Result<BatchOutcome, Error> {
    let mut attempt = 1;
    loop {
        match run_once(jobs, extra, guest, opts, deadline, &mut on_event) {
            Err(Error::BootHang { secs, log, .. }) if attempt < BOOT_ATTEMPTS => {
                log::warn!(
                    "the appliance did not come up within {secs:.0} s (console in {}); booting it again",
                    log.display()
                );
                attempt += 1;
            }
            Err(Error::BootHang { secs, log, .. }) => return Err(Error::BootHang { secs, attempts: attempt, log }),
            r => return r,
        }
    }
}

fn run_once(
    jobs: &[Job],
    extra: &[(String, PathBuf)],
    guest: Option<&Path>,
    opts: ApplianceOptions,
    deadline: Duration,
    mut on_event: impl FnMut(Event),
) -> Result<BatchOutcome, Error> {
    qemu_available()?;
    let inputs = inputs()?;
    let vmm = paths::appliance_binary()?;
    let base = base_initramfs(&inputs, &vmm, guest)?;

    let work = tempdir()?;
    let initrd = work.path().join("initrd.cpio");
    {
        let mut out = std::fs::File::create(&initrd)?;
        std::io::copy(&mut std::fs::File::open(&base)?, &mut out)?;
        let mut w = CpioWriter::new(std::io::BufWriter::new(out));
        let jobs_json = serde_json::to_vec(&JobsFile { jobs: jobs.to_vec() }).map_err(std::io::Error::other)?;
        w.file("jobs.json", &jobs_json, false)?;
        for (name, path) in extra {
            w.file(name, &std::fs::read(path)?, false)?;
        }
        w.finish()?.flush()?;
    }

    let started = Instant::now();
    let mut child = Command::new(QEMU)
        .args([
            "-M",
            "microvm",
            "-accel",
            // One TCG thread for every appliance CPU: multi-threaded TCG's
            // emulated SVM corrupts nested guests' state (docs/qemu-hosted.md).
            &std::env::var("VMM_QEMU_ACCEL").unwrap_or_else(|_| "tcg,thread=single".into()),
            "-cpu",
            "EPYC",
        ])
        .args(["-smp", &opts.cpus.to_string(), "-m", &format!("{}M", opts.mem_mib)])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .args(gdb_serial(opts.gdb_port))
        .arg("-kernel")
        .arg(&inputs.vmlinux)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &kernel_cmdline(opts.paging)])
        .stdin(if opts.console_input { Stdio::inherit() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Run(format!("cannot start {QEMU}: {e}")))?;

    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().ok_or_else(|| Error::Run("no QEMU stdout".into()))?;
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
        }
        text
    });

    // The appliance's whole console, for post-mortems.
    let log_path = paths::appliance_cache_dir().join("console.log");
    let mut console_log = std::fs::File::create(&log_path).ok();
    let mut results: Vec<JobResult> = vec![JobResult::default(); jobs.len()];
    let mut boot_ms = None;
    let mut fatal: Option<String> = None;
    let mut done = false;
    let mut recent: VecDeque<String> = VecDeque::new();
    let end = started + deadline;
    let ready_end = started + READY_DEADLINE.min(deadline);
    // The job running now (the appliance runs them in order) and its deadline.
    let mut running: Option<(usize, Instant)> = None;
    while !done {
        let now = Instant::now();
        if stop_requested() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Stopped);
        }
        if let Some((job, limit)) = running {
            if now >= limit {
                log::warn!("appliance: job {job} made no progress past its own timeout; stopping QEMU");
                let _ = child.kill();
                let _ = child.wait();
                let why = "the emulated KVM stopped responding (no output past the job's own timeout)".to_owned();
                return Ok(BatchOutcome { results, boot_ms, stalled: Some(Stall { job, why }) });
            }
        }
        if boot_ms.is_none() && now >= ready_end && ready_end < end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::BootHang { secs: READY_DEADLINE.as_secs_f64(), attempts: 1, log: log_path });
        }
        if now >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout { secs: deadline.as_secs_f64(), log: log_path });
        }
        let mut wait_until = if boot_ms.is_none() { ready_end.min(end) } else { end };
        if let Some((_, limit)) = running {
            wait_until = wait_until.min(limit);
        }
        let line = match rx.recv_timeout(wait_until.saturating_duration_since(now).min(STOP_POLL)) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(f) = console_log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        let Some(frame) = Frame::parse(&line) else {
            log::debug!("appliance: {line}");
            recent.push_back(line);
            if recent.len() > 20 {
                recent.pop_front();
            }
            continue;
        };
        match frame {
            Frame::Ready { .. } => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                boot_ms = Some(ms);
                running = jobs.first().map(|j| (0, Instant::now() + job_budget(j)));
                on_event(Event::Ready { boot_ms: ms });
            }
            Frame::Fatal(why) => fatal = Some(why),
            Frame::Done => done = true,
            Frame::Job { job, what } => {
                let Some(r) = results.get_mut(job) else { continue };
                match what {
                    JobFrame::Out(text) => {
                        on_event(Event::Out { job, line: &text });
                        r.stdout.push(text);
                    }
                    JobFrame::Err(text) => {
                        on_event(Event::Err { job, line: &text });
                        r.stderr.push(text);
                    }
                    JobFrame::Json(text) => r.json = Some(text),
                    JobFrame::Exit(code) => {
                        r.exit_code = code;
                        running = jobs.get(job + 1).map(|j| (job + 1, Instant::now() + job_budget(j)));
                        on_event(Event::Done { job, result: r });
                    }
                }
            }
        }
    }
    // The appliance powers off after "done"; give it a moment, then make sure.
    let wait_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < wait_until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let status = child.wait();
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    if let Some(f) = fatal {
        return Err(Error::Run(format!("appliance: {f}")));
    }
    if !done && stop_requested() {
        // A Ctrl-C at the terminal reaches QEMU too, which then ends first.
        return Err(Error::Stopped);
    }
    if !done {
        let tail: Vec<String> = recent.into_iter().collect();
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let said = qemu_err.lines().filter(|l| !l.contains("TCG doesn't support")).collect::<Vec<_>>().join(" / ");
        let tail = tail.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join(" / ");
        if let Some((job, _)) = running {
            // The appliance's own kernel died under a job (the emulated SVM can
            // corrupt it too): that job failed, the rest go on in a fresh one.
            log::warn!("appliance: died during job {job} ({status}); console in {}", log_path.display());
            let why =
                format!("the appliance died during the job ({status}; QEMU said: {said}; last console lines: {tail})");
            return Ok(BatchOutcome { results, boot_ms, stalled: Some(Stall { job, why }) });
        }
        return Err(Error::Run(format!(
            "the appliance stopped before finishing ({status}); QEMU said: {said}; last console lines: {tail} (whole \
             console in {})",
            log_path.display()
        )));
    }
    Ok(BatchOutcome { results, boot_ms, stalled: None })
}

/// The appliance kernel's command line. Under TCG the emulated TSC runs at the
/// host's TSC rate, and the kernel's fast PIT calibration of it fails now and then
/// on a busy host (then the boot hangs with no clocksource), so the host's
/// frequency is handed over with `tsc_early_khz`.
fn kernel_cmdline(paging: NestedPaging) -> String {
    let mut c =
        String::from("console=ttyS0 quiet loglevel=1 panic=-1 tsc=reliable mitigations=off transparent_hugepage=never");
    if let Some(khz) = crate::kvm::vcpu::host_tsc_khz() {
        c += &format!(" tsc_early_khz={khz}");
    }
    // The kernel hands `name=value` words it does not know to init as
    // environment variables: the init script gives this one to kvm_amd.
    if paging == NestedPaging::Shadow {
        c += " vmm_kvm_amd=npt=0";
    }
    c
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> std::io::Result<TempDir> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("vmm-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(TempDir(p))
}

/// Inside the appliance: runs every job of `jobs_path`, framing its output on the
/// console, then powers off. Returns only if it cannot power off.
pub fn init(jobs_path: &Path) -> i32 {
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = |line: String| {
        if let Ok(o) = out.lock() {
            let mut o = o.lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    };
    let uptime_ms = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(0.0)
        * 1000.0;
    let jobs = std::fs::read(jobs_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<JobsFile>(&b).map_err(|e| e.to_string()));
    match (&jobs, Path::new("/dev/kvm").exists()) {
        (Err(e), _) => say(Frame::Fatal(format!("cannot read {}: {e}", jobs_path.display())).render()),
        (_, false) => {
            say(Frame::Fatal("no /dev/kvm in the appliance (kvm_amd did not load: does QEMU emulate SVM?)".into())
                .render())
        }
        (Ok(jobs), true) => {
            say(Frame::Ready { uptime_ms }.render());
            let vmm = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/vmm"));
            for (i, job) in jobs.jobs.iter().enumerate() {
                let json_path = PathBuf::from(format!("/tmp/job-{i}.json"));
                let mut cmd = Command::new(&vmm);
                cmd.args(&job.args);
                if job.json {
                    cmd.arg("--json").arg(&json_path);
                }
                let code = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
                    Ok(mut child) => {
                        let pump = |stream: Box<dyn std::io::Read + Send>, out_stream: bool| {
                            let out = out.clone();
                            std::thread::spawn(move || {
                                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                                    let line = String::from_utf8_lossy(&line);
                                    if let Ok(o) = out.lock() {
                                        let mut o = o.lock();
                                        let line = line.into_owned();
                                        let what = if out_stream { JobFrame::Out(line) } else { JobFrame::Err(line) };
                                        let _ = writeln!(o, "{}", Frame::Job { job: i, what }.render());
                                        let _ = o.flush();
                                    }
                                }
                            })
                        };
                        let t1 = child.stdout.take().map(|s| pump(Box::new(s), true));
                        let t2 = child.stderr.take().map(|s| pump(Box::new(s), false));
                        let status = child.wait();
                        for t in [t1, t2].into_iter().flatten() {
                            let _ = t.join();
                        }
                        status.ok().and_then(|s| s.code()).unwrap_or(-1)
                    }
                    Err(e) => {
                        say(Frame::Job { job: i, what: JobFrame::Err(format!("vmm: cannot start: {e}")) }.render());
                        -1
                    }
                };
                if job.json {
                    if let Ok(j) = std::fs::read_to_string(&json_path) {
                        say(Frame::Job { job: i, what: JobFrame::Json(j) }.render());
                    }
                }
                say(Frame::Job { job: i, what: JobFrame::Exit(Some(code)) }.render());
            }
        }
    }
    say(Frame::Done.render());
    // SAFETY: sync and reboot have no memory-safety preconditions; we are PID 1 of
    // a throwaway appliance and want it gone.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    1
}

//! `vmm run` and `vmm batch`: check the inputs, choose where to run, run, report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::args::{config_args, BatchArgs, HostArgs, PinCostArgs, RunArgs};
use crate::gdb::{GdbSpec, Listen};
use crate::kvm::loader;
use crate::kvm::vm;
use crate::linux::{self, LinuxSpec};
use crate::machine::{self, RunSpec};
use crate::platform::appliance::{self, ApplianceOptions, Event, Job, NestedPaging, INTERRUPTED};
use crate::platform::{self, emulator, paths, Mode};
use crate::report::{exit_code, HostInfo, RunReport};
use pvmmu::guest_memory as memory;
use pvmmu::guest_memory::RamSize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--mem: {0}")]
    Memory(#[from] memory::Error),
    #[error("{0}")]
    Kernel(#[from] loader::Error),
    #[error("--timeout {0}: must be a positive number of seconds")]
    BadTimeout(f64),
    #[error("{0}")]
    NoWay(#[from] platform::NoWayToRun),
    #[error("{0}")]
    Vm(#[from] vm::Error),
    #[error("{0}")]
    Machine(#[from] machine::Error),
    #[error("{0}")]
    Gdb(#[from] crate::gdb::Error),
    #[error("{0}")]
    Appliance(#[from] appliance::Error),
    #[error("the QEMU-hosted vmm gave no report (exit code {0:?})")]
    NoReport(Option<i32>),
    #[error("cannot parse a report: {0}")]
    BadReport(serde_json::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot read the batch file {0}: {1}")]
    BatchFile(PathBuf, String),
    #[error("{0}")]
    PinCost(#[from] pvmmu::pin_cost::Error),
    #[error("stopped on request (Ctrl-C)")]
    Stopped,
    #[error("a built-in cell: {0}")]
    BuiltinCell(String),
    #[error("{0}")]
    Linux(#[from] crate::linux::Error),
    #[error("cannot read {0}")]
    Input(String),
}

/// `vmm pin-cost`: the alias check's host cost per pin, as a table (and JSON lines).
pub fn pin_cost_command(args: PinCostArgs) -> Result<i32, Error> {
    use pvmmu::pin_cost;
    use shared::config::HostCheck;
    let mut rows = Vec::new();
    println!(
        "{:<10} {:>8} {:>9} {:>12} {:>12} {:>14}",
        "check", "aliases", "l1 tables", "check ns/pin", "pin ns", "update ns/pte"
    );
    for &aliases in &args.aliases {
        for &check in HostCheck::ALL {
            let c = pin_cost::measure(check, aliases, args.pins)?;
            println!(
                "{:<10} {:>8} {:>9} {:>12.0} {:>12.0} {:>14.0}",
                c.host_check, c.aliases, c.l1_tables, c.check_ns, c.pin_ns, c.update_ns
            );
            rows.push(c);
        }
    }
    if let Some(path) = &args.json {
        let text: String = rows.iter().filter_map(|r| serde_json::to_string(r).ok()).map(|l| l + "\n").collect();
        std::fs::write(path, text).map_err(|e| Error::Write(path.clone(), e))?;
    }
    Ok(0)
}

/// Room the appliance keeps beside a Linux guest's RAM: its own kernel and
/// initramfs, the inner vmm, and the nested KVM's shadow tables.
const APPLIANCE_ROOM_MIB: u64 = 1024;

/// The appliance's size: by default at least one CPU per guest vCPU, which keeps
/// the emulator's known fault rare (see `platform::emulator`), and
/// `--appliance-mem` of RAM, or more for a Linux guest (`linux_mem`: its
/// RAM), which touches what it is given: its struct pages, and the
/// benchmark's lowmem cap fills highmem. Our guest's RAM stays lazily
/// allocated in the appliance (the 64 GiB cells of the 2002 matrix run in
/// 2 GiB), so it does not size it.
fn appliance_options(h: &HostArgs, max_vcpus: u32, linux_mem: u64) -> ApplianceOptions {
    let d = ApplianceOptions::default();
    let linux = if linux_mem > 0 { (linux_mem >> 20) + APPLIANCE_ROOM_MIB } else { 0 };
    let cpus = match h.appliance_cpus {
        Some(c) => c.clamp(1, 8),
        None => d.cpus.max(max_vcpus).min(8),
    };
    ApplianceOptions { mem_mib: (h.appliance_mem >> 20).max(512).max(linux), cpus, ..d }
}

fn write_json(path: &Path, report: &RunReport) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(report).map_err(Error::BadReport)?;
    if path == Path::new("-") {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text + "\n").map_err(|e| Error::Write(path.to_owned(), e))
    }
}

/// `vmm run`: returns the process exit code.
pub fn run_command(args: RunArgs, start: Instant) -> Result<i32, Error> {
    if args.mem > (64 << 30) || RamSize::new(args.mem).is_err() {
        return Err(memory::Error::BadSize(args.mem).into());
    }
    let mem = RamSize::new(args.mem)?;
    if RamSize::clipped(args.mem) && !args.inner {
        eprintln!(
            "vmm: --mem {} MiB: the 36-bit PAE space holds {} MiB of RAM besides the MMIO hole below 4 GiB; using that",
            args.mem >> 20,
            mem.bytes() >> 20
        );
    }
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err(Error::BadTimeout(args.timeout));
    }
    if args.linux.is_some() {
        return run_linux(&args, mem, start);
    }
    let kernel = args.kernel.clone().unwrap_or_else(paths::default_guest);
    // Placement errors are the input's: said here, before a VM (or QEMU) starts.
    loader::parse(&kernel)?.check_placement(&mem.regions(), shared::boot::LOW_RESERVED_END)?;
    let spec = RunSpec {
        kernel: kernel.clone(),
        mem,
        vcpus: args.vcpus,
        timeout: Duration::from_secs_f64(args.timeout),
        config: args.guest.0,
        start,
        gdb: gdb_spec(&args),
    };
    let (mode, reason) = where_to_run(&args)?;
    let report = match mode {
        Mode::Local => {
            let info = HostInfo { mode: "local".into(), reason, ..Default::default() };
            machine::run(&spec, Box::new(std::io::stdout()), info)?
        }
        Mode::Qemu => run_qemu(&spec, args.kernel.is_some(), &args.host, reason)?,
    };
    finish(&args, &report)
}

/// `--gdb` as the stub takes it: the TCP port, or inside the appliance the
/// serial device QEMU forwards it to.
fn gdb_spec(args: &RunArgs) -> Option<GdbSpec> {
    let port = args.gdb?;
    let listen = match &args.gdb_serial {
        Some(dev) => Listen::Serial(dev.clone()),
        None => Listen::Tcp(port),
    };
    Some(GdbSpec { port, listen, wait: args.gdb_wait })
}

/// The serial device of the appliance QEMU forwards `--gdb`'s port to (its
/// second 16550, COM2).
const APPLIANCE_GDB_SERIAL: &str = "/dev/ttyS1";

/// The arguments that carry `--gdb` into the appliance, and its options.
/// A port already taken is said here, before QEMU starts.
fn gdb_into_appliance(gdb: Option<&GdbSpec>, a: &mut Vec<String>, opts: &mut ApplianceOptions) -> Result<(), Error> {
    let Some(GdbSpec { listen: Listen::Tcp(port), wait, .. }) = gdb else { return Ok(()) };
    drop(std::net::TcpListener::bind(("127.0.0.1", *port)).map_err(|e| crate::gdb::Error::Listen(*port, e))?);
    a.extend(["--gdb".into(), port.to_string(), "--gdb-serial".into(), APPLIANCE_GDB_SERIAL.into()]);
    if *wait {
        a.push("--gdb-wait".into());
    }
    opts.gdb_port = Some(*port);
    Ok(())
}

/// `vmm run --linux`: Linux locally, or inside the appliance with its
/// kernel and initrd carried in.
fn run_linux(args: &RunArgs, mem: RamSize, start: Instant) -> Result<i32, Error> {
    let kernel = args.linux.clone().unwrap_or_default();
    // Input errors before a VM (or QEMU) starts.
    linux::boot::check(&kernel).map_err(linux::Error::from)?;
    if let Some(f) = &args.initrd {
        std::fs::metadata(f).map_err(|e| Error::Input(format!("{}: {e}", f.display())))?;
    }
    let spec = LinuxSpec {
        kernel: kernel.clone(),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone().unwrap_or_default(),
        mem,
        vcpus: args.vcpus,
        timeout: Duration::from_secs_f64(args.timeout),
        start,
        gdb: gdb_spec(args),
    };
    let (mode, reason) = where_to_run(args)?;
    let report = match mode {
        Mode::Local => {
            let info = HostInfo { mode: "local".into(), reason, ..Default::default() };
            // Keys go to Linux's console as they are typed, also inside
            // the appliance, whose console is this standard input.
            let _keys = linux::input::KeysThrough::new();
            linux::run(&spec, Box::new(std::io::stdout()), Some(Box::new(std::io::stdin())), info)?
        }
        Mode::Qemu => {
            let mut extra = vec![("kernels/0".to_owned(), spec.kernel.clone())];
            let mut a: Vec<String> =
                ["run", "--inner", "--host", "local", "--linux", "/kernels/0"].map(String::from).to_vec();
            if let Some(i) = &spec.initrd {
                extra.push(("kernels/1".to_owned(), i.clone()));
                a.extend(["--initrd".into(), "/kernels/1".into()]);
            }
            a.push(format!("--cmdline={}", spec.cmdline));
            a.extend(shape_args(spec.mem, spec.vcpus, spec.timeout));
            let mut opts = appliance_options(&args.host, spec.vcpus, spec.mem.bytes());
            opts.paging = NestedPaging::Shadow;
            opts.console_input = true;
            gdb_into_appliance(spec.gdb.as_ref(), &mut a, &mut opts)?;
            let job = Job { args: a, json: true };
            run_in_appliance(job, &extra, opts, spec.timeout, (&spec.kernel, reason, spec.start))?
        }
    };
    finish(args, &report)
}

/// Where this run goes and why, said on the standard error (unless inside
/// the appliance).
fn where_to_run(args: &RunArgs) -> Result<(Mode, String), Error> {
    let (mode, reason) = platform::resolve(args.host.host)?;
    if !args.inner {
        eprintln!("{}", platform::mode_line(mode, &reason));
    }
    Ok((mode, reason))
}

/// How a `vmm run` ended, as its user sees it: the outcome's line (with the
/// emulator's note when it applies), the summary, the JSON report; the
/// process's exit status.
fn finish(args: &RunArgs, report: &RunReport) -> Result<i32, Error> {
    if !args.inner {
        eprintln!("vmm: {}", report.outcome.describe());
        if let Some(note) = &report.emulator_fault {
            eprintln!("vmm: note: {note} (docs/qemu-hosted.md)");
        }
    }
    if args.stats {
        eprint!("{}", report.summary());
    }
    if let Some(path) = &args.json {
        write_json(path, report)?;
    }
    Ok(report.exit_code)
}

/// The `vmm run` arguments that reproduce `spec` inside the appliance.
fn inner_args(spec: &RunSpec, kernel: &str) -> Vec<String> {
    let mut a: Vec<String> = ["run", "--inner", "--host", "local", "--kernel", kernel].map(String::from).to_vec();
    a.extend(shape_args(spec.mem, spec.vcpus, spec.timeout));
    a.extend(config_args(&spec.config));
    a
}

/// `--mem`, `--vcpus` and `--timeout` as a run inside the appliance takes them.
fn shape_args(mem: RamSize, vcpus: u32, timeout: Duration) -> [String; 6] {
    [
        "--mem".into(),
        mem.bytes().to_string(),
        "--vcpus".into(),
        vcpus.to_string(),
        "--timeout".into(),
        timeout.as_secs_f64().to_string(),
    ]
}

/// Extra time a QEMU-hosted run gets beyond the guest's own watchdog (boot and
/// building the initramfs).
const APPLIANCE_ALLOWANCE: Duration = Duration::from_secs(120);

/// A QEMU-hosted run under gdb: a year.
const GDB_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

fn run_qemu(spec: &RunSpec, custom_kernel: bool, h: &HostArgs, reason: String) -> Result<RunReport, Error> {
    let default_guest = paths::default_guest();
    let (kernel_arg, extra) = if custom_kernel && spec.kernel != default_guest {
        ("/kernels/0".to_owned(), vec![("kernels/0".to_owned(), spec.kernel.clone())])
    } else {
        ("/guest".to_owned(), vec![])
    };
    let mut a = inner_args(spec, &kernel_arg);
    let mut opts = appliance_options(h, spec.vcpus, 0);
    gdb_into_appliance(spec.gdb.as_ref(), &mut a, &mut opts)?;
    let job = Job { args: a, json: true };
    let mut report = run_in_appliance(job, &extra, opts, spec.timeout, (&spec.kernel, reason, spec.start))?;
    report.emulator_fault = emulator::diagnose(&report, &loader::parse(&spec.kernel)?);
    Ok(report)
}

/// One `run` job in the appliance, its console passed through: the report
/// it wrote, told as the outer run's (`kernel` as the user named it, host
/// `qemu` with why, the appliance's boot time and the whole run's time
/// since `start`).
fn run_in_appliance(
    job: Job,
    extra: &[(String, PathBuf)],
    opts: ApplianceOptions,
    timeout: Duration,
    (kernel, reason, start): (&Path, String, Instant),
) -> Result<RunReport, Error> {
    let default_guest = paths::default_guest();
    let guest = default_guest.is_file().then_some(default_guest.as_path());
    // Under gdb the guest stops as long as its user likes: no watchdog.
    let timeout = if opts.gdb_port.is_some() { GDB_TIMEOUT } else { timeout + APPLIANCE_ALLOWANCE };
    let outcome = appliance::run(std::slice::from_ref(&job), extra, guest, opts, timeout, |ev| match ev {
        Event::Out { line, .. } => {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
        Event::Err { line, .. } => eprintln!("{line}"),
        Event::Ready { boot_ms } => log::info!("appliance ready after {boot_ms:.0} ms"),
        Event::Done { .. } => {}
    })?;
    let r = outcome.results.into_iter().next().unwrap_or_default();
    let json = r.json.ok_or(Error::NoReport(r.exit_code))?;
    let mut report: RunReport = serde_json::from_str(&json).map_err(Error::BadReport)?;
    report.host = HostInfo {
        mode: "qemu".into(),
        reason,
        appliance_boot_ms: outcome.boot_ms,
        total_ms: Some(start.elapsed().as_secs_f64() * 1000.0),
    };
    report.kernel = kernel.display().to_string();
    Ok(report)
}

#[derive(serde::Deserialize)]
struct BatchFile {
    jobs: Vec<Vec<String>>,
}

/// One line of `vmm batch`'s output.
#[derive(Serialize)]
struct BatchLine<'a> {
    job: usize,
    args: &'a [String],
    #[serde(flatten)]
    outcome: &'a JobOutcome,
}

/// The value of `--flag` in an argument list.
fn arg_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).map(String::as_str)
}

/// How to run a list of jobs (what `vmm batch`, `vmm matrix` and `vmm contract`
/// share).
#[derive(Clone, Debug)]
pub struct JobsOptions {
    pub host: HostArgs,
    pub timeout: f64,
    pub retries: u32,
    pub verbose: bool,
}

/// What one job of a list did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobOutcome {
    pub exit_code: Option<i32>,
    /// Runs it took: more than one when the QEMU-hosted emulator's known fault
    /// struck and the job was run again.
    pub attempts: u32,
    /// What each faulted attempt looked like.
    pub emulator_faults: Vec<String>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    /// The run's report, typed: JSON only where it is written to a file.
    pub report: Option<Box<RunReport>>,
}

/// `vmm batch`: runs many `vmm run` jobs, in one appliance boot when QEMU-hosted.
pub fn batch_command(args: BatchArgs) -> Result<i32, Error> {
    let text = std::fs::read_to_string(&args.jobs).map_err(|e| Error::BatchFile(args.jobs.clone(), e.to_string()))?;
    let file: BatchFile =
        serde_json::from_str(&text).map_err(|e| Error::BatchFile(args.jobs.clone(), e.to_string()))?;
    let opts = JobsOptions { host: args.host, timeout: args.timeout, retries: args.retries, verbose: args.verbose };
    // The output opens before any guest runs (an unwritable --out is an input
    // error, not a lost result), and each job's line is written and flushed as
    // the job ends: Ctrl-C keeps every finished one.
    let out_name = args.out.clone().unwrap_or_else(|| PathBuf::from("-"));
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| Error::Write(p.clone(), e))?),
        None => Box::new(std::io::stdout()),
    };
    appliance::stop_on_ctrl_c("vmm: batch");
    let (mut failures, mut retried, mut written) = (0, 0, 0);
    let mut write_error = None;
    let ran = run_jobs_with(&file.jobs, &opts, |ev| {
        let JobEvent::Finished { job, outcome } = ev else { return };
        if appliance::stop_requested() || write_error.is_some() {
            return;
        }
        failures += usize::from(outcome.exit_code != Some(0));
        retried += usize::from(outcome.attempts > 1);
        let line = BatchLine { job, args: &file.jobs[job], outcome };
        match write_json_line(&mut out, &line) {
            Ok(()) => written += 1,
            Err(e) => {
                // Nowhere to keep results: stop the jobs rather than run on.
                write_error = Some(Error::Write(out_name.clone(), e));
                appliance::request_stop();
            }
        }
    });
    if jobs_ended(ran, write_error)? {
        eprintln!("vmm: batch interrupted: {written} of {} jobs finished and written", file.jobs.len());
        return Ok(INTERRUPTED);
    }
    eprintln!(
        "vmm: batch of {} jobs: {} exited non-zero, {} run again after the emulator's known fault",
        file.jobs.len(),
        failures,
        retried
    );
    Ok(if failures == 0 { exit_code::SUCCESS } else { exit_code::GUEST_FAILED })
}

/// Writes `v` as one JSON line and flushes it: a result kept the moment it
/// exists.
pub fn write_json_line(out: &mut dyn Write, v: &impl Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string(v).map_err(|e| std::io::Error::other(e.to_string()))?;
    writeln!(out, "{text}")?;
    out.flush()
}

/// How a run of jobs whose results were kept as they came ended: `Ok(false)`
/// every job ran, `Ok(true)` it was stopped on request (Ctrl-C: the caller says
/// what finished and exits [`INTERRUPTED`]), `Err` its results could not be
/// kept (`write_error`, which also stopped it) or the jobs could not run.
pub fn jobs_ended(ran: Result<Vec<JobOutcome>, Error>, write_error: Option<Error>) -> Result<bool, Error> {
    if let Some(e) = write_error {
        return Err(e);
    }
    match ran {
        Ok(_) => Ok(false),
        // Stopped, locally or in the appliance.
        Err(_) if appliance::stop_requested() => Ok(true),
        Err(e) => Err(e),
    }
}

/// What [`run_jobs_with`] tells its caller while the jobs run.
pub enum JobEvent<'a> {
    /// The job (its index in the list) starts an attempt.
    Started { job: usize },
    /// The job is over for good (no more attempts): its final outcome.
    Finished { job: usize, outcome: &'a JobOutcome },
}

/// Runs `vmm run` jobs (each an argument list), in one appliance boot when
/// QEMU-hosted. A job whose QEMU-hosted outcome bears the emulator's known fault
/// is run again (up to `retries` times), and its outcome says so. Tells
/// `on_event` as each job starts and as each is over, so a
/// caller can show progress and keep each result as it comes. When
/// [`appliance::request_stop`] is called the jobs stop and this returns
/// [`Error::Stopped`] (the jobs already reported as finished are complete).
pub fn run_jobs_with(
    job_args: &[Vec<String>],
    opts: &JobsOptions,
    mut on_event: impl FnMut(JobEvent),
) -> Result<Vec<JobOutcome>, Error> {
    let (mode, reason) = platform::resolve(opts.host.host)?;
    eprintln!("{}", platform::mode_line(mode, &reason));
    let deadline = Instant::now() + Duration::from_secs_f64(opts.timeout);
    // QEMU-hosted, Linux needs an appliance with shadow paging and our guest
    // one with nested paging (NestedPaging): a batch of both runs in two
    // appliances, our guest's jobs first.
    let (linux, ours): (Vec<usize>, Vec<usize>) = (0..job_args.len()).partition(|&i| is_linux_job(&job_args[i]));
    if mode == Mode::Local || linux.is_empty() || ours.is_empty() {
        return run_job_group(job_args, opts, (mode, &reason), deadline, on_event);
    }
    let mut outcomes = vec![JobOutcome::default(); job_args.len()];
    for group in [ours, linux] {
        let args: Vec<Vec<String>> = group.iter().map(|&i| job_args[i].clone()).collect();
        let done = run_job_group(&args, opts, (mode, &reason), deadline, |ev| match ev {
            JobEvent::Started { job } => on_event(JobEvent::Started { job: group[job] }),
            JobEvent::Finished { job, outcome } => on_event(JobEvent::Finished { job: group[job], outcome }),
        })?;
        for (&i, o) in group.iter().zip(done) {
            outcomes[i] = o;
        }
    }
    Ok(outcomes)
}

/// The flags that name a file the job boots.
const FILE_FLAGS: [&str; 3] = ["--kernel", "--linux", "--initrd"];

/// `argv` with `--kernel=FILE` (and the other file flags) as two arguments,
/// so that the file can be found and shipped.
fn split_file_flags(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    for a in argv {
        match FILE_FLAGS.iter().find_map(|f| Some((*f, a.strip_prefix(f)?.strip_prefix('=')?))) {
            Some((flag, value)) => out.extend([flag.to_owned(), value.to_owned()]),
            None => out.push(a.clone()),
        }
    }
    out
}

/// Whether a job boots Linux (`run --linux ...`).
fn is_linux_job(argv: &[String]) -> bool {
    argv.iter().any(|a| a == "--linux" || a.starts_with("--linux="))
}

/// Runs jobs that all boot our guest, or all Linux: QEMU-hosted, in one
/// appliance (and, for jobs that must run again, more).
fn run_job_group(
    job_args: &[Vec<String>],
    opts: &JobsOptions,
    (mode, reason): (Mode, &str),
    deadline: Instant,
    mut on_event: impl FnMut(JobEvent),
) -> Result<Vec<JobOutcome>, Error> {
    let default_guest = paths::default_guest();
    let linux = job_args.first().is_some_and(|a| is_linux_job(a));

    // Each job runs as `vmm <args> --host local`, with the files it boots
    // (kernels outside the default guest, Linux's bzImage and initrd)
    // shipped into the appliance.
    let mut extra = Vec::new();
    let mut kernels = Vec::new();
    let jobs: Vec<Job> = job_args
        .iter()
        .map(|argv| {
            let mut a = split_file_flags(argv);
            let booted = arg_value(&a, "--linux").or_else(|| arg_value(&a, "--kernel"));
            kernels.push(booted.map(PathBuf::from).unwrap_or_else(|| default_guest.clone()));
            if mode == Mode::Qemu {
                for i in 0..a.len() {
                    if FILE_FLAGS.contains(&a[i].as_str()) && i + 1 < a.len() {
                        let p = PathBuf::from(&a[i + 1]);
                        a[i + 1] = if p == default_guest {
                            "/guest".to_owned()
                        } else {
                            let name = format!("kernels/{}", extra.len());
                            extra.push((name.clone(), p));
                            format!("/{name}")
                        };
                    }
                }
                if !linux && !a.iter().any(|x| x == "--kernel") {
                    a.extend(["--kernel".to_owned(), "/guest".to_owned()]);
                }
            }
            a.extend(["--host".to_owned(), "local".to_owned()]);
            Job { args: a, json: true }
        })
        .collect();
    let max_vcpus = job_args.iter().filter_map(|a| arg_value(a, "--vcpus")?.parse().ok()).max().unwrap_or(1);
    let linux_mem = match linux {
        true => job_args.iter().filter_map(|a| shared::config::parse_u64(arg_value(a, "--mem")?)).max().unwrap_or(0),
        false => 0,
    };
    let mut appliance_opts = appliance_options(&opts.host, max_vcpus, linux_mem);
    if linux {
        appliance_opts.paging = NestedPaging::Shadow;
    }

    let n = jobs.len();
    let mut outcomes: Vec<JobOutcome> = vec![JobOutcome::default(); n];
    let mut pending: Vec<usize> = (0..n).collect();
    let settle_ctx = Settle { mode, reason, kernels: &kernels, retries: opts.retries };
    while !pending.is_empty() {
        if appliance::stop_requested() {
            return Err(Error::Stopped);
        }
        let round: Vec<Job> = pending.iter().map(|&i| jobs[i].clone()).collect();
        let mut again = Vec::new();
        match mode {
            Mode::Qemu => {
                let guest = default_guest.is_file().then_some(default_guest.as_path());
                let verbose = opts.verbose;
                // Jobs of this round whose result came in while the appliance ran.
                let mut settled = vec![false; round.len()];
                let o = appliance::run(
                    &round,
                    &extra,
                    guest,
                    appliance_opts,
                    deadline.saturating_duration_since(Instant::now()),
                    |ev| match ev {
                        Event::Ready { .. } => on_event(JobEvent::Started { job: pending[0] }),
                        Event::Out { job, line } if verbose => eprintln!("[{}] {line}", pending[job]),
                        Event::Err { job, line } if verbose => eprintln!("[{}] {line}", pending[job]),
                        Event::Done { job: k, result } => {
                            let i = pending[k];
                            settled[k] = true;
                            if settle_ctx.record(i, &mut outcomes[i], result.clone()) {
                                again.push(i);
                            } else {
                                on_event(JobEvent::Finished { job: i, outcome: &outcomes[i] });
                            }
                            if let Some(&next) = pending.get(k + 1) {
                                on_event(JobEvent::Started { job: next });
                            }
                        }
                        _ => {}
                    },
                )?;
                for (k, (&i, r)) in pending.iter().zip(o.results).enumerate() {
                    if settled[k] {
                        continue;
                    }
                    let out = &mut outcomes[i];
                    match &o.stalled {
                        // Never started: the appliance was stopped before.
                        Some(s) if k > s.job => again.push(i),
                        Some(s) if k == s.job => {
                            out.attempts += 1;
                            let note = format!(
                                "{}: QEMU was stopped and the rest of the batch went on in a fresh appliance",
                                s.why
                            );
                            eprintln!("vmm: job {i}, attempt {}: {note}", out.attempts);
                            out.emulator_faults.push(note);
                            (out.exit_code, out.stdout, out.stderr) = (r.exit_code, r.stdout, r.stderr);
                            if out.attempts <= opts.retries {
                                again.push(i);
                            } else {
                                on_event(JobEvent::Finished { job: i, outcome: out });
                            }
                        }
                        // The appliance finished without the job's exit frame.
                        _ => {
                            if settle_ctx.record(i, out, r) {
                                again.push(i);
                            } else {
                                on_event(JobEvent::Finished { job: i, outcome: out });
                            }
                        }
                    }
                }
            }
            Mode::Local => {
                for (&i, job) in pending.iter().zip(&round) {
                    if appliance::stop_requested() {
                        return Err(Error::Stopped);
                    }
                    on_event(JobEvent::Started { job: i });
                    let r = run_local_job(job, opts.verbose);
                    if appliance::stop_requested() {
                        // The child got the terminal's Ctrl-C too: not a result.
                        return Err(Error::Stopped);
                    }
                    if settle_ctx.record(i, &mut outcomes[i], r) {
                        again.push(i);
                    } else {
                        on_event(JobEvent::Finished { job: i, outcome: &outcomes[i] });
                    }
                }
            }
        }
        again.sort_unstable();
        pending = again;
    }
    Ok(outcomes)
}

/// What it takes to record one attempt of a job.
struct Settle<'a> {
    mode: Mode,
    reason: &'a str,
    kernels: &'a [PathBuf],
    retries: u32,
}

impl Settle<'_> {
    /// Records one finished attempt of job `i`; returns whether it must run again
    /// (the QEMU-hosted emulator's known fault struck and retries are left).
    fn record(&self, i: usize, o: &mut JobOutcome, r: appliance::JobResult) -> bool {
        o.attempts += 1;
        let mut again = false;
        // A report that does not read is said so among the job's errors, and
        // the job has no report.
        let (mut report, unreadable): (Option<RunReport>, _) = match r.json.as_deref().map(serde_json::from_str) {
            Some(Ok(rep)) => (Some(rep), None),
            Some(Err(e)) => (None, Some(format!("vmm: job {i}: its report does not read: {e}"))),
            None => (None, None),
        };
        if let (Mode::Qemu, Some(rep)) = (self.mode, report.as_mut()) {
            rep.host.mode = "qemu".into();
            rep.host.reason = self.reason.to_owned();
            rep.emulator_fault = if rep.config.contains_key("linux") {
                emulator::diagnose_linux(rep)
            } else {
                loader::parse(&self.kernels[i]).ok().and_then(|k| emulator::diagnose(rep, &k))
            };
            if let Some(note) = &rep.emulator_fault {
                eprintln!("vmm: job {i}, attempt {}: {note}", o.attempts);
                o.emulator_faults.push(note.clone());
                again = o.attempts <= self.retries;
            }
        }
        o.report = report.map(Box::new);
        (o.exit_code, o.stdout, o.stderr) = (r.exit_code, r.stdout, r.stderr);
        o.stderr.extend(unreadable);
        again
    }
}

/// Runs one batch job as a child `vmm` on this machine.
fn run_local_job(job: &Job, verbose: bool) -> appliance::JobResult {
    let dir = match appliance::tempdir() {
        Ok(d) => d,
        Err(e) => return appliance::JobResult { stderr: vec![e.to_string()], ..Default::default() },
    };
    let json = dir.path().join("report.json");
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vmm"));
    let out = Command::new(exe).args(&job.args).arg("--json").arg(&json).stdin(Stdio::null()).output();
    match out {
        Ok(o) => {
            let lines = |b: &[u8]| String::from_utf8_lossy(b).lines().map(str::to_owned).collect::<Vec<_>>();
            let (stdout, stderr) = (lines(&o.stdout), lines(&o.stderr));
            if verbose {
                stdout.iter().chain(&stderr).for_each(|l| eprintln!("{l}"));
            }
            appliance::JobResult {
                exit_code: o.status.code(),
                stdout,
                stderr,
                json: std::fs::read_to_string(&json).ok(),
            }
        }
        Err(e) => appliance::JobResult { stderr: vec![format!("cannot run vmm: {e}")], ..Default::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;

    #[test]
    fn a_linux_guest_gets_an_appliance_with_room_for_its_ram() {
        let h = HostArgs { host: crate::platform::HostMode::Qemu, appliance_mem: 2 << 30, appliance_cpus: None };
        assert_eq!(appliance_options(&h, 1, 0).mem_mib, 2048, "our guest: --appliance-mem");
        assert_eq!(appliance_options(&h, 1, 512 << 20).mem_mib, 2048, "a small Linux fits");
        assert_eq!(appliance_options(&h, 1, 2 << 30).mem_mib, 3072, "a 2 GiB Linux and room beside it");
        let big = HostArgs { appliance_mem: 8 << 30, ..h };
        assert_eq!(appliance_options(&big, 1, 2 << 30).mem_mib, 8192, "--appliance-mem when larger");
    }

    fn settle() -> Settle<'static> {
        Settle { mode: Mode::Local, reason: "", kernels: &[], retries: 0 }
    }

    fn result(json: Option<String>) -> appliance::JobResult {
        appliance::JobResult { exit_code: Some(0), stdout: vec!["guest".into()], stderr: vec![], json }
    }

    /// The files a job boots are found in either spelling, and a Linux job
    /// is told from one of our guest's.
    #[test]
    fn file_flags_are_split_and_linux_jobs_found() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split_file_flags(&v(&["run", "--linux=/bz", "--initrd", "/i", "--cmdline=rdinit=/init", "--kernel=/k"])),
            v(&["run", "--linux", "/bz", "--initrd", "/i", "--cmdline=rdinit=/init", "--kernel", "/k"])
        );
        assert!(is_linux_job(&v(&["run", "--linux", "/bz"])));
        assert!(is_linux_job(&v(&["run", "--linux=/bz"])));
        assert!(!is_linux_job(&v(&["run", "--kernel", "/k", "--cmdline-x"])));
    }

    /// A job's report travels typed; one that does not read leaves the job
    /// without a report, and says why among its errors.
    #[test]
    fn a_jobs_report_is_typed_or_its_failure_to_read_is_said() {
        let report = RunReport::of_outcome(Outcome::Shutdown { code: 0 });
        let mut o = JobOutcome::default();
        assert!(!settle().record(0, &mut o, result(Some(serde_json::to_string(&report).unwrap()))));
        assert_eq!(o.report.as_deref(), Some(&report));
        assert!(o.stderr.is_empty(), "{:?}", o.stderr);

        let garbled = r#"{"outcome": {"kind": "violation", "rule": "V9", "detail": ""}}"#;
        let mut o = JobOutcome::default();
        settle().record(3, &mut o, result(Some(garbled.into())));
        assert!(o.report.is_none());
        assert_eq!(o.stdout, ["guest"]);
        assert!(o.stderr.iter().any(|l| l.starts_with("vmm: job 3: its report does not read")), "{:?}", o.stderr);
    }
}

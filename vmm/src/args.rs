//! The run layer's command line, below `cli` and the commands: how to run
//! (`HostArgs`), one run's arguments (`RunArgs`, `BatchArgs`, `PinCostArgs`,
//! the guest's parameters from the shared table), and the parsers of
//! durations, sizes and write watches. `run` and `bench` take their arguments
//! from here, so that neither imports `cli`, which imports them.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgMatches, Args, FromArgMatches};
use shared::config::{parse_u64, Config, ParamKind};

use crate::platform::HostMode;
use crate::report::exit_code;

/// The longest duration a flag takes: a week, in seconds.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// A duration in seconds: finite, above zero, at most [`MAX_SECONDS`] (a
/// negative, NaN or enormous value made the watchdogs panic).
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > MAX_SECONDS {
        return Err(format!("{s} seconds: a duration must be above 0 and at most {MAX_SECONDS} (a week)"));
    }
    Ok(v)
}

/// A size in bytes with an optional k/m/g suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']).trim_start_matches("0x");
    let numeric = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit());
    parse_u64(s).ok_or_else(|| {
        if numeric {
            format!("'{s}' is too large (guest RAM is 16m to 64g)")
        } else {
            format!("'{s}' is not a size (examples: 256m, 4g, 16777216)")
        }
    })
}

pub fn parse_write_watch(s: &str) -> Result<String, String> {
    use shared::config::WriteWatch;
    WriteWatch::from_name(s)
        .map(|_| s.to_owned())
        .ok_or_else(|| format!("expected one of: {}", WriteWatch::NAMES.join(", ")))
}

/// How to run (shared by `run` and `batch`).
#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// Where to run: probe the local KVM and fall back to QEMU-hosted (auto), or force one.
    #[arg(long, value_enum, default_value = "auto")]
    pub host: HostMode,
    /// Memory of the QEMU-hosted appliance (its own RAM, not the guest's).
    #[arg(long, default_value = "2g", value_parser = parse_size)]
    pub appliance_mem: u64,
    /// CPUs of the QEMU-hosted appliance (default: this machine's).
    #[arg(long)]
    pub appliance_cpus: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct PinCostArgs {
    /// Numbers of lazy aliases (read-write mappings in validated L1 tables) to measure at.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,100000",
          value_parser = clap::value_parser!(u64).range(0..=4_000_000))]
    pub aliases: Vec<u64>,
    /// Pins (each followed by an unpin) per measurement.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub pins: u64,
    /// Also write the measurements as JSON lines to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The kernel image (ELF32 i386); default: the guest built in this checkout.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Boot this Linux bzImage instead of our guest (the 32-bit boot protocol,
    /// a 16550 console on COM1, MP tables; scripts/setup.sh fetches Debian's
    /// 686-pae kernel). Standard input is the console's keyboard. The guest's
    /// parameters (--workload, ...) do not apply.
    #[arg(long, value_name = "BZIMAGE", conflicts_with = "kernel")]
    pub linux: Option<PathBuf>,
    /// With --linux: the initial ramdisk (a cpio archive, compressed or not).
    #[arg(long, requires = "linux")]
    pub initrd: Option<PathBuf>,
    /// With --linux: what to add to the kernel command line, which always
    /// starts with `console=ttyS0 reboot=k` (e.g. `rdinit=/init`). The run
    /// ends when Linux reboots (`reboot -f`).
    #[arg(long, requires = "linux", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// Guest RAM, 16m to 64g (PAE's 36-bit limit).
    #[arg(long, default_value = "256m", value_parser = parse_size)]
    pub mem: u64,
    /// vCPUs, 1 to 8 (more than the host's cores works, overcommitted).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub vcpus: u32,
    /// Watchdog: stop a guest that has not finished after this many seconds.
    #[arg(long, default_value_t = 60.0, value_parser = parse_seconds)]
    pub timeout: f64,
    #[command(flatten)]
    pub host: HostArgs,
    /// Print the run report.
    #[arg(long)]
    pub stats: bool,
    /// Write the run report as JSON to this file (`-` for standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Serve gdb on this TCP port of 127.0.0.1 (`target remote :PORT`): one
    /// thread per vCPU, up to four breakpoints (`break` and `hbreak` alike:
    /// the debug registers), no watchdog while attached. QEMU-hosted, QEMU
    /// forwards the port into the appliance.
    #[arg(long, value_name = "PORT")]
    pub gdb: Option<u16>,
    /// With --gdb: stop every vCPU before its first instruction until gdb
    /// attaches and continues.
    #[arg(long, requires = "gdb")]
    pub gdb_wait: bool,
    /// (Set by the outer vmm inside the appliance: the serial device QEMU
    /// forwards the --gdb port to.)
    #[arg(long, hide = true, requires = "gdb")]
    pub gdb_serial: Option<PathBuf>,
    /// (Set by the outer vmm inside the appliance: it reports the outcome itself.)
    #[arg(long, hide = true)]
    pub inner: bool,
    #[command(flatten)]
    pub guest: GuestParams,
}

#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// A JSON file: `{"jobs": [["run", "--vcpus", "2", ...], ...]}`; each job is the
    /// arguments of one `vmm run` (without --host, --json).
    pub jobs: PathBuf,
    /// Write one JSON line per job here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Echo each job's console as it runs.
    #[arg(long)]
    pub verbose: bool,
    /// Give up on the whole batch after this many seconds.
    #[arg(long, default_value_t = 3600.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// Run a job again (up to this many times) when its QEMU-hosted outcome bears the
    /// emulator's known fault (docs/qemu-hosted.md).
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    #[command(flatten)]
    pub host: HostArgs,
}

/// The guest's parameters, one flag per entry of [`Config::PARAMS`].
#[derive(Debug, Clone)]
pub struct GuestParams(pub Config);

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl Args for GuestParams {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for p in Config::PARAMS {
            let mut arg = Arg::new(p.key).long(p.key).help(p.help).default_value(p.default).help_heading("Guest");
            arg = match p.kind {
                ParamKind::Enum(names) => arg.value_parser(PossibleValuesParser::new(names.iter().copied())),
                ParamKind::Int { min, max } => {
                    let key = p.key;
                    arg.value_name("N").value_parser(move |s: &str| -> Result<String, String> {
                        match parse_u64(s) {
                            Some(v) if (min..=max).contains(&v) => Ok(s.to_owned()),
                            _ => Err(format!("--{key} takes a whole number in {min}..={max}")),
                        }
                    })
                }
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for GuestParams {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut c = Config::new();
        for p in Config::PARAMS {
            if let Some(v) = m.get_one::<String>(p.key) {
                c.set(p.key, v).map_err(|e| {
                    clap::Error::raw(clap::error::ErrorKind::ValueValidation, leak(format!("--{}: {e}\n", p.key)))
                })?;
            }
        }
        Ok(GuestParams(c))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// The flags that reproduce a configuration (`--key value` for every parameter).
pub fn config_args(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for p in Config::PARAMS {
        if let Some(v) = config.get(p.key) {
            out.push(format!("--{}", p.key));
            out.push(v.to_string());
        }
    }
    out
}

/// What every binary does first: logging from `RUST_LOG` (warnings by
/// default), then its command line; a bad one is printed and ends the
/// process with status 2 (`--help` and `--version` with 0).
pub fn start<T: clap::Parser>() -> T {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match T::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit_code::USAGE } else { exit_code::SUCCESS });
        }
    }
}

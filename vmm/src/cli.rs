//! The command line. The guest's parameters (`--workload`, `--pte`, ...) are not
//! declared here: they come from the shared crate's table, so the flags, the boot
//! information and the reports cannot disagree.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use shared::config::{parse_u64, Config, ParamKind};

use crate::host::HostMode;

#[derive(Parser, Debug)]
#[command(
    name = "vmm",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("VMM_GIT_COMMIT"), ")"),
    about = "A minimal KVM VMM that boots a 32-bit PAE guest and acts as a Xen-style PV MMU",
    long_about = None,
    after_help = "Exit status: 0 success; 1 a guest check or a bench cell failed; 2 bad input; 3 a guest fault; \
                  4 the watchdog stopped the guest; 5 the host could not run the guest; 6 the guest broke the PV \
                  MMU contract; 130 interrupted. `vmm contract` follows xtf-runner instead (see vmm contract --help)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Boot the guest once and report how it went.
    Run(RunArgs),
    /// Run many `vmm run` commands (one QEMU-hosted boot for all of them).
    Batch(BatchArgs),
    /// Tell whether the local KVM can run a 32-bit PAE guest, and why not.
    Probe,
    /// Check what a run needs (the guest image, the local KVM, QEMU and the
    /// appliance's kernel), say where each was looked for, and how a run would
    /// go. Exit 0 when a run can go, 5 when something it needs is missing.
    Doctor,
    /// Run the PV MMU contract scenarios, each in its own VM (XTF's verdicts).
    ///
    /// Exit status as xtf-runner's, the worst verdict deciding: 0 SUCCESS, 3 SKIP,
    /// 4 ERROR (also: the host could not start), 5 FAILURE, 6 CRASH; 2 bad
    /// input or no scenario matches; 130 interrupted.
    Contract(ContractArgs),
    /// The 20 configurations of the 2002 highpte mail (nohighmem, 4GB, 4GB-highpte,
    /// 64GB, 64GB-highpte x UP/SMP x preempt on/off), each with a stress run.
    Matrix(MatrixArgs),
    /// Measure the host's alias check per pin for each --host-check, with lazy
    /// aliases in place (host work only: no guest is started).
    PinCost(PinCostArgs),
    /// The benchmark: every alias strategy (and with --full every sweep of the
    /// design notes), repeated, with tables, plots and verdicts.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `vmm completions bash > ~/.local/share/bash-completion/completions/vmm`;
    /// zsh: into a directory on `$fpath` as `_vmm`; fish: into
    /// `~/.config/fish/completions/vmm.fish`. `scripts/install.sh` installs all three.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (vmm.1 and one per command) into a directory.
    Man {
        /// Where to write them (created if missing).
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
    /// (Inside the QEMU-hosted appliance: run its jobs.)
    #[command(hide = true)]
    ApplianceInit { jobs: PathBuf },
}

/// The standard output's format of `vmm contract`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractFormat {
    Text,
    Tap,
    Junit,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ContractArgs {
    /// Run (or list) only the scenarios whose name contains this.
    pub filter: Option<String>,
    /// List the scenarios of the image and exit.
    #[arg(long)]
    pub list: bool,
    /// The kernel image holding the scenarios (default: the guest of this checkout).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// What the standard output carries: `text` (a line per scenario and a
    /// summary), or only TAP, JUnit XML or JSON lines, for a CI that reads
    /// them from a pipe (the summary then goes to the standard error).
    #[arg(long, value_enum, default_value_t = ContractFormat::Text)]
    pub format: ContractFormat,
    /// Write one JSON line per scenario to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the verdicts as TAP (version 13) to this file, a line as each ends.
    #[arg(long)]
    pub tap: Option<PathBuf>,
    /// Write the verdicts as JUnit XML to this file when the run ends (or stops).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Watchdog of each scenario's VM, in seconds (1 to a week).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS as u64))]
    pub vm_timeout: u64,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 3600.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// (Test only) run against a deliberately weakened host check (see --host-weaken).
    #[arg(long, hide = true)]
    pub weaken: Option<String>,
    /// How each VM's host finds direct writes to tables no read-only memslot
    /// covers (`vmm run --host-write-watch`): `memslot` shows what the suite
    /// misses without the dirty log.
    #[arg(long, value_parser = parse_write_watch)]
    pub host_write_watch: Option<String>,
    /// Echo each VM's console as it runs.
    #[arg(long)]
    pub verbose: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Args, Debug, Clone)]
pub struct MatrixArgs {
    /// The longer stress run (more tasks, pages and rounds) instead of the short one.
    #[arg(long)]
    pub full: bool,
    /// Also write one JSON line per cell to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Echo each VM's console as it runs.
    #[arg(long)]
    pub verbose: bool,
    /// Give up on the whole matrix after this many seconds.
    #[arg(long, default_value_t = 3600.0, value_parser = parse_seconds)]
    pub timeout: f64,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: Option<BenchCmd>,
    /// The built-in matrix to run.
    #[arg(long, value_enum, default_value = "default")]
    pub matrix: crate::bench::matrix::MatrixName,
    /// The full matrix: the default one and every sweep (same as --matrix full).
    #[arg(long, conflicts_with_all = ["matrix", "spec"])]
    pub full: bool,
    /// A matrix file instead of a built-in matrix: {"experiments": [...]}.
    #[arg(long, conflicts_with = "matrix")]
    pub spec: Option<PathBuf>,
    /// Keep only these experiments (by id; repeat or separate with commas), from
    /// the full matrix unless --matrix or --spec names another.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Repetitions of every cell (min, median and max are reported). Without
    /// it: 3, or more where an experiment asks for more (`--list` shows which;
    /// a cell it shares with others runs as often).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=crate::bench::matrix::MAX_REPS as i64))]
    pub reps: Option<u32>,
    /// Run only the i-th of n slices of the cells (1-based), e.g. 1/2; `auto`
    /// takes it from a Slurm array job or a Kubernetes Indexed Job
    /// (docs/usage.md).
    #[arg(long)]
    pub shard: Option<crate::bench::shard::Shard>,
    /// Where to write the results (default: results/<UTC timestamp>).
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the stopped sweep in this directory: run only its missing jobs.
    #[arg(long, conflicts_with_all = ["matrix", "full", "spec", "only", "reps", "shard"])]
    pub resume: Option<PathBuf>,
    /// Print the cells and the jobs left to run, and run nothing.
    #[arg(long)]
    pub list: bool,
    /// Measure this host's unit costs only (the calibration experiment) and
    /// write them to OUT/cost-table.json, for `vmm bench reprice`.
    #[arg(long, conflicts_with_all = ["matrix", "full", "spec", "only", "resume", "shard"])]
    pub calibrate: bool,
    /// Echo each VM's console as it runs.
    #[arg(long)]
    pub verbose: bool,
    /// Give up on the whole sweep after this many seconds (default: the sum of
    /// the jobs' watchdogs and an allowance).
    #[arg(long, value_parser = parse_seconds)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchCmd {
    /// Join the results of several slices (--shard) of one sweep into one report.
    Merge(MergeArgs),
    /// Price a finished sweep's counts with another host's unit costs (a table
    /// `vmm bench --calibrate` wrote): the ranking those costs give. Reads DIR
    /// only; writes a new sweep directory.
    Reprice(RepriceArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RepriceArgs {
    /// The finished sweep's results directory.
    pub dir: PathBuf,
    /// The unit-cost table (cost-table.json).
    #[arg(long)]
    pub cost_table: PathBuf,
    /// The directory of the repriced results and report.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// The slices' result directories.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The directory of the joined results and report.
    #[arg(long)]
    pub out: PathBuf,
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

/// The longest duration a flag takes: a week, in seconds.
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// A duration in seconds: finite, above zero, at most [`MAX_SECONDS`] (a
/// negative, NaN or enormous value made the watchdogs panic).
fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > MAX_SECONDS {
        return Err(format!("{s} seconds: a duration must be above 0 and at most {MAX_SECONDS} (a week)"));
    }
    Ok(v)
}

/// A size in bytes with an optional k/m/g suffix.
fn parse_size(s: &str) -> Result<u64, String> {
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

fn parse_write_watch(s: &str) -> Result<String, String> {
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
pub struct RunArgs {
    /// The kernel image (ELF32 i386); default: the guest built in this checkout.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
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

/// Writes `vmm.1` and a `vmm-<command>.1` per visible command into `dir`;
/// how many pages it wrote.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let root = Cli::command();
    let mut pages = vec![("vmm".to_owned(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("vmm-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name).version(root.get_version().unwrap_or_default().to_owned())));
    }
    for (name, cmd) in &pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_flags_come_from_the_table_and_round_trip() {
        let cli = Cli::try_parse_from(["vmm", "run", "--workload", "ipi-pingpong", "--iterations", "7"]).unwrap();
        let Cmd::Run(a) = cli.cmd else { panic!() };
        assert_eq!(a.guest.0.workload(), shared::config::Workload::IpiPingpong);
        assert_eq!(a.guest.0.iterations, 7);
        let mut argv = vec!["vmm".to_owned(), "run".to_owned()];
        argv.extend(config_args(&a.guest.0));
        let again = Cli::try_parse_from(argv).unwrap();
        let Cmd::Run(b) = again.cmd else { panic!() };
        assert_eq!(a.guest.0, b.guest.0);
    }

    #[test]
    fn every_duration_flag_refuses_what_is_no_duration() {
        let cmds: [&[&str]; 5] = [&["run"], &["batch", "j.json"], &["matrix"], &["contract"], &["bench"]];
        for cmd in cmds {
            for bad in ["-1", "0", "nan", "inf", "1e20", "1.8e19", "soon"] {
                let mut argv = vec!["vmm"];
                argv.extend(cmd);
                argv.extend([format!("--timeout={bad}").leak() as &str]);
                let e = Cli::try_parse_from(&argv).expect_err(&format!("{argv:?}"));
                assert_eq!(e.exit_code(), 2, "{argv:?}");
            }
            let mut argv = vec!["vmm"];
            argv.extend(cmd);
            argv.push("--timeout=2.5");
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?}");
        }
    }

    #[test]
    fn bad_guest_values_are_usage_errors() {
        let e = Cli::try_parse_from(["vmm", "run", "--workload", "nope"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["vmm", "run", "--vcpus", "9"]).unwrap_err();
        assert_eq!(e.exit_code(), crate::report::exit_code::USAGE);
        let e = Cli::try_parse_from(["vmm", "run", "--mem", "lots"]).unwrap_err();
        assert!(e.to_string().contains("not a size"));
    }
}

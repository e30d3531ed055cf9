//! `vmm bench`'s command line: its own arguments live with it, so that the
//! benchmark imports nothing from `cli` (which imports these).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use vmm::args::{parse_seconds, HostArgs};

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: Option<BenchCmd>,
    /// The built-in matrix to run.
    #[arg(long, value_enum, default_value = "default")]
    pub matrix: super::design::MatrixName,
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
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=super::design::MAX_REPS as i64))]
    pub reps: Option<u32>,
    /// Run only the i-th of n slices of the cells (1-based), e.g. 1/2; `auto`
    /// takes it from a Slurm array job or a Kubernetes Indexed Job
    /// (docs/usage.md).
    #[arg(long)]
    pub shard: Option<super::shard::Shard>,
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

//! `vmm bench`: the benchmark. Runs a matrix of named experiments, each cell a
//! fresh guest VM (`vmm run` through [`vmm::run::run_jobs_with`]: QEMU-hosted,
//! every job of the sweep shares one appliance boot), each repeated; writes the
//! results as they come (JSON lines), then CSV, a Markdown report with one
//! section per experiment, SVG plots, and a verdict for each claim of the design
//! notes. `--shard`, `--resume` and `vmm bench merge` split, continue and join
//! sweeps.

pub mod args;
pub mod claim;
pub mod design;
pub mod experiments;
pub mod figures;
pub mod highpte_matrix;
pub mod linux_cell;
pub mod model;
pub mod oracle;
pub mod plan;
pub mod plot;
pub mod render;
pub mod results;
pub mod shard;
pub mod stats;
pub mod store;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use args::{BenchArgs, BenchCmd, MergeArgs, RepriceArgs};
use design::{Cell, MatrixName};
use store::{Line, Sweep};
use vmm::platform::{appliance, paths};
use vmm::report::exit_code;
use vmm::run::{run_jobs_with, JobEvent, JobsOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Run(#[from] vmm::run::Error),
    #[error("experiment {experiment}, cell {cell:?}: {what}")]
    BadCell { experiment: String, cell: String, what: String },
    #[error("bad matrix: {0}")]
    BadSpec(String),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Json(PathBuf, serde_json::Error),
    #[error("{0} is not a bench results directory: {1}")]
    NotASweep(PathBuf, String),
    #[error("{0} already holds a sweep: continue it with --resume {0}, or choose another --out")]
    Exists(PathBuf),
    #[error("cannot merge: {0}")]
    Merge(String),
    #[error("cannot draw a plot: {0}")]
    Plot(String),
    #[error("a Linux cell cannot start: {0}")]
    Linux(#[from] vmm::platform::initramfs::Error),
}

impl Error {
    /// The exit code: what the user gave (a matrix file, a directory, an
    /// experiment name) is 2; what the host could not do is 5.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadCell { .. }
            | Error::BadSpec(_)
            | Error::Read(..)
            | Error::Json(..)
            | Error::NotASweep(..)
            | Error::Exists(_)
            | Error::Merge(_) => exit_code::USAGE,
            Error::Run(_) | Error::Write(..) | Error::Plot(_) | Error::Linux(_) => exit_code::HOST_ERROR,
        }
    }
}

pub fn bench_command(args: BenchArgs) -> Result<i32, Error> {
    match args.cmd {
        Some(BenchCmd::Merge(m)) => merge_command(m),
        Some(BenchCmd::Reprice(r)) => reprice_command(r),
        None => sweep_command(args),
    }
}

/// Identities of what runs: the vmm binary and the guest image.
fn ids() -> (String, String) {
    let own = PathBuf::from("/proc/self/exe");
    let exe = if own.is_file() { own } else { std::env::current_exe().unwrap_or_default() };
    (store::file_id(&exe), store::file_id(&paths::default_guest()))
}

/// The cells of a sweep (its slice only).
fn sweep_cells(sweep: &Sweep) -> Result<Vec<Cell>, Error> {
    let all = design::cells(&sweep.experiments)?;
    Ok(match sweep.shard {
        Some(s) => s.select(&all),
        None => all,
    })
}

fn new_sweep(args: &BenchArgs) -> Result<Sweep, Error> {
    let (name, experiments) = match &args.spec {
        Some(path) => (format!("spec {}", path.display()), design::load_spec(path)?),
        None => {
            // --only picks experiments of the full matrix unless a matrix is named
            // (the default matrix is one experiment of the full one).
            let m = if args.full || args.calibrate || (!args.only.is_empty() && args.matrix == MatrixName::Default) {
                MatrixName::Full
            } else {
                args.matrix
            };
            let name = match m {
                MatrixName::Default => "default",
                MatrixName::Full => "full",
                MatrixName::Smoke => "smoke",
                MatrixName::LinuxShort => "linux-short",
            };
            (name.to_owned(), experiments::builtin(m))
        }
    };
    let only = if args.calibrate { vec![experiments::CALIBRATION.to_owned()] } else { args.only.clone() };
    let mut experiments = design::select(experiments, &only)?;
    if args.reps.is_some() {
        // A count given on the command line is for every cell, none planned.
        for e in &mut experiments {
            e.reps = None;
            e.adapt = None;
        }
    }
    if args.shard.is_some() {
        // A slice sees only some of an experiment's cells (and maybe not the
        // calibration that prices its figure): it would plan apart from the
        // others, so a sliced sweep runs the fixed counts.
        for e in &mut experiments {
            e.adapt = None;
        }
    }
    let (vmm_id, guest_kernel) = ids();
    Ok(Sweep {
        schema: store::SCHEMA,
        full: name == "full",
        matrix: name,
        reps: args.reps.unwrap_or(design::DEFAULT_REPS),
        shard: args.shard,
        only,
        experiments,
        started_at: store::now_utc(),
        command: std::env::args().collect(),
        machine: store::Machine::this(),
        vmm_version: env!("CARGO_PKG_VERSION").to_owned(),
        vmm_id,
        guest_kernel,
    })
}

fn sweep_command(args: BenchArgs) -> Result<i32, Error> {
    let (sweep, dir) = match &args.resume {
        Some(dir) => (store::read_sweep(dir)?, dir.clone()),
        None => {
            let sweep = new_sweep(&args)?;
            let dir =
                args.out.clone().unwrap_or_else(|| PathBuf::from("results").join(sweep.started_at.replace(':', "-")));
            (sweep, dir)
        }
    };
    let cells = sweep_cells(&sweep)?;
    // Read only: the lines of a sweep are never rewritten (a line that does not
    // parse stays in the file, ignored).
    let read = if args.resume.is_some() { store::read_lines(&dir)? } else { store::Lines::default() };
    for r in &read.rejected {
        eprintln!("bench: warning: {}", r.warning());
    }
    let done = store::done(&read.lines);
    // Repetitions chosen from the spread, as far as the results so far tell (a
    // resumed sweep plans as the first run would have).
    let plans = plans_of(&sweep, &cells, &read.lines);
    let runs = sweep.jobs(&cells, &plan::planned(&cells, &plans));
    let all_runs = runs.len();
    let jobs: Vec<(usize, u32)> =
        runs.into_iter().filter(|(c, rep)| !done.contains(&(cells[*c].key.clone(), *rep))).collect();
    // Jobs of this sweep that ran and failed: run again.
    let again =
        jobs.iter().filter(|(c, rep)| read.lines.iter().any(|l| l.cell == cells[*c].key && l.rep == *rep)).count();
    let again_text = if again > 0 { format!(" ({again} failed before: run again)") } else { String::new() };

    if args.list {
        for e in &sweep.experiments {
            println!("{}: {} ({} cells)", e.id, e.title, e.cells.len());
        }
        for c in &cells {
            println!("cell {:<40} [{}]  vmm {}", c.label, c.experiments.join(", "), c.args.join(" "));
        }
        println!("{} cells x {}: {} jobs to run{again_text}", cells.len(), sweep.reps_text(), jobs.len());
        for e in sweep.experiments.iter().filter(|e| e.adapt.is_some()) {
            match plans.iter().find(|p| p.experiment == e.id && p.spread.is_some()) {
                Some(p) => println!("planned: {}", p.describe()),
                None => println!("{}: more repetitions may follow, chosen from the spread measured", e.id),
            }
        }
        return Ok(exit_code::SUCCESS);
    }

    if args.resume.is_none() {
        if dir.join(store::LINES_FILE).exists() || dir.join(store::SWEEP_FILE).exists() {
            return Err(Error::Exists(dir));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::Write(dir.clone(), e))?;
        store::write_sweep(&dir, &sweep)?;
    }
    if store::keep_aside(&dir, &read.rejected)? > 0 {
        eprintln!("bench: the lines that do not parse are kept in {}", dir.join(store::REJECTED_FILE).display());
    }
    // The identity of what runs now (a resumed sweep may run another build
    // than the one that started it): each line records its own.
    let (vmm_id, guest_kernel) = ids();
    let ids = store::Ids { vmm_version: env!("CARGO_PKG_VERSION"), vmm_id: &vmm_id, guest_kernel: &guest_kernel };
    let mut notes = Vec::new();
    if !jobs.is_empty()
        && (sweep.vmm_id != vmm_id || sweep.guest_kernel != guest_kernel || sweep.vmm_version != ids.vmm_version)
    {
        let note = format!(
            "the runs of this sweep from now on are of another build than its start (vmm {vmm_id}, guest {guest_kernel}; \
             sweep.json has vmm {}, guest {}): each run records its own",
            sweep.vmm_id, sweep.guest_kernel
        );
        eprintln!("bench: note: {note}");
        notes.push(note);
    }
    eprintln!(
        "bench: {} matrix, {} cells x {}{}: {} jobs to run{again_text}; results in {}",
        sweep.matrix,
        cells.len(),
        sweep.reps_text(),
        sweep.shard.map(|s| format!(" (shard {s})")).unwrap_or_default(),
        jobs.len(),
        dir.display()
    );
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Some(c) = cells.iter().find(|c| c.vcpus as usize > cores) {
        eprintln!(
            "bench: note: {} has {} vCPUs on this {cores}-core machine: overcommitted, vCPUs share cores",
            c.label, c.vcpus
        );
    }

    let mut interrupted = false;
    let mut run_error = None;
    if !jobs.is_empty() {
        appliance::stop_on_ctrl_c("bench:");
        match run(&cells, &jobs, &dir, &ids, &args) {
            Ok(()) => {}
            Err(_) if appliance::stop_requested() => interrupted = true,
            Err(e) => run_error = Some(e),
        }
    }
    // Then the repetitions the spread measured asks for (once: the plan is
    // made from the first repetitions).
    if !interrupted && run_error.is_none() && !sweep.experiments.iter().all(|e| e.adapt.is_none()) {
        let now = store::read_lines(&dir)?.lines;
        let plans = plans_of(&sweep, &cells, &now);
        let done = store::done(&now);
        let more: Vec<(usize, u32)> = sweep
            .jobs(&cells, &plan::planned(&cells, &plans))
            .into_iter()
            .filter(|j| !jobs.contains(j) && !done.contains(&(cells[j.0].key.clone(), j.1)))
            .collect();
        for p in plans.iter().filter(|p| p.reps > p.base || p.capped()) {
            eprintln!("bench: from the spread: {}", p.describe());
        }
        if !more.is_empty() {
            eprintln!("bench: {} more runs, as the spread asks", more.len());
            match run(&cells, &more, &dir, &ids, &args) {
                Ok(()) => {}
                Err(_) if appliance::stop_requested() => interrupted = true,
                Err(e) => run_error = Some(e),
            }
        }
    }

    let read = {
        let before = read.rejected;
        let now = store::read_lines(&dir)?;
        for r in now.rejected.iter().filter(|r| !before.contains(r)) {
            eprintln!("bench: warning: {}", r.warning());
        }
        store::keep_aside(&dir, &now.rejected)?;
        now
    };
    notes.extend(read.rejected.iter().map(store::Rejected::warning));
    let lines = read.lines;
    let outcome = write_outputs(&dir, &sweep, &cells, &lines, &notes, interrupted, None)?;
    if args.calibrate && !interrupted && !dir.join(model::TABLE_FILE).exists() {
        eprintln!("bench: the calibration gave no cost table (the report says why)");
        return Ok(exit_code::GUEST_FAILED.max(outcome));
    }
    if interrupted {
        eprintln!(
            "bench: interrupted; {} of {} runs of this sweep are done; continue with: vmm bench --resume {}",
            store::done(&lines).len(),
            all_runs,
            dir.display()
        );
        return Ok(appliance::INTERRUPTED);
    }
    if let Some(e) = run_error {
        eprintln!("bench: the sweep stopped early: {e}");
        eprintln!("bench: what finished is in {}; continue with: vmm bench --resume {}", dir.display(), dir.display());
        return Ok(exit_code::HOST_ERROR);
    }
    Ok(outcome)
}

/// The plans of the sweep's adapting experiments from these lines, with the
/// counts priced by the sweep's own calibration when it has run (the figure a
/// plan reads may be a modelled one).
fn plans_of(sweep: &Sweep, cells: &[Cell], lines: &[Line]) -> Vec<plan::Plan> {
    if sweep.experiments.iter().all(|e| e.adapt.is_none()) {
        return vec![];
    }
    let table = model::CostTable::from_results(&results::gather(cells, lines), &sweep.machine, &sweep.started_at);
    plan::plan(sweep, &results::gather_priced(cells, lines, table.as_ref()))
}

/// The jobs grouped by the appliance they need: QEMU-hosted, the appliance gets
/// a CPU per vCPU of its largest job (at least this machine's cores), so
/// overcommitted cells run in an appliance of their own rather than making
/// every other cell share cores with extra emulated CPUs.
pub fn appliance_groups(vcpus: &[u32], cores: u32) -> Vec<Vec<usize>> {
    let mut sizes: Vec<u32> = vcpus.iter().map(|v| (*v).max(cores)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes.iter().map(|s| (0..vcpus.len()).filter(|&i| vcpus[i].max(cores) == *s).collect()).collect()
}

/// Runs the jobs, appending each finished one to the JSONL; each line records
/// `ids`, the vmm and guest that run now.
fn run(cells: &[Cell], jobs: &[(usize, u32)], dir: &Path, ids: &store::Ids, args: &BenchArgs) -> Result<(), Error> {
    // Linux cells boot an initramfs made here, from the installed busybox
    // and highpte-probe (once per script).
    let mut made = Vec::new();
    for linux in jobs.iter().filter_map(|(c, _)| cells[*c].linux) {
        if !made.contains(&linux.initrd()) {
            linux.prepare()?;
            made.push(linux.initrd());
        }
    }
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let vcpus: Vec<u32> = jobs.iter().map(|(c, _)| cells[*c].vcpus).collect();
    let sweep_deadline = args.timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
    let mut out = store::Appender::open(dir)?;
    let tty = std::io::stderr().is_terminal();
    let bar = if tty { ProgressBar::new(jobs.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} left ~{eta} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut write_error = None;
    let mut started = Instant::now();
    let mut finished = 0usize;
    let mut result = Ok(());
    for group in appliance_groups(&vcpus, cores) {
        let job_args: Vec<Vec<String>> = group.iter().map(|&j| cells[jobs[j].0].args.clone()).collect();
        let budget: f64 = group.iter().map(|&j| f64::from(cells[jobs[j].0].timeout) + 30.0).sum::<f64>() + 300.0;
        let timeout = match sweep_deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).as_secs_f64().max(1.0),
            None => budget,
        };
        let opts = JobsOptions { host: args.host.clone(), timeout, retries: 2, verbose: args.verbose };
        let r = run_jobs_with(&job_args, &opts, |ev| match ev {
            JobEvent::Started { job } => {
                let job = group[job];
                let (c, rep) = jobs[job];
                started = Instant::now();
                bar.set_message(format!("{} (rep {}) [{}]", cells[c].label, rep + 1, cells[c].experiments.join(", ")));
            }
            JobEvent::Finished { job, outcome } => {
                let job = group[job];
                if appliance::stop_requested() {
                    return; // cut short by the stop: not a result
                }
                let (c, rep) = jobs[job];
                let line = Line::new(&cells[c], rep, outcome, ids, store::now_utc());
                if let Err(e) = out.push(&line) {
                    write_error.get_or_insert(e);
                }
                finished += 1;
                bar.inc(1);
                let what = match &line.failure {
                    None => "ok".to_owned(),
                    Some(why) => format!("FAILED: {why}"),
                };
                let msg = format!(
                    "bench: [{finished}/{}] {} (rep {}): {what} ({:.1} s)",
                    jobs.len(),
                    cells[c].label,
                    rep + 1,
                    started.elapsed().as_secs_f64()
                );
                if tty {
                    if line.failure.is_some() {
                        bar.println(msg);
                    }
                } else {
                    eprintln!("{msg}");
                }
            }
        });
        if let Err(e) = r {
            result = Err(Error::from(e));
            break;
        }
    }
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    result
}

/// Writes the CSV, the plots and the Markdown report from the JSONL, prints the
/// summary; returns the exit status the results call for.
fn write_outputs(
    dir: &Path,
    sweep: &Sweep,
    cells: &[Cell],
    lines: &[Line],
    notes: &[String],
    interrupted: bool,
    cost_table: Option<(&model::CostTable, &Path)>,
) -> Result<i32, Error> {
    // The counts are priced with the table given (`reprice`), or with the one
    // the sweep's own calibration cell measured, which is then written beside
    // the results.
    let own = match cost_table {
        Some(_) => None,
        None => model::CostTable::from_results(&results::gather(cells, lines), &sweep.machine, &sweep.started_at),
    };
    if let Some(t) = &own {
        let path = dir.join(model::TABLE_FILE);
        t.write(&path)?;
        eprintln!("bench: this host's unit costs are in {} (for vmm bench reprice)", path.display());
    }
    let table = match (cost_table, &own) {
        (Some((t, from)), _) => Some(render::Priced { table: t, source: from.display().to_string() }),
        (None, Some(t)) => Some(render::Priced { table: t, source: "this sweep's calibration cell".into() }),
        (None, None) => None,
    };
    let results = results::gather_priced(cells, lines, table.as_ref().map(|p| p.table));
    let verdicts = experiments::verdicts(&results, sweep.full);
    let plans = plan::plan(sweep, &results);
    let mut plots = Vec::new();
    let mut notes = notes.to_vec();
    for e in &sweep.experiments {
        if let Some(kind) = e.plot {
            let mine = render::cells_of(e, &results);
            match plot::draw(kind, &mine, dir) {
                Ok(Some(file)) => plots.push((e.id.clone(), file)),
                Ok(None) => {}
                Err(err) => notes.push(format!("{}: {err}", e.id)),
            }
        }
    }
    render::write_csv(dir, &results)?;
    let finished_at = store::now_utc();
    let inputs = render::Inputs {
        sweep,
        results: &results,
        verdicts: &verdicts,
        plans: &plans,
        plots: &plots,
        notes: &notes,
        finished_at: &finished_at,
        interrupted,
        priced: table.as_ref(),
    };
    let md = render::markdown(&inputs);
    let path = dir.join("report.md");
    std::fs::write(&path, md).map_err(|e| Error::Write(path.clone(), e))?;
    print!("{}", render::terminal(&inputs));
    println!("\nbench: report in {} (also bench.jsonl, bench.csv, summary.csv, plots)", path.display());
    let failed = results.iter().any(|r| !r.failures.is_empty());
    Ok(if failed { exit_code::GUEST_FAILED } else { exit_code::SUCCESS })
}

/// `vmm bench merge DIRS... --out DIR`: joins the slices of one sweep. Reads
/// its inputs only; writes only under `--out`.
fn merge_command(args: MergeArgs) -> Result<i32, Error> {
    let mut sweeps = Vec::new();
    let mut sets = Vec::new();
    let mut notes = Vec::new();
    let mut rejected = Vec::new();
    for d in &args.dirs {
        sweeps.push(store::read_sweep(d)?);
        let read = store::read_lines(d)?;
        for r in &read.rejected {
            eprintln!("bench: warning: {}", r.warning());
            notes.push(r.warning());
        }
        rejected.extend(read.rejected);
        sets.push(read.lines);
    }
    let Some(first) = sweeps.first().cloned() else {
        return Err(Error::Merge("no directories given".into()));
    };
    for (s, d) in sweeps.iter().zip(&args.dirs).skip(1) {
        if s.experiments != first.experiments || s.reps != first.reps {
            return Err(Error::Merge(format!(
                "{} ran another matrix ({} x {}) than {} ({} x {})",
                d.display(),
                s.matrix,
                s.reps_text(),
                args.dirs[0].display(),
                first.matrix,
                first.reps_text()
            )));
        }
        if s.guest_kernel != first.guest_kernel || s.vmm_id != first.vmm_id {
            notes.push(format!("{} ran another vmm or guest build than {}", d.display(), args.dirs[0].display()));
        }
    }
    let out = &args.out;
    if out.join(store::LINES_FILE).exists() || out.join(store::SWEEP_FILE).exists() {
        return Err(Error::Exists(out.clone()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Write(out.clone(), e))?;
    if store::keep_aside(out, &rejected)? > 0 {
        eprintln!("bench: the lines that do not parse are kept in {}", out.join(store::REJECTED_FILE).display());
    }
    let (lines, dup) = store::merge_lines(sets);
    if dup > 0 {
        notes.push(format!(
            "{dup} runs were recorded more than once (in more than one directory, or failed and run again): \
             a run that succeeded was kept over one that failed, else the first"
        ));
    }
    let shards: Vec<String> = sweeps.iter().map(|s| s.shard.map(|x| x.to_string()).unwrap_or("all".into())).collect();
    notes.push(format!(
        "merged from {} (shards {})",
        args.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        shards.join(", ")
    ));
    let mut sweep = first;
    sweep.shard = None;
    sweep.started_at = sweeps.iter().map(|s| s.started_at.clone()).min().unwrap_or_default();
    sweep.command = std::env::args().collect();
    store::write_sweep(out, &sweep)?;
    store::rewrite_lines(out, &lines)?;
    let cells = sweep_cells(&sweep)?;
    eprintln!("bench: merged {} runs of {} cells into {}", lines.len(), cells.len(), out.display());
    write_outputs(out, &sweep, &cells, &lines, &notes, false, None)
}

/// `vmm bench reprice DIR --cost-table FILE --out NEW`: the sweep in DIR, its
/// counts priced with FILE's unit costs. Reads DIR only; NEW gets a copy of the
/// sweep (so it can be reported again) and the repriced report.
fn reprice_command(args: RepriceArgs) -> Result<i32, Error> {
    let table = model::CostTable::read(&args.cost_table)?;
    let sweep = store::read_sweep(&args.dir)?;
    let read = store::read_lines(&args.dir)?;
    let mut notes = Vec::new();
    for r in &read.rejected {
        eprintln!("bench: warning: {}", r.warning());
        notes.push(r.warning());
    }
    let out = &args.out;
    if out.join(store::LINES_FILE).exists() || out.join(store::SWEEP_FILE).exists() {
        return Err(Error::Exists(out.clone()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Write(out.clone(), e))?;
    store::keep_aside(out, &read.rejected)?;
    store::write_sweep(out, &sweep)?;
    store::rewrite_lines(out, &read.lines)?;
    table.write(&out.join(model::TABLE_FILE))?;
    notes.push(format!("repriced from {} with the unit costs of {}", args.dir.display(), args.cost_table.display()));
    let cells = sweep_cells(&sweep)?;
    eprintln!("bench: {} runs of {} priced with {}", read.lines.len(), args.dir.display(), table.describe());
    write_outputs(out, &sweep, &cells, &read.lines, &notes, false, Some((&table, &args.cost_table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overcommitted_jobs_get_an_appliance_of_their_own() {
        assert_eq!(appliance_groups(&[2, 4, 1, 2, 4], 2), vec![vec![0, 2, 3], vec![1, 4]]);
        assert_eq!(appliance_groups(&[1, 1], 2), vec![vec![0, 1]]);
        assert!(appliance_groups(&[], 2).is_empty());
    }
}

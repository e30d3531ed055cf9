//! `vmm matrix`: the test matrix of the 2002 highpte mail (004 in the seeds):
//! nohighmem, 4GB, 4GB-highpte, 64GB, 64GB-highpte x UP/SMP x preempt on/off.
//! Every configuration boots and passes a stress run of every memory-management
//! workload (mm-all: fault, fork, mremap, walker and exec, contents checked) and
//! the vmap churn (contents checked), each its own VM. The cells are the
//! benchmark's `highpte-2002` experiment (`vmm bench --only highpte-2002`),
//! here short and checked run by run.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use vmm::args::{parse_seconds, HostArgs};

use crate::experiments::highpte_2002;
use vmm::platform::appliance;
use vmm::report::exit_code;
use vmm::run::{jobs_ended, run_jobs_with, write_json_line, Error, JobEvent, JobOutcome, JobsOptions};

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

/// One cell of the matrix, as its JSON line names it.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub memory: &'static str,
    pub smp: bool,
    pub preempt: bool,
    pub workload: &'static str,
    pub args: Vec<String>,
}

/// The cells: the benchmark's `highpte-2002` experiment (5 memory
/// configurations x UP/SMP x preempt on/off x 2 workloads), with the short
/// stress run unless `full` (the benchmark's).
pub fn cells(full: bool) -> Result<Vec<Cell>, crate::Error> {
    highpte_2002::cells(full)
        .into_iter()
        .map(|c| {
            Ok(Cell {
                memory: c.memory,
                smp: c.smp,
                preempt: c.preempt,
                workload: c.workload.as_str(),
                args: c.spec.resolve(highpte_2002::ID)?.args,
            })
        })
        .collect()
}

#[derive(Serialize)]
struct Line<'a> {
    cell: &'a Cell,
    passed: bool,
    #[serde(flatten)]
    outcome: &'a JobOutcome,
}

/// Whether a cell's run passed: exit 0 and the guest said every check passed.
pub fn passed(o: &JobOutcome) -> bool {
    o.exit_code == Some(0) && o.stdout.iter().any(|l| l.contains("all checks passed"))
}

pub fn matrix_command(args: MatrixArgs) -> Result<i32, Error> {
    let cells = cells(args.full).map_err(|e| Error::BuiltinCell(e.to_string()))?;
    let jobs: Vec<Vec<String>> = cells.iter().map(|c| c.args.clone()).collect();
    let opts = JobsOptions { host: args.host.clone(), timeout: args.timeout, retries: 2, verbose: args.verbose };
    // The JSON file opens before any VM runs; each run's row is printed and
    // its line written as it ends, so Ctrl-C keeps what finished.
    let mut json = match &args.json {
        Some(p) => Some((p.clone(), std::fs::File::create(p).map_err(|e| Error::Write(p.clone(), e))?)),
        None => None,
    };
    appliance::stop_on_ctrl_c("vmm: matrix");
    println!("{:<13} {:<4} {:<8} {:<11} {:<6} {:>8}", "memory", "cpus", "preempt", "workload", "result", "run ms");
    let (mut failed, mut finished) = (0, 0);
    let mut write_error = None;
    let ran = run_jobs_with(&jobs, &opts, |ev| {
        let JobEvent::Finished { job, outcome: o } = ev else { return };
        if appliance::stop_requested() {
            return;
        }
        let c = &cells[job];
        let ok = passed(o);
        failed += usize::from(!ok);
        finished += 1;
        let ms = o.report.as_ref().map_or(0.0, |r| r.timing.to_end_ms);
        println!(
            "{:<13} {:<4} {:<8} {:<11} {:<6} {:>8.0}",
            c.memory,
            if c.smp { "SMP" } else { "UP" },
            if c.preempt { "on" } else { "off" },
            c.workload,
            if ok { "PASS" } else { "FAIL" },
            ms
        );
        if let Some((path, f)) = json.as_mut() {
            if let Err(e) = write_json_line(f, &Line { cell: c, passed: ok, outcome: o }) {
                // Nowhere to keep results: stop the runs rather than go on.
                write_error.get_or_insert(Error::Write(path.clone(), e));
                appliance::request_stop();
            }
        }
    });
    if jobs_ended(ran, write_error)? {
        println!("matrix: interrupted: {} of {} runs passed, {finished} ran", finished - failed, cells.len());
        return Ok(appliance::INTERRUPTED);
    }
    println!("matrix: {} of {} runs passed (20 configurations x 2 workloads)", cells.len() - failed, cells.len());
    Ok(if failed == 0 { exit_code::SUCCESS } else { exit_code::GUEST_FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_has_the_twenty_configurations_of_the_mail() {
        let cells = cells(false).unwrap();
        assert_eq!(cells.len(), 40);
        let mut configs: Vec<(&str, bool, bool)> = cells.iter().map(|c| (c.memory, c.smp, c.preempt)).collect();
        configs.dedup();
        assert_eq!(configs.len(), 20);
        assert!(cells.iter().all(|c| c.args.windows(2).any(|w| w[0] == "--workload")));
    }
}

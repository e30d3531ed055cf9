//! The 2002 highpte mail's test matrix (seed 004): nohighmem, 4GB,
//! 4GB-highpte, 64GB and 64GB-highpte, UP and SMP, preempt on and off. Every
//! configuration boots and passes a stress run of every memory-management
//! workload (mm-all: fault, fork, mremap, walker and exec, contents checked)
//! and of the vmap churn (contents checked), each its own VM. `vmm matrix` runs
//! the same cells, short, as a check.

use shared::config::{parse_u64, PteVariant, Setting as S, Switch, Workload};
use shared::counters::Counter as C;

use super::cells::new_experiment;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{CellSpec, Experiment, Want::Mem, Want::Vcpus};
use crate::figures::{Figure, Host};

/// The experiment's id (`vmm bench --only highpte-2002`).
pub const ID: &str = "highpte-2002";

/// A memory configuration of the mail: RAM and where pagetables live.
pub const MEMORY: [(&str, &str, PteVariant); 5] = [
    ("nohighmem", "768m", PteVariant::Lowpte),
    ("4GB", "4g", PteVariant::Lowpte),
    ("4GB-highpte", "4g", PteVariant::Atomic),
    ("64GB", "64g", PteVariant::Lowpte),
    ("64GB-highpte", "64g", PteVariant::Atomic),
];

/// The workloads each configuration runs, each its own VM.
pub const WORKLOADS: [Workload; 2] = [Workload::MmAll, Workload::VmapChurn];

/// One cell of the mail's matrix.
#[derive(Clone, Debug)]
pub struct MailCell {
    pub memory: &'static str,
    pub smp: bool,
    pub preempt: bool,
    pub workload: Workload,
    pub spec: CellSpec,
}

/// The cells: 5 memory configurations x UP/SMP x preempt on/off x 2
/// workloads. `full`: the long stress run (the benchmark's); otherwise the
/// short one that fits CI (`vmm matrix`).
pub fn cells(full: bool) -> Vec<MailCell> {
    let (tasks, pages, rounds, live) = if full { (16, 64, 8, 64) } else { (4, 16, 2, 16) };
    let mut out = Vec::new();
    for (memory, mem, pte) in MEMORY {
        for smp in [false, true] {
            for preempt in [true, false] {
                for workload in WORKLOADS {
                    let sizes: &[S] = if workload == Workload::MmAll {
                        &[S::Tasks(tasks), S::Pages(pages), S::Rounds(rounds)]
                    } else {
                        &[S::VmapLive(live)]
                    };
                    let mut params = vec![
                        S::Workload(workload),
                        S::Pte(pte),
                        S::Preempt(if preempt { Switch::On } else { Switch::Off }),
                    ];
                    params.extend_from_slice(sizes);
                    let label = format!(
                        "{memory}, {}, preempt {}, {workload}",
                        if smp { "SMP" } else { "UP" },
                        if preempt { "on" } else { "off" }
                    );
                    let spec = CellSpec::new(label, if smp { 2 } else { 1 }, mem, 300, &params);
                    out.push(MailCell { memory, smp, preempt, workload, spec });
                }
            }
        }
    }
    out
}

pub(super) fn experiment() -> Experiment {
    let mut e = new_experiment(
        ID,
        "The 2002 highpte mail's test matrix",
        "nohighmem, 4GB, 4GB-highpte, 64GB and 64GB-highpte on UP and SMP with preempt on and off: does every \
         configuration boot and pass a stress run of mm-all and of the vmap churn (contents checked)? Where did \
         its pagetables live?",
        cells(true).into_iter().map(|c| c.spec).collect(),
        &[
            Figure::Count(C::PtPagesLowmem),
            Figure::Count(C::PtPagesHighmem),
            Figure::Count(C::PageFaults),
            Figure::Count(C::Forks),
            Figure::Host(Host::RunMs),
        ],
    );
    e.claims = vec![Claim::Highpte2002];
    // A check that passes or fails: one run of each configuration.
    e.reps = Some(1);
    e
}

/// Every configuration passed in every repetition it ran, and mm-all's
/// pagetables lived where the configuration says: in highmem with highpte,
/// never without.
pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut misplaced = Vec::new();
    let mut missing = None;
    let cells = cells(true);
    for c in &cells {
        let mem = parse_u64(&c.spec.mem).unwrap_or(0);
        let want: Vec<_> = c.spec.params.iter().map(|s| is(*s)).chain([Vcpus(c.spec.vcpus), Mem(mem)]).collect();
        let r = match l.cell(&want, Some(ID)) {
            Ok(r) => r,
            Err(Missing::Failed(why)) => {
                failed.push(why);
                continue;
            }
            Err(m) => {
                missing.get_or_insert(m);
                continue;
            }
        };
        // Every repetition must pass, not only one.
        if !r.failures.is_empty() {
            failed.push(format!(
                "{} ({})",
                r.cell.label,
                r.failures.first().map(|(_, w)| w.as_str()).unwrap_or("failed")
            ));
            continue;
        }
        passed += 1;
        if c.workload == Workload::MmAll {
            let high = r.median(C::PtPagesHighmem).unwrap_or(0.0);
            let highpte = c.spec.params.contains(&S::Pte(PteVariant::Atomic));
            if highpte != (high > 0.0) {
                misplaced.push(format!("{}: {high:.0} pte pages in highmem", r.cell.label));
            }
        }
    }
    if passed == 0 && failed.is_empty() {
        return Err(missing.unwrap_or(Missing::NotRun));
    }
    let mut text = format!("{passed} of {} runs passed (20 configurations x 2 workloads)", cells.len());
    if !failed.is_empty() {
        text += &format!("; failed: {}", failed.join("; "));
    }
    if misplaced.is_empty() {
        text += "; mm-all's pagetables were in highmem exactly in the highpte configurations";
    } else {
        text += &format!("; pagetables not where the configuration puts them: {}", misplaced.join("; "));
    }
    let complete = passed == cells.len();
    Ok((
        match (failed.is_empty() && misplaced.is_empty(), complete) {
            (true, true) => Status::Confirmed,
            (true, false) => Status::Measured,
            (false, _) => Status::Refuted,
        },
        text,
    ))
}

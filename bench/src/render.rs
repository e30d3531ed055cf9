//! The sweep's outputs: the Markdown report (one section per experiment), CSV
//! (one row per cell and repetition; and one per cell and figure), and the
//! summary printed to the terminal.

use std::fmt::Write as _;
use std::path::Path;

use shared::counters::Counter as C;

use super::claim::Claim;
use super::design::Experiment;
use super::experiments::Verdict;
use super::figures::{Derived as D, Exits, Figure, GLOSSARY, OVER_ORACLE};
use super::plan::Plan;
use super::results::CellResult;
use super::stats::Stat;
use super::store::Sweep;
use super::Error;

/// A number for a table: short, with the precision that matters.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if a >= 1e7 {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `median [min-max]` (just the median when they are all equal).
pub fn stat_text(s: &Stat) -> String {
    if s.min == s.max {
        num(s.median)
    } else {
        format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max))
    }
}

fn status_text(c: &CellResult, sweep: &Sweep, plans: &[Plan]) -> String {
    let planned = super::plan::planned(std::slice::from_ref(&c.cell), plans);
    let reps = sweep.cell_reps(&c.cell).max(planned.get(&c.cell.key).copied().unwrap_or(0));
    let ok = c.reps.len();
    let failed = c.failures.len();
    if ok == 0 && failed == 0 {
        "not run".into()
    } else if failed == 0 {
        format!("ok {ok}/{reps}")
    } else if ok == 0 {
        format!("FAILED {failed}/{reps}")
    } else {
        format!("ok {ok}, failed {failed}")
    }
}

/// The cells of an experiment, in its order.
pub fn cells_of<'a>(e: &Experiment, results: &'a [CellResult]) -> Vec<&'a CellResult> {
    e.cells
        .iter()
        .filter_map(|spec| spec.resolve(&e.id).ok())
        .filter_map(|c| results.iter().find(|r| r.cell.key == c.key))
        .collect()
}

/// Everything the report needs.
pub struct Inputs<'a> {
    pub sweep: &'a Sweep,
    pub results: &'a [CellResult],
    pub verdicts: &'a [Verdict],
    /// The repetitions chosen from the spread.
    pub plans: &'a [Plan],
    /// Plot file per experiment id.
    pub plots: &'a [(String, String)],
    pub notes: &'a [String],
    pub finished_at: &'a str,
    pub interrupted: bool,
    /// The cost table the counts were priced with, if any.
    pub priced: Option<&'a Priced<'a>>,
}

/// A cost table and where it came from.
pub struct Priced<'a> {
    pub table: &'a super::model::CostTable,
    /// "this sweep's calibration cell" or the file given to `reprice`.
    pub source: String,
}

fn md_table(e: &Experiment, cells: &[&CellResult], sweep: &Sweep, plans: &[Plan]) -> String {
    let mut s = String::new();
    let _ = write!(s, "| cell | runs |");
    for c in &e.columns {
        let _ = write!(s, " {c} |");
    }
    let _ = write!(s, "\n|---|---|");
    for _ in &e.columns {
        s += "---:|";
    }
    s.push('\n');
    for c in cells {
        let _ = write!(s, "| {} | {} |", c.cell.label, status_text(c, sweep, plans));
        for col in &e.columns {
            let v = c.stats.get(col).map(stat_text).unwrap_or_else(|| "–".into());
            let _ = write!(s, " {v} |");
        }
        s.push('\n');
    }
    // What the ranges are, for the repetitions the first cell has.
    if let Some(st) = cells.iter().find_map(|c| e.columns.iter().find_map(|col| c.stats.get(col))) {
        let _ = writeln!(
            s,
            "\nMedians [min–max]: at {} repetitions min–max is a {} of the median.",
            st.n,
            st.interval_label()
        );
    }
    s
}

fn host_modes(results: &[CellResult]) -> String {
    let mut modes: Vec<&str> = results.iter().flat_map(|r| r.host_modes.iter().map(String::as_str)).collect();
    modes.sort_unstable();
    modes.dedup();
    if modes.is_empty() {
        return "none ran".into();
    }
    modes
        .iter()
        .map(|m| match *m {
            "qemu" => "qemu (QEMU-hosted: TCG appliance with a nested KVM; cycle figures are the emulated TSC's)",
            "local" => "local (this machine's KVM)",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Markdown report.
pub fn markdown(i: &Inputs) -> String {
    let sw = i.sweep;
    let mut s = String::new();
    if sw.only.is_empty() {
        let _ = writeln!(s, "# vmm bench: the {} matrix\n", sw.matrix);
    } else {
        let _ = writeln!(s, "# vmm bench: {} of the {} matrix\n", sw.only.join(", "), sw.matrix);
    }
    if i.interrupted {
        let _ = writeln!(s, "**Interrupted: this report holds the jobs finished before the stop; `vmm bench --resume` runs the rest.**\n");
    }
    let total_cells = i.results.len();
    let total_runs: usize = i.results.iter().map(|r| sw.cell_reps(&r.cell) as usize).sum();
    let ok_jobs: usize = i.results.iter().map(|r| r.reps.len()).sum();
    let failed_jobs: usize = i.results.iter().map(|r| r.failures.len()).sum();
    let _ = writeln!(s, "- command: `{}`", sw.command.join(" "));
    let _ = writeln!(s, "- started {}, report written {}", sw.started_at, i.finished_at);
    let _ = writeln!(
        s,
        "- machine: {} cores, {}, {} MiB RAM; host mode: {}",
        sw.machine.cores,
        if sw.machine.cpu.is_empty() { "unknown CPU" } else { &sw.machine.cpu },
        sw.machine.mem_mib,
        host_modes(i.results)
    );
    let _ = writeln!(s, "- vmm {} ({}), guest kernel {}", sw.vmm_version, sw.vmm_id, sw.guest_kernel);
    let _ = writeln!(
        s,
        "- {} cells x {}{}: {} runs succeeded, {} failed, {} not run; figures are `median [min–max]` over the repetitions that succeeded",
        total_cells,
        sw.reps_text(),
        sw.shard.map(|x| format!(" (shard {x})")).unwrap_or_default(),
        ok_jobs,
        failed_jobs,
        total_runs.saturating_sub(ok_jobs + failed_jobs)
    );
    if i.results.iter().any(|r| r.cell.vcpus as usize > sw.machine.cores) {
        let _ = writeln!(
            s,
            "- **overcommitted**: cells with more vCPUs than this machine's {} cores share cores between vCPUs",
            sw.machine.cores
        );
    }
    s.push('\n');

    let _ = writeln!(s, "## Verdicts\n");
    let _ = writeln!(
        s,
        "A verdict on a difference rests on an interval of that difference: a 95% percentile-bootstrap \
         interval (4000 resamples, fixed seed) of the ratio of two cells' medians (claims 1, 2, 5, 6, 7, the \
         history and batching), or of a ratio of such ratios (claim 3: a variant's 2-vCPU slowdown over \
         lowpte's), compared with the claim's threshold; an interval that holds the threshold is within the \
         noise and decides nothing. Claim 7's rare-against-frequent verdict rests on the counts priced by the \
         calibrated model, the measured cycles' interval beside it (without a calibration, the cycles decide). \
         Counts that do not vary (claim 4's tasks, claim 2's sleeps and wraps) are compared as they are.\n"
    );
    for v in i.verdicts {
        let _ = writeln!(s, "- **{}** ({}): {}: {}", v.claim, v.claim.text(), v.status, v.text);
    }
    s.push('\n');

    spread_table(&mut s, i.results);
    if !i.plans.is_empty() {
        let _ = writeln!(
            s,
            "## Repetitions chosen from the spread\n\nEach of these experiments first ran its cells its own number \
             of times (the sweep's {} unless it asks otherwise), then as many more as the spread of the figure its \
             verdict rests on asks for, to resolve the difference named, up to its cap:\n",
            i.sweep.reps
        );
        for p in i.plans {
            let _ = writeln!(s, "- {}", p.describe());
        }
        s.push('\n');
    }

    let warnings: Vec<&String> = i.results.iter().flat_map(|r| r.warnings.iter()).collect();
    if !warnings.is_empty() || !i.notes.is_empty() {
        let _ = writeln!(s, "## Warnings\n");
        for w in warnings {
            let _ = writeln!(s, "- WARNING: consistency check failed: {w}");
        }
        for n in i.notes {
            let _ = writeln!(s, "- note: {n}");
        }
        s.push('\n');
    }

    for e in &sw.experiments {
        let cells = cells_of(e, i.results);
        let _ = writeln!(s, "## {}\n", e.title);
        let _ = writeln!(s, "Experiment `{}`. {}\n", e.id, e.question);
        if let Some(n) = &e.note {
            let _ = writeln!(s, "Note: {n}\n");
        }
        if let Some(c) = cells.first() {
            let _ = writeln!(s, "Command of the first cell: `vmm {}`\n", c.cell.args.join(" "));
        }
        s += &md_table(e, &cells, sw, i.plans);
        s.push('\n');
        if let Some((_, file)) = i.plots.iter().find(|(id, _)| id == &e.id) {
            let _ = writeln!(s, "![{}]({file})\n", e.title);
        } else if e.plot.is_some() {
            let _ = writeln!(s, "(No plot: no cell of this experiment measured its figures.)\n");
        }
        for claim in &e.claims {
            if let Some(v) = i.verdicts.iter().find(|v| v.claim == *claim) {
                let _ = writeln!(s, "Verdict: {v}\n");
            }
        }
        let failures: Vec<String> = cells
            .iter()
            .flat_map(|c| {
                c.failures.iter().map(move |(rep, why)| format!("- {} (rep {}): {why}", c.cell.label, rep + 1))
            })
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(s, "Failed runs:\n\n{}\n", failures.join("\n"));
        }
    }

    let _ = writeln!(s, "## The oracle\n");
    let _ = writeln!(
        s,
        "The oracle is a cell that runs: `--alias oracle`, beside the strategies in every experiment that compares \
         them, on the same workload, configuration and seed. It knows each frame's lazy aliases exactly (the \
         per-frame counts the vmap layer keeps) and runs `vm_unmap_aliases()` only before a pin whose frame has a \
         present lazy alias PTE (`--vmap lazy-ptes`): the one kind the host refuses. Under `--vmap lazy-tlb` an \
         alias is only a stale TLB entry, which this host revokes itself when the frame becomes a pagetable (T3), \
         so the oracle purges for none there. It takes the frames the allocator gives: clean-pool, which picks \
         unaliased frames and purges once per refill, can make fewer purges than the oracle.\n\n\
         Each repetition of a strategy is compared with the oracle cell's median: `ratio_to_oracle` (cycles per \
         pin), `workload_ratio_to_oracle` (the whole workload, every vCPU), `excess_cycles_per_pin`, and the counts \
         `<count>_over_oracle` ({}). Counts decide; cycles inform. `ratio_to_always_flush` divides each \
         repetition's cycles per pin by the always-flush cell's median.\n",
        OVER_ORACLE.map(|(count, _)| count.name()).join(", ")
    );
    let _ = writeln!(s, "## The cost model\n");
    match i.priced {
        Some(p) => {
            let _ = writeln!(
                s,
                "Every run's counts priced by unit costs from {} ({}):\n\n```text\n{}```\n\n\
                 The calibration times each event alone in the benchmark's VM shape (2 vCPUs), with the other \
                 vCPU busy with plain work; a workload's other vCPU is busy too, but exits now and then, so it \
                 answers an IPI sooner. Where `model_explains` is far from 1, the counts priced do not account \
                 for the measured cycles: above 1, the units overprice (a flush that waited less than the \
                 calibration's); below, the workload met what the calibration did not (more vCPUs sharing one \
                 TCG thread, fuller tables, longer lazy lists). The model then ranks the strategies by what their \
                 counts would cost on the calibrated host, not by what they cost here.\n",
                p.source,
                p.table.describe(),
                super::model::FORMULA
            );
        }
        None => {
            let _ = writeln!(
                s,
                "The counts are not priced: no table was given, and {} `vmm bench reprice DIR --cost-table FILE \
                 --out NEW` prices them.\n",
                match i.results.iter().find(|r| r.cell.config.get("workload").is_some_and(|w| w == "calibrate")) {
                    None => "no calibration cell ran in this sweep (`--only` left it out).".to_owned(),
                    Some(c) if c.reps.is_empty() => format!(
                        "the calibration cell failed ({}).",
                        c.failures.first().map(|f| f.1.as_str()).unwrap_or("no run succeeded")
                    ),
                    Some(_) => "the calibration cell measured no complete table (every unit, the trapped pin's \
                                included, needs --alias host-trap)."
                        .to_owned(),
                }
            );
        }
    }
    let _ = writeln!(s, "## Figures\n");
    for g in GLOSSARY {
        let _ = writeln!(s, "- `{}`: {}", g.name, g.what);
    }
    let _ =
        writeln!(s, "- any other name: the guest counter of that name, summed over the vCPUs (shared/src/counters.rs)");
    let _ = writeln!(
        s,
        "\nThe claims (design notes section 4, the Linux history, and the PV MMU's batching), one verdict each:\n"
    );
    for claim in Claim::ALL {
        let _ = writeln!(s, "- {claim}: {}", claim.text());
    }
    s
}

/// The terminal summary: each experiment's table (medians of its first columns)
/// and the verdicts.
pub fn terminal(i: &Inputs) -> String {
    let mut s = String::new();
    for e in &i.sweep.experiments {
        let cells = cells_of(e, i.results);
        let cols: Vec<&'static str> = e.columns.iter().take(6).map(|c| c.name()).collect();
        let label_w = cells.iter().map(|c| c.cell.label.chars().count()).max().unwrap_or(4).max(4);
        let _ = writeln!(s, "\n== {} ==", e.title);
        if let Some(n) = &e.note {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = write!(s, "{:<label_w$}  {:<14}", "cell", "runs");
        let widths: Vec<usize> = cols.iter().map(|c| c.len().max(10)).collect();
        for (c, w) in cols.iter().zip(&widths) {
            let _ = write!(s, " {c:>w$}");
        }
        s.push('\n');
        for c in &cells {
            let _ = write!(s, "{:<label_w$}  {:<14}", c.cell.label, status_text(c, i.sweep, i.plans));
            for (col, w) in e.columns.iter().zip(&widths) {
                let v = c.stats.get(col).map(|st| num(st.median)).unwrap_or_else(|| "-".into());
                let _ = write!(s, " {v:>w$}");
            }
            s.push('\n');
        }
        for c in &cells {
            if let Some((rep, why)) = c.failures.first() {
                let _ = writeln!(s, "  {} failed (rep {}): {why}", c.cell.label, rep + 1);
            }
        }
    }
    let _ = writeln!(s, "\n== verdicts ==");
    for v in i.verdicts {
        let _ = writeln!(s, "{v}");
    }
    for w in i.results.iter().flat_map(|r| r.warnings.iter()) {
        let _ = writeln!(s, "WARNING: consistency check failed: {w}");
    }
    s
}

fn csv_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Write(path.to_owned(), std::io::Error::other(e.to_string()))
}

/// `bench.csv`: one row per cell and repetition, the configuration then every
/// figure; `summary.csv`: one row per cell and figure with n, min, median, max.
pub fn write_csv(dir: &Path, results: &[CellResult]) -> Result<(), Error> {
    let path = dir.join("bench.csv");
    // Columns and rows by figure name, as readers look them up.
    let mut figs: Vec<&Figure> = results.iter().flat_map(|r| r.reps.iter().flat_map(|(_, f)| f.keys())).collect();
    figs.sort_by_key(|f| f.name());
    figs.dedup();
    let keys: Vec<&String> = results.first().map(|r| r.cell.config.keys().collect()).unwrap_or_default();
    let mut w = csv::Writer::from_path(&path).map_err(|e| csv_err(&path, e))?;
    let mut header: Vec<String> =
        ["cell", "label", "experiments", "rep", "ok", "failure", "vcpus", "mem"].map(String::from).to_vec();
    header.extend(keys.iter().map(|k| k.to_string()));
    header.extend(figs.iter().map(|f| f.to_string()));
    w.write_record(&header).map_err(|e| csv_err(&path, e))?;
    for r in results {
        let mut rows: Vec<(u32, Option<&String>, Option<&super::figures::Figures>)> =
            r.reps.iter().map(|(rep, f)| (*rep, None, Some(f))).collect();
        rows.extend(r.failures.iter().map(|(rep, why)| (*rep, Some(why), None)));
        rows.sort_by_key(|x| x.0);
        for (rep, why, f) in rows {
            let mut rec: Vec<String> = vec![
                r.cell.key.clone(),
                r.cell.label.clone(),
                r.cell.experiments.join(" "),
                rep.to_string(),
                f.is_some().to_string(),
                why.cloned().unwrap_or_default(),
                r.cell.vcpus.to_string(),
                r.cell.mem.clone(),
            ];
            rec.extend(keys.iter().map(|k| r.cell.config.get(*k).cloned().unwrap_or_default()));
            rec.extend(figs.iter().map(|n| f.and_then(|f| f.get(*n)).map(|v| v.to_string()).unwrap_or_default()));
            w.write_record(&rec).map_err(|e| csv_err(&path, e))?;
        }
    }
    w.flush().map_err(|e| Error::Write(path.clone(), e))?;

    let path = dir.join("summary.csv");
    let mut w = csv::Writer::from_path(&path).map_err(|e| csv_err(&path, e))?;
    w.write_record(["cell", "label", "experiments", "figure", "n", "min", "median", "max"])
        .map_err(|e| csv_err(&path, e))?;
    for r in results {
        let mut stats: Vec<(&Figure, &Stat)> = r.stats.iter().collect();
        stats.sort_by_key(|(f, _)| f.name());
        for (name, st) in stats {
            w.write_record([
                r.cell.key.as_str(),
                r.cell.label.as_str(),
                &r.cell.experiments.join(" "),
                name.name(),
                &st.n.to_string(),
                &st.min.to_string(),
                &st.median.to_string(),
                &st.max.to_string(),
            ])
            .map_err(|e| csv_err(&path, e))?;
        }
    }
    w.flush().map_err(|e| Error::Write(path, e))
}

/// The counts a verdict rests on, and cycles per pin, as they vary between
/// repetitions: the median absolute deviation over the median, per cell that
/// pinned tables. Counts that barely move decide; cycles inform.
fn spread_table(s: &mut String, results: &[CellResult]) {
    const FIGS: [Figure; 6] = [
        Figure::Count(C::VmUnmapAliases),
        Figure::Count(C::VmUnmapAliasesFlushed),
        Figure::Count(C::TlbFlushGlobal),
        Figure::Count(C::IpisSent),
        Figure::Exits(Exits::Hypercall),
        Figure::Derived(D::CyclesPerPin),
    ];
    let rows: Vec<&CellResult> = results
        .iter()
        .filter(|r| r.reps.len() > 1 && r.reps.iter().any(|(_, f)| f.contains_key(&Figure::from(C::PtPins))))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## How much the counts vary between repetitions
"
    );
    let _ = writeln!(
        s,
        "Median absolute deviation over the median, in percent (0: every repetition the same), per cell that \
         pinned pagetables. The last column plans the next run: about how many repetitions of this cell and \
         another as noisy bring the 95% interval of the ratio of their cycles per pin to ±5%.\n"
    );
    let _ = writeln!(s, "| cell | runs | {} | repetitions for ±5% in cycles |", FIGS.map(|f| f.name()).join(" | "));
    let _ = writeln!(s, "|---|---:|{}---:|", "---:|".repeat(FIGS.len()));
    for r in rows {
        let cols: Vec<String> = FIGS
            .iter()
            .map(|f| {
                let v: Vec<f64> = r.reps.iter().filter_map(|(_, x)| x.get(f).copied()).collect();
                match super::stats::relative_spread(&v) {
                    Some(x) => format!("{:.1}%", x * 100.0),
                    None => "-".into(),
                }
            })
            .collect();
        let cycles: Vec<f64> =
            r.reps.iter().filter_map(|(_, x)| x.get(&Figure::from(D::CyclesPerPin)).copied()).collect();
        let plan = super::stats::relative_spread(&cycles)
            .and_then(|sp| super::stats::reps_to_resolve(sp, 0.05))
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(s, "| {} | {} | {} | {plan} |", r.cell.label, r.reps.len(), cols.join(" | "));
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ranges() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(2.345), "2.35");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(12345678.0), "1.235e7");
        assert_eq!(stat_text(&Stat::exact(1.0, 2.0, 3.0, 3)), "2.00 [1.00–3.00]");
        assert_eq!(stat_text(&Stat::exact(5.0, 5.0, 5.0, 1)), "5.00");
    }

    #[test]
    fn a_sweep_of_some_experiments_says_which() {
        let mut sw = Sweep {
            schema: 1,
            matrix: "full".into(),
            full: true,
            reps: 3,
            shard: None,
            only: vec![],
            experiments: vec![],
            started_at: String::new(),
            command: vec![],
            machine: Default::default(),
            vmm_version: String::new(),
            vmm_id: String::new(),
            guest_kernel: String::new(),
        };
        let md = |sw: &Sweep| {
            markdown(&Inputs {
                sweep: sw,
                results: &[],
                verdicts: &[],
                plans: &[],
                plots: &[],
                notes: &[],
                finished_at: "",
                interrupted: false,
                priced: None,
            })
        };
        assert!(md(&sw).starts_with("# vmm bench: the full matrix\n"));
        sw.only = vec!["calibration".into()];
        assert!(md(&sw).starts_with("# vmm bench: calibration of the full matrix\n"), "{}", md(&sw));
    }
}

//! Repetitions chosen from the spread measured. An experiment that names the
//! figure its verdict rests on ([`Adapt`]) first runs its cells the sweep's
//! number of times; then, from how much that figure varied between those
//! repetitions, as many more as resolve the difference it asks for, up to its
//! cap. One that needs more than its cap says so: it may not decide.
//!
//! The plan is a function of the results so far, so a resumed sweep plans the
//! same way.

use std::collections::BTreeMap;

use super::design::{Adapt, Cell};
use super::figures::Figure;
use super::results::CellResult;
use super::stats::{relative_spread, reps_to_resolve};
use super::store::Sweep;

/// One experiment's plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub experiment: String,
    pub adapt: Adapt,
    /// Repetitions before the plan.
    pub base: u32,
    /// The largest relative spread (median absolute deviation over the
    /// median) of the figure among the experiment's cells, once every cell has
    /// its base repetitions; None before, or when the figure is not measured.
    pub spread: Option<f64>,
    /// Repetitions that resolve `resolve_pct` at that spread.
    pub need: Option<usize>,
    /// What its cells run: `need` within base..=max_reps.
    pub reps: u32,
}

impl Plan {
    /// Whether it needs more repetitions than its cap allows.
    pub fn capped(&self) -> bool {
        self.need.is_some_and(|n| n > self.adapt.max_reps as usize)
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        let a = &self.adapt;
        match (self.spread, self.need) {
            (Some(s), Some(n)) => format!(
                "{}: {} varied by {:.1}% between repetitions; ±{}% needs about {n}: {} repetition{}{}",
                self.experiment,
                a.figure,
                s * 100.0,
                a.resolve_pct,
                self.reps,
                if self.reps == 1 { "" } else { "s" },
                if self.capped() {
                    format!(" (its cap: it cannot resolve ±{}% and may not decide)", a.resolve_pct)
                } else {
                    String::new()
                }
            ),
            _ => format!(
                "{}: {} not measured in every cell's {} repetitions: {} run, none planned",
                self.experiment, a.figure, self.base, self.base
            ),
        }
    }
}

/// The plan of every adapting experiment of the sweep, from the results of
/// its cells so far.
pub fn plan(sweep: &Sweep, results: &[CellResult]) -> Vec<Plan> {
    sweep
        .experiments
        .iter()
        .filter_map(|e| {
            let adapt = e.adapt?;
            let base = e.reps.unwrap_or(sweep.reps);
            let mine: Vec<&CellResult> =
                results.iter().filter(|r| r.cell.experiments.iter().any(|x| x == &e.id)).collect();
            let spread = spread_of(&mine, adapt.figure, base);
            let need = spread.and_then(|s| reps_to_resolve(s, f64::from(adapt.resolve_pct) / 100.0));
            let reps = need.map_or(base, |n| (n.min(adapt.max_reps as usize) as u32).max(base));
            Some(Plan { experiment: e.id.clone(), adapt, base, spread, need, reps })
        })
        .collect()
}

/// The largest spread of `figure` among the cells over their first `base`
/// repetitions (the plan is made from those, so that the report, read after
/// the planned ones ran, says what was decided), once each cell that has the
/// figure has them all. Cells without the figure (an experiment's cells of
/// another workload) are left out. A figure that does not vary has no spread,
/// even at 0; one whose median is 0 and that varies counts as spread by 100%.
fn spread_of(cells: &[&CellResult], figure: Figure, base: u32) -> Option<f64> {
    let mut worst: Option<f64> = None;
    for c in cells {
        if !c.reps.iter().any(|(_, f)| f.contains_key(&figure)) {
            continue;
        }
        let v: Vec<f64> =
            c.reps.iter().filter(|(rep, _)| *rep < base).filter_map(|(_, f)| f.get(&figure).copied()).collect();
        if v.len() < base as usize {
            return None;
        }
        let s = if v.iter().all(|x| *x == v[0]) { 0.0 } else { relative_spread(&v).unwrap_or(1.0) };
        worst = Some(worst.map_or(s, |w| w.max(s)));
    }
    worst
}

/// The repetitions the plans ask of each cell (by key): the most that any of
/// its planned experiments asks for.
pub fn planned(cells: &[Cell], plans: &[Plan]) -> BTreeMap<String, u32> {
    cells
        .iter()
        .filter_map(|c| {
            let reps = plans.iter().filter(|p| c.experiments.contains(&p.experiment)).map(|p| p.reps).max()?;
            Some((c.key.clone(), reps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::{cells, CellSpec, Experiment};
    use crate::figures::named;
    use crate::stats::Stat;
    use crate::store::{Machine, SCHEMA};

    fn sweep(adapt: Option<Adapt>) -> (Sweep, Vec<Cell>) {
        let spec =
            |label: &str, pte: &str| CellSpec::parsed(label, 1, &[("workload", "pte-bench"), ("pte", pte)]).unwrap();
        let e = Experiment {
            id: "e".into(),
            title: "t".into(),
            question: String::new(),
            cells: vec![spec("a", "atomic"), spec("b", "lowpte")],
            columns: vec![],
            plot: None,
            claims: vec![],
            note: None,
            reps: None,
            adapt,
        };
        let all = cells(std::slice::from_ref(&e)).unwrap();
        let s = Sweep {
            schema: SCHEMA,
            matrix: "spec".into(),
            full: false,
            reps: 3,
            shard: None,
            only: vec![],
            experiments: vec![e],
            started_at: String::new(),
            command: vec![],
            machine: Machine::default(),
            vmm_version: String::new(),
            vmm_id: String::new(),
            guest_kernel: String::new(),
        };
        (s, all)
    }

    fn result(cell: &Cell, values: &[f64]) -> CellResult {
        let reps: Vec<(u32, _)> =
            values.iter().enumerate().map(|(i, v)| (i as u32, named(&[("pte_cycles_per_access", *v)]))).collect();
        let mut stats = std::collections::BTreeMap::new();
        if let Some(s) = Stat::of(values) {
            stats.insert("pte_cycles_per_access".into(), s);
        }
        CellResult { cell: cell.clone(), reps, failures: vec![], stats, warnings: vec![], host_modes: vec![] }
    }

    #[test]
    fn the_spread_measured_chooses_the_repetitions_up_to_the_cap() {
        let adapt = Adapt { figure: "pte_cycles_per_access".into(), resolve_pct: 5, max_reps: 9 };
        let (s, all) = sweep(Some(adapt));
        // Steady figures: the first three repetitions are enough.
        let steady = [result(&all[0], &[100.0, 100.5, 99.5]), result(&all[1], &[50.0, 50.1, 49.9])];
        let p = &plan(&s, &steady)[0];
        assert_eq!((p.base, p.reps, p.need), (3, 3, Some(1)), "{p:?}");
        assert!(!p.capped());
        assert!(planned(&all, std::slice::from_ref(p)).values().all(|r| *r == 3));
        // One cell spread by 2% (MAD/median): pi * (1.96 * 1.4826 * 0.02 / 0.05)^2 = 4.2, so 5.
        let some = [result(&all[0], &[100.0, 102.0, 98.0]), result(&all[1], &[50.0, 50.1, 49.9])];
        let p = &plan(&s, &some)[0];
        assert_eq!((p.reps, p.need), (5, Some(5)), "{p:?}");
        assert!((p.spread.unwrap() - 0.02).abs() < 1e-9);
        assert_eq!(
            planned(&all, std::slice::from_ref(p)),
            BTreeMap::from([(all[0].key.clone(), 5), (all[1].key.clone(), 5)])
        );
        assert_eq!(s.jobs(&all, &planned(&all, std::slice::from_ref(p))).len(), 10);
        // 10%: far more than the cap allows; the report says it may not decide.
        let noisy = [result(&all[0], &[100.0, 110.0, 90.0]), result(&all[1], &[50.0, 50.1, 49.9])];
        let p = &plan(&s, &noisy)[0];
        assert_eq!(p.reps, 9);
        assert!(p.capped() && p.describe().contains("may not decide"), "{}", p.describe());
        // The plan is made from the first three: later ones do not change it.
        let more = [result(&all[0], &[100.0, 102.0, 98.0, 100.0, 100.0]), result(&all[1], &[50.0, 50.1, 49.9])];
        assert_eq!(plan(&s, &more)[0].reps, 5);
        // Not every cell has its first three repetitions: nothing planned yet.
        let early = [result(&all[0], &[100.0, 110.0]), result(&all[1], &[50.0, 50.1, 49.9])];
        let p = &plan(&s, &early)[0];
        assert_eq!((p.spread, p.reps), (None, 3));
        assert!(p.describe().contains("none planned"), "{}", p.describe());
        // A count that stays 0 does not vary; a cell without the figure (of
        // another workload) is left out.
        let zero = [result(&all[0], &[0.0, 0.0, 0.0]), result(&all[1], &[])];
        let p = &plan(&s, &zero)[0];
        assert_eq!((p.spread, p.reps), (Some(0.0), 3), "{p:?}");
        // An experiment without a plan asks nothing.
        let (s, _) = sweep(None);
        assert!(plan(&s, &noisy).is_empty());
    }
}

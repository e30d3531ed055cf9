//! A sweep's lines gathered per cell: the repetitions that succeeded, those that
//! failed and why, min/median/max of every figure, the figures that compare a
//! cell with another (against the measured oracle cell and always-flush's), and
//! the consistency warnings.

use std::collections::BTreeMap;

use super::design::{Cell, Want};
use super::figures::{self, Derived, Figure, Figures, OVER_ORACLE};
use super::model::{self, CostTable};
use super::oracle;
use super::stats::Stat;
use super::store::Line;
use shared::config::{AliasStrategy, Setting, Switch, Workload};
use shared::counters::Counter;

/// One cell's results.
#[derive(Clone, Debug)]
pub struct CellResult {
    pub cell: Cell,
    /// Repetitions that succeeded, with their figures.
    pub reps: Vec<(u32, Figures)>,
    /// Repetitions that failed, with why.
    pub failures: Vec<(u32, String)>,
    pub stats: BTreeMap<Figure, Stat>,
    /// Consistency checks that a run violated.
    pub warnings: Vec<String>,
    pub host_modes: Vec<String>,
}

impl CellResult {
    pub fn median(&self, figure: impl Into<Figure>) -> Option<f64> {
        self.stats.get(&figure.into()).map(|s| s.median)
    }

    /// The figure's statistics over the repetitions.
    pub fn stat(&self, figure: impl Into<Figure>) -> Option<Stat> {
        self.stats.get(&figure.into()).copied()
    }

    pub fn ran(&self) -> bool {
        !self.reps.is_empty() || !self.failures.is_empty()
    }

    /// Whether the cell is everything `want` asks.
    pub fn matches(&self, want: &[Want]) -> bool {
        self.cell.matches(want)
    }

    fn same_but(&self, other: &CellResult, key: &str) -> bool {
        self.cell.vcpus == other.cell.vcpus
            && shared::config::parse_u64(&self.cell.mem) == shared::config::parse_u64(&other.cell.mem)
            && self.cell.config.iter().all(|(k, v)| k == key || other.cell.config.get(k) == Some(v))
    }
}

/// Gathers the lines of `cells` (lines of other cells are ignored; a cell
/// without lines has no repetitions). Each repetition is its latest run that
/// succeeded, else its latest failure (see [`super::store::latest`]).
pub fn gather(cells: &[Cell], lines: &[Line]) -> Vec<CellResult> {
    gather_priced(cells, lines, None)
}

/// [`gather`], with every run's counts priced by `table` (the cost model's
/// figures, and theirs against the oracle).
pub fn gather_priced(cells: &[Cell], lines: &[Line], table: Option<&CostTable>) -> Vec<CellResult> {
    let mut out: Vec<CellResult> = cells
        .iter()
        .map(|c| CellResult {
            cell: c.clone(),
            reps: vec![],
            failures: vec![],
            stats: BTreeMap::new(),
            warnings: vec![],
            host_modes: vec![],
        })
        .collect();
    for l in super::store::latest(lines) {
        let Some(r) = out.iter_mut().find(|r| r.cell.key == l.cell) else { continue };
        if r.reps.iter().any(|(rep, _)| *rep == l.rep) || r.failures.iter().any(|(rep, _)| *rep == l.rep) {
            continue;
        }
        if !r.host_modes.contains(&l.host_mode) {
            r.host_modes.push(l.host_mode.clone());
        }
        if l.ok {
            // Figures are taken again from the report when it is there, so that
            // every line is read with the same definitions.
            let f = l.report.as_ref().map(figures::extract).unwrap_or_else(|| l.figures.clone());
            r.reps.push((l.rep, f));
        } else {
            r.failures.push((l.rep, l.failure.clone().unwrap_or_else(|| "failed".into())));
        }
    }
    for r in &mut out {
        r.reps.sort_by_key(|(rep, _)| *rep);
        r.failures.sort_by_key(|(rep, _)| *rep);
    }
    for r in &mut out {
        r.stats = stats(&r.reps);
    }
    if let Some(t) = table {
        model::price(&mut out, t);
    }
    ratios_to_always_flush(&mut out);
    against_the_oracle(&mut out);
    for r in &mut out {
        let alias = r.cell.alias();
        // The strategies' checks are about workloads; the calibration calls
        // vm_unmap_aliases on its own to time it.
        let pv = r.cell.is(Setting::Pvmmu(Switch::On)) && !r.cell.is(Setting::Workload(Workload::Calibrate));
        for (rep, f) in &r.reps {
            for w in oracle::consistency(alias, pv, f) {
                r.warnings.push(format!("{} (rep {}): {w}", r.cell.label, rep + 1));
            }
        }
    }
    out
}

fn stats(reps: &[(u32, Figures)]) -> BTreeMap<Figure, Stat> {
    let mut names: Vec<Figure> = reps.iter().flat_map(|(_, f)| f.keys().copied()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let v: Vec<f64> = reps.iter().filter_map(|(_, f)| f.get(&n).copied()).collect();
            Stat::of(&v).map(|s| (n, s))
        })
        .collect()
}

/// The cell with `--alias alias` and the same configuration otherwise (seed
/// included), under the PV MMU.
fn alias_sibling(all: &[CellResult], i: usize, alias: AliasStrategy) -> Option<usize> {
    let me = &all[i];
    if !me.cell.is(Setting::Pvmmu(Switch::On)) {
        return None;
    }
    all.iter().position(|o| o.cell.is(Setting::Alias(alias)) && me.same_but(o, "alias"))
}

/// The always-flush cell with the same configuration otherwise.
fn always_flush_sibling(all: &[CellResult], i: usize) -> Option<usize> {
    alias_sibling(all, i, AliasStrategy::AlwaysFlush)
}

/// Every cell against its oracle cell (`--alias oracle`, the same workload,
/// configuration and seed): one measured yardstick for every strategy, never a
/// figure derived from the strategy's own run. Each repetition's figure is
/// divided by (or reduced by) the oracle cell's median, so the spread shown is
/// the strategy's own.
fn against_the_oracle(all: &mut [CellResult]) {
    for i in 0..all.len() {
        let Some(j) = alias_sibling(all, i, AliasStrategy::Oracle) else { continue };
        let (me, oracle) = (&all[i], &all[j]);
        let each = |figure: Figure, f: &dyn Fn(f64, f64) -> f64| -> Option<Stat> {
            let base = oracle.median(figure)?;
            Stat::of(&me.reps.iter().filter_map(|(_, r)| r.get(&figure).map(|x| f(*x, base))).collect::<Vec<_>>())
        };
        let ratio = |x: f64, b: f64| if b > 0.0 { x / b } else { f64::NAN };
        let minus = |x: f64, b: f64| x - b;
        let mut add = vec![
            (Derived::RatioToOracle, each(Derived::CyclesPerPin.into(), &ratio)),
            (Derived::WorkloadRatioToOracle, each(Counter::WorkloadCycles.into(), &ratio)),
            (Derived::ModelRatioToOracle, each(Derived::ModelCyclesPerPin.into(), &ratio)),
            (Derived::ExcessCyclesPerPin, each(Derived::CyclesPerPin.into(), &minus)),
        ];
        for (count, over) in OVER_ORACLE {
            add.push((over, each(count, &minus)));
        }
        for (name, stat) in add {
            if let Some(s) = stat {
                all[i].stats.insert(name.into(), s);
            }
        }
    }
}

/// Each repetition's cycles per pin (and workload cycles) over the always-flush
/// sibling's median.
fn ratios_to_always_flush(all: &mut [CellResult]) {
    for i in 0..all.len() {
        let Some(j) = always_flush_sibling(all, i) else { continue };
        for (figure, name) in [
            (Figure::from(Derived::CyclesPerPin), Derived::RatioToAlwaysFlush),
            (Counter::WorkloadCycles.into(), Derived::WorkloadRatioToAlwaysFlush),
        ] {
            let Some(base) = all[j].median(figure).filter(|b| *b > 0.0) else { continue };
            let v: Vec<f64> = all[i].reps.iter().filter_map(|(_, f)| f.get(&figure).map(|x| x / base)).collect();
            if let Some(s) = Stat::of(&v) {
                all[i].stats.insert(name.into(), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::CellSpec;
    use crate::store::{Line, SCHEMA};

    fn cell(alias: &str) -> Cell {
        CellSpec::parsed(alias, 2, &[("pvmmu", "on"), ("alias", alias)]).unwrap().resolve("e").unwrap()
    }

    fn line(c: &Cell, rep: u32, counters: serde_json::Value) -> Line {
        Line {
            schema: SCHEMA,
            cell: c.key.clone(),
            label: c.label.clone(),
            experiments: c.experiments.clone(),
            rep,
            vcpus: c.vcpus,
            mem: c.mem.clone(),
            args: c.args.clone(),
            config: c.config.clone(),
            vmm_version: String::new(),
            vmm_id: String::new(),
            guest_kernel: String::new(),
            host_mode: "qemu".into(),
            ok: true,
            exit_code: Some(0),
            failure: None,
            attempts: 1,
            emulator_faults: vec![],
            finished_at: String::new(),
            figures: Figures::new(),
            guest_tail: vec![],
            report: Some(serde_json::json!({ "counter_totals": counters })),
        }
    }

    #[test]
    fn every_strategy_against_the_measured_oracle_cell() {
        let af = cell("always-flush");
        let oracle = cell("oracle");
        let trap = cell("host-trap");
        let counters = |cycles: u64, calls: u64, flushed: u64| {
            serde_json::json!({"pt_pins": 100, "pt_pin_cycles": cycles, "pt_pins_aliased": 10, "pt_pins_alias_pte": 10,
                "vm_unmap_aliases": calls, "vm_unmap_aliases_flushed": flushed, "vm_unmap_aliases_cycles": 1000,
                "workload_cycles": cycles * 10, "pt_pin_refused": 0, "tlb_flush_global": flushed})
        };
        let mut lines = vec![
            line(&af, 0, counters(600000, 100, 10)),
            line(&af, 1, counters(660000, 100, 11)),
            // The oracle: one purge per aliased pin; its medians are the yardstick.
            line(&oracle, 0, counters(400000, 10, 10)),
            line(&oracle, 1, counters(500000, 10, 10)),
            line(&oracle, 2, counters(450000, 10, 10)),
            // host-trap with fewer traps than vm_unmap_aliases: a warning.
            line(&trap, 0, counters(450000, 10, 10)),
        ];
        let mut failed = line(&trap, 1, serde_json::json!({}));
        failed.ok = false;
        failed.failure = Some("guest shut down with status 1".into());
        lines.push(failed);
        let r = gather(&[af.clone(), oracle.clone(), trap.clone()], &lines);
        let (af_r, or_r, trap_r) = (&r[0], &r[1], &r[2]);
        assert_eq!(af_r.reps.len(), 2);
        assert_eq!(af_r.median("ratio_to_always_flush"), Some(1.0));
        // Each always-flush repetition against the oracle cell's median 4500 per pin.
        let s = af_r.stats[&Figure::from("ratio_to_oracle")];
        assert_eq!((s.min, s.max), (6000.0 / 4500.0, 6600.0 / 4500.0));
        assert_eq!(af_r.median("workload_ratio_to_oracle"), Some(630000.0 / 450000.0));
        assert_eq!(af_r.median("excess_cycles_per_pin"), Some(6300.0 - 4500.0));
        assert_eq!(af_r.median("vm_unmap_aliases_over_oracle"), Some(90.0));
        assert_eq!(af_r.median("vm_unmap_aliases_flushed_over_oracle"), Some(0.5));
        assert_eq!(af_r.median("vm_unmap_aliases_empty"), Some(89.5));
        // The oracle against itself: 1, nothing over.
        assert_eq!(or_r.median("ratio_to_oracle"), Some(1.0));
        assert_eq!(or_r.median("vm_unmap_aliases_over_oracle"), Some(0.0));
        assert!(or_r.warnings.is_empty(), "{:?}", or_r.warnings);
        assert_eq!(trap_r.failures.len(), 1);
        assert_eq!(trap_r.median("ratio_to_oracle"), Some(1.0));
        // host-trap's traps back are not in the report: that check is skipped.
        assert!(trap_r.warnings.is_empty(), "{:?}", trap_r.warnings);
        for s in r.iter().flat_map(|c| c.stats.values()) {
            assert!(s.min <= s.median && s.median <= s.max);
        }
        assert!(af_r.matches(&[Want::Is(Setting::Alias(AliasStrategy::AlwaysFlush)), Want::Vcpus(2)]));
        assert!(!af_r.matches(&[Want::Is(Setting::Alias(AliasStrategy::None))]));
        assert!(!af_r.matches(&[Want::Vcpus(1)]));
        // A cell with no oracle sibling gets no oracle figures.
        let alone = gather(std::slice::from_ref(&af), &lines);
        assert!(!alone[0].stats.contains_key(&Figure::from("ratio_to_oracle")));
    }
}

//! A sweep's lines gathered per cell: the repetitions that succeeded, those that
//! failed and why, min/median/max of every figure, the figures that compare a
//! cell with another (the ratio to always-flush), and the consistency warnings.

use std::collections::BTreeMap;

use super::figures::{self, Figures};
use super::matrix::Cell;
use super::oracle;
use super::stats::Stat;
use super::store::Line;

/// One cell's results.
#[derive(Clone, Debug)]
pub struct CellResult {
    pub cell: Cell,
    /// Repetitions that succeeded, with their figures.
    pub reps: Vec<(u32, Figures)>,
    /// Repetitions that failed, with why.
    pub failures: Vec<(u32, String)>,
    pub stats: BTreeMap<String, Stat>,
    /// Consistency checks that a run violated.
    pub warnings: Vec<String>,
    pub host_modes: Vec<String>,
}

impl CellResult {
    pub fn median(&self, figure: &str) -> Option<f64> {
        self.stats.get(figure).map(|s| s.median)
    }

    pub fn ran(&self) -> bool {
        !self.reps.is_empty() || !self.failures.is_empty()
    }

    /// Whether every parameter given matches this cell's configuration (values
    /// compared as the configuration prints them).
    pub fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| match *k {
            "vcpus" => self.cell.vcpus.to_string() == *v,
            "mem" => shared::config::parse_u64(&self.cell.mem) == shared::config::parse_u64(v),
            k => self.cell.config.get(k).is_some_and(|c| *c == normalise(k, v)),
        })
    }

    fn same_but(&self, other: &CellResult, key: &str) -> bool {
        self.cell.vcpus == other.cell.vcpus
            && shared::config::parse_u64(&self.cell.mem) == shared::config::parse_u64(&other.cell.mem)
            && self.cell.config.iter().all(|(k, v)| k == key || other.cell.config.get(k) == Some(v))
    }
}

/// A parameter's value as the configuration prints it (`64m` -> `67108864`).
pub fn normalise(key: &str, value: &str) -> String {
    let mut c = shared::config::Config::new();
    match c.set(key, value) {
        Ok(()) => c.get(key).map(|v| v.to_string()).unwrap_or_else(|| value.to_owned()),
        Err(_) => value.to_owned(),
    }
}

/// Gathers the lines of `cells` (lines of other cells are ignored; a cell
/// without lines has no repetitions).
pub fn gather(cells: &[Cell], lines: &[Line]) -> Vec<CellResult> {
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
    for l in lines {
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
    borrow_flush_costs(&mut out);
    for r in &mut out {
        r.stats = stats(&r.reps);
    }
    ratios_to_always_flush(&mut out);
    for r in &mut out {
        let alias = r.cell.config.get("alias").cloned().unwrap_or_default();
        let pv = r.cell.config.get("pvmmu").is_some_and(|p| p == "on");
        for (rep, f) in &r.reps {
            for w in oracle::consistency(&alias, pv, f) {
                r.warnings.push(format!("{} (rep {}): {w}", r.cell.label, rep + 1));
            }
        }
    }
    out
}

fn stats(reps: &[(u32, Figures)]) -> BTreeMap<String, Stat> {
    let mut names: Vec<&String> = reps.iter().flat_map(|(_, f)| f.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let v: Vec<f64> = reps.iter().filter_map(|(_, f)| f.get(n).copied()).collect();
            Stat::of(&v).map(|s| (n.clone(), s))
        })
        .collect()
}

/// The always-flush cell with the same configuration otherwise.
fn always_flush_sibling(all: &[CellResult], i: usize) -> Option<usize> {
    let me = &all[i];
    if me.cell.config.get("pvmmu").map(String::as_str) != Some("on") {
        return None;
    }
    all.iter()
        .position(|o| o.cell.config.get("alias").map(String::as_str) == Some("always-flush") && me.same_but(o, "alias"))
}

/// Runs that aliased pins but never flushed take the always-flush sibling's
/// median cost of one flushing vm_unmap_aliases for their oracle.
fn borrow_flush_costs(all: &mut [CellResult]) {
    for i in 0..all.len() {
        let needs = all[i].reps.iter().any(|(_, f)| f.contains_key("pt_pins") && !f.contains_key("oracle_cycles"));
        if !needs {
            continue;
        }
        let Some(j) = always_flush_sibling(all, i) else { continue };
        let costs: Vec<f64> = all[j].reps.iter().filter_map(|(_, f)| f.get("flush_cycles").copied()).collect();
        let Some(cost) = Stat::of(&costs).map(|s| s.median) else { continue };
        for (_, f) in &mut all[i].reps {
            if f.contains_key("oracle_cycles") {
                continue;
            }
            if let Some(o) = oracle::Inputs::from_figures(f).and_then(|inp| inp.oracle(Some(cost))) {
                o.insert_into(f);
            }
        }
    }
}

/// Each repetition's cycles per pin (and workload cycles) over the always-flush
/// sibling's median.
fn ratios_to_always_flush(all: &mut [CellResult]) {
    for i in 0..all.len() {
        let Some(j) = always_flush_sibling(all, i) else { continue };
        for (figure, name) in
            [("cycles_per_pin", "ratio_to_always_flush"), ("workload_cycles", "workload_ratio_to_always_flush")]
        {
            let Some(base) = all[j].median(figure).filter(|b| *b > 0.0) else { continue };
            let v: Vec<f64> = all[i].reps.iter().filter_map(|(_, f)| f.get(figure).map(|x| x / base)).collect();
            if let Some(s) = Stat::of(&v) {
                all[i].stats.insert(name.to_owned(), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::matrix::CellSpec;
    use crate::bench::store::{Line, SCHEMA};

    fn cell(alias: &str) -> Cell {
        let mut params = BTreeMap::new();
        params.insert("pvmmu".to_owned(), "on".to_owned());
        params.insert("alias".to_owned(), alias.to_owned());
        CellSpec { label: alias.into(), vcpus: 2, mem: "256m".into(), timeout: 10, params }.resolve("e").unwrap()
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
    fn ratios_borrowed_costs_and_warnings() {
        let af = cell("always-flush");
        let none = cell("none");
        let trap = cell("host-trap");
        let af_counters = serde_json::json!({"pt_pins": 100, "pt_pin_cycles": 600000, "pt_pins_aliased": 10, "pt_pins_alias_pte": 10,
            "vm_unmap_aliases": 100, "vm_unmap_aliases_flushed": 10, "vm_unmap_aliases_cycles": 300000,
            "vm_unmap_aliases_flush_cycles": 200000});
        let lines = vec![
            line(&af, 0, af_counters.clone()),
            line(&af, 1, af_counters),
            // none: aliased pins, no flush of its own: the oracle borrows 20000.
            line(
                &none,
                0,
                serde_json::json!({"pt_pins": 100, "pt_pin_cycles": 400000, "pt_pins_aliased": 10, "pt_pins_alias_pte": 10,
                "vm_unmap_aliases": 0, "vm_unmap_aliases_flushed": 0, "vm_unmap_aliases_cycles": 0, "pt_pin_refused": 10}),
            ),
            // host-trap with fewer traps than vm_unmap_aliases: a warning.
            line(
                &trap,
                0,
                serde_json::json!({"pt_pins": 100, "pt_pin_cycles": 450000, "pt_pins_aliased": 10, "pt_pins_alias_pte": 10,
                "vm_unmap_aliases": 10, "vm_unmap_aliases_flushed": 10, "vm_unmap_aliases_cycles": 100000,
                "vm_unmap_aliases_flush_cycles": 100000}),
            ),
        ];
        let mut failed = line(&trap, 1, serde_json::json!({}));
        failed.ok = false;
        failed.failure = Some("guest shut down with status 1".into());
        let mut all_lines = lines;
        all_lines.push(failed);
        let r = gather(&[af.clone(), none.clone(), trap.clone()], &all_lines);
        let (af_r, none_r, trap_r) = (&r[0], &r[1], &r[2]);
        assert_eq!(af_r.reps.len(), 2);
        assert_eq!(af_r.median("ratio_to_always_flush"), Some(1.0));
        assert_eq!(af_r.median("cycles_per_pin"), Some(6000.0));
        // always-flush: base 3000, flush 200000/10 -> oracle 300000 + 10 x 20000;
        // the 90 calls that found nothing (100000 cycles) are its waste.
        assert_eq!(af_r.median("oracle_cycles"), Some(500000.0));
        assert_eq!(af_r.median("ratio_to_oracle"), Some(1.2));
        assert_eq!(none_r.reps[0].1["oracle_flush_borrowed"], 1.0);
        assert_eq!(none_r.median("oracle_cycles"), Some(400000.0 + 10.0 * 20000.0));
        assert!(none_r.median("ratio_to_oracle").unwrap() < 1.0);
        assert!(none_r.warnings.iter().any(|w| w.contains("below the oracle")), "{:?}", none_r.warnings);
        assert_eq!(none_r.median("ratio_to_always_flush"), Some(4000.0 / 6000.0));
        assert_eq!(trap_r.failures.len(), 1);
        // host-trap's traps back are not in the report: that check is skipped.
        assert!(trap_r.warnings.is_empty(), "{:?}", trap_r.warnings);
        for s in r.iter().flat_map(|c| c.stats.values()) {
            assert!(s.min <= s.median && s.median <= s.max);
        }
        assert!(af_r.matches(&[("alias", "always-flush"), ("vcpus", "2"), ("mem", "256m")]));
        assert!(!af_r.matches(&[("alias", "none")]));
    }
}

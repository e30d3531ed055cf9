//! The benchmark's matrix: named experiments, each a list of cells (one `vmm run`
//! configuration each) plus what the report shows for it (table columns, a plot,
//! the claims its figures inform). Cells are identified by their configuration, so
//! two experiments naming the same configuration share its runs.

use super::claim::Claim;
use super::figures::Figure;
use super::linux_cell::{LinuxCell, UserPte};
use super::Error;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shared::config::{parse_u64, AliasStrategy, Config, ParamError, Setting};
use std::collections::BTreeMap;
use std::path::Path;
/// Which built-in matrix to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatrixName {
    /// The main question: every --alias strategy on fork-churn, 2 vCPUs, --pvmmu on.
    Default,
    /// The default matrix and every sweep of the design notes' claims.
    Full,
    /// A few seconds of configurations that work without the PV guest (vmap-bench,
    /// pte-bench): for CI and for checking the machinery.
    Smoke,
    /// The real-Linux control's short form (linux-highpte on 1 vCPU, a smaller
    /// probe): a stock Linux boots in each run; for CI.
    LinuxShort,
}
/// A plot an experiment produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlotKind {
    /// Cycles per pin by alias strategy, with the oracle.
    CostPerPin,
    /// vm_unmap_aliases that flushed (and the oracle's flushes) per pin against
    /// the alias frequency (`--churn-every`).
    FlushesVsFrequency,
    /// Cost per pin against the alias frequency, one line per strategy:
    /// priced by the calibrated model (left) and as measured (right).
    Crossover,
    /// Pool flushes and kmap_lock waits per 1000 faults against LAST_PKMAP.
    PkmapSweep,
    /// Wraps of the pool (one global flush each) per run and kmap_lock waits per
    /// 1000 faults against LAST_PKMAP, under a load that wraps it.
    PkmapWrap,
    /// ns per vmap-bench iteration by `--vmap` form and vCPUs.
    VmapForms,
}
impl PlotKind {
    pub fn file_name(self) -> &'static str {
        match self {
            PlotKind::CostPerPin => "cost-per-pin.svg",
            PlotKind::FlushesVsFrequency => "flushes-vs-alias-frequency.svg",
            PlotKind::Crossover => "which-strategy-when.svg",
            PlotKind::PkmapSweep => "kmap-pool-sweep.svg",
            PlotKind::PkmapWrap => "kmap-pool-wrap.svg",
            PlotKind::VmapForms => "vmap-lazy-vs-eager.svg",
        }
    }
}
/// One configuration of `vmm run`. A field it does not know (a `--spec` typo)
/// is an error, not a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    /// A short name for tables ("always-flush", "last-pkmap 256").
    pub label: String,
    pub vcpus: u32,
    /// Guest RAM as `--mem` takes it.
    pub mem: String,
    /// The guest's watchdog, seconds.
    pub timeout: u32,
    /// Guest parameters that differ from the defaults, typed; a `--spec` file
    /// writes them as `{"key": "value"}`, and an unknown key or a bad value is
    /// an error when it is read.
    #[serde(serialize_with = "settings_out", deserialize_with = "settings_in")]
    pub params: Vec<Setting>,
    /// Boot a stock Linux with highpte-probe instead of our guest (then
    /// `params` must be empty: they are our guest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<LinuxCell>,
}
fn settings_out<S: Serializer>(params: &[Setting], s: S) -> Result<S::Ok, S::Error> {
    let named: BTreeMap<&str, String> = params.iter().map(|p| (p.key(), p.value().to_string())).collect();
    named.serialize(s)
}
fn settings_in<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Setting>, D::Error> {
    let named = BTreeMap::<String, String>::deserialize(d)?;
    named
        .iter()
        .map(|(k, v)| {
            Setting::parse(k, v).map_err(|e| match e {
                ParamError::UnknownKey => serde::de::Error::custom(format!("--{k}: unknown parameter")),
                e => serde::de::Error::custom(format!("--{k} {v}: {e}")),
            })
        })
        .collect()
}
/// A named experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub id: String,
    pub title: String,
    /// What it answers, one or two sentences (the report's section text).
    pub question: String,
    pub cells: Vec<CellSpec>,
    /// Figures shown in its table, in order (by name in a `--spec` file; an
    /// unknown name is an error when it is read).
    pub columns: Vec<Figure>,
    #[serde(default)]
    pub plot: Option<PlotKind>,
    /// The claims whose verdicts its section shows.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// Said under the section's title (for example: overcommitted vCPUs).
    #[serde(default)]
    pub note: Option<String>,
    /// Repetitions of its cells when `vmm bench --reps` is not given (none: the
    /// sweep's, 3). An experiment whose verdict needs narrower intervals of its
    /// medians asks for more; a cell that several experiments share runs the
    /// most any of them asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reps: Option<u32>,
    /// Repetitions chosen from the spread measured: after the first
    /// repetitions, enough more to resolve the figure its verdict rests on
    /// (see [`super::plan`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapt: Option<Adapt>,
}

/// How an experiment chooses its repetitions from the spread it measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adapt {
    /// The figure its verdict rests on.
    pub figure: Figure,
    /// The difference to resolve, in percent: enough repetitions that the 95%
    /// interval of the ratio of two cells' medians is about ± this wide.
    pub resolve_pct: u32,
    /// The most repetitions of a cell it may ask for.
    pub max_reps: u32,
}
/// A matrix file (`--spec`): `{"experiments": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub experiments: Vec<Experiment>,
}
/// A cell with its full configuration resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The canonical identity: vCPUs, RAM and the non-default parameters.
    pub key: String,
    pub label: String,
    /// Every experiment that lists it.
    pub experiments: Vec<String>,
    pub vcpus: u32,
    pub mem: String,
    pub timeout: u32,
    /// Every guest parameter (defaults included), as reports print them.
    pub config: BTreeMap<String, String>,
    /// The arguments of `vmm run`.
    pub args: Vec<String>,
    /// What a Linux cell boots and runs (none: our guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<LinuxCell>,
}
/// What a verdict or a figure asks of a cell: its vCPUs, or one parameter's
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Vcpus(u32),
    /// Guest RAM, bytes.
    Mem(u64),
    Is(Setting),
    /// A Linux cell with its pte pages there.
    UserPte(UserPte),
    /// A Linux cell whose lowmem probe gives each task this many pte pages.
    LowmemPtePages(u32),
}
impl From<Setting> for Want {
    fn from(s: Setting) -> Self {
        Want::Is(s)
    }
}
impl Cell {
    /// The cell's value of the parameter `key`, typed.
    pub fn setting(&self, key: &str) -> Option<Setting> {
        Setting::parse(key, self.config.get(key)?).ok()
    }

    /// Whether the cell has this parameter at this value.
    pub fn is(&self, s: Setting) -> bool {
        self.setting(s.key()) == Some(s)
    }

    /// Whether the cell is everything `want` asks.
    pub fn matches(&self, want: &[Want]) -> bool {
        want.iter().all(|w| match *w {
            Want::Vcpus(v) => self.vcpus == v,
            Want::Mem(m) => parse_u64(&self.mem) == Some(m),
            Want::Is(s) => self.is(s),
            Want::UserPte(u) => self.linux.is_some_and(|l| l.userpte == u),
            Want::LowmemPtePages(p) => self.linux.and_then(|l| l.lowmem).is_some_and(|l| l.pte_pages == p),
        })
    }

    /// The cell's alias strategy.
    pub fn alias(&self) -> AliasStrategy {
        match self.setting("alias") {
            Some(Setting::Alias(a)) => a,
            _ => Config::new().alias(),
        }
    }
}
impl CellSpec {
    /// A cell given its parameters as the command line writes them.
    #[cfg(test)]
    pub fn parsed(label: &str, vcpus: u32, params: &[(&str, &str)]) -> Result<CellSpec, ParamError> {
        let params = params.iter().map(|(k, v)| Setting::parse(k, v)).collect::<Result<_, _>>()?;
        Ok(CellSpec { label: label.into(), vcpus, mem: "256m".into(), timeout: 10, params, linux: None })
    }

    pub fn new(label: impl Into<String>, vcpus: u32, mem: &str, timeout: u32, params: &[Setting]) -> Self {
        let mut c = CellSpec { label: label.into(), vcpus, mem: mem.to_owned(), timeout, params: vec![], linux: None };
        for p in params {
            c = c.with(*p);
        }
        c
    }

    /// A cell that boots a stock Linux and runs highpte-probe.
    pub fn linux(label: impl Into<String>, vcpus: u32, mem: &str, timeout: u32, linux: LinuxCell) -> Self {
        CellSpec { label: label.into(), vcpus, mem: mem.to_owned(), timeout, params: vec![], linux: Some(linux) }
    }

    /// The cell with `setting` (in place of the same parameter's value).
    pub fn with(mut self, setting: Setting) -> Self {
        self.params.retain(|p| p.key() != setting.key());
        self.params.push(setting);
        self
    }

    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }

    pub fn mem(mut self, m: &str) -> Self {
        self.mem = m.to_owned();
        self
    }

    pub fn label(mut self, l: impl Into<String>) -> Self {
        self.label = l.into();
        self
    }

    /// Checks and resolves the cell.
    pub fn resolve(&self, experiment: &str) -> Result<Cell, Error> {
        let bad = |what: String| Error::BadCell { experiment: experiment.to_owned(), cell: self.label.clone(), what };
        if !(1..=8).contains(&self.vcpus) {
            return Err(bad(format!("vcpus {} is not in 1..=8", self.vcpus)));
        }
        let mem = parse_u64(&self.mem).filter(|m| (16 << 20..=64 << 30).contains(m));
        let Some(mem_bytes) = mem else {
            return Err(bad(format!("mem {:?} is not a size in 16m..64g", self.mem)));
        };
        if self.timeout == 0 {
            return Err(bad("timeout must be positive".into()));
        }
        if let Some(linux) = &self.linux {
            return self.resolve_linux(experiment, linux, mem_bytes);
        }
        let mut config = Config::new();
        for p in &self.params {
            p.apply(&mut config).map_err(|e| bad(format!("--{} {}: {e}", p.key(), p.value())))?;
        }
        let defaults = Config::new();
        let mut key = format!("vcpus={} mem={}", self.vcpus, size_text(mem_bytes));
        let mut args: Vec<String> = vec!["run".into(), "--vcpus".into(), self.vcpus.to_string()];
        args.extend(["--mem".into(), self.mem.clone(), "--timeout".into(), self.timeout.to_string()]);
        let mut full = BTreeMap::new();
        for p in Config::PARAMS {
            let (Some(v), Some(d)) = (config.get(p.key), defaults.get(p.key)) else { continue };
            full.insert(p.key.to_owned(), v.to_string());
            if v != d {
                key += &format!(" {}={v}", p.key);
                args.extend([format!("--{}", p.key), v.to_string()]);
            }
        }
        Ok(self.cell(experiment, key, full, args, None))
    }

    /// The resolved cell with this identity and these arguments.
    fn cell(
        &self,
        experiment: &str,
        key: String,
        config: BTreeMap<String, String>,
        args: Vec<String>,
        linux: Option<LinuxCell>,
    ) -> Cell {
        Cell {
            key,
            label: self.label.clone(),
            experiments: vec![experiment.to_owned()],
            vcpus: self.vcpus,
            mem: self.mem.clone(),
            timeout: self.timeout,
            config,
            args,
            linux,
        }
    }

    /// [`CellSpec::resolve`] for a Linux cell: `vmm run --linux` with the
    /// kernel and initramfs the benchmark uses (made when the sweep starts).
    fn resolve_linux(&self, experiment: &str, linux: &LinuxCell, mem_bytes: u64) -> Result<Cell, Error> {
        let bad = |what: String| Error::BadCell { experiment: experiment.to_owned(), cell: self.label.clone(), what };
        if !self.params.is_empty() {
            return Err(bad("a Linux cell takes no params (they are our guest's)".into()));
        }
        linux.check().map_err(bad)?;
        let mut key = format!("linux vcpus={} mem={}", self.vcpus, size_text(mem_bytes));
        let mut config = BTreeMap::new();
        for (k, v) in linux.config() {
            key += &format!(" {k}={v}");
            config.insert(k.to_owned(), v);
        }
        let args = [
            "run",
            "--linux",
            &crate::linux_cell::kernel().display().to_string(),
            "--initrd",
            &linux.initrd().display().to_string(),
            "--cmdline",
            &linux.cmdline(),
            "--vcpus",
            &self.vcpus.to_string(),
            "--mem",
            &self.mem,
            "--timeout",
            &self.timeout.to_string(),
        ]
        .map(String::from)
        .to_vec();
        Ok(self.cell(experiment, key, config, args, Some(*linux)))
    }
}
/// A size as its shortest k/m/g text.
pub fn size_text(bytes: u64) -> String {
    for (shift, unit) in [(30, "g"), (20, "m"), (10, "k")] {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}
/// Repetitions of a cell when neither `--reps` nor its experiments say.
pub const DEFAULT_REPS: u32 = 3;
/// The most repetitions of a cell `--reps` or a matrix may ask for.
pub const MAX_REPS: u32 = 1000;
/// The cells of the experiments, each configuration once (first occurrence
/// order), with every experiment that lists it.
pub fn cells(experiments: &[Experiment]) -> Result<Vec<Cell>, Error> {
    let mut out: Vec<Cell> = Vec::new();
    for e in experiments {
        if e.cells.is_empty() {
            return Err(Error::BadSpec(format!("experiment {} has no cells", e.id)));
        }
        for c in &e.cells {
            let cell = c.resolve(&e.id)?;
            match out.iter_mut().find(|o| o.key == cell.key) {
                Some(o) => {
                    if !o.experiments.contains(&e.id) {
                        o.experiments.push(e.id.clone());
                    }
                    o.timeout = o.timeout.max(cell.timeout);
                }
                None => out.push(cell),
            }
        }
    }
    Ok(out)
}
/// Loads a matrix file.
pub fn load_spec(path: &Path) -> Result<Vec<Experiment>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_owned(), e))?;
    let spec: SpecFile = serde_json::from_str(&text).map_err(|e| Error::BadSpec(format!("{}: {e}", path.display())))?;
    check_experiments(&spec.experiments)?;
    Ok(spec.experiments)
}
/// Checks a matrix: at least one experiment, ids unique, repetition counts in range.
pub fn check_experiments(experiments: &[Experiment]) -> Result<(), Error> {
    if experiments.is_empty() {
        return Err(Error::BadSpec("no experiments".into()));
    }
    for (i, e) in experiments.iter().enumerate() {
        if e.id.is_empty() || experiments[..i].iter().any(|o| o.id == e.id) {
            return Err(Error::BadSpec(format!("experiment id {:?} is empty or repeated", e.id)));
        }
        if let Some(r) = e.reps.filter(|r| !(1..=MAX_REPS).contains(r)) {
            return Err(Error::BadSpec(format!("experiment {}: reps {r} is not in 1..={MAX_REPS}", e.id)));
        }
        if let Some(a) = e.adapt {
            let bad = |what: String| Err(Error::BadSpec(format!("experiment {}: adapt: {what}", e.id)));
            if !(1..=100).contains(&a.resolve_pct) {
                return bad(format!("resolve_pct {} is not in 1..=100", a.resolve_pct));
            }
            if !(1..=MAX_REPS).contains(&a.max_reps) {
                return bad(format!("max_reps {} is not in 1..={MAX_REPS}", a.max_reps));
            }
            // One repetition has no spread to plan from.
            if e.reps == Some(1) {
                return bad("needs at least 2 repetitions first (reps 1)".into());
            }
        }
    }
    Ok(())
}
/// Keeps only the experiments named (all when `only` is empty).
pub fn select(experiments: Vec<Experiment>, only: &[String]) -> Result<Vec<Experiment>, Error> {
    if only.is_empty() {
        return Ok(experiments);
    }
    for o in only {
        if !experiments.iter().any(|e| &e.id == o) {
            let ids: Vec<&str> = experiments.iter().map(|e| e.id.as_str()).collect();
            return Err(Error::BadSpec(format!("no experiment {o:?} in this matrix (it has: {})", ids.join(", "))));
        }
    }
    Ok(experiments.into_iter().filter(|e| only.contains(&e.id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn bad_cells_are_clear_errors() {
        let bad = CellSpec::new("x", 9, "256m", 10, &[]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("vcpus 9"));
        let bad = CellSpec::new("x", 1, "lots", 10, &[]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("mem"));
        let spec = |params: &str| {
            let cell = format!(r#"{{"label": "x", "vcpus": 1, "mem": "256m", "timeout": 10, "params": {params}}}"#);
            let text = format!(
                r#"{{"experiments": [{{"id": "e", "title": "t", "question": "q", "cells": [{cell}], "columns": ["pt_pins"]}}]}}"#
            );
            serde_json::from_str::<SpecFile>(&text).map_err(|e| e.to_string())
        };
        assert!(spec(r#"{"alias": "clean-pool"}"#).is_ok());
        assert!(spec(r#"{"nope": "1"}"#).unwrap_err().contains("--nope: unknown parameter"));
        assert!(spec(r#"{"alias": "sometimes"}"#).unwrap_err().contains("--alias sometimes"));
        assert!(spec(r#"{"last-pkmap": "4096"}"#).unwrap_err().contains("--last-pkmap 4096"));
        let columns =
            r#"{"experiments": [{"id": "e", "title": "t", "question": "q", "cells": [], "columns": ["pt_pinz"]}]}"#;
        assert!(serde_json::from_str::<SpecFile>(columns).unwrap_err().to_string().contains("pt_pinz"));
        // A typed value out of its range is still caught where the cell resolves.
        let bad = CellSpec::new("x", 1, "256m", 10, &[Setting::LastPkmap(4096)]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("--last-pkmap 4096"));
        let one = || Experiment {
            id: "e".into(),
            title: "t".into(),
            question: "q".into(),
            cells: vec![CellSpec::new("x", 1, "256m", 10, &[])],
            columns: vec![],
            plot: None,
            claims: vec![],
            note: None,
            reps: None,
            adapt: None,
        };
        assert!(select(vec![one()], &["nope".into()]).unwrap_err().to_string().contains("nope"));
        let mut bad = one();
        bad.reps = Some(0);
        assert!(check_experiments(&[bad]).unwrap_err().to_string().contains("reps 0"));
        assert!(check_experiments(&[one(), one()]).unwrap_err().to_string().contains("repeated"));
        let adapt = |resolve_pct, max_reps, reps| Experiment {
            adapt: Some(Adapt { figure: Figure::Count(shared::counters::Counter::PtPins), resolve_pct, max_reps }),
            reps,
            ..one()
        };
        assert!(check_experiments(&[adapt(5, 9, None)]).is_ok());
        assert!(check_experiments(&[adapt(0, 9, None)]).unwrap_err().to_string().contains("resolve_pct 0"));
        assert!(check_experiments(&[adapt(5, 1_000_000, None)]).unwrap_err().to_string().contains("max_reps"));
        assert!(check_experiments(&[adapt(5, 9, Some(1))]).unwrap_err().to_string().contains("2 repetitions"));
    }

    #[test]
    fn sizes_print_short() {
        assert_eq!(size_text(256 << 20), "256m");
        assert_eq!(size_text(64 << 30), "64g");
        assert_eq!(size_text(1000), "1000");
    }
}

//! The benchmark's matrix: named experiments, each a list of cells (one `vmm run`
//! configuration each) plus what the report shows for it (table columns, a plot,
//! the claims its figures inform). Cells are identified by their configuration, so
//! two experiments naming the same configuration share its runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use shared::config::{parse_u64, Config, ParamError};

use super::Error;

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
    /// Guest parameters that differ from the defaults (`--key value`).
    pub params: BTreeMap<String, String>,
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
    /// Figures shown in its table, in order.
    pub columns: Vec<String>,
    #[serde(default)]
    pub plot: Option<PlotKind>,
    /// The verdicts (claim ids of [`super::verdict`]) shown in its section.
    #[serde(default)]
    pub claims: Vec<String>,
    /// Said under the section's title (for example: overcommitted vCPUs).
    #[serde(default)]
    pub note: Option<String>,
    /// Repetitions of its cells when `vmm bench --reps` is not given (none: the
    /// sweep's, 3). An experiment whose verdict needs narrower intervals of its
    /// medians asks for more; a cell that several experiments share runs the
    /// most any of them asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reps: Option<u32>,
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
}

impl CellSpec {
    fn new(label: impl Into<String>, vcpus: u32, mem: &str, timeout: u32, params: &[(&str, &str)]) -> Self {
        CellSpec {
            label: label.into(),
            vcpus,
            mem: mem.to_owned(),
            timeout,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn with(mut self, key: &str, value: &str) -> Self {
        self.params.insert(key.to_owned(), value.to_owned());
        self
    }

    fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }

    fn mem(mut self, m: &str) -> Self {
        self.mem = m.to_owned();
        self
    }

    fn label(mut self, l: impl Into<String>) -> Self {
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
        let mut config = Config::new();
        for (k, v) in &self.params {
            config.set(k, v).map_err(|e| match e {
                ParamError::UnknownKey => bad(format!("--{k}: unknown parameter")),
                e => bad(format!("--{k} {v}: {e}")),
            })?;
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
        Ok(Cell {
            key,
            label: self.label.clone(),
            experiments: vec![experiment.to_owned()],
            vcpus: self.vcpus,
            mem: self.mem.clone(),
            timeout: self.timeout,
            config: full,
            args,
        })
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
fn check_experiments(experiments: &[Experiment]) -> Result<(), Error> {
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

/// The alias strategies, in the design notes' order, and the oracle they are
/// measured against (a strategy that runs: `--alias oracle`).
pub const STRATEGIES: [&str; 7] =
    ["none", "always-flush", "alias-bit", "runtime-switch", "clean-pool", "host-trap", "oracle"];

/// Columns of the alias-strategy tables: the counts first (they decide), then
/// the cycles (they inform).
fn pin_columns() -> Vec<String> {
    [
        "pt_pins",
        "pt_pins_alias_pte",
        "vm_unmap_aliases",
        "vm_unmap_aliases_flushed",
        "vm_unmap_aliases_reflushed",
        "vm_unmap_aliases_empty",
        "vm_unmap_aliases_flushed_over_oracle",
        "tlb_flush_global",
        "ipis_sent",
        "exits_hypercall",
        "exits_hypercall_over_oracle",
        "traps_back",
        "pt_pin_refused",
        "pt_pin_refused_after_purge",
        "clean_pool_refills",
        "model_cycles_per_pin",
        "model_ratio_to_oracle",
        "model_explains",
        "cycles_per_pin",
        "ratio_to_oracle",
        "excess_cycles_per_pin",
        "ratio_to_always_flush",
        "alias_cycles_per_pin",
        "workload_cycles",
        "workload_ratio_to_oracle",
        "alias_check_ns",
        "pv_updates",
        "pv_update_calls",
        "traps_back_per_kpin",
        "pt_pins_aliased",
    ]
    .map(String::from)
    .to_vec()
}

/// The fork-heavy workload with vmap churn on 2 vCPUs under the PV MMU: the
/// default matrix's cell for one strategy. Sized so that the six strategies with
/// three repetitions each stay well under two minutes QEMU-hosted.
///
/// The host watches no unprotected tables with the dirty log
/// (`--host-write-watch memslot`): this guest's kernel runs on validated tables
/// only (the CR3 check at every exit), so it cannot write one directly, and
/// the end-of-run audit, which must find nothing (`pvmmu_audit_errors`), would
/// show it if it did. On a QEMU TCG host the watch costs every hypercall exit a
/// read of the log and a refault of every table walked since (docs/pvmmu.md),
/// the same for every strategy, which would only bury the differences measured.
fn fork_churn(alias: &str) -> CellSpec {
    CellSpec::new(
        alias,
        2,
        "256m",
        60,
        &[
            ("workload", "fork-churn"),
            ("pvmmu", "on"),
            ("alias", alias),
            ("tasks", "4"),
            ("rounds", "16"),
            ("pages", "16"),
            ("churn-every", "1"),
            ("host-write-watch", "memslot"),
        ],
    )
}

fn experiment(id: &str, title: &str, question: &str, cells: Vec<CellSpec>, columns: &[&str]) -> Experiment {
    Experiment {
        id: id.into(),
        title: title.into(),
        question: question.into(),
        cells,
        columns: columns.iter().map(|s| s.to_string()).collect(),
        plot: None,
        claims: vec![],
        note: None,
        reps: None,
    }
}

/// The main question (design notes 3, claim 7).
fn alias_strategies() -> Experiment {
    let mut e = experiment(
        "alias-strategies",
        "Alias strategies: cost per pagetable pin against the oracle",
        "fork-churn (fork-heavy, a vmap churn step before every fork) on 2 vCPUs with --pvmmu on: what each \
         --alias strategy costs per pagetable pin and in total, as a ratio to the oracle and to always-flush.",
        STRATEGIES.iter().map(|s| fork_churn(s)).collect(),
        &[],
    );
    e.columns = pin_columns();
    e.plot = Some(PlotKind::CostPerPin);
    e.claims = vec!["claim 7".into()];
    e
}

/// The id of the calibration experiment (`vmm bench --calibrate` runs it alone).
pub const CALIBRATION: &str = "calibration";

/// The unit cost of each counted event on this host, measured beside the
/// strategies (the same VM shape and host settings as their cells) so that
/// their counts can be priced: the cost model.
fn calibration() -> Experiment {
    let cell = fork_churn("host-trap").with("workload", "calibrate").label("calibration");
    experiment(
        CALIBRATION,
        "Calibration: the unit cost of each counted event on this host",
        "The guest's calibrate workload times each event alone, 64 rounds each on the boot CPU while the other \
         vCPU sits halted: a bare exit, a hypercall, a global TLB flush, a vm_unmap_aliases that finds nothing and \
         one that flushes one lazy area, a pin with no alias work, and host-trap's trapped pin. The medians price \
         every run's counts (\"The cost model\").",
        vec![cell],
        &super::figures::UNIT_FIGURES,
    )
}

fn history() -> Experiment {
    let mut e = experiment(
        "history",
        "Linux history: 2.6.28 -> 2.6.36 -> 2.6.37 under a hypervisor, and 6.5's vm_unmap_aliases",
        "always-flush with lazy-ptes (2.6.28), then lazy unmapping disabled (--vmap eager, 2.6.36), then \
         --vmap lazy-tlb with no alias flush at all (--alias none: the host revokes write access on the type \
         change itself, 2.6.37); last, 2.6.28's pin path with 6.5's vm_unmap_aliases (--vmap-flush 6.5), which \
         stops flushing a block's dirty range again and again (a counterfactual: 6.5's Xen code no longer \
         calls it at a pin).",
        vec![
            fork_churn("always-flush").label("2.6.28 lazy-ptes + always-flush"),
            fork_churn("always-flush").with("vmap", "eager").label("2.6.36 eager (lazy disabled)"),
            fork_churn("none").with("vmap", "lazy-tlb").label("2.6.37 lazy-tlb + none"),
            fork_churn("always-flush").with("vmap-flush", "6.5").label("2.6.28 pin path, 6.5 vm_unmap_aliases"),
        ],
        &[],
    );
    e.columns = pin_columns();
    e.claims = vec!["history".into()];
    e
}

/// The alias frequencies of the sweep: an alias source before every Nth fork.
pub const FREQUENCIES: [&str; 5] = ["1", "4", "16", "64", "256"];

/// fork-churn long enough (256 forks) for one alias source in 256 forks.
fn frequency_cell(strategy: &str, every: &str) -> CellSpec {
    fork_churn(strategy)
        .with("rounds", "64")
        .with("churn-every", every)
        .label(format!("{strategy}, churn every {every}"))
}

fn frequency_cells() -> Vec<CellSpec> {
    STRATEGIES.iter().flat_map(|s| FREQUENCIES.iter().map(move |every| frequency_cell(s, every))).collect()
}

fn alias_frequency() -> Experiment {
    let mut e = experiment(
        "alias-frequency",
        "Alias frequency: a vmap churn step before every Nth fork",
        "fork-churn with 256 forks, every strategy and the oracle: how the strategies' calls, flushes and cost \
         per pin follow the frequency of live aliases (--churn-every 1 is every fork, 256 once a run); \
         host-trap's cost when aliases are rare versus frequent.",
        frequency_cells(),
        &[],
    );
    e.columns = pin_columns();
    e.plot = Some(PlotKind::FlushesVsFrequency);
    e.claims = vec!["claim 7".into()];
    // The counts barely move between repetitions; claim 7's cycles need more
    // (the bootstrap interval of host-trap's and always-flush's ratio held 1
    // at 3). 9 keeps the sweep's 35 cells near 6 minutes QEMU-hosted.
    e.reps = Some(9);
    e
}

/// The answer users came for: which strategy costs least at which alias
/// frequency. The same cells as [`alias_frequency`] (their runs are shared),
/// drawn as crossovers priced by the calibrated model and by the measured
/// cycles.
fn which_strategy() -> Experiment {
    let mut e = experiment(
        "which-strategy",
        "Which strategy, when: the crossovers",
        "For each alias frequency, the strategy whose counts cost least priced by this host's calibrated unit \
         costs, and by the measured cycles. --alias none is left out of the answer: Linux BUGs on a refused pin.",
        frequency_cells(),
        &[
            "model_cycles_per_pin",
            "model_ratio_to_oracle",
            "cycles_per_pin",
            "ratio_to_oracle",
            "vm_unmap_aliases",
            "vm_unmap_aliases_flushed",
            "traps_back",
            "clean_pool_refills",
        ],
    );
    e.plot = Some(PlotKind::Crossover);
    e.claims = vec!["which strategy".into()];
    e.reps = Some(9);
    e
}

/// What batching the lazy-MMU sections' pagetable writes saves (issue 5's exits
/// per 1000 page faults): fork-storm (copies and teardowns, which batch) and
/// mm-all (every workload, single-entry faults among them), each with
/// `--pv-batch on` and `off`. The dirty log stays on (the default): these
/// figures are counts, and its cost is in no exit.
fn pv_batching() -> Experiment {
    let mut cells = Vec::new();
    for workload in ["fork-storm", "mm-all"] {
        for batch in ["on", "off"] {
            cells.push(CellSpec::new(
                format!("{workload}, --pv-batch {batch}"),
                2,
                "512m",
                120,
                &[("workload", workload), ("pvmmu", "on"), ("lowmem", "128m"), ("pv-batch", batch)],
            ));
        }
    }
    let mut e = experiment(
        "pv-batching",
        "Hypercall exits per 1000 page faults, with and without batching",
        "Under --pvmmu on every pagetable write is an mmu_update; in a lazy-MMU section (fork's copy, exit's \
         teardown, mremap's move) the guest queues them and sends a batch in one hypercall. How many exits does \
         that save per 1000 page faults?",
        cells,
        &[
            "hypercall_exits_per_kfault",
            "page_faults",
            "exits_hypercall",
            "pv_updates",
            "pv_update_calls",
            "pv_updates_per_call",
            "pt_pins",
            "workload_cycles_max",
        ],
    );
    e.claims = vec!["batching".into()];
    e
}

fn vcpu_sweep() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2, 4] {
        for s in STRATEGIES {
            cells.push(fork_churn(s).vcpus(v).label(format!("{s}, {v} vCPU{}", if v > 1 { "s" } else { "" })));
        }
    }
    let mut e = experiment(
        "vcpus",
        "vCPUs: 1, 2 and 4",
        "The alias strategies on 1, 2 and 4 vCPUs: flushes become IPIs with more than one.",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

fn lazy_areas() -> Experiment {
    let mut cells = Vec::new();
    for s in ["always-flush", "alias-bit", "host-trap", "oracle"] {
        for live in ["1", "8", "64", "512"] {
            cells.push(fork_churn(s).with("vmap-live", live).label(format!("{s}, vmap-live {live}")));
        }
    }
    let mut e = experiment(
        "lazy-areas",
        "Number of lazy areas (--vmap-live)",
        "How many live vmap areas each CPU keeps, and what that does to vm_unmap_aliases and the pins.",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

fn host_check() -> Experiment {
    let mut cells = Vec::new();
    for s in ["host-trap", "none"] {
        for c in ["typecount", "scan", "rmap"] {
            cells.push(fork_churn(s).with("host-check", c).label(format!("{s}, host-check {c}")));
        }
    }
    experiment(
        "host-check",
        "The host's alias check (--host-check)",
        "Host time in the alias check per pin for each way the host finds writable mappings.",
        cells,
        &["alias_check_ns", "alias_checks", "alias_check_ns_per_check", "traps_back", "cycles_per_pin", "pt_pins"],
    )
}

fn highpte_ram() -> Experiment {
    let mut cells = Vec::new();
    for mem in ["256m", "4g", "16g", "64g"] {
        for pte in ["lowpte", "atomic", "persistent", "per-task"] {
            cells.push(fork_churn("always-flush").mem(mem).with("pte", pte).label(format!("{mem}, --pte {pte}")));
        }
    }
    let mut e = experiment(
        "highpte-ram",
        "Guest RAM up to 64 GiB with highpte",
        "The always-flush strategy as guest RAM grows and pagetables move to highmem (--pte).",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

fn vmap_forms_pv() -> Experiment {
    let mut cells = Vec::new();
    for v in ["eager", "lazy-ptes", "lazy-tlb"] {
        for s in ["none", "always-flush", "alias-bit", "host-trap", "oracle"] {
            cells.push(fork_churn(s).with("vmap", v).label(format!("--vmap {v}, {s}")));
        }
    }
    let mut e = experiment(
        "vmap-forms",
        "--vmap eager | lazy-ptes | lazy-tlb under the PV MMU",
        "Each vmap form with the strategies that matter for it.",
        cells,
        &[],
    );
    e.columns = pin_columns();
    e
}

fn vmap_bench(form: &str, vcpus: u32, iterations: &str) -> CellSpec {
    CellSpec::new(
        format!("{form}, {vcpus} vCPU{}", if vcpus > 1 { "s" } else { "" }),
        vcpus,
        "256m",
        300,
        &[("workload", "vmap-bench"), ("vmap", form), ("iterations", iterations), ("lowmem", "64m"), ("debug", "off")],
    )
}

const VMAP_COLUMNS: &[&str] =
    &["vmap_bench_ns", "vmap_bench_cycles_per_iter", "vmap_one_alias_ns", "vmap_flushes", "ipis_sent"];

fn claim1() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2] {
        for form in ["eager", "lazy-ptes", "lazy-tlb"] {
            cells.push(vmap_bench(form, v, "10000"));
        }
    }
    // Linux's one-thread figure ran on an SMP machine, where every eager flush
    // still went to every CPU: one looping vCPU of two.
    for form in ["eager", "lazy-ptes"] {
        cells.push(vmap_bench(form, 2, "10000").with("bench-cpus", "1").label(format!("{form}, 1 thread on 2 vCPUs")));
    }
    let mut e = experiment(
        "vmap-bench",
        "Lazy vs eager vmap: Nick Piggin's benchmark (claim 1)",
        "vm_map_ram 4 pages, touch, unmap, on every vCPU, and on one vCPU of two as Linux's one-thread figure \
         ran (--bench-cpus 1): ns per iteration per --vmap form, and what vm_unmap_aliases costs with one lazy \
         mapping.",
        cells,
        VMAP_COLUMNS,
    );
    e.plot = Some(PlotKind::VmapForms);
    e.claims = vec!["claim 1".into()];
    e
}

fn mm_all_persistent(last_pkmap: &str) -> CellSpec {
    CellSpec::new(
        format!("last-pkmap {last_pkmap}"),
        2,
        "256m",
        300,
        &[
            ("workload", "mm-all"),
            ("pte", "persistent"),
            ("last-pkmap", last_pkmap),
            ("tasks", "16"),
            ("pages", "32"),
            ("rounds", "3"),
            ("ptcache", "none"),
            ("lowmem", "64m"),
            ("debug", "off"),
        ],
    )
}

fn claim2() -> Experiment {
    let mut e = experiment(
        "pkmap-pool",
        "The persistent kmap pool: LAST_PKMAP 128..2048 (claim 2)",
        "mm-all with --pte persistent on 2 vCPUs (scripts/mm-figures.sh): kmap_lock, pool flushes, flush IPIs \
         and sleeps per 1000 page faults.",
        ["128", "256", "512", "1024", "2048"].iter().map(|n| mm_all_persistent(n)).collect(),
        &[
            "kmap_lock_taken_per_kfault",
            "kmap_lock_waits_per_kfault",
            "pkmap_flushes_per_kfault",
            "flush_ipis_per_kfault",
            "kmap_sleeps_per_kfault",
            "kmap_cache_hits_per_kfault",
            "workload_cycles_max",
        ],
    );
    e.plot = Some(PlotKind::PkmapSweep);
    e.claims = vec!["claim 2".into()];
    e
}

fn pte_bench(pte: &str, vcpus: u32, pages: &str, rounds: &str) -> CellSpec {
    CellSpec::new(
        format!("{pte}, {vcpus} vCPU{}", if vcpus > 1 { "s" } else { "" }),
        vcpus,
        "256m",
        300,
        &[
            ("workload", "pte-bench"),
            ("pte", pte),
            ("pages", pages),
            ("rounds", rounds),
            ("lowmem", "64m"),
            ("debug", "off"),
        ],
    )
}

const PTE_COLUMNS: &[&str] =
    &["pte_cycles_per_access", "kmap_lock_waits", "kmap_lock_spins", "tlb_flush_global", "ipis_sent"];

/// pte-bench's rounds in the full matrix. Long enough that the tasks of a
/// multi-vCPU run overlap: with 2000 the first task started was half done
/// before the second ran (one TCG thread runs every vCPU), so the kmap_lock
/// was seldom contended (171 waits a run against 204712 at 20000).
const PTE_BENCH_ROUNDS: &str = "20000";

/// Claim 3. lowpte maps nothing and is the control: under one TCG thread a
/// second busy vCPU halves each one's speed, so lowpte's per-access cycles
/// double from 1 to 2 vCPUs with no lock at all; a variant scales when it
/// slows no more than lowpte.
fn claim3() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2, 4] {
        for pte in ["lowpte", "atomic", "persistent", "percpu-pool"] {
            cells.push(pte_bench(pte, v, "2048", PTE_BENCH_ROUNDS));
        }
    }
    let mut e = experiment(
        "kmap-scaling",
        "Atomic kmaps against the global kmap_lock as CPUs are added (claim 3)",
        "pte-bench per --pte variant on 1, 2 and 4 vCPUs: the cost of one pte access and the kmap_lock waits, \
         with lowpte (no kmap) as the control for what adding vCPUs costs the emulator.",
        cells,
        PTE_COLUMNS,
    );
    e.note = Some(
        "QEMU-hosted, one TCG thread runs every vCPU: each busy vCPU slows the others, so per-access cycles grow \
         with vCPUs even with no lock (see lowpte). 4 vCPUs on this 2-core machine are overcommitted as well."
            .into(),
    );
    e.claims = vec!["claim 3".into()];
    // Under one TCG thread the 2-vCPU figures depend on how the two vCPUs'
    // turns interleave: lowpte's, the yardstick, moved from 2.05x to 1.60x its
    // 1-vCPU figure between two 3-repetition runs. Nine steady the medians.
    e.reps = Some(9);
    e
}

/// The pool under a load that wraps it: claim 2's flushing half. mm-all's
/// tasks touch too few pte pages to wrap even 256 entries; here 64 tasks fault
/// in 64 sparse pages each, 4096 pte pages each mapped once through the pool.
fn pkmap_wrap() -> Experiment {
    let cells = ["128", "256", "512", "1024", "2048"]
        .iter()
        .map(|n| {
            CellSpec::new(
                format!("wrapping, last-pkmap {n}"),
                2,
                "512m",
                300,
                &[
                    ("workload", "task-capacity"),
                    ("pte", "persistent"),
                    ("last-pkmap", n),
                    ("tasks", "64"),
                    ("pages", "64"),
                    ("ptcache", "none"),
                    ("lowmem", "64m"),
                    ("debug", "off"),
                ],
            )
        })
        .collect();
    let mut e = experiment(
        "pkmap-wrap",
        "The persistent kmap pool when it wraps: LAST_PKMAP 128..2048 (claim 2)",
        "task-capacity with --pte persistent on 2 vCPUs, 64 tasks of 64 sparse pages (4096 pte pages, each \
         mapped once through the pool): wrap flushes, kmap_lock waits and the workload's span as the pool grows.",
        cells,
        &[
            "pkmap_wrap_flushes",
            "pkmap_flushes_per_kfault",
            "kmap_lock_taken_per_kfault",
            "kmap_lock_waits_per_kfault",
            "kmap_cache_hits_per_kfault",
            "workload_cycles_max",
        ],
    );
    e.plot = Some(PlotKind::PkmapWrap);
    e.claims = vec!["claim 2".into()];
    e
}

fn claim4() -> Experiment {
    let mut cells = Vec::new();
    for low in ["16m", "32m"] {
        for pte in ["lowpte", "atomic"] {
            cells.push(CellSpec::new(
                format!("lowmem {low}, {pte}"),
                2,
                "512m",
                300,
                &[("workload", "task-capacity"), ("pte", pte), ("lowmem", low), ("tasks", "512"), ("pages", "64")],
            ));
        }
    }
    let mut e = experiment(
        "task-capacity",
        "Tasks that fit in lowmem: lowpte vs highpte (claim 4)",
        "task-capacity with 64 pagetable pages per task, 512 MiB of RAM, at several --lowmem sizes.",
        cells,
        &["tasks_started", "pt_pages_lowmem", "pt_pages_highmem"],
    );
    e.claims = vec!["claim 4".into()];
    e
}

/// pte-bench's rounds when each map reads a whole page of ptes: a tenth of the
/// maps of [`PTE_BENCH_ROUNDS`], 51 times its pte reads.
const PTE_BENCH_PAGE_ROUNDS: &str = "2000";

fn claim5() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2] {
        for pte in ["lowpte", "atomic", "persistent", "percpu-pool", "per-task"] {
            cells.push(pte_bench(pte, v, "2048", PTE_BENCH_ROUNDS));
        }
    }
    for pte in ["lowpte", "atomic", "persistent", "percpu-pool", "per-task"] {
        cells.push(
            pte_bench(pte, 1, "2048", PTE_BENCH_PAGE_ROUNDS)
                .with("pte-reads", "512")
                .label(format!("{pte}, 1 vCPU, 512 ptes per map")),
        );
    }
    let mut e = experiment(
        "pte-cost",
        "Cost of a pte access per --pte variant (claim 5)",
        "pte-bench per variant: one map per pte read (map, read, unmap) on 1 and 2 vCPUs, and one map per pte \
         page with all 512 of its ptes read, the shape of Linux's zap_pte_range and copy_pte_range, on 1 vCPU.",
        cells,
        PTE_COLUMNS,
    );
    e.claims = vec!["claim 5".into()];
    e
}

/// Claim 6 is about the kmap itself: pte-bench maps the same few pte pages
/// again and again, so the pool's page->virtual cache hits on every map after
/// the first, while per-task writes its pte and flushes one TLB entry each
/// time (pte-cost's cells; at 2000 rounds, before [`PTE_BENCH_ROUNDS`], the
/// SMP half stayed within the noise even at 45 repetitions). mm-all is the
/// whole workload around it, where the kmap is a small part.
fn claim6() -> Experiment {
    let mut cells = Vec::new();
    for v in [1, 2] {
        for pte in ["per-task", "persistent"] {
            cells.push(pte_bench(pte, v, "2048", PTE_BENCH_ROUNDS));
        }
    }
    for v in [1, 2] {
        for pte in ["per-task", "persistent"] {
            cells.push(
                CellSpec::new(
                    format!("mm-all, {pte}, {}", if v == 1 { "UP" } else { "SMP" }),
                    v,
                    "256m",
                    300,
                    &[
                        ("workload", "mm-all"),
                        ("pte", pte),
                        ("tasks", "8"),
                        ("pages", "32"),
                        ("rounds", "3"),
                        ("lowmem", "64m"),
                        ("debug", "off"),
                    ],
                )
                .vcpus(v),
            );
        }
    }
    let mut e = experiment(
        "per-task-kmaps",
        "Per-task kmaps against the global pool, UP and SMP (claim 6)",
        "pte-bench (the same 4 pte pages per task mapped, read and unmapped 20000 times: the pool's cache hits on \
         every map) and mm-all, with --pte per-task and --pte persistent on 1 and 2 vCPUs.",
        cells,
        &[
            "pte_cycles_per_access",
            "kmap_cache_hits_per_access",
            "tlb_invlpg_per_access",
            "kmap_lock_waits",
            "workload_cycles_max",
        ],
    );
    e.claims = vec!["claim 6".into()];
    // On UP per-task and the pool differ by a few percent at most: at 3
    // repetitions (min..max) the intervals overlapped; at 9 (2nd..8th value)
    // they came apart in one run and not in another (README, "The full matrix").
    e.reps = Some(9);
    e
}

/// The smoke matrix's experiments: configurations that work today without the
/// PV guest, small enough for CI.
fn smoke() -> Vec<Experiment> {
    let mut vmap = experiment(
        "vmap-bench",
        "Lazy vs eager vmap (smoke: 2000 iterations, 1 vCPU)",
        "Nick Piggin's benchmark, eager against lazy-ptes, short.",
        vec![vmap_bench("eager", 1, "2000"), vmap_bench("lazy-ptes", 1, "2000")],
        VMAP_COLUMNS,
    );
    vmap.plot = Some(PlotKind::VmapForms);
    vmap.claims = vec!["claim 1".into()];
    let pte = experiment(
        "pte-cost",
        "Cost of one pte access (smoke)",
        "pte-bench, atomic kmaps, short.",
        vec![pte_bench("atomic", 1, "256", "200")],
        PTE_COLUMNS,
    );
    vec![vmap, pte]
}

/// A built-in matrix.
pub fn builtin(name: MatrixName) -> Vec<Experiment> {
    match name {
        MatrixName::Default => vec![alias_strategies(), calibration()],
        MatrixName::Full => vec![
            alias_strategies(),
            calibration(),
            history(),
            alias_frequency(),
            which_strategy(),
            pv_batching(),
            vcpu_sweep(),
            lazy_areas(),
            host_check(),
            vmap_forms_pv(),
            highpte_ram(),
            claim1(),
            claim2(),
            pkmap_wrap(),
            claim3(),
            claim4(),
            claim5(),
            claim6(),
        ],
        MatrixName::Smoke => smoke(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_cell_resolves_and_keys_are_unique_per_configuration() {
        for name in [MatrixName::Default, MatrixName::Full, MatrixName::Smoke] {
            let exps = builtin(name);
            check_experiments(&exps).unwrap();
            let cells = cells(&exps).unwrap();
            let mut keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), cells.len());
            for c in &cells {
                assert_eq!(c.config.len(), Config::PARAMS.len());
                assert!(c.args.windows(2).any(|w| w[0] == "--vcpus"));
            }
        }
    }

    #[test]
    fn the_default_matrix_asks_the_main_question() {
        let cells = cells(&builtin(MatrixName::Default)).unwrap();
        assert_eq!(cells.len(), 8, "six strategies, the oracle and the calibration");
        let (calibration, cells) = cells.split_last().unwrap();
        assert_eq!(calibration.config["workload"], "calibrate");
        assert_eq!(calibration.config["alias"], "host-trap", "the trapped pin is a unit");
        let strategies: Vec<&str> = cells.iter().map(|c| c.config["alias"].as_str()).collect();
        assert_eq!(strategies, STRATEGIES);
        for c in cells {
            assert_eq!(c.config["workload"], "fork-churn");
            assert_eq!(c.config["pvmmu"], "on");
            assert_eq!(c.vcpus, 2);
        }
    }

    #[test]
    fn shared_configurations_are_one_cell_with_every_experiment() {
        let cells = cells(&builtin(MatrixName::Full)).unwrap();
        let key = fork_churn("always-flush").resolve("x").unwrap().key;
        assert!(!key.contains("churn-every"), "the default --churn-every stays out of the key: {key}");
        let c = cells.iter().find(|c| c.key == key).expect("the default always-flush cell");
        for e in ["alias-strategies", "history", "vcpus"] {
            assert!(c.experiments.iter().any(|x| x == e), "{e}: {:?} {}", c.experiments, c.key);
        }
        // The frequency sweep's cells (256 forks) are shared by the two
        // experiments that read them, and run once.
        let f = frequency_cell("host-trap", "64").resolve("x").unwrap().key;
        let c = cells.iter().find(|c| c.key == f).expect("a frequency cell");
        assert_eq!(c.experiments, ["alias-frequency", "which-strategy"]);
    }

    #[test]
    fn bad_cells_are_clear_errors() {
        let bad = CellSpec::new("x", 9, "256m", 10, &[]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("vcpus 9"));
        let bad = CellSpec::new("x", 1, "lots", 10, &[]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("mem"));
        let bad = CellSpec::new("x", 1, "256m", 10, &[("nope", "1")]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("--nope"));
        let bad = CellSpec::new("x", 1, "256m", 10, &[("alias", "sometimes")]);
        assert!(bad.resolve("e").unwrap_err().to_string().contains("--alias sometimes"));
        assert!(select(builtin(MatrixName::Smoke), &["nope".into()]).is_err());
        let mut bad = builtin(MatrixName::Smoke);
        bad[0].reps = Some(0);
        assert!(check_experiments(&bad).unwrap_err().to_string().contains("reps 0"));
    }

    #[test]
    fn sizes_print_short() {
        assert_eq!(size_text(256 << 20), "256m");
        assert_eq!(size_text(64 << 30), "64g");
        assert_eq!(size_text(1000), "1000");
    }
}

//! The cost model: a run's counts priced by unit costs measured on a host.
//!
//! The benchmark's counts (pins, vm_unmap_aliases calls that found nothing and
//! those that flushed, traps back, refusals) barely move between repetitions;
//! emulated cycles move more than the strategies differ. So a verdict rests on
//! the counts, and the counts are priced with a [`CostTable`]: the unit cost of
//! each event, measured by the guest's `calibrate` workload in a calibration
//! cell of the same sweep (or read from another host's table with `vmm bench
//! reprice`, which lets a user who can only run under TCG see the ranking a VMX
//! or SVM machine's costs give).
//!
//! [`FORMULA`] is the model, as every report prints it. It prices the pin path
//! and every strategy's alias work wherever it happened, and is compared with
//! the measured `pin_path_cycles` (the pins' own cycles plus the alias work done
//! outside them, such as clean-pool's refills). How much of the measured cost the
//! model explains is reported beside it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use shared::config::{PteVariant, Setting, Switch, Workload};
use shared::counters::Counter as C;
use shared::results::{GuestResult, UnitResults};

use super::figures::{Derived as D, Figure, Figures, Host};
use super::results::CellResult;
use super::stats::Stat;
use super::store::Machine;
use super::Error;

/// The model, as the report prints it.
pub const FORMULA: &str = "\
model_cycles = (pt_pins - pt_pins_root) x pin + pt_pins_root x pin_tree
             + vm_unmap_aliases_empty x vm_unmap_aliases_empty_call
             + vm_unmap_aliases_flushed x vm_unmap_aliases_flush_call
             + max(0, vm_unmap_aliases_purged_pages - vm_unmap_aliases_flushed) x purge_page
             + traps_back x trap_back
             + pt_pin_refused x pin
pin_path_cycles = pt_pin_cycles + vm_unmap_aliases_cycles - vm_unmap_aliases_in_pin_cycles
model_explains  = model_cycles / pin_path_cycles
";

/// The file a sweep's (or `vmm bench --calibrate`'s) cost table is written to.
pub const TABLE_FILE: &str = "cost-table.json";
pub const SCHEMA: u32 = 1;

/// One host's unit costs, in the guest's TSC cycles (medians over the
/// calibration cell's repetitions, each itself the median of 64 timed rounds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostTable {
    pub schema: u32,
    /// Where and how it was measured.
    pub machine: Machine,
    /// `qemu` or `local`.
    pub host_mode: String,
    pub measured_at: String,
    /// The calibration cell's `vmm run` arguments.
    pub command: Vec<String>,
    /// Repetitions of the calibration cell.
    pub reps: usize,
    /// The units the model prices with: timed with the other CPUs busy when
    /// `idle_units` is there too, else halted (every table before the busy
    /// pass: see [`CostTable::others`]).
    pub units: Units,
    /// The same units timed with the other CPUs halted, beside busy ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_units: Option<Units>,
    /// The native kmap units (a calibration cell under `--pvmmu off`), busy
    /// and halted as `units` and `idle_units`; a table before them has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kmap: Option<KmapUnits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_kmap: Option<KmapUnits>,
}

/// What the other CPUs did while the calibration timed a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Others {
    /// Halted, woken only by the flush IPIs (every table before the busy pass).
    Halted,
    /// Busy with plain work, as a workload's CPUs are: the units the model
    /// should price a workload with.
    Busy,
}

/// The unit costs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Units {
    /// A bare port-I/O exit to the VMM and back.
    pub exit: f64,
    /// A no-op hypercall (request block read, answer written).
    pub hypercall: f64,
    /// A flush of every CPU's TLB (an IPI to each other CPU, waited for).
    pub flush_global: f64,
    /// A vm_unmap_aliases that finds nothing to flush.
    pub vm_unmap_aliases_empty_call: f64,
    /// A vm_unmap_aliases that purges one lazy area of one page and flushes.
    pub vm_unmap_aliases_flush_call: f64,
    /// A pin with no alias work (the host's validation and alias check).
    pub pin: f64,
    /// What a trapped pin costs beyond a pin and a flushing vm_unmap_aliases:
    /// the refusal and the trap into the fixup (timed as each trapped pin less
    /// its fixup's action and its retry; in tables before that, the trapped
    /// pin's median less a pin's and a flushing call's).
    pub trap_back: f64,
    /// A fork's pin of its child's whole tree (the root, which the host
    /// validates recursively and follows with a flush of every vCPU). A table
    /// measured before it existed prices root pins as `pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_tree: Option<f64>,
    /// What each page a vm_unmap_aliases purges adds beyond the first (its
    /// PTE retired and cleared, its alias dropped): the slope between the
    /// calibration's purges of a one-page and a many-page area, each less its
    /// flush (in tables before that, with it). A table measured before it
    /// existed prices every flushing call as one page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_page: Option<f64>,
}

/// The unit costs of a native kmap (`--pvmmu off`): a map, a read and an
/// unmap of one highmem pte page through each `--pte` variant's functions,
/// and the global flush a series' wrap costs. They price the pte-bench cells'
/// kmap counts; lowpte maps nothing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KmapUnits {
    pub atomic: f64,
    /// From the pagetable series: a fresh entry each time.
    pub persistent: f64,
    pub percpu_pool: f64,
    pub per_task: f64,
    /// A flush of every CPU's TLB without the PV MMU.
    pub flush_global: f64,
}

impl KmapUnits {
    /// The kmap units of a native calibration pass, None unless all were measured.
    fn of_cell(cell: &CellResult, set: &UnitResults) -> Option<KmapUnits> {
        let m = |f| cell.median(Figure::Result(f));
        Some(KmapUnits {
            atomic: m(set.kmap_atomic)?,
            persistent: m(set.kmap_persistent)?,
            percpu_pool: m(set.kmap_percpu_pool)?,
            per_task: m(set.kmap_per_task)?,
            flush_global: m(set.flush_global)?,
        })
    }

    fn check(&self) -> bool {
        [self.atomic, self.persistent, self.percpu_pool, self.per_task, self.flush_global]
            .into_iter()
            .all(|x| x.is_finite() && x >= 0.0)
    }

    /// The unit of one `--pte` variant's kmap (lowpte: none).
    pub fn of(&self, pte: PteVariant) -> f64 {
        match pte {
            PteVariant::Lowpte => 0.0,
            PteVariant::Atomic => self.atomic,
            PteVariant::Persistent => self.persistent,
            PteVariant::PercpuPool => self.percpu_pool,
            PteVariant::PerTask => self.per_task,
        }
    }

    fn describe(&self) -> String {
        format!(
            "a native kmap and unmap: atomic {:.0}, persistent {:.0}, per-CPU pool {:.0}, per-task {:.0}; a native \
             global flush {:.0} cycles",
            self.atomic, self.persistent, self.percpu_pool, self.per_task, self.flush_global
        )
    }
}

impl Units {
    /// The units one calibration pass measured (`set` names its results),
    /// None unless every unit the model needs is there.
    fn of_cell(cell: &CellResult, set: &UnitResults) -> Option<Units> {
        let m = |f| cell.median(Figure::Result(f));
        let (pin, flush, trapped) = (m(set.pin)?, m(set.vm_unmap_aliases_flush)?, m(set.pin_trapped)?);
        // Timed directly where the calibration has the parts (each round less
        // its flush, or less its fixup's action and retry); else, as tables
        // before them, the difference of the wholes' medians, whose flushes
        // make most of their spread.
        let pages = m(GuestResult::UnitFlushPages).filter(|n| *n > 1.0);
        let purge_page = match (m(set.purge_one), m(set.purge_pages), m(set.vm_unmap_aliases_flush_pages), pages) {
            (Some(one), Some(many), _, Some(n)) => Some(((many - one) / (n - 1.0)).max(0.0)),
            (_, _, Some(c), Some(n)) => Some(((c - flush) / (n - 1.0)).max(0.0)),
            _ => None,
        };
        let trap_back = m(set.trap_back).unwrap_or((trapped - pin - flush).max(0.0));
        Some(Units {
            exit: m(set.exit)?,
            hypercall: m(set.hypercall)?,
            flush_global: m(set.flush_global)?,
            vm_unmap_aliases_empty_call: m(set.vm_unmap_aliases_empty)?,
            vm_unmap_aliases_flush_call: flush,
            pin,
            trap_back,
            pin_tree: m(set.pin_tree),
            purge_page,
        })
    }

    fn check(&self) -> bool {
        let u = self;
        [u.exit, u.hypercall, u.flush_global, u.vm_unmap_aliases_empty_call, u.vm_unmap_aliases_flush_call]
            .into_iter()
            .chain([u.pin, u.trap_back, u.pin_tree.unwrap_or(0.0), u.purge_page.unwrap_or(0.0)])
            .all(|x| x.is_finite() && x >= 0.0)
    }

    fn describe(&self) -> String {
        let u = self;
        format!(
            "exit {:.0}, hypercall {:.0}, global flush {:.0}, vm_unmap_aliases finding nothing {:.0}, flushing one \
             page {:.0}, each page more {}, pin {:.0}, tree pin {}, trap back {:.0} cycles",
            u.exit,
            u.hypercall,
            u.flush_global,
            u.vm_unmap_aliases_empty_call,
            u.vm_unmap_aliases_flush_call,
            u.purge_page.map_or_else(|| "not measured (priced as none)".to_owned(), |t| format!("{t:.0}")),
            u.pin,
            u.pin_tree.map_or_else(|| "not measured (priced as a pin)".to_owned(), |t| format!("{t:.0}")),
            u.trap_back
        )
    }
}

impl CostTable {
    /// The table of a calibration cell (`--workload calibrate` under
    /// `--alias host-trap`), None unless every unit was measured: the busy
    /// pass's units where the cell has them, the halted pass's where not.
    pub fn from_cell(cell: &CellResult, machine: &Machine, measured_at: &str) -> Option<CostTable> {
        let idle = Units::of_cell(cell, &UnitResults::IDLE)?;
        let busy = Units::of_cell(cell, &UnitResults::BUSY);
        Some(CostTable {
            schema: SCHEMA,
            machine: machine.clone(),
            host_mode: cell.host_modes.join(","),
            measured_at: measured_at.to_owned(),
            command: cell.cell.args.clone(),
            reps: cell.reps.len(),
            units: busy.unwrap_or(idle),
            idle_units: busy.map(|_| idle),
            kmap: None,
            idle_kmap: None,
        })
    }

    /// The calibration cell among `results`: the first that ran `calibrate`
    /// and measured every unit; with the native kmap units of the first
    /// calibration cell under `--pvmmu off` that measured them.
    pub fn from_results(results: &[CellResult], machine: &Machine, measured_at: &str) -> Option<CostTable> {
        let calibrations = || results.iter().filter(|r| r.cell.is(Setting::Workload(Workload::Calibrate)));
        let mut t = calibrations().find_map(|r| CostTable::from_cell(r, machine, measured_at))?;
        let native = calibrations().filter(|r| !r.cell.is(Setting::Pvmmu(Switch::On)));
        if let Some((idle, busy)) = native
            .filter_map(|r| Some((KmapUnits::of_cell(r, &UnitResults::IDLE)?, r)))
            .next()
            .map(|(idle, r)| (idle, KmapUnits::of_cell(r, &UnitResults::BUSY)))
        {
            t.kmap = Some(busy.unwrap_or(idle));
            t.idle_kmap = busy.map(|_| idle);
        }
        Some(t)
    }

    pub fn read(path: &Path) -> Result<CostTable, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_owned(), e))?;
        let t: CostTable = serde_json::from_str(&text).map_err(|e| Error::Json(path.to_owned(), e))?;
        if t.schema != SCHEMA {
            return Err(Error::BadSpec(format!(
                "{}: cost table schema {} (this vmm reads {SCHEMA})",
                path.display(),
                t.schema
            )));
        }
        let kmap_ok = [t.kmap, t.idle_kmap].iter().all(|k| k.is_none_or(|k| k.check()));
        if !t.units.check() || !t.idle_units.is_none_or(|u| u.check()) || !kmap_ok {
            return Err(Error::BadSpec(format!("{}: a unit cost is negative or not a number", path.display())));
        }
        Ok(t)
    }

    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Json(path.to_owned(), e))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::Write(path.to_owned(), e))
    }

    /// The units that price a cell of `vcpus` vCPUs: with one there is no
    /// other CPU to be busy, so the halted pass's where the table has them.
    pub fn units_for(&self, vcpus: u32) -> &Units {
        match &self.idle_units {
            Some(idle) if vcpus <= 1 => idle,
            _ => &self.units,
        }
    }

    /// The native kmap units that price a cell of `vcpus` vCPUs (as [`CostTable::units_for`]).
    pub fn kmap_for(&self, vcpus: u32) -> Option<&KmapUnits> {
        match &self.idle_kmap {
            Some(idle) if vcpus <= 1 => Some(idle),
            _ => self.kmap.as_ref(),
        }
    }

    /// What the other CPUs did while `units` were timed: a table has the
    /// halted pass beside only when `units` are the busy pass's.
    pub fn others(&self) -> Others {
        if self.idle_units.is_some() {
            Others::Busy
        } else {
            Others::Halted
        }
    }

    /// One line for the report: where the table comes from and its units.
    pub fn describe(&self) -> String {
        let others = match self.others() {
            Others::Halted => "the other CPUs halted",
            Others::Busy => "the other CPUs busy",
        };
        let mut s = format!(
            "measured {} on {} ({} cores, {}), {} repetitions, with {others}: {}",
            self.measured_at,
            if self.machine.cpu.is_empty() { "an unknown CPU" } else { &self.machine.cpu },
            self.machine.cores,
            if self.host_mode.is_empty() { "host mode unknown" } else { &self.host_mode },
            self.reps,
            self.units.describe(),
        );
        if let Some(idle) = &self.idle_units {
            s += &format!(" (with them halted, which price the 1-vCPU cells: {})", idle.describe());
        }
        if let Some(k) = &self.kmap {
            s += &format!("; {}", k.describe());
            if let Some(idle) = &self.idle_kmap {
                s += &format!(" (halted: {})", idle.describe());
            }
        }
        s
    }
}

/// The measured cost the model is compared with: the pins' cycles plus the
/// alias work done outside them. None without the counters.
pub fn pin_path_cycles(f: &Figures) -> Option<f64> {
    let g = |k: C| f.get(&k.into()).copied();
    Some(g(C::PtPinCycles)? + g(C::VmUnmapAliasesCycles)? - g(C::VmUnmapAliasesInPinCycles)?)
}

/// The modelled cost of one run's counts. None when the run pinned nothing or
/// lacks a count.
pub fn model_cycles(f: &Figures, u: &Units) -> Option<f64> {
    let g = |k: Figure| f.get(&k).copied();
    let pins = g(C::PtPins.into()).filter(|p| *p > 0.0)?;
    let calls = g(C::VmUnmapAliases.into())?;
    let flushed = g(C::VmUnmapAliasesFlushed.into())?;
    // A report without the host's PV MMU section has no traps back.
    let traps = g(Host::TrapsBack.into()).unwrap_or(0.0);
    let refused = g(C::PtPinRefused.into()).unwrap_or(0.0);
    // A run recorded before roots were counted prices every pin as one table.
    let roots = g(C::PtPinsRoot.into()).unwrap_or(0.0).min(pins);
    // A run recorded before purged pages were counted: one page per flushing call.
    let extra_pages = (g(C::VmUnmapAliasesPurgedPages.into()).unwrap_or(flushed) - flushed).max(0.0);
    Some(
        (pins - roots) * u.pin
            + roots * u.pin_tree.unwrap_or(u.pin)
            + (calls - flushed) * u.vm_unmap_aliases_empty_call
            + flushed * u.vm_unmap_aliases_flush_call
            + extra_pages * u.purge_page.unwrap_or(0.0)
            + traps * u.trap_back
            + refused * u.pin,
    )
}

/// The modelled cost of one native run's kmaps: each variant's kmaps priced
/// by its unit, each wrap of a persistent series by a global flush. None
/// without pte-bench's accesses or a count.
pub fn kmap_model_cycles(f: &Figures, k: &KmapUnits) -> Option<f64> {
    let g = |c: C| f.get(&c.into()).copied();
    g(C::PteBenchAccesses).filter(|a| *a > 0.0)?;
    Some(
        g(C::KmapAtomic)? * k.atomic
            + g(C::KmapPersistent)? * k.persistent
            + g(C::KmapPercpuPool)? * k.percpu_pool
            + g(C::KmapPerTask)? * k.per_task
            + g(C::PkmapFlushes)? * k.flush_global,
    )
}

/// Adds, to every repetition of every cell that pinned tables, its modelled
/// cost under `table` (`model_cycles`, `model_cycles_per_pin`), the measured
/// cost it models (`pin_path_cycles`, `_per_pin`) and `model_explains`, and
/// their statistics to the cell's.
pub fn price(results: &mut [CellResult], table: &CostTable) {
    const NAMES: [D; 5] =
        [D::ModelCycles, D::ModelCyclesPerPin, D::PinPathCycles, D::PinPathCyclesPerPin, D::ModelExplains];
    for r in results.iter_mut() {
        let units = table.units_for(r.cell.vcpus);
        for (_, f) in &mut r.reps {
            let Some(m) = model_cycles(f, units) else { continue };
            let pins = f[&C::PtPins.into()];
            f.insert(NAMES[0].into(), m);
            f.insert(NAMES[1].into(), m / pins);
            if let Some(p) = pin_path_cycles(f).filter(|p| *p > 0.0) {
                f.insert(NAMES[2].into(), p);
                f.insert(NAMES[3].into(), p / pins);
                f.insert(NAMES[4].into(), m / p);
            }
        }
        // Native kmaps, priced with native units only.
        let kmap = table.kmap_for(r.cell.vcpus).filter(|_| !r.cell.is(Setting::Pvmmu(Switch::On)));
        for (_, f) in r.reps.iter_mut().filter(|_| kmap.is_some()) {
            let Some((m, k)) = kmap.and_then(|k| Some((kmap_model_cycles(f, k)?, k))) else { continue };
            let accesses = f[&C::PteBenchAccesses.into()];
            let wraps = f[&C::PkmapFlushes.into()];
            f.insert(D::KmapModelCyclesPerAccess.into(), m / accesses);
            f.insert(D::KmapWrapModelCyclesPerAccess.into(), wraps * k.flush_global / accesses);
            // The same wraps priced as flushes with the other CPUs halted: on
            // more than one vCPU, the bound for a flush whose other CPUs wait
            // (for the kmap_lock the wrapping CPU holds).
            let halted = table.idle_kmap.as_ref().filter(|_| r.cell.vcpus > 1).unwrap_or(k);
            f.insert(D::KmapWrapHaltedModelCyclesPerAccess.into(), wraps * halted.flush_global / accesses);
        }
        const KMAP: [D; 3] =
            [D::KmapModelCyclesPerAccess, D::KmapWrapModelCyclesPerAccess, D::KmapWrapHaltedModelCyclesPerAccess];
        for name in NAMES.into_iter().chain(KMAP) {
            let v: Vec<f64> = r.reps.iter().filter_map(|(_, f)| f.get(&name.into()).copied()).collect();
            if let Some(s) = Stat::of(&v) {
                r.stats.insert(name.into(), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::figures::{named as figs, UNIT_FIGURES};

    const U: Units = Units {
        exit: 80.0,
        hypercall: 100.0,
        flush_global: 250.0,
        vm_unmap_aliases_empty_call: 20.0,
        vm_unmap_aliases_flush_call: 1000.0,
        pin: 600.0,
        trap_back: 400.0,
        pin_tree: None,
        purge_page: None,
    };

    #[test]
    fn known_counts_give_known_costs() {
        // always-flush: 100 pins, 100 calls of which 40 flushed.
        let af = figs(&[
            ("pt_pins", 100.0),
            ("vm_unmap_aliases", 100.0),
            ("vm_unmap_aliases_flushed", 40.0),
            ("traps_back", 0.0),
            ("pt_pin_refused", 0.0),
        ]);
        assert_eq!(model_cycles(&af, &U), Some(100.0 * 600.0 + 60.0 * 20.0 + 40.0 * 1000.0));
        // host-trap: 40 traps back, each a flushing call from the fixup.
        let trap = figs(&[
            ("pt_pins", 100.0),
            ("vm_unmap_aliases", 40.0),
            ("vm_unmap_aliases_flushed", 40.0),
            ("traps_back", 40.0),
        ]);
        assert_eq!(model_cycles(&trap, &U), Some(100.0 * 600.0 + 40.0 * 1000.0 + 40.0 * 400.0));
        // none: each refusal a pin attempt more.
        let none = figs(&[
            ("pt_pins", 100.0),
            ("vm_unmap_aliases", 40.0),
            ("vm_unmap_aliases_flushed", 40.0),
            ("pt_pin_refused", 40.0),
        ]);
        assert_eq!(model_cycles(&none, &U), Some(140.0 * 600.0 + 40.0 * 1000.0));
        // Roots priced as tree pins, where the table has them; as pins where not.
        let roots = figs(&[
            ("pt_pins", 100.0),
            ("pt_pins_root", 64.0),
            ("vm_unmap_aliases", 100.0),
            ("vm_unmap_aliases_flushed", 40.0),
        ]);
        let with_tree = Units { pin_tree: Some(5000.0), ..U };
        assert_eq!(model_cycles(&roots, &with_tree), Some(36.0 * 600.0 + 64.0 * 5000.0 + 60.0 * 20.0 + 40.0 * 1000.0));
        assert_eq!(model_cycles(&roots, &U), model_cycles(&af, &U));
        // Pages beyond one per flushing call, priced where the table has them;
        // fewer pages than flushing calls (a re-flush clears none) cost nothing more.
        let pages = |n: f64| {
            figs(&[
                ("pt_pins", 100.0),
                ("vm_unmap_aliases", 100.0),
                ("vm_unmap_aliases_flushed", 40.0),
                ("vm_unmap_aliases_purged_pages", n),
            ])
        };
        let with_pages = Units { purge_page: Some(300.0), ..U };
        let base = 100.0 * 600.0 + 60.0 * 20.0 + 40.0 * 1000.0;
        assert_eq!(model_cycles(&pages(160.0), &with_pages), Some(base + 120.0 * 300.0));
        assert_eq!(model_cycles(&pages(10.0), &with_pages), Some(base));
        assert_eq!(model_cycles(&pages(160.0), &U), Some(base));
        // Nothing pinned, or a count missing: no model.
        assert_eq!(model_cycles(&figs(&[("pt_pins", 0.0)]), &U), None);
        assert_eq!(model_cycles(&figs(&[("pt_pins", 1.0)]), &U), None);
    }

    #[test]
    fn alias_work_outside_the_pins_is_counted_where_it_happened() {
        // clean-pool: 4 refill purges outside the pins (no in-pin calls).
        let f = figs(&[
            ("pt_pin_cycles", 60_000.0),
            ("vm_unmap_aliases_cycles", 4_000.0),
            ("vm_unmap_aliases_in_pin_cycles", 0.0),
        ]);
        assert_eq!(pin_path_cycles(&f), Some(64_000.0));
        // always-flush: every call inside a pin, already in its cycles.
        let f = figs(&[
            ("pt_pin_cycles", 60_000.0),
            ("vm_unmap_aliases_cycles", 4_000.0),
            ("vm_unmap_aliases_in_pin_cycles", 4_000.0),
        ]);
        assert_eq!(pin_path_cycles(&f), Some(60_000.0));
    }

    #[test]
    fn the_calibration_cell_gives_the_table_and_the_trap_back_its_own_part() {
        use crate::design::CellSpec;
        let spec = CellSpec {
            linux: None,
            label: "calibration".into(),
            vcpus: 2,
            mem: "256m".into(),
            timeout: 60,
            params: [("workload", "calibrate"), ("pvmmu", "on"), ("alias", "host-trap")]
                .iter()
                .map(|(k, v)| Setting::parse(k, v).unwrap())
                .collect(),
        };
        // The halted pass's units, then the busy pass's (each twice the
        // halted one), then the many-page purge's pages. The last three of a
        // pass are the parts timed directly: the trap back (a trapped pin
        // less its fixup's action and retry), and the one-page and many-page
        // purges less their flushes.
        let idle = [
            80.0, 100.0, 250.0, 20.0, 1000.0, 3100.0, 600.0, 2000.0, 9000.0, 350.0, 150.0, 850.0, 10.0, 30.0, 20.0,
            15.0,
        ];
        let units: Vec<f64> =
            idle.iter().chain(idle.iter().map(|u| u * 2.0).collect::<Vec<_>>().iter()).copied().collect();
        let units = units.into_iter().chain([8.0]);
        let f: Figures = UNIT_FIGURES.iter().zip(units).map(|(k, v)| (Figure::Result(*k), v)).collect();
        let mut r = CellResult {
            cell: spec.resolve("calibration").unwrap(),
            reps: vec![(0, f.clone())],
            failures: vec![],
            stats: f.iter().map(|(k, v)| (*k, Stat::of(&[*v]).unwrap())).collect(),
            warnings: vec![],
            host_modes: vec!["qemu".into()],
        };
        let t = CostTable::from_results(std::slice::from_ref(&r), &Machine::default(), "now").unwrap();
        // The model prices with the busy pass; the halted one is kept beside it.
        assert_eq!(t.others(), Others::Busy);
        assert_eq!(t.kmap, None, "a PV cell's kmaps price no native cell");
        assert_eq!(t.units.trap_back, 700.0);
        assert_eq!(t.units.pin, 1200.0);
        assert_eq!(t.units.pin_tree, Some(18000.0));
        // Less their flushes, eight pages for 1700 against one for 300: 200 a page more.
        assert_eq!(t.units.purge_page, Some(200.0));
        let halted = t.idle_units.unwrap();
        assert_eq!((halted.pin, halted.trap_back, halted.purge_page), (600.0, 350.0, Some(100.0)));
        assert_eq!(t.host_mode, "qemu");
        // A calibration without the parts (before they were timed): the
        // differences of the wholes' medians, flushes and all.
        let mut old = r.clone();
        for set in [UnitResults::IDLE, UnitResults::BUSY] {
            for part in [set.trap_back, set.purge_one, set.purge_pages] {
                old.stats.remove(&Figure::Result(part));
            }
        }
        let t_old = CostTable::from_results(&[old], &Machine::default(), "now").unwrap();
        assert_eq!(t_old.units.trap_back, 4000.0 - 1200.0 - 2000.0);
        // Eight pages for 6200 against one for 2000: 600 a page more.
        assert_eq!(t_old.units.purge_page, Some(600.0));
        // Round trip through a file; a corrupt table is a clear error.
        let dir = vmm::platform::appliance::tempdir().unwrap();
        let path = dir.path().join(TABLE_FILE);
        t.write(&path).unwrap();
        assert_eq!(CostTable::read(&path).unwrap(), t);
        let mut bad = t.clone();
        bad.units.pin = -1.0;
        bad.write(&path).unwrap();
        assert!(CostTable::read(&path).is_err());
        // A table of schema 1 (before the busy pass) reads as halted units.
        let mut old: serde_json::Value = serde_json::to_value(&t).unwrap();
        old.as_object_mut().unwrap().remove("idle_units");
        std::fs::write(&path, old.to_string()).unwrap();
        assert_eq!(CostTable::read(&path).unwrap().others(), Others::Halted);
        // Without the busy pass, the halted one prices.
        r.stats.remove(&Figure::Result(GuestResult::UnitPinBusyCycles));
        let t = CostTable::from_results(std::slice::from_ref(&r), &Machine::default(), "now").unwrap();
        assert_eq!((t.others(), t.units.pin, t.idle_units), (Others::Halted, 600.0, None));
        // A calibration that lacks the trapped pin (not under host-trap) gives no table.
        r.stats.remove(&Figure::Result(GuestResult::UnitPinTrappedCycles));
        assert!(CostTable::from_results(&[r], &Machine::default(), "now").is_none());
    }

    #[test]
    fn pricing_adds_the_model_and_how_much_it_explains() {
        use crate::design::CellSpec;
        let spec = CellSpec {
            linux: None,
            label: "always-flush".into(),
            vcpus: 2,
            mem: "256m".into(),
            timeout: 60,
            params: [("pvmmu", "on"), ("alias", "always-flush")]
                .iter()
                .map(|(k, v)| Setting::parse(k, v).unwrap())
                .collect(),
        };
        let f = figs(&[
            ("pt_pins", 100.0),
            ("vm_unmap_aliases", 100.0),
            ("vm_unmap_aliases_flushed", 40.0),
            ("pt_pin_cycles", 202_400.0),
            ("vm_unmap_aliases_cycles", 41_200.0),
            ("vm_unmap_aliases_in_pin_cycles", 41_200.0),
        ]);
        let mut r = vec![CellResult {
            cell: spec.resolve("e").unwrap(),
            reps: vec![(0, f)],
            failures: vec![],
            stats: Default::default(),
            warnings: vec![],
            host_modes: vec![],
        }];
        let table = CostTable {
            schema: SCHEMA,
            machine: Machine::default(),
            host_mode: "local".into(),
            measured_at: String::new(),
            command: vec![],
            reps: 3,
            units: U,
            idle_units: None,
            kmap: None,
            idle_kmap: None,
        };
        price(&mut r, &table);
        assert_eq!(r[0].median("model_cycles"), Some(101_200.0));
        // A 1-vCPU cell has no other CPU to be busy: the halted units price it.
        let halted = Units { pin: 1200.0, ..U };
        let one = CostTable { idle_units: Some(halted), ..table.clone() };
        assert_eq!(one.units_for(2), &U);
        assert_eq!(one.units_for(1), &halted);
        assert_eq!(table.units_for(1), &U, "a table without a halted pass prices with what it has");
        assert_eq!(r[0].median("model_cycles_per_pin"), Some(1012.0));
        assert_eq!(r[0].median("pin_path_cycles"), Some(202_400.0));
        assert_eq!(r[0].median("model_explains"), Some(0.5));
    }

    fn cell(label: &str, vcpus: u32, params: &[(&str, &str)], f: Figures) -> CellResult {
        use crate::design::CellSpec;
        let spec = CellSpec {
            linux: None,
            label: label.into(),
            vcpus,
            mem: "256m".into(),
            timeout: 60,
            params: params.iter().map(|(k, v)| Setting::parse(k, v).unwrap()).collect(),
        };
        CellResult {
            cell: spec.resolve("e").unwrap(),
            reps: vec![(0, f.clone())],
            failures: vec![],
            stats: f.iter().map(|(k, v)| (*k, Stat::of(&[*v]).unwrap())).collect(),
            warnings: vec![],
            host_modes: vec![],
        }
    }

    #[test]
    fn native_kmaps_are_priced_by_the_native_calibration_only() {
        // The PV calibration: every unit at 1000 (busy 2000), no highmem so no kmap.
        let pv_units: Figures = UNIT_FIGURES
            .iter()
            .filter(|r| !r.name().contains("kmap"))
            .map(|r| (Figure::Result(*r), if r.name().contains("busy") { 2000.0 } else { 1000.0 }))
            .collect();
        let pv =
            cell("calibration", 2, &[("workload", "calibrate"), ("pvmmu", "on"), ("alias", "host-trap")], pv_units);
        // The native one: kmaps atomic 100, persistent 300, pool 200, per-task
        // 150, a global flush 5000 (busy: all twice).
        let mut native_units = Figures::new();
        for (set, k) in [(UnitResults::IDLE, 1.0), (UnitResults::BUSY, 2.0)] {
            for (r, v) in [
                (set.kmap_atomic, 100.0),
                (set.kmap_persistent, 300.0),
                (set.kmap_percpu_pool, 200.0),
                (set.kmap_per_task, 150.0),
                (set.flush_global, 5000.0),
                (set.exit, 80.0),
            ] {
                native_units.insert(Figure::Result(r), v * k);
            }
        }
        let native = cell("kmap calibration", 2, &[("workload", "calibrate"), ("lowmem", "64m")], native_units);
        let t = CostTable::from_results(&[pv.clone(), native], &Machine::default(), "now").unwrap();
        assert_eq!(t.units.pin, 2000.0, "the PV cell's units");
        assert_eq!(t.kmap.map(|k| (k.atomic, k.flush_global)), Some((200.0, 10000.0)));
        assert_eq!(t.kmap_for(1).map(|k| k.persistent), Some(300.0), "1 vCPU: the halted pass");
        // Without a native calibration, no kmap units.
        assert_eq!(CostTable::from_results(&[pv], &Machine::default(), "now").unwrap().kmap, None);
        // A native persistent pte-bench run: 1000 kmaps, 2 wraps, 4000 accesses.
        let counts = |extra: &[(&str, f64)]| {
            let mut f = figs(&[
                ("kmap_atomic", 0.0),
                ("kmap_persistent", 1000.0),
                ("kmap_percpu_pool", 0.0),
                ("kmap_per_task", 0.0),
                ("pkmap_flushes", 2.0),
                ("pte_bench_accesses", 4000.0),
            ]);
            f.extend(figs(extra));
            f
        };
        assert_eq!(kmap_model_cycles(&counts(&[]), t.kmap_for(1).unwrap()), Some(1000.0 * 300.0 + 2.0 * 5000.0));
        let mut cells = vec![
            cell("persistent", 1, &[("workload", "pte-bench"), ("pte", "persistent")], counts(&[])),
            cell("persistent pv", 1, &[("workload", "pte-bench"), ("pte", "persistent"), ("pvmmu", "on")], counts(&[])),
            cell("persistent smp", 2, &[("workload", "pte-bench"), ("pte", "persistent")], counts(&[])),
        ];
        price(&mut cells, &t);
        assert_eq!(cells[0].median("kmap_model_cycles_per_access"), Some(310_000.0 / 4000.0));
        assert_eq!(cells[0].median("kmap_wrap_model_cycles_per_access"), Some(10_000.0 / 4000.0), "the wraps' part");
        assert_eq!(cells[0].median("kmap_wrap_halted_model_cycles_per_access"), Some(10_000.0 / 4000.0), "1 vCPU");
        assert_eq!(cells[1].median("kmap_model_cycles_per_access"), None, "a PV cell is not priced by native units");
        // 2 vCPUs: the busy pass's flush (10000) prices the wraps; the halted
        // pass's (5000) gives the other bound.
        assert_eq!(cells[2].median("kmap_wrap_model_cycles_per_access"), Some(20_000.0 / 4000.0));
        assert_eq!(cells[2].median("kmap_wrap_halted_model_cycles_per_access"), Some(10_000.0 / 4000.0));
    }
}

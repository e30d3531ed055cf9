//! The oracle: the lower bound an alias strategy could reach if it knew which
//! pins really had a live lazy alias, and the consistency checks that hold for
//! any honest run of the strategies.
//!
//! The formula is [`FORMULA`], as every report prints it.
//!
//! The oracle flushes once per pin that found a live alias, but no more often
//! than the run's flushes that found something to flush: with two CPUs one
//! purge often clears the aliases of pins on both (in the default matrix 58 to
//! 63 flushing calls served 63 to 67 aliased pins), and an oracle would share
//! those flushes just the same.
//!
//! All from the counters of the same run: `pt_pins_alias_pte` counts the pins
//! whose frame had a live lazy alias PTE before the strategy acted (what an
//! oracle must flush for: the host refuses a pin for nothing else; under
//! `--vmap lazy-tlb` an alias is only a stale TLB entry, which this host revokes
//! itself at the type change, T3, so there the oracle flushes for nothing). The
//! base is the run's pin path with the time in `vm_unmap_aliases` and in the
//! trap-back's retried hypercalls taken out (an oracle needs neither), and
//! one flush costs what the run's flushing `vm_unmap_aliases` calls cost on
//! average (`vm_unmap_aliases_flush_cycles`: the calls that found nothing are
//! left out, and their cost is what a strategy wastes over the oracle). Since
//! the flushing calls' cycles are part of the run's, no run can fall below its
//! oracle. A run that aliased pins but never flushed has no flush cost of its
//! own; the bench then borrows the always-flush cell's (same configuration
//! otherwise) and says so.

use super::figures::Figures;

/// The oracle, from the counters of one run (what [`Inputs::oracle`] computes).
pub const FORMULA: &str = "\
base_pin_cycles = (pt_pin_cycles - vm_unmap_aliases_cycles - alias_fixup_retry_cycles) / pt_pins
flush_cycles    = vm_unmap_aliases_flush_cycles / vm_unmap_aliases_flushed
oracle_flushes  = min(pt_pins_alias_pte, vm_unmap_aliases_flushed)
oracle_cycles   = pt_pins x base_pin_cycles + oracle_flushes x flush_cycles
ratio_to_oracle = pt_pin_cycles / oracle_cycles
waste_cycles_per_pin = (pt_pin_cycles - oracle_cycles) / pt_pins
";

/// The counters the oracle needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inputs {
    pub pins: f64,
    pub pin_cycles: f64,
    pub aliased: f64,
    pub vua_flushed: f64,
    pub vua_cycles: f64,
    /// The part of `vua_cycles` spent in the calls that flushed.
    pub vua_flush_cycles: f64,
    /// host-trap's retried hypercalls (0 for the other strategies).
    pub retry_cycles: f64,
}

/// The oracle of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Oracle {
    pub base_pin_cycles: f64,
    pub flush_cycles: f64,
    /// The flush cost came from another cell (this run never flushed).
    pub flush_borrowed: bool,
    /// The flushes the oracle makes: one per pin with a live alias PTE, no
    /// more than the run's flushing calls (all of them when the cost is borrowed).
    pub flushes: f64,
    pub cycles: f64,
    pub cycles_per_pin: f64,
    pub ratio: f64,
    /// What the run paid per pin above its oracle: calls that found nothing,
    /// host-trap's retries, flushes the oracle would have shared.
    pub waste_per_pin: f64,
    /// The strategy's alias work per pin: what the base leaves out.
    pub alias_per_pin: f64,
}

impl Inputs {
    pub fn from_figures(f: &Figures) -> Option<Inputs> {
        let g = |k: &str| f.get(k).copied();
        Some(Inputs {
            pins: g("pt_pins")?,
            pin_cycles: g("pt_pin_cycles")?,
            aliased: g("pt_pins_alias_pte")?,
            vua_flushed: g("vm_unmap_aliases_flushed")?,
            vua_cycles: g("vm_unmap_aliases_cycles")?,
            // Reports from before the counter existed: every call's cycles.
            vua_flush_cycles: g("vm_unmap_aliases_flush_cycles").or(g("vm_unmap_aliases_cycles"))?,
            // Reports from before the counter existed counted retries as base.
            retry_cycles: g("alias_fixup_retry_cycles").unwrap_or(0.0),
        })
    }

    /// The run's own cost of one flushing vm_unmap_aliases.
    pub fn flush_cycles(&self) -> Option<f64> {
        (self.vua_flushed > 0.0).then(|| self.vua_flush_cycles / self.vua_flushed)
    }

    /// The oracle, with `borrowed` as the flush cost when the run has none of its
    /// own. None when the run pinned nothing or a needed cost is unknown.
    pub fn oracle(&self, borrowed: Option<f64>) -> Option<Oracle> {
        if self.pins <= 0.0 {
            return None;
        }
        let base = (self.pin_cycles - self.vua_cycles - self.retry_cycles).max(0.0) / self.pins;
        let (flush, flush_borrowed) = match self.flush_cycles() {
            Some(c) => (c, false),
            None if self.aliased == 0.0 => (0.0, false),
            None => (borrowed?, true),
        };
        let flushes = if flush_borrowed { self.aliased } else { self.aliased.min(self.vua_flushed) };
        let cycles = self.pins * base + flushes * flush;
        let ratio = if cycles > 0.0 { self.pin_cycles / cycles } else { f64::NAN };
        Some(Oracle {
            base_pin_cycles: base,
            flush_cycles: flush,
            flush_borrowed,
            flushes,
            cycles,
            cycles_per_pin: cycles / self.pins,
            ratio,
            waste_per_pin: (self.pin_cycles - cycles) / self.pins,
            alias_per_pin: (self.vua_cycles + self.retry_cycles) / self.pins,
        })
    }
}

impl Oracle {
    pub fn insert_into(&self, f: &mut Figures) {
        f.insert("base_pin_cycles".into(), self.base_pin_cycles);
        f.insert("flush_cycles".into(), self.flush_cycles);
        f.insert("oracle_flushes".into(), self.flushes);
        f.insert("oracle_cycles".into(), self.cycles);
        f.insert("oracle_cycles_per_pin".into(), self.cycles_per_pin);
        f.insert("waste_cycles_per_pin".into(), self.waste_per_pin);
        f.insert("alias_cycles_per_pin".into(), self.alias_per_pin);
        if self.ratio.is_finite() {
            f.insert("ratio_to_oracle".into(), self.ratio);
        }
        if self.flush_borrowed {
            f.insert("oracle_flush_borrowed".into(), 1.0);
        }
    }
}

/// Checks one run's figures against what must hold for its strategy; returns a
/// line per violation. Checks whose figures the run lacks are skipped.
pub fn consistency(alias: &str, pvmmu_on: bool, f: &Figures) -> Vec<String> {
    let g = |k: &str| f.get(k).copied();
    let mut out = Vec::new();
    if let (Some(calls), Some(flushed)) = (g("vm_unmap_aliases"), g("vm_unmap_aliases_flushed")) {
        if flushed > calls {
            out.push(format!("vm_unmap_aliases_flushed {flushed} > vm_unmap_aliases {calls}"));
        }
    }
    if let (Some(aliased), Some(pins)) = (g("pt_pins_aliased"), g("pt_pins")) {
        if aliased > pins {
            out.push(format!("pt_pins_aliased {aliased} > pt_pins {pins}"));
        }
    }
    if let Some(e) = g("pvmmu_audit_errors").filter(|&e| e > 0.0) {
        out.push(format!("the PV MMU's end-of-run audit found {e} errors"));
    }
    if !pvmmu_on {
        return out;
    }
    match alias {
        "host-trap" => {
            if let (Some(calls), Some(traps)) = (g("vm_unmap_aliases"), g("traps_back")) {
                if calls != traps {
                    out.push(format!("host-trap: vm_unmap_aliases {calls} != traps back {traps}"));
                }
            }
        }
        "always-flush" => {
            if let (Some(calls), Some(pins)) = (g("vm_unmap_aliases"), g("pt_pins")) {
                if calls < pins {
                    out.push(format!("always-flush: vm_unmap_aliases {calls} < pins {pins}"));
                }
            }
        }
        _ => {}
    }
    if alias != "none" {
        if let Some(r) = g("pt_pin_refused").filter(|&r| r > 0.0) {
            out.push(format!("{alias}: the host refused {r} pins (only --alias none should see refusals)"));
        }
    }
    if let (Some(pin_cycles), Some(oracle)) = (g("pt_pin_cycles"), g("oracle_cycles")) {
        if pin_cycles < oracle {
            out.push(format!("{alias}: pin cycles {pin_cycles:.0} below the oracle's {oracle:.0}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(pairs: &[(&str, f64)]) -> Figures {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_formula() {
        let i = Inputs {
            pins: 100.0,
            pin_cycles: 500_000.0,
            aliased: 10.0,
            vua_flushed: 20.0,
            vua_cycles: 200_000.0,
            vua_flush_cycles: 200_000.0,
            retry_cycles: 0.0,
        };
        let o = i.oracle(None).unwrap();
        assert_eq!(o.base_pin_cycles, 3000.0);
        assert_eq!(o.flush_cycles, 10_000.0);
        assert_eq!(o.cycles, 400_000.0);
        assert_eq!(o.cycles_per_pin, 4000.0);
        assert_eq!(o.ratio, 1.25);
        assert!(!o.flush_borrowed);
    }

    #[test]
    fn calls_that_found_nothing_are_the_waste_over_the_oracle() {
        // always-flush: 100 calls for 100 pins, 40 flushed (40 aliased), 60
        // found nothing and cost 60 x 100 cycles.
        let i = Inputs {
            pins: 100.0,
            pin_cycles: 100.0 * 1000.0 + 40.0 * 5000.0 + 60.0 * 100.0,
            aliased: 40.0,
            vua_flushed: 40.0,
            vua_cycles: 40.0 * 5000.0 + 60.0 * 100.0,
            vua_flush_cycles: 40.0 * 5000.0,
            retry_cycles: 0.0,
        };
        let o = i.oracle(None).unwrap();
        assert_eq!((o.base_pin_cycles, o.flush_cycles), (1000.0, 5000.0));
        assert_eq!(i.pin_cycles - o.cycles, 6000.0);
        assert_eq!(o.waste_per_pin, 60.0);
        assert!(o.ratio > 1.0);
    }

    #[test]
    fn the_trap_backs_retries_are_alias_work_not_base() {
        // host-trap: 100 pins of 1000 cycles, 10 traps back, each a flushing
        // vm_unmap_aliases of 5000 and a retried hypercall of 2000.
        let f = figs(&[
            ("pt_pins", 100.0),
            ("pt_pin_cycles", 100.0 * 1000.0 + 10.0 * (5000.0 + 2000.0)),
            ("pt_pins_alias_pte", 10.0),
            ("vm_unmap_aliases_flushed", 10.0),
            ("vm_unmap_aliases_cycles", 10.0 * 5000.0),
            ("vm_unmap_aliases_flush_cycles", 10.0 * 5000.0),
            ("alias_fixup_retry_cycles", 10.0 * 2000.0),
        ]);
        let o = Inputs::from_figures(&f).unwrap().oracle(None).unwrap();
        assert_eq!(o.base_pin_cycles, 1000.0);
        assert_eq!(o.cycles, 100.0 * 1000.0 + 10.0 * 5000.0);
        assert_eq!(o.waste_per_pin, 10.0 * 2000.0 / 100.0);
        assert_eq!(o.alias_per_pin, 10.0 * (5000.0 + 2000.0) / 100.0);
        assert!(o.ratio > 1.0, "the retries are what host-trap pays over the oracle");
    }

    #[test]
    fn no_flush_of_its_own() {
        // Nothing aliased, nothing flushed: the oracle is the bare pins.
        let i = Inputs {
            pins: 10.0,
            pin_cycles: 1000.0,
            aliased: 0.0,
            vua_flushed: 0.0,
            vua_cycles: 0.0,
            vua_flush_cycles: 0.0,
            retry_cycles: 0.0,
        };
        let o = i.oracle(None).unwrap();
        assert_eq!((o.cycles, o.ratio), (1000.0, 1.0));
        // Aliased but never flushed: a borrowed flush cost, or no oracle.
        let i = Inputs { aliased: 2.0, ..i };
        assert_eq!(i.oracle(None), None);
        let o = i.oracle(Some(50.0)).unwrap();
        assert!(o.flush_borrowed);
        assert_eq!(o.cycles, 1100.0);
        // Nothing pinned: no oracle.
        assert_eq!(Inputs { pins: 0.0, ..i }.oracle(Some(1.0)), None);
    }

    #[test]
    fn an_alias_left_only_in_tlbs_owes_the_oracle_no_flush() {
        // lazy-tlb with no alias care (the 2.6.37 cell): the guest saw 125 pins
        // with a lazy alias, but each was only a stale TLB entry (the host
        // revokes those itself), no PTE the host would refuse: no flush is owed,
        // and a run that flushed nothing is its own oracle.
        let f = figs(&[
            ("pt_pins", 136.0),
            ("pt_pin_cycles", 345e6),
            ("pt_pins_aliased", 125.0),
            ("pt_pins_alias_pte", 0.0),
            ("vm_unmap_aliases_flushed", 0.0),
            ("vm_unmap_aliases_cycles", 0.0),
            ("vm_unmap_aliases_flush_cycles", 0.0),
        ]);
        let i = Inputs::from_figures(&f).unwrap();
        assert_eq!(i.aliased, 0.0);
        let o = i.oracle(Some(5e6)).unwrap();
        assert!(!o.flush_borrowed);
        assert_eq!((o.cycles, o.ratio), (345e6, 1.0));
    }

    #[test]
    fn a_strategy_flushing_at_least_once_per_aliased_pin_is_never_below_the_oracle() {
        // (64, 60): one flush served the aliased pins of both CPUs now and then.
        for (aliased, flushed) in [(0.0, 0.0), (5.0, 5.0), (5.0, 50.0), (50.0, 50.0), (64.0, 60.0)] {
            let i = Inputs {
                pins: 50.0,
                pin_cycles: 90_000.0,
                aliased,
                vua_flushed: flushed,
                vua_cycles: 40_000.0,
                vua_flush_cycles: 25_000.0,
                retry_cycles: 0.0,
            };
            let o = i.oracle(None).unwrap();
            assert!(o.cycles <= i.pin_cycles + 1e-6, "{aliased} {flushed}: {o:?}");
            // Once per aliased pin, but no more than the run did.
            assert_eq!(o.flushes, aliased.min(flushed));
        }
    }

    #[test]
    fn consistency_checks_bite_on_bad_runs_only() {
        let good_trap = figs(&[
            ("vm_unmap_aliases", 7.0),
            ("vm_unmap_aliases_flushed", 7.0),
            ("traps_back", 7.0),
            ("pt_pins", 100.0),
            ("pt_pins_aliased", 7.0),
            ("pt_pin_refused", 0.0),
        ]);
        assert!(consistency("host-trap", true, &good_trap).is_empty());
        let mut bad_trap = good_trap.clone();
        bad_trap.insert("traps_back".into(), 6.0);
        assert_eq!(consistency("host-trap", true, &bad_trap).len(), 1);

        let good_af = figs(&[("vm_unmap_aliases", 100.0), ("vm_unmap_aliases_flushed", 9.0), ("pt_pins", 100.0)]);
        assert!(consistency("always-flush", true, &good_af).is_empty());
        let bad_af = figs(&[("vm_unmap_aliases", 99.0), ("pt_pins", 100.0)]);
        assert!(consistency("always-flush", true, &bad_af)[0].contains("< pins"));
        // Without the PV MMU there are no pins to check.
        assert!(consistency("always-flush", false, &bad_af).is_empty());

        let below = figs(&[("pt_pin_cycles", 10.0), ("oracle_cycles", 11.0)]);
        assert!(consistency("alias-bit", true, &below)[0].contains("below the oracle"));
        let refused = figs(&[("pt_pin_refused", 3.0)]);
        assert!(consistency("none", true, &refused).is_empty());
        assert_eq!(consistency("clean-pool", true, &refused).len(), 1);
        let odd = figs(&[("vm_unmap_aliases", 1.0), ("vm_unmap_aliases_flushed", 2.0), ("pvmmu_audit_errors", 1.0)]);
        assert_eq!(consistency("none", false, &odd).len(), 2);
    }
}

//! The oracle is a strategy that runs (`--alias oracle`): with the exact
//! per-frame alias counts, it purges only before a pin the host would refuse
//! (a frame with a present lazy alias PTE). Every strategy is compared with the
//! oracle cell of its own experiment, on the same workload, configuration and
//! seed ([`super::results`]): one measured yardstick for all, where an oracle
//! derived from each run's own costs gave a dearer run a kinder yardstick.
//!
//! What is left here are the checks that must hold for any honest run of a
//! strategy; each can fail, and the tests below show a bad run failing it.

use shared::config::AliasStrategy;
use shared::counters::Counter as C;

use super::figures::{Figure, Figures, Host};

/// Checks one run's figures against what must hold for its strategy; returns a
/// line per violation. Checks whose figures the run lacks are skipped.
pub fn consistency(alias: AliasStrategy, pvmmu_on: bool, f: &Figures) -> Vec<String> {
    let g = |k: Figure| f.get(&k).copied();
    let mut out = Vec::new();
    if let (Some(calls), Some(flushed)) = (g(C::VmUnmapAliases.into()), g(C::VmUnmapAliasesFlushed.into())) {
        if flushed > calls {
            out.push(format!("vm_unmap_aliases_flushed {flushed} > vm_unmap_aliases {calls}"));
        }
    }
    if let (Some(aliased), Some(pins)) = (g(C::PtPinsAliased.into()), g(C::PtPins.into())) {
        if aliased > pins {
            out.push(format!("pt_pins_aliased {aliased} > pt_pins {pins}"));
        }
    }
    if let Some(e) = g(Host::PvmmuAuditErrors.into()).filter(|&e| e > 0.0) {
        out.push(format!("the PV MMU's end-of-run audit found {e} errors"));
    }
    if !pvmmu_on {
        return out;
    }
    match alias {
        AliasStrategy::HostTrap => {
            if let (Some(calls), Some(traps)) = (g(C::VmUnmapAliases.into()), g(Host::TrapsBack.into())) {
                if calls != traps {
                    out.push(format!("host-trap: vm_unmap_aliases {calls} != traps back {traps}"));
                }
            }
        }
        // The oracle purges exactly before the pins whose frame has a present
        // lazy alias PTE, and after a refusal (there must be none).
        AliasStrategy::Oracle => {
            if let (Some(calls), Some(alias_pte), Some(refused)) =
                (g(C::VmUnmapAliases.into()), g(C::PtPinsAliasPte.into()), g(C::PtPinRefused.into()))
            {
                let missed = g(C::PtPinRefusedAfterPurge.into()).unwrap_or(0.0);
                if calls != alias_pte + refused + missed {
                    out.push(format!(
                        "oracle: vm_unmap_aliases {calls} != pins with an alias PTE {alias_pte} + refusals {refused} \
                         + refusals after the purge {missed}"
                    ));
                }
            }
        }
        AliasStrategy::AlwaysFlush => {
            if let (Some(calls), Some(pins)) = (g(C::VmUnmapAliases.into()), g(C::PtPins.into())) {
                if calls < pins {
                    out.push(format!("always-flush: vm_unmap_aliases {calls} < pins {pins}"));
                }
            }
        }
        _ => {}
    }
    // A strategy that purged before its pin is refused only where 2.6.28's
    // vm_unmap_aliases could not see the alias (a full block): then the
    // refusal repeats after the retry's purge and is counted as missed.
    if alias != AliasStrategy::None {
        let missed = g(C::PtPinRefusedAfterPurge.into()).unwrap_or(0.0);
        if let Some(r) = g(C::PtPinRefused.into()).filter(|&r| r > missed) {
            out.push(format!(
                "{alias}: the host refused {r} pins, {missed} of them missed by the purge (only --alias none \
                 should see other refusals)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::figures::named as figs;

    fn a(name: &str) -> AliasStrategy {
        AliasStrategy::from_name(name).unwrap()
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
        assert!(consistency(a("host-trap"), true, &good_trap).is_empty());
        let mut bad_trap = good_trap.clone();
        bad_trap.insert(Host::TrapsBack.into(), 6.0);
        assert_eq!(consistency(a("host-trap"), true, &bad_trap).len(), 1);

        let good_af = figs(&[("vm_unmap_aliases", 100.0), ("vm_unmap_aliases_flushed", 9.0), ("pt_pins", 100.0)]);
        assert!(consistency(a("always-flush"), true, &good_af).is_empty());
        let bad_af = figs(&[("vm_unmap_aliases", 99.0), ("pt_pins", 100.0)]);
        assert!(consistency(a("always-flush"), true, &bad_af)[0].contains("< pins"));
        // Without the PV MMU there are no pins to check.
        assert!(consistency(a("always-flush"), false, &bad_af).is_empty());

        // The oracle purges for the aliased pins and nothing else.
        let oracle = figs(&[("vm_unmap_aliases", 9.0), ("pt_pins_alias_pte", 9.0), ("pt_pin_refused", 0.0)]);
        assert!(consistency(a("oracle"), true, &oracle).is_empty());
        let extra = figs(&[("vm_unmap_aliases", 10.0), ("pt_pins_alias_pte", 9.0), ("pt_pin_refused", 0.0)]);
        assert!(consistency(a("oracle"), true, &extra)[0].contains("oracle: vm_unmap_aliases 10"));
        let refused = figs(&[("vm_unmap_aliases", 10.0), ("pt_pins_alias_pte", 9.0), ("pt_pin_refused", 1.0)]);
        assert_eq!(consistency(a("oracle"), true, &refused).len(), 1, "a refusal: the oracle missed an alias");
        let refused = figs(&[("pt_pin_refused", 3.0)]);
        assert!(consistency(a("none"), true, &refused).is_empty());
        assert_eq!(consistency(a("clean-pool"), true, &refused).len(), 1);
        let odd = figs(&[("vm_unmap_aliases", 1.0), ("vm_unmap_aliases_flushed", 2.0), ("pvmmu_audit_errors", 1.0)]);
        assert_eq!(consistency(a("none"), false, &odd).len(), 2);
    }
}

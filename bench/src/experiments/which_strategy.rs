//! The answer users came for: which strategy costs least at which alias
//! frequency, priced by the calibrated model and as measured.

use shared::config::{AliasStrategy, Setting as S};
use shared::counters::Counter as C;

use super::cells::*;
use super::verdict::*;
use crate::claim::Claim;
use crate::design::{Adapt, Experiment, PlotKind};
use crate::figures::{Derived as D, Figure, Host};

/// The answer users came for: which strategy costs least at which alias
/// frequency. The same cells as [`alias_frequency`] (their runs are shared),
/// drawn as crossovers priced by the calibrated model and by the measured
/// cycles.
pub(super) fn experiment() -> Experiment {
    let mut e = new_experiment(
        "which-strategy",
        "Which strategy, when: the crossovers",
        "For each alias frequency, the strategy whose counts cost least priced by this host's calibrated unit \
         costs, and by the measured cycles. --alias none is left out of the answer: Linux BUGs on a refused pin.",
        frequency_cells(),
        &[
            Figure::Derived(D::ModelCyclesPerPin),
            Figure::Derived(D::ModelRatioToOracle),
            Figure::Derived(D::CyclesPerPin),
            Figure::Derived(D::RatioToOracle),
            Figure::Count(C::VmUnmapAliases),
            Figure::Count(C::VmUnmapAliasesFlushed),
            Figure::Host(Host::TrapsBack),
            Figure::Count(C::CleanPoolRefills),
        ],
    );
    e.plot = Some(PlotKind::Crossover);
    e.claims = vec![Claim::WhichStrategy];
    // Its cells are alias-frequency's, and planned the same way.
    e.adapt = Some(Adapt { figure: D::ModelCyclesPerPin.into(), resolve_pct: 5, max_reps: 9 });
    e
}

/// For each alias frequency of the sweep, the strategy that costs least per
/// pin, priced by the calibrated model (the counts, which barely move, times
/// this host's unit costs) and by the measured cycles, and the counts that make
/// the difference. `none` is not an answer: Linux BUGs on a refused pin.
pub(super) fn verdict(l: &Lookup) -> Result<(Status, String), Missing> {
    let exp = Some("which-strategy");
    let candidates: Vec<AliasStrategy> =
        STRATEGIES.into_iter().filter(|s| *s != AliasStrategy::None && *s != AliasStrategy::Oracle).collect();
    let mut parts = Vec::new();
    let mut agree = 0;
    let mut priced = 0;
    for every in FREQUENCIES {
        let at = |s: AliasStrategy, figure: Figure| l.fig(&[is(S::Alias(s)), is(S::ChurnEvery(every))], exp, figure);
        let best = |figure: D| -> Option<(AliasStrategy, f64)> {
            candidates
                .iter()
                .filter_map(|s| at(*s, figure.into()).ok().map(|v| (*s, v)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        let (Some(by_cycles), by_model) = (best(D::CyclesPerPin), best(D::ModelCyclesPerPin)) else {
            continue;
        };
        let oracle = at(AliasStrategy::Oracle, D::ModelCyclesPerPin.into()).ok();
        let counts = |s: AliasStrategy| {
            let n = |f: C| at(s, f.into()).map(|v| format!("{v:.0}")).unwrap_or_else(|_| "-".into());
            format!("{} calls, {} flushing", n(C::VmUnmapAliases), n(C::VmUnmapAliasesFlushed))
        };
        let mut t = format!("every {every}: ");
        match by_model {
            Some((s, m)) => {
                priced += 1;
                t += &format!("{s} by the model ({m:.3e} per pin");
                if let Some(o) = oracle.filter(|o| *o > 0.0) {
                    t += &format!(", {:.2}x the oracle", m / o);
                }
                t += &format!("; {})", counts(s));
                if s == by_cycles.0 {
                    agree += 1;
                    t += ", and by the cycles";
                } else {
                    t += &format!(", {} by the cycles ({:.3e})", by_cycles.0, by_cycles.1);
                }
            }
            None => t += &format!("{} by the cycles ({:.3e} per pin; not priced)", by_cycles.0, by_cycles.1),
        }
        parts.push(t);
    }
    if parts.is_empty() {
        return Err(Missing::NotRun);
    }
    let mut text = parts.join("; ");
    if priced > 0 {
        text += &format!(". The model and the cycles name the same strategy at {agree} of {priced} frequencies");
    }
    Ok((Status::Measured, text))
}

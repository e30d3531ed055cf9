//! What a verdict is, and the tools every claim's verdict uses: finding a cell
//! and a figure among the results (or saying why not), and deciding a
//! difference on intervals.

use std::fmt;

use shared::config::Setting;

use crate::claim::Claim;
use crate::design::Want;
use crate::figures::Figure;
use crate::results::CellResult;
use crate::stats::{of_medians, ratio_of_medians, Ci, Difference, RatioCi, Stat};

/// A cell with this parameter at this value.
pub(super) fn is(s: Setting) -> Want {
    Want::Is(s)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Confirmed,
    Refuted,
    /// Part of the claim holds, part does not.
    Partly,
    /// A measurement, not a yes/no claim (or only part of it measured).
    Measured,
    /// The difference the claim is about lies within the spread of the
    /// repetitions: neither confirmed nor refuted by this run.
    Inconclusive,
    NotMeasured,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub claim: Claim,
    pub status: Status,
    pub text: String,
}

/// Why a figure is not there.
#[derive(Debug)]
pub(super) enum Missing {
    NotRun,
    Failed(String),
    NoFigure(String, Figure),
}

pub(super) struct Lookup<'a> {
    pub(super) results: &'a [CellResult],
}

pub(super) fn not_measured(m: Missing, full: bool) -> (Status, String) {
    let text = match m {
        Missing::NotRun if full => "its cells are not in this run".to_owned(),
        Missing::NotRun => "needs --full".to_owned(),
        Missing::Failed(why) => format!("its run failed ({why})"),
        Missing::NoFigure(cell, fig) => format!("{cell} gave no {fig}"),
    };
    (Status::NotMeasured, text)
}

/// ", within the noise" for a comparison that decided nothing.
pub(super) fn noise_suffix(decided: Option<bool>) -> &'static str {
    if decided.is_none() {
        ", within the noise"
    } else {
        ""
    }
}

/// [`status`] with parts that may be within the noise (None): those neither
/// confirm nor refute.
pub(super) fn status_noisy(parts: &[Option<bool>]) -> Status {
    let decided: Vec<bool> = parts.iter().flatten().copied().collect();
    if decided.len() == parts.len() {
        return status(&decided);
    }
    match (decided.iter().any(|p| *p), decided.iter().any(|p| !*p)) {
        (false, false) => Status::Inconclusive,
        (true, _) => Status::Partly,
        (false, true) => Status::Refuted,
    }
}

pub(super) fn status(parts: &[bool]) -> Status {
    match (parts.iter().all(|p| *p), parts.iter().any(|p| *p)) {
        (true, _) => Status::Confirmed,
        (false, true) => Status::Partly,
        (false, false) => Status::Refuted,
    }
}

pub(super) fn plural(v: u32) -> &'static str {
    if v == 1 {
        ""
    } else {
        "s"
    }
}

/// Keeps a failure over a cell that did not run.
pub(super) fn keep_worst(last: &mut Missing, m: Missing) {
    if !matches!(m, Missing::NotRun) {
        *last = m;
    }
}

/// Seed of the bootstrap intervals of differences: fixed, so a report
/// re-gathered from the same runs says the same.
const BOOTSTRAP_SEED: u64 = 0x005e_ed0f_b007;

/// Resamples of each bootstrap interval.
const BOOTSTRAP_RESAMPLES: usize = 4000;

/// median(a) / median(b) with a 95% percentile-bootstrap interval of that ratio,
/// and whether a is clearly below b (Some(true)), clearly above (Some(false))
/// or within the noise (None): a verdict on a difference rests on an interval
/// of the difference, not on two intervals that happen to overlap.
pub(super) fn differ(a: &[f64], b: &[f64]) -> Option<(RatioCi, Option<bool>)> {
    let ci = ratio_of_medians(a, b, 0.95, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)?;
    let below = match ci.difference() {
        Difference::Lower => Some(true),
        Difference::Higher => Some(false),
        Difference::WithinNoise => None,
    };
    Some((ci, below))
}

/// How far apart two priced costs must be for the model to tell them apart:
/// its units move between calibrations of one host (the trap back came out
/// 5.2e5 to 6.95e5 cycles over five calibrations on 2026-12-05 and -06, the
/// busy global flush 5.9e6 to 6.6e6), which moves a strategy's priced cost
/// by up to about 2%, and the bootstrap over the cells' counts does not see
/// that. A priced ratio whose interval reaches within 5% of 1 decides nothing.
pub(super) const MODEL_PRECISION: f64 = 0.05;

/// [`differ`] for costs priced by the model: a ratio whose interval reaches
/// into `[1 / (1 + MODEL_PRECISION), 1 + MODEL_PRECISION]` is within the
/// model's precision (None), however tight the interval.
pub(super) fn differ_priced(a: &[f64], b: &[f64]) -> Option<(RatioCi, Option<bool>)> {
    let (ci, _) = differ(a, b)?;
    let below = if ci.hi < 1.0 / (1.0 + MODEL_PRECISION) {
        Some(true)
    } else if ci.lo > 1.0 + MODEL_PRECISION {
        Some(false)
    } else {
        None
    };
    Some((ci, below))
}

pub(super) fn ratio_text(ci: &RatioCi) -> String {
    format!("{:.2}x [{:.2}-{:.2}, 95% bootstrap, n {}/{}]", ci.ratio, ci.lo, ci.hi, ci.n_a, ci.n_b)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Confirmed => "confirmed",
            Status::Refuted => "refuted",
            Status::Partly => "partly confirmed",
            Status::Measured => "measured",
            Status::Inconclusive => "inconclusive",
            Status::NotMeasured => "not measured",
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.claim, self.status, self.text)
    }
}

impl<'a> Lookup<'a> {
    pub(super) fn cell(&self, want: &[Want], experiment: Option<&str>) -> Result<&'a CellResult, Missing> {
        let mut matching = self
            .results
            .iter()
            .filter(|r| r.ran() && r.matches(want))
            .filter(|r| experiment.is_none_or(|e| r.cell.experiments.iter().any(|x| x == e)));
        let first = matching.next().ok_or(Missing::NotRun)?;
        if !first.reps.is_empty() {
            return Ok(first);
        }
        match std::iter::once(first).chain(matching).find(|r| !r.reps.is_empty()) {
            Some(r) => Ok(r),
            None => Err(Missing::Failed(format!(
                "{}: {}",
                first.cell.label,
                first.failures.first().map(|(_, w)| w.as_str()).unwrap_or("failed")
            ))),
        }
    }

    pub(super) fn fig(
        &self,
        want: &[Want],
        experiment: Option<&str>,
        figure: impl Into<Figure>,
    ) -> Result<f64, Missing> {
        let figure = figure.into();
        let c = self.cell(want, experiment)?;
        c.median(figure).ok_or_else(|| Missing::NoFigure(c.cell.label.clone(), figure))
    }

    /// The figure's value in each repetition of the cell.
    pub(super) fn sample(
        &self,
        want: &[Want],
        experiment: Option<&str>,
        figure: impl Into<Figure>,
    ) -> Result<Vec<f64>, Missing> {
        let figure = figure.into();
        let c = self.cell(want, experiment)?;
        let v: Vec<f64> = c.reps.iter().filter_map(|(_, f)| f.get(&figure).copied()).collect();
        if v.is_empty() {
            return Err(Missing::NoFigure(c.cell.label.clone(), figure));
        }
        Ok(v)
    }
}

/// An interval (95%, percentile bootstrap, the verdicts' seed) of a function
/// of several cells' medians: what a verdict on a difference rests on.
pub(super) fn interval(samples: &[&[f64]], f: impl Fn(&[f64]) -> f64) -> Option<Ci> {
    // A ratio of a median of 0 decides nothing (as in ratio_of_medians).
    of_medians(samples, f, 0.95, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED).filter(|ci| ci.value.is_finite())
}

/// The first median over the second.
pub(super) fn ratio(m: &[f64]) -> f64 {
    m[0] / m[1]
}

/// The median of a sample (of its finite values; NaN when none).
pub(super) fn median(v: &[f64]) -> f64 {
    Stat::of(v).map(|s| s.median).unwrap_or(f64::NAN)
}

/// "[0.91-1.10, 95% bootstrap, n 9]": an interval as a verdict prints it.
pub(super) fn ci_range(ci: &Ci) -> String {
    let n = ci.n.iter().min().copied().unwrap_or(0);
    format!("[{:.2}-{:.2}, 95% bootstrap, n {n}]", ci.lo, ci.hi)
}

/// Some(true) when the whole interval lies above `t`, Some(false) when below
/// it, None when it holds `t` (the repetitions cannot tell).
pub(super) fn above(ci: &Ci, t: f64) -> Option<bool> {
    match ci.against(t) {
        Difference::Higher => Some(true),
        Difference::Lower => Some(false),
        Difference::WithinNoise => None,
    }
}

/// Some(true) when the whole interval lies below `t`, Some(false) when above
/// it, None when it holds `t`.
pub(super) fn below(ci: &Ci, t: f64) -> Option<bool> {
    above(ci, t).map(|a| !a)
}

/// Some(true) when the whole interval lies within lo..=hi, Some(false) when
/// wholly outside it, None when it reaches across an end.
pub(super) fn within(ci: &Ci, lo: f64, hi: f64) -> Option<bool> {
    if ci.lo >= lo && ci.hi <= hi {
        Some(true)
    } else if ci.hi < lo || ci.lo > hi {
        Some(false)
    } else {
        None
    }
}

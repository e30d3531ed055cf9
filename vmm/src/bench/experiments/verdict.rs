//! What a verdict is, and the tools every claim's verdict uses: finding a cell
//! and a figure among the results (or saying why not), and deciding a
//! difference on intervals.

use std::fmt;

use shared::config::Setting;

use crate::bench::claim::Claim;
use crate::bench::figures::Figure;
use crate::bench::matrix::Want;
use crate::bench::results::CellResult;
use crate::bench::stats::{ratio_of_medians, Difference, RatioCi, Stat};

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

/// Whether `a` is clearly below `b`: `a`'s median interval ([`Stat::lo`]..
/// [`Stat::hi`]) wholly below `b`'s gives true, the reverse false, overlapping
/// intervals None (the difference is within the noise; QEMU-hosted,
/// repetitions of a cell spread by 10 to 40% in cycles). With the default 3
/// repetitions the intervals are min..max; more repetitions narrow them.
pub(super) fn clearly_below(a: &Stat, b: &Stat) -> Option<bool> {
    if a.hi < b.lo {
        Some(true)
    } else if a.lo > b.hi {
        Some(false)
    } else {
        None
    }
}

/// ", within the noise" for a comparison that decided nothing.
pub(super) fn noise_suffix(decided: Option<bool>) -> &'static str {
    if decided.is_none() {
        ", within the noise"
    } else {
        ""
    }
}

/// The median's interval, named with its real coverage for its repetitions.
pub(super) fn range(s: &Stat) -> String {
    format!("{:.3e}..{:.3e} ({})", s.lo, s.hi, s.interval_label())
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

    /// The figure over the cell's repetitions (min, median, max).
    pub(super) fn stat(
        &self,
        want: &[Want],
        experiment: Option<&str>,
        figure: impl Into<Figure>,
    ) -> Result<Stat, Missing> {
        let figure = figure.into();
        let c = self.cell(want, experiment)?;
        c.stat(figure).ok_or_else(|| Missing::NoFigure(c.cell.label.clone(), figure))
    }
}

//! A verdict line for each claim of the design notes (section 4) and for the
//! Linux history experiment, computed from the figures of the cells that ran.
//! A claim whose cells did not run (or failed) says so instead.

use std::fmt;

use shared::config::{AliasStrategy, PteVariant, Setting, Setting as S, Switch, VmapFlush, VmapVariant, Workload};
use shared::counters::Counter as C;
use shared::results::GuestResult as R;

use super::figures::{Derived as D, Figure, Host};
use super::matrix::Want::{self, Vcpus};
use super::results::CellResult;
use super::stats::{ratio_of_medians, Difference, RatioCi, Stat};

/// A cell with this parameter at this value.
fn is(s: Setting) -> Want {
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

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub id: &'static str,
    pub claim: &'static str,
    pub status: Status,
    pub text: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.id, self.status, self.text)
    }
}

/// The claims, as the design notes put them.
pub const CLAIMS: [(&str, &str); 10] = [
    (
        "claim 1",
        "one lazy mapping's vm_unmap_aliases() costs about one old-style vunmap; with many lazy mappings lazy wins",
    ),
    ("claim 2", "256 persistent kmap entries are not that small; 2048 are better for caching and flushing"),
    ("claim 3", "atomic kmaps take no lock and scale with CPUs; the global kmap_lock does not"),
    ("claim 4", "highpte lifts the lowmem cap on pagetables"),
    ("claim 5", "highpte makes a pte access slightly more expensive"),
    ("claim 6", "per-task kmaps beat the global pool on SMP but are worse on UP"),
    ("claim 7", "each alias strategy's cost per pin, and host-trap's when aliases are rare versus frequent"),
    (
        "history",
        "2.6.28 always-flush + lazy-ptes -> 2.6.36 lazy vmap off -> 2.6.37 lazy-tlb with no alias flush; 6.5's \
         vm_unmap_aliases stops flushing the same dirty ranges again",
    ),
    // The question users bring: the frequency sweep's crossovers.
    (
        "which strategy",
        "which alias strategy costs least at each alias frequency, priced by this host's unit costs and as measured",
    ),
    // Not a claim of the design notes: issue 5's measurement of the pv-ops.
    ("batching", "batching a lazy-MMU section's pagetable writes into one mmu_update saves hypercall exits"),
];

/// Why a figure is not there.
#[derive(Debug)]
enum Missing {
    NotRun,
    Failed(String),
    NoFigure(String, Figure),
}

struct Lookup<'a> {
    results: &'a [CellResult],
}

impl<'a> Lookup<'a> {
    fn cell(&self, want: &[Want], experiment: Option<&str>) -> Result<&'a CellResult, Missing> {
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

    fn fig(&self, want: &[Want], experiment: Option<&str>, figure: impl Into<Figure>) -> Result<f64, Missing> {
        let figure = figure.into();
        let c = self.cell(want, experiment)?;
        c.median(figure).ok_or_else(|| Missing::NoFigure(c.cell.label.clone(), figure))
    }

    /// The figure's value in each repetition of the cell.
    fn sample(&self, want: &[Want], experiment: Option<&str>, figure: impl Into<Figure>) -> Result<Vec<f64>, Missing> {
        let figure = figure.into();
        let c = self.cell(want, experiment)?;
        let v: Vec<f64> = c.reps.iter().filter_map(|(_, f)| f.get(&figure).copied()).collect();
        if v.is_empty() {
            return Err(Missing::NoFigure(c.cell.label.clone(), figure));
        }
        Ok(v)
    }

    /// The figure over the cell's repetitions (min, median, max).
    fn stat(&self, want: &[Want], experiment: Option<&str>, figure: impl Into<Figure>) -> Result<Stat, Missing> {
        let figure = figure.into();
        let c = self.cell(want, experiment)?;
        c.stat(figure).ok_or_else(|| Missing::NoFigure(c.cell.label.clone(), figure))
    }
}

fn not_measured(m: Missing, full: bool) -> (Status, String) {
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
fn clearly_below(a: &Stat, b: &Stat) -> Option<bool> {
    if a.hi < b.lo {
        Some(true)
    } else if a.lo > b.hi {
        Some(false)
    } else {
        None
    }
}

/// ", within the noise" for a comparison that decided nothing.
fn noise_suffix(decided: Option<bool>) -> &'static str {
    if decided.is_none() {
        ", within the noise"
    } else {
        ""
    }
}

/// The median's interval, named with its real coverage for its repetitions.
fn range(s: &Stat) -> String {
    format!("{:.3e}..{:.3e} ({})", s.lo, s.hi, s.interval_label())
}

/// [`status`] with parts that may be within the noise (None): those neither
/// confirm nor refute.
fn status_noisy(parts: &[Option<bool>]) -> Status {
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

fn status(parts: &[bool]) -> Status {
    match (parts.iter().all(|p| *p), parts.iter().any(|p| *p)) {
        (true, _) => Status::Confirmed,
        (false, true) => Status::Partly,
        (false, false) => Status::Refuted,
    }
}

fn plural(v: u32) -> &'static str {
    if v == 1 {
        ""
    } else {
        "s"
    }
}

/// Linux's own figure for claim 1 ("mm: rewrite vmap layer", 2.6.28): one
/// thread of map 4 pages, touch, unmap on an SMP machine, 14700 ns eagerly
/// against 2900 lazily. Its analogue: one looping vCPU of two, the other idle
/// and answering the eager form's flush IPIs (`--bench-cpus 1`). A measurement
/// to set beside Linux's, so it only adds text.
fn one_thread_on_smp(l: &Lookup) -> String {
    let cell =
        |form: VmapVariant| [is(S::Workload(Workload::VmapBench)), is(S::Vmap(form)), Vcpus(2), is(S::BenchCpus(1))];
    let got = (|| {
        let eager = l.fig(&cell(VmapVariant::Eager), None, R::VmapBenchNs)?;
        let lazy = l.fig(&cell(VmapVariant::LazyPtes), None, R::VmapBenchNs)?;
        let per_iter = |form: VmapVariant| -> Result<f64, Missing> {
            // The loop's own flushes (vmap_flushes also counts boot's and the
            // one-lazy-mapping rounds').
            Ok(l.fig(&cell(form), None, R::VmapBenchFlushes)? / l.fig(&cell(form), None, R::VmapBenchIters)?)
        };
        Ok::<_, Missing>((eager, lazy, per_iter(VmapVariant::Eager)?, per_iter(VmapVariant::LazyPtes)?))
    })();
    match got {
        Ok((eager, lazy, fe, fl)) => format!(
            "one thread on 2 vCPUs, as Linux measured it: eager {eager:.0} ns against lazy-ptes {lazy:.0} ns per \
             iteration, {:.1}x (Linux 2.6.28: 14700 against 2900 ns, 5.1x), from {fe:.2} against {fl:.4} global \
             flushes per iteration; ",
            eager / lazy
        ),
        Err(_) => String::new(),
    }
}

fn claim1(l: &Lookup) -> Result<(Status, String), Missing> {
    let mut last = Missing::NotRun;
    for v in [1, 2] {
        let base = |form: VmapVariant| {
            [is(S::Workload(Workload::VmapBench)), is(S::Vmap(form)), Vcpus(v), is(S::BenchCpus(0))]
        };
        let got = (|| {
            let eager = l.fig(&base(VmapVariant::Eager), None, R::VmapBenchNs)?;
            let lazy = l.fig(&base(VmapVariant::LazyPtes), None, R::VmapBenchNs)?;
            let eager_one = l.fig(&base(VmapVariant::Eager), None, R::VmapOneAliasNs)?;
            let one = l.fig(&base(VmapVariant::LazyPtes), None, R::VmapOneAliasNs)?;
            Ok((eager, lazy, eager_one, one))
        })();
        match got {
            Ok((eager, lazy, eager_one, one)) => {
                // The same round (map 4 pages, write, unmap, vm_unmap_aliases):
                // lazily, the purge flushes once; eagerly, the unmap flushed and
                // vm_unmap_aliases finds nothing (scripts/vmap-figures.sh).
                let r1 = one / eager_one;
                let many = eager / lazy;
                let about_one = (0.5..=2.0).contains(&r1);
                let lazy_wins = many > 1.0;
                let linux = one_thread_on_smp(l);
                return Ok((
                    status(&[about_one, lazy_wins]),
                    linux
                        + &format!(
                            "one lazy mapping's vm_unmap_aliases costs {r1:.2}x an eager vunmap (a map, write, unmap, \
                         vm_unmap_aliases round: {one:.0} vs {eager_one:.0} ns){}; with many lazy mappings lazy-ptes \
                         is {many:.1}x {} than eager ({lazy:.0} vs {eager:.0} ns per vmap-bench iteration; {v} vCPU{})",
                            if about_one { "" } else { ", not about one" },
                            if lazy_wins { "faster" } else { "slower" },
                            plural(v)
                        ),
                ));
            }
            Err(m) => keep_worst(&mut last, m),
        }
    }
    Err(last)
}

/// Keeps a failure over a cell that did not run.
fn keep_worst(last: &mut Missing, m: Missing) {
    if !matches!(m, Missing::NotRun) {
        *last = m;
    }
}

fn claim2(l: &Lookup) -> Result<(Status, String), Missing> {
    let cell =
        |n: u64| [is(S::Workload(Workload::MmAll)), is(S::Pte(PteVariant::Persistent)), is(S::LastPkmap(n)), Vcpus(2)];
    let sleeps = l.fig(&cell(256), None, C::KmapSleeps)?;
    let f256 = l.fig(&cell(256), None, D::PkmapFlushesPerKfault)?;
    let f2048 = l.fig(&cell(2048), None, D::PkmapFlushesPerKfault)?;
    let h256 = l.fig(&cell(256), None, D::KmapCacheHitsPerKfault)?;
    let h2048 = l.fig(&cell(2048), None, D::KmapCacheHitsPerKfault)?;
    let small_enough = sleeps == 0.0;
    let mut text = format!(
        "at 256 entries {} (median {sleeps:.0} sleeps on a full pool); mm-all from 256 to 2048 entries, per 1000 \
         faults: pool flushes {f256:.2} -> {f2048:.2}, cache hits {h256:.0} -> {h2048:.0}",
        if small_enough { "no task slept" } else { "tasks slept" }
    );
    // The flushing half needs a load that wraps the pool (pkmap-wrap).
    let wrap =
        |n: u64| [is(S::Workload(Workload::TaskCapacity)), is(S::Pte(PteVariant::Persistent)), is(S::LastPkmap(n))];
    let wrapping = Some("pkmap-wrap");
    let flushes_better = match (
        l.fig(&wrap(256), wrapping, R::PkmapWrapFlushes),
        l.fig(&wrap(2048), wrapping, R::PkmapWrapFlushes),
        l.stat(&wrap(256), wrapping, D::WorkloadCyclesMax),
        l.stat(&wrap(2048), wrapping, D::WorkloadCyclesMax),
    ) {
        (Ok(w256), Ok(w2048), Ok(s256), Ok(s2048)) => {
            // The longer O(N) scan of 2048 entries must not cost the span more
            // than the flushes it saves.
            let not_slower = clearly_below(&s256, &s2048) != Some(true);
            text += &format!(
                "; a load that wraps the pool (4096 pte pages): wraps {w256:.0} -> {w2048:.0}, span {:.3e} -> \
                 {:.3e} cycles{}",
                s256.median,
                s2048.median,
                if not_slower { "" } else { " (2048 slower)" }
            );
            w2048 < w256 && not_slower
        }
        (Err(m), ..) | (_, Err(m), ..) | (.., Err(m), _) | (.., Err(m)) => {
            let (_, why) = not_measured(m, true);
            text += &format!("; the wrapping load not measured ({why})");
            f2048 < f256
        }
    };
    // More than 1% more page->virtual cache hits.
    let caches_better = h2048 > h256 * 1.01;
    text += match (flushes_better, caches_better) {
        (true, true) => "",
        (true, false) => " (2048 flushes less but caches no better)",
        (false, true) => " (2048 caches better but flushes no less)",
        (false, false) => " (2048 neither flushes less nor caches better)",
    };
    Ok((status(&[small_enough, flushes_better, caches_better]), text))
}

/// Claim 3. What a second vCPU costs the emulator itself (one TCG thread runs
/// both) is lowpte's slowdown: pte-bench with no kmap at all. A variant
/// scales when it slows by no more than that (within 25%).
fn claim3(l: &Lookup) -> Result<(Status, String), Missing> {
    let cell = |pte: PteVariant, v: u32| [is(S::Workload(Workload::PteBench)), is(S::Pte(pte)), Vcpus(v)];
    let exp = Some("kmap-scaling");
    let fig = |pte: PteVariant, v: u32| l.fig(&cell(pte, v), exp, D::PteCyclesPerAccess);
    let (l1, l2) = (fig(PteVariant::Lowpte, 1)?, fig(PteVariant::Lowpte, 2)?);
    let (a1, a2) = (fig(PteVariant::Atomic, 1)?, fig(PteVariant::Atomic, 2)?);
    let (p1, p2) = (fig(PteVariant::Persistent, 1)?, fig(PteVariant::Persistent, 2)?);
    let wa = l.fig(&cell(PteVariant::Atomic, 2), exp, C::KmapLockWaits)?;
    let wp = l.fig(&cell(PteVariant::Persistent, 2), exp, C::KmapLockWaits)?;
    let (sl, sa, sp) = (l2 / l1, a2 / a1, p2 / p1);
    let atomic_scales = wa == 0.0 && sa <= sl * 1.25;
    let lock_does_not = wp > 0.0 && sp > sl * 1.25;
    Ok((
        status(&[atomic_scales, lock_does_not]),
        format!(
            "pte access 1 -> 2 vCPUs: atomic {a1:.0} -> {a2:.0} cycles ({sa:.2}x, {wa:.0} kmap_lock waits), \
             persistent {p1:.0} -> {p2:.0} ({sp:.2}x, {wp:.0} kmap_lock waits), against lowpte's {l1:.0} -> {l2:.0} \
             ({sl:.2}x: what a second vCPU costs with no kmap at all, one TCG thread running both); beyond \
             that, atomic {:.2}x, persistent {:.2}x",
            sa / sl,
            sp / sl
        ),
    ))
}

fn claim4(l: &Lookup) -> Result<(Status, String), Missing> {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let mut last = Missing::NotRun;
    for low in [8u64, 16, 32, 64, 128, 256].map(|m| m << 20) {
        let cell = |pte: PteVariant| [is(S::Workload(Workload::TaskCapacity)), is(S::Pte(pte)), is(S::Lowmem(low))];
        match (
            l.fig(&cell(PteVariant::Lowpte), None, R::TasksStarted),
            l.fig(&cell(PteVariant::Atomic), None, R::TasksStarted),
        ) {
            (Ok(lo), Ok(hi)) => {
                parts.push(hi > lo);
                text.push(format!(
                    "lowmem {}: {lo:.0} tasks with lowpte, {hi:.0} with highpte",
                    super::matrix::size_text(low)
                ));
            }
            (Err(m), _) | (_, Err(m)) => keep_worst(&mut last, m),
        }
    }
    if parts.is_empty() {
        return Err(last);
    }
    Ok((status(&parts), text.join("; ")))
}

/// Claim 5, measured two ways: a map per pte read, and a map per pte page
/// with every pte of it read (Linux's shape, which decides when measured).
fn claim5(l: &Lookup) -> Result<(Status, String), Missing> {
    match (claim5_at(l, 1), claim5_at(l, 512)) {
        (Ok((_, t1)), Ok((s512, t512))) => Ok((
            s512,
            format!("a whole pte page per map (Linux's zap and copy loops, which decides): {t512}; a map per pte read: {t1}"),
        )),
        (Ok((s, t)), Err(_)) => Ok((s, format!("a map per pte read: {t} (one map per pte page not measured)"))),
        (Err(_), Ok((s, t))) => Ok((s, format!("a whole pte page per map: {t}"))),
        (Err(m), Err(_)) => Err(m),
    }
}

/// Claim 5 at `reads` pte reads per map: atomic kmaps against lowmem.
/// "Slightly more expensive": atomic's interval lies above lowpte's and the
/// ratio of the medians is at most 3; overlapping intervals decide nothing.
fn claim5_at(l: &Lookup, reads: u64) -> Result<(Status, String), Missing> {
    let mut last = Missing::NotRun;
    for v in [1, 2] {
        let cell =
            |pte: PteVariant| [is(S::Workload(Workload::PteBench)), is(S::Pte(pte)), Vcpus(v), is(S::PteReads(reads))];
        match (
            l.stat(&cell(PteVariant::Lowpte), None, D::PteCyclesPerAccess),
            l.stat(&cell(PteVariant::Atomic), None, D::PteCyclesPerAccess),
        ) {
            (Ok(lo_s), Ok(at_s)) => {
                let (lo, at) = (lo_s.median, at_s.median);
                let r = at / lo;
                let mut others = Vec::new();
                for pte in [PteVariant::Persistent, PteVariant::PercpuPool, PteVariant::PerTask] {
                    if let Ok(c) = l.fig(&cell(pte), None, D::PteCyclesPerAccess) {
                        others.push(format!("{pte} {c:.1} ({:.1}x)", c / lo));
                    }
                }
                let dearer = clearly_below(&lo_s, &at_s);
                let (status, how) = match dearer {
                    Some(true) if r <= 3.0 => (Status::Confirmed, ", slightly more"),
                    Some(true) => (Status::Refuted, ", much more expensive"),
                    Some(false) => (Status::Refuted, ", not more expensive"),
                    None => (Status::Inconclusive, ", within the noise"),
                };
                return Ok((
                    status,
                    format!(
                        "one pte read costs {at:.1} cycles with atomic kmaps against {lo:.1} in lowmem ({r:.2}x{how}){}; \
                         {v} vCPU{}",
                        if others.is_empty() { String::new() } else { format!("; {}", others.join(", ")) },
                        plural(v)
                    ),
                ));
            }
            (Err(m), _) | (_, Err(m)) => keep_worst(&mut last, m),
        }
    }
    Err(last)
}

/// Claim 6, decided on the kmap itself (pte-bench: per access, the pool's
/// locked page->virtual cache hit against per-task's pte write and invlpg);
/// mm-all's span is reported beside it, where the kmap is a small part.
fn claim6(l: &Lookup) -> Result<(Status, String), Missing> {
    let pb = |pte: PteVariant, v: u32| [is(S::Workload(Workload::PteBench)), is(S::Pte(pte)), Vcpus(v)];
    // The experiment's cells (pte-cost and kmap-scaling share its pte-bench
    // configuration, so in the built-in matrices they are one cell).
    let exp = Some("per-task-kmaps");
    let fig = D::PteCyclesPerAccess;
    let t1 = l.stat(&pb(PteVariant::PerTask, 1), exp, fig)?;
    let g1 = l.stat(&pb(PteVariant::Persistent, 1), exp, fig)?;
    let t2 = l.stat(&pb(PteVariant::PerTask, 2), exp, fig)?;
    let g2 = l.stat(&pb(PteVariant::Persistent, 2), exp, fig)?;
    // SMP: per-task below the pool; UP: the pool below per-task.
    let (smp, up) = (clearly_below(&t2, &g2), clearly_below(&g1, &t1));
    let say = |part: Option<bool>, yes: &str, no: &str, t: &Stat, g: &Stat| match part {
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
        None => format!("within the noise: per-task {}, pool {}", range(t), range(g)),
    };
    let mut text = format!(
        "one pte map, read and unmap (pte-bench), per-task against the persistent pool: {:.0} against {:.0} cycles \
         on SMP ({:.2}x, 2 vCPUs, {}), {:.0} against {:.0} on UP ({:.2}x, {})",
        t2.median,
        g2.median,
        t2.median / g2.median,
        say(smp, "per-task faster", "per-task slower", &t2, &g2),
        t1.median,
        g1.median,
        t1.median / g1.median,
        say(up, "per-task slower", "per-task faster", &t1, &g1)
    );
    let per_access = |pte, v, f: Figure| l.fig(&pb(pte, v), exp, f).ok();
    if let (Some(h), Some(i), Some(w)) = (
        per_access(PteVariant::Persistent, 1, D::KmapCacheHitsPerAccess.into()),
        per_access(PteVariant::PerTask, 1, D::TlbInvlpgPerAccess.into()),
        per_access(PteVariant::Persistent, 2, C::KmapLockWaits.into()),
    ) {
        text += &format!(
            "; the pool's cache served {h:.2} maps per access on UP, per-task flushed {i:.2} TLB entries per \
             access; {w:.0} kmap_lock waits on SMP"
        );
    }
    let mm = |pte: PteVariant, v: u32| [is(S::Workload(Workload::MmAll)), is(S::Pte(pte)), Vcpus(v), is(S::Tasks(8))];
    let span = D::WorkloadCyclesMax;
    if let (Ok(t1), Ok(g1), Ok(t2), Ok(g2)) = (
        l.stat(&mm(PteVariant::PerTask, 1), None, span),
        l.stat(&mm(PteVariant::Persistent, 1), None, span),
        l.stat(&mm(PteVariant::PerTask, 2), None, span),
        l.stat(&mm(PteVariant::Persistent, 2), None, span),
    ) {
        let noise = |t: &Stat, g: &Stat| noise_suffix(clearly_below(t, g));
        text += &format!(
            "; the whole mm-all span, per-task / pool: {:.2}x on SMP{}, {:.2}x on UP{}",
            t2.median / g2.median,
            noise(&t2, &g2),
            t1.median / g1.median,
            noise(&t1, &g1)
        );
    }
    Ok((status_noisy(&[smp, up]), text))
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
fn differ(a: &[f64], b: &[f64]) -> Option<(RatioCi, Option<bool>)> {
    let ci = ratio_of_medians(a, b, 0.95, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)?;
    let below = match ci.difference() {
        Difference::Lower => Some(true),
        Difference::Higher => Some(false),
        Difference::WithinNoise => None,
    };
    Some((ci, below))
}

fn ratio_text(ci: &RatioCi) -> String {
    format!("{:.2}x [{:.2}-{:.2}, 95% bootstrap, n {}/{}]", ci.ratio, ci.lo, ci.hi, ci.n_a, ci.n_b)
}

fn claim7(l: &Lookup, full: bool) -> Result<(Status, String), Missing> {
    use super::matrix::STRATEGIES;
    let exp = Some("alias-strategies");
    // The strategies compete; the oracle is the yardstick, and none is no
    // answer (Linux BUGs on a refused pin): both are listed, neither wins.
    let competes = |s: AliasStrategy| s != AliasStrategy::Oracle && s != AliasStrategy::None;
    let mut counts = Vec::new();
    let mut cycles = Vec::new();
    let mut first_missing = None;
    for s in STRATEGIES {
        let want = [is(S::Alias(s))];
        let f = |name: Figure| l.fig(&want, exp, name);
        match (f(C::VmUnmapAliases.into()), f(C::VmUnmapAliasesFlushed.into()), f(D::CyclesPerPin.into())) {
            (Ok(calls), Ok(flushed), Ok(c)) => {
                let mut t = format!("{s} {calls:.0} calls, {flushed:.0} flushing");
                if let Ok(x) = f(D::VmUnmapAliasesFlushedOverOracle.into()) {
                    t += &format!(" ({x:+.0} vs the oracle)");
                }
                for (name, what) in
                    [(Figure::from(Host::TrapsBack), "traps back"), (C::PtPinRefused.into(), "refusals")]
                {
                    if let Some(n) = f(name).ok().map(f64::round).filter(|n| *n > 0.0) {
                        t += &format!(", {n:.0} {what}");
                    }
                }
                counts.push((s, flushed, t));
                let ratio = l.fig(&want, exp, D::RatioToOracle).ok();
                cycles.push((s, c, ratio));
            }
            (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => {
                first_missing.get_or_insert(m);
            }
        }
    }
    if counts.is_empty() {
        return Err(first_missing.unwrap_or(Missing::NotRun));
    }
    let least = |v: &[(AliasStrategy, f64)]| -> &'static str {
        v.iter().filter(|x| competes(x.0)).min_by(|a, b| a.1.total_cmp(&b.1)).map(|x| x.0.as_str()).unwrap_or("-")
    };
    let fewest = least(&counts.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>());
    let cheapest = least(&cycles.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>());
    let list: Vec<String> = cycles
        .iter()
        .map(|(s, c, r)| match r {
            Some(r) => format!("{s} {c:.0} ({r:.2}x oracle)"),
            None => format!("{s} {c:.0}"),
        })
        .collect();
    let mut text = format!(
        "vm_unmap_aliases per run (medians): {}; fewest flushing: {fewest}. Cycles per pin beside them: {}; \
         cheapest {cheapest}",
        counts.iter().map(|c| c.2.as_str()).collect::<Vec<_>>().join("; "),
        list.join(", ")
    );
    let ran = counts.iter().filter(|c| competes(c.0)).count();
    let all = STRATEGIES.iter().filter(|s| competes(**s)).count();
    if ran < all {
        text += &format!(" ({ran} of {all} strategies ran)");
    }
    // The counts priced by the calibrated unit costs: the ranking they give,
    // and how much of the measured cost they account for.
    let modelled: Vec<(AliasStrategy, f64, Option<f64>, Option<f64>)> = STRATEGIES
        .iter()
        .filter_map(|s| {
            let want = [is(S::Alias(*s))];
            let m = l.fig(&want, exp, D::ModelCyclesPerPin).ok()?;
            Some((*s, m, l.fig(&want, exp, D::ModelRatioToOracle).ok(), l.fig(&want, exp, D::ModelExplains).ok()))
        })
        .collect();
    if modelled.is_empty() {
        text += ". Not priced: no calibration ran";
    } else {
        let cheapest = least(&modelled.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>());
        let list: Vec<String> = modelled
            .iter()
            .map(|(s, m, r, _)| match r {
                Some(r) => format!("{s} {m:.0} ({r:.2}x oracle)"),
                None => format!("{s} {m:.0}"),
            })
            .collect();
        let explains: Vec<f64> = modelled.iter().filter_map(|x| x.3).collect();
        let (lo, hi) = explains.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
        text += &format!(". Priced by the calibrated model, per pin: {}; cheapest {cheapest}", list.join(", "));
        if lo.is_finite() {
            text += &format!(" (the model explains {:.0}-{:.0}% of the measured pin path)", lo * 100.0, hi * 100.0);
        }
    }
    let freq = Some("alias-frequency");
    // Rare against frequent: host-trap against always-flush. The counts over
    // the oracle say what differs; the verdict rests on them priced (a
    // bootstrap interval of the ratio of the modelled medians), the measured
    // cycles' interval beside it; without a calibration, on the cycles.
    struct At {
        counts: String,
        model: Option<(RatioCi, Option<bool>)>,
        cycles: Option<(RatioCi, Option<bool>)>,
    }
    let at = |every: u64| -> Result<At, Missing> {
        let t = [is(S::Alias(AliasStrategy::HostTrap)), is(S::ChurnEvery(every))];
        let a = [is(S::Alias(AliasStrategy::AlwaysFlush)), is(S::ChurnEvery(every))];
        let pair = |figure: D| -> Result<Option<(RatioCi, Option<bool>)>, Missing> {
            Ok(differ(&l.sample(&t, freq, figure)?, &l.sample(&a, freq, figure)?))
        };
        let cycles = pair(D::CyclesPerPin)?;
        let model = pair(D::ModelCyclesPerPin).ok().flatten();
        let over = |w: &[Want], name: D| l.fig(w, freq, name).map(|x| format!("{x:+.0}")).unwrap_or("-".into());
        let counts = format!(
            "calls over the oracle {} against {}, hypercall exits over the oracle {} against {}, {} traps back",
            over(&t, D::VmUnmapAliasesOverOracle),
            over(&a, D::VmUnmapAliasesOverOracle),
            over(&t, D::ExitsHypercallOverOracle),
            over(&a, D::ExitsHypercallOverOracle),
            l.fig(&t, freq, Host::TrapsBack).map(|x| format!("{x:.0}")).unwrap_or("-".into()),
        );
        Ok(At { counts, model, cycles })
    };
    let judged = |x: &At| x.model.or(x.cycles).map(|m| m.1);
    let describe = |x: &At| {
        let mut t = x.counts.clone();
        if let Some((ci, _)) = &x.model {
            t += &format!("; priced {}", ratio_text(ci));
        }
        if let Some((ci, _)) = &x.cycles {
            t += &format!("; cycles {}", ratio_text(ci));
        }
        t
    };
    let (frequent, rare) = (1, super::matrix::FREQUENCIES[super::matrix::FREQUENCIES.len() - 1]);
    match (at(frequent), at(rare)) {
        (Ok(f), Ok(r)) => {
            let Some(cheaper) = judged(&r) else {
                text += "; host-trap rare versus frequent: nothing to compare";
                return Ok((Status::Measured, text));
            };
            text += &format!(
                ". host-trap against always-flush, an alias source before every fork: {}; before every {rare}th: {}",
                describe(&f),
                describe(&r)
            );
            let by = if r.model.is_some() { "priced" } else { "in cycles (no calibration)" };
            text += &match cheaper {
                Some(true) => format!("; rare: host-trap cheaper {by}"),
                Some(false) => format!("; rare: host-trap dearer {by}"),
                None => format!("; rare: within the noise {by} (the interval holds 1)"),
            };
            text += match judged(&f).flatten() {
                Some(true) => "; every fork: host-trap cheaper",
                Some(false) => "; every fork: host-trap dearer",
                None => "; every fork: within the noise",
            };
            Ok((status_noisy(&[cheaper]), text))
        }
        (Err(m), _) | (_, Err(m)) => {
            let (_, why) = not_measured(m, full);
            text += &format!("; host-trap rare versus frequent not measured ({why})");
            Ok((Status::Measured, text))
        }
    }
}

/// For each alias frequency of the sweep, the strategy that costs least per
/// pin, priced by the calibrated model (the counts, which barely move, times
/// this host's unit costs) and by the measured cycles, and the counts that make
/// the difference. `none` is not an answer: Linux BUGs on a refused pin.
fn which_strategy(l: &Lookup) -> Result<(Status, String), Missing> {
    use super::matrix::{FREQUENCIES, STRATEGIES};
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

fn history(l: &Lookup) -> Result<(Status, String), Missing> {
    let exp = Some("history");
    let steps = [
        &[
            is(S::Vmap(VmapVariant::LazyPtes)),
            is(S::Alias(AliasStrategy::AlwaysFlush)),
            is(S::VmapFlush(VmapFlush::Linux2628)),
        ][..],
        &[is(S::Vmap(VmapVariant::Eager)), is(S::Alias(AliasStrategy::AlwaysFlush))][..],
        &[is(S::Vmap(VmapVariant::LazyTlb)), is(S::Alias(AliasStrategy::None))][..],
    ];
    let mut pin = Vec::new();
    let mut span = Vec::new();
    for s in &steps {
        pin.push(l.fig(s, exp, D::CyclesPerPin)?);
        span.push(l.fig(s, exp, D::WorkloadCyclesMax)?);
    }
    let vua = l.fig(steps[2], exp, C::VmUnmapAliases)?;
    let refused = l.fig(steps[2], exp, C::PtPinRefused)?;
    let no_flush_needed = vua == 0.0 && refused == 0.0;
    let cheaper = pin[2] <= pin[0];
    let mut parts = vec![Some(no_flush_needed), Some(cheaper)];
    let mut text = format!(
        "cycles per pin {:.0} (2.6.28) -> {:.0} (2.6.36) -> {:.0} (2.6.37); workload span {:.3e} -> {:.3e} -> \
         {:.3e} cycles; 2.6.37 with no alias care: {vua:.0} vm_unmap_aliases, {refused:.0} pins refused",
        pin[0], pin[1], pin[2], span[0], span[1], span[2]
    );
    // The fourth step, when it ran: 2.6.28's pin path with 6.5's
    // vm_unmap_aliases. 6.5 cannot flush an old range again by construction,
    // so what decides is that 2.6.28 did, and that 6.5 flushed no more often
    // (intervals of the flushing calls; overlapping ones decide nothing).
    let six_five = [
        is(S::Vmap(VmapVariant::LazyPtes)),
        is(S::Alias(AliasStrategy::AlwaysFlush)),
        is(S::VmapFlush(VmapFlush::Linux65)),
    ];
    if let (Ok(fl_65), Ok(fl_2628)) =
        (l.stat(&six_five, exp, C::VmUnmapAliasesFlushed), l.stat(steps[0], exp, C::VmUnmapAliasesFlushed))
    {
        // A figure a run did not produce is absent: a counter that stayed 0.
        let re_2628 = l.fig(steps[0], exp, C::VmUnmapAliasesReflushed).unwrap_or(0.0);
        // 6.5 clearly flushing more often would refute it; overlapping
        // intervals do not.
        let more = clearly_below(&fl_2628, &fl_65);
        parts.push(Some(re_2628 > 0.0));
        parts.push(Some(more != Some(true)));
        text.push_str(&format!(
            "; 2.6.28's pin path with 6.5's vm_unmap_aliases: {:.0} flushing calls against {:.0}{}, where 2.6.28 \
             flushed only old ranges {re_2628:.0} times ({:.0} cycles per pin)",
            fl_65.median,
            fl_2628.median,
            noise_suffix(more),
            l.fig(&six_five, exp, D::CyclesPerPin).unwrap_or(f64::NAN)
        ));
    }
    Ok((status_noisy(&parts), text))
}

fn batching(l: &Lookup) -> Result<(Status, String), Missing> {
    let exp = Some("pv-batching");
    let mut parts = Vec::new();
    let mut text = Vec::new();
    for workload in [Workload::ForkStorm, Workload::MmAll] {
        let at = |batch| l.stat(&[is(S::Workload(workload)), is(S::PvBatch(batch))], exp, D::HypercallExitsPerKfault);
        let (on, off) = (at(Switch::On)?, at(Switch::Off)?);
        let per_call = l.fig(&[is(S::Workload(workload)), is(S::PvBatch(Switch::On))], exp, D::PvUpdatesPerCall)?;
        let fewer = clearly_below(&on, &off);
        parts.push(fewer);
        let saved = if off.median > 0.0 { 100.0 * (1.0 - on.median / off.median) } else { 0.0 };
        let change = if saved >= 0.0 { format!("{saved:.0}% fewer") } else { format!("{:.0}% more", -saved) };
        text.push(format!(
            "{workload}: {:.0} hypercall exits per 1000 page faults batched against {:.0} unbatched ({change}{}; \
             {per_call:.2} updates per mmu_update)",
            on.median,
            off.median,
            noise_suffix(fewer)
        ));
    }
    Ok((status_noisy(&parts), text.join("; ")))
}

/// Every verdict. `full`: whether the full matrix ran (for what a missing
/// figure means).
pub fn verdicts(results: &[CellResult], full: bool) -> Vec<Verdict> {
    let l = Lookup { results };
    CLAIMS
        .iter()
        .map(|&(id, claim)| {
            let r = match id {
                "claim 1" => claim1(&l),
                "claim 2" => claim2(&l),
                "claim 3" => claim3(&l),
                "claim 4" => claim4(&l),
                "claim 5" => claim5(&l),
                "claim 6" => claim6(&l),
                "claim 7" => claim7(&l, full),
                "batching" => batching(&l),
                "which strategy" => which_strategy(&l),
                _ => history(&l),
            };
            let (status, text) = r.unwrap_or_else(|m| match m {
                // The main question is the default matrix's, not only --full's.
                Missing::NotRun if id == "claim 7" && !full => {
                    (Status::NotMeasured, "needs the default matrix (vmm bench) or --full".to_owned())
                }
                m => not_measured(m, full),
            });
            Verdict { id, claim, status, text }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::figures::named;
    use crate::bench::matrix::{builtin, cells, Cell, CellSpec, MatrixName};
    use crate::bench::stats::Stat;

    fn result(spec: CellSpec, experiment: &str, figs: &[(&str, f64)]) -> CellResult {
        let mut cell = spec.resolve(experiment).unwrap();
        cell.experiments = vec![experiment.to_owned()];
        CellResult {
            cell,
            reps: vec![(0, named(figs))],
            failures: vec![],
            stats: named(figs).into_iter().map(|(k, v)| (k, Stat::exact(v, v, v, 1))).collect::<BTreeMap<_, _>>(),
            warnings: vec![],
            host_modes: vec![],
        }
    }

    fn spec(vcpus: u32, params: &[(&str, &str)]) -> CellSpec {
        CellSpec::parsed(&format!("{params:?}"), vcpus, params).unwrap()
    }

    fn get<'a>(v: &'a [Verdict], id: &str) -> &'a Verdict {
        v.iter().find(|x| x.id == id).unwrap()
    }

    #[test]
    fn nothing_ran_nothing_claimed() {
        let v = verdicts(&[], false);
        assert_eq!(v.len(), CLAIMS.len());
        assert!(v.iter().all(|x| x.status == Status::NotMeasured && x.text.starts_with("needs")), "{v:?}");
        assert!(get(&v, "claim 7").text.contains("default matrix"));
        let v = verdicts(&[], true);
        assert!(v.iter().all(|x| x.text.contains("not in this run")));
    }

    #[test]
    fn batching_from_the_exits_per_fault() {
        let run = |workload, batch, exits: f64, spread: f64| {
            let mut r = result(
                spec(2, &[("workload", workload), ("pvmmu", "on"), ("pv-batch", batch)]),
                "pv-batching",
                &[
                    ("hypercall_exits_per_kfault", exits),
                    ("pv_updates_per_call", if batch == "on" { 1.5 } else { 1.0 }),
                ],
            );
            r.stats.insert("hypercall_exits_per_kfault".into(), Stat::exact(exits - spread, exits, exits + spread, 3));
            r
        };
        let r = vec![
            run("fork-storm", "on", 19000.0, 100.0),
            run("fork-storm", "off", 32500.0, 100.0),
            run("mm-all", "on", 8800.0, 100.0),
            run("mm-all", "off", 11900.0, 100.0),
        ];
        let b = get(&verdicts(&r, true), "batching").clone();
        assert_eq!(b.status, Status::Confirmed, "{b}");
        assert!(b.text.contains("fork-storm: 19000 hypercall exits per 1000 page faults batched against 32500"), "{b}");
        assert!(b.text.contains("(42% fewer; 1.50 updates per mmu_update)"), "{b}");
        // Spreads that overlap decide nothing for that workload.
        let mut r = r;
        r[2] = run("mm-all", "on", 11000.0, 2000.0);
        let b = get(&verdicts(&r, true), "batching").clone();
        assert_eq!(b.status, Status::Partly, "{b}");
        assert!(b.text.contains("8% fewer, within the noise"), "{b}");
        // Batching that costs exits says so, and refutes.
        r[0] = run("fork-storm", "on", 40000.0, 100.0);
        let b = get(&verdicts(&r, true), "batching").clone();
        assert!(b.text.contains("(23% more;"), "{b}");
        assert_eq!(b.status, Status::Refuted, "{b}");
        // One workload missing: not measured.
        let b = get(&verdicts(&r[..3], true), "batching").clone();
        assert_eq!(b.status, Status::NotMeasured, "{b}");
    }

    #[test]
    fn claim1_from_vmap_bench() {
        let vb = |form, ns, one| {
            result(
                spec(1, &[("workload", "vmap-bench"), ("vmap", form)]),
                "vmap-bench",
                &[("vmap_bench_ns", ns), ("vmap_one_alias_ns", one)],
            )
        };
        let r = [vb("eager", 10000.0, 10000.0), vb("lazy-ptes", 2000.0, 11000.0)];
        let v = get(&verdicts(&r, false), "claim 1").clone();
        assert_eq!(v.status, Status::Confirmed, "{v}");
        assert!(v.text.contains("1.10x an eager") && v.text.contains("5.0x faster"), "{v}");
        let r = [vb("eager", 10000.0, 10000.0), vb("lazy-ptes", 2000.0, 100000.0)];
        assert_eq!(get(&verdicts(&r, false), "claim 1").status, Status::Partly);
        let r = [vb("eager", 1000.0, 10000.0), vb("lazy-ptes", 2000.0, 100000.0)];
        assert_eq!(get(&verdicts(&r, false), "claim 1").status, Status::Refuted);
    }

    #[test]
    fn a_failed_cell_is_not_a_figure() {
        let mut failed = result(spec(1, &[("workload", "vmap-bench"), ("vmap", "eager")]), "vmap-bench", &[]);
        failed.reps.clear();
        failed.stats.clear();
        failed.failures.push((0, "guest shut down with status 1".into()));
        let v = verdicts(&[failed], false);
        let c1 = get(&v, "claim 1");
        assert_eq!(c1.status, Status::NotMeasured);
        assert!(c1.text.contains("failed") && c1.text.contains("status 1"), "{c1}");
    }

    #[test]
    fn claim7_and_history_from_the_pin_figures() {
        let exps = builtin(MatrixName::Full);
        let all = cells(&exps).unwrap();
        let mut r = Vec::new();
        for c in &all {
            let in_exp = |e: &str| c.experiments.iter().any(|x| x == e);
            if !(in_exp("alias-strategies") || in_exp("alias-frequency") || in_exp("history")) {
                continue;
            }
            let alias = c.config["alias"].as_str();
            let every: f64 = c.config["churn-every"].parse().unwrap();
            // host-trap is cheap when aliases are rare, dear when frequent.
            let cpp = match alias {
                "host-trap" => 1000.0 + 4000.0 / every,
                "always-flush" => 3000.0,
                _ => 2000.0,
            };
            let mut figs = vec![
                ("cycles_per_pin", cpp),
                ("vm_unmap_aliases_flushed", 5.0),
                ("ratio_to_oracle", 1.5),
                ("workload_cycles_max", 1e9),
            ];
            figs.extend([("vm_unmap_aliases", if alias == "none" { 0.0 } else { 10.0 }), ("pt_pin_refused", 0.0)]);
            let reflushed = if c.config["vmap-flush"] == "6.5" { 0.0 } else { 3.0 };
            figs.push(("vm_unmap_aliases_reflushed", reflushed));
            let mut cr = result(spec(2, &[]), "x", &figs);
            cr.cell = c.clone();
            r.push(cr);
        }
        let v = verdicts(&r, true);
        let c7 = get(&v, "claim 7");
        assert_eq!(c7.status, Status::Confirmed, "{c7}");
        // host-trap 5000 at every fork, 1015.6 at every 256th, against
        // always-flush's 3000 (one repetition each: the interval is the ratio).
        assert!(c7.text.contains("cycles 1.67x [1.67-1.67"), "{c7}");
        assert!(c7.text.contains("cycles 0.34x [0.34-0.34"), "{c7}");
        assert!(c7.text.contains("rare: host-trap cheaper in cycles (no calibration)"), "{c7}");
        assert!(c7.text.contains("every fork: host-trap dearer"), "{c7}");
        // The oracle and none are listed, never the answer.
        assert!(c7.text.contains("cheapest alias-bit") && c7.text.contains("fewest flushing: always-flush"), "{c7}");
        let h = get(&v, "history");
        assert_eq!(h.status, Status::Confirmed, "{h}");
        // Only the default matrix: claim 7 measured, the rest needs --full.
        let default: Vec<CellResult> =
            r.into_iter().filter(|c| c.cell.experiments.iter().any(|e| e == "alias-strategies")).collect();
        let mut only_default = default.clone();
        for c in &mut only_default {
            c.cell.experiments = vec!["alias-strategies".into()];
        }
        let v = verdicts(&only_default, false);
        let c7 = get(&v, "claim 7");
        assert_eq!(c7.status, Status::Measured, "{c7}");
        assert!(c7.text.contains("needs --full"), "{c7}");
        assert_eq!(get(&v, "history").text, "needs --full");
    }

    #[test]
    fn a_difference_within_the_repetitions_spread_decides_nothing() {
        let st = |min, max| Stat::exact(min, (min + max) / 2.0, max, 3);
        assert_eq!(clearly_below(&st(1.0, 2.0), &st(3.0, 4.0)), Some(true));
        assert_eq!(clearly_below(&st(3.0, 4.0), &st(1.0, 2.0)), Some(false));
        assert_eq!(clearly_below(&st(1.0, 3.0), &st(2.0, 4.0)), None);
        assert_eq!(status_noisy(&[Some(true), Some(true)]), Status::Confirmed);
        assert_eq!(status_noisy(&[Some(true), None]), Status::Partly);
        assert_eq!(status_noisy(&[Some(false), None]), Status::Refuted);
        assert_eq!(status_noisy(&[None]), Status::Inconclusive);

        // Claim 7 at one alias source per 64 forks, judged on a bootstrap
        // interval of the ratio of the medians of cycles per pin.
        let claim7 = |host_trap: &[f64], always_flush: &[f64]| {
            let exps = builtin(MatrixName::Full);
            let all = cells(&exps).unwrap();
            let mut r = Vec::new();
            let of = |c: &&Cell, e: &str| c.experiments.iter().any(|x| x == e);
            for c in all.iter().filter(|c| of(c, "alias-frequency") || of(c, "alias-strategies")) {
                let (alias, every) = (c.config["alias"].as_str(), c.config["churn-every"].as_str());
                let v: &[f64] = match (alias, every) {
                    ("host-trap", "256") => host_trap,
                    ("always-flush", "256") => always_flush,
                    _ => &[5e6, 6e6, 7e6],
                };
                let mut cr = result(spec(2, &[]), "x", &[]);
                cr.cell = c.clone();
                cr.reps = v.iter().enumerate().map(|(i, x)| (i as u32, named(&[("cycles_per_pin", *x)]))).collect();
                cr.stats.insert("cycles_per_pin".into(), Stat::of(v).unwrap());
                for count in ["vm_unmap_aliases", "vm_unmap_aliases_flushed"] {
                    cr.stats.insert(count.into(), Stat::exact(10.0, 10.0, 10.0, v.len()));
                }
                r.push(cr);
            }
            get(&verdicts(&r, true), "claim 7").clone()
        };
        // The same spread for both, medians 10% apart: within the noise.
        let flush9 = [1.0e5, 1.3e5, 0.8e5, 1.6e5, 0.9e5, 1.2e5, 1.5e5, 0.7e5, 1.1e5];
        let trap9: Vec<f64> = flush9.iter().map(|x| x * 0.9).collect();
        let c7 = claim7(&trap9, &flush9);
        assert_eq!(c7.status, Status::Inconclusive, "{c7}");
        assert!(c7.text.contains("cycles 0.90x") && c7.text.contains("rare: within the noise"), "{c7}");
        // One wild repetition each does not hide a clear difference.
        let trap9 = [1.00e5, 1.05e5, 1.10e5, 1.15e5, 1.18e5, 1.20e5, 1.25e5, 1.30e5, 6.60e5];
        let flush9 = [0.5e5, 2.60e5, 2.70e5, 2.99e5, 3.20e5, 3.50e5, 3.81e5, 4.00e5, 4.96e5];
        let c7 = claim7(&trap9, &flush9);
        assert_eq!(c7.status, Status::Confirmed, "{c7}");
        assert!(c7.text.contains("rare: host-trap cheaper"), "{c7}");
        // Every fork (the same figures for both here) is reported, not judged.
        assert!(c7.text.contains("every fork: within the noise"), "{c7}");
    }

    #[test]
    fn which_strategy_names_the_cheapest_at_each_frequency_by_the_model_and_the_cycles() {
        let exps = builtin(MatrixName::Full);
        let all = cells(&exps).unwrap();
        let mut r = Vec::new();
        for c in all.iter().filter(|c| c.experiments.iter().any(|e| e == "which-strategy")) {
            let every: f64 = c.config["churn-every"].parse().unwrap();
            // Priced: always-flush pays a call per pin whatever the frequency;
            // host-trap pays per alias, so it wins once aliases are rare; none
            // is cheapest of all but is no answer. The cycles say otherwise at
            // every fork.
            let (model, cycles) = match c.config["alias"].as_str() {
                "always-flush" => (3000.0, 3000.0),
                "host-trap" => (1000.0 + 4000.0 / every, 1000.0 + 1000.0 / every),
                "none" => (10.0, 10.0),
                "oracle" => (900.0, 900.0),
                _ => (5000.0, 5000.0),
            };
            let figs = [
                ("model_cycles_per_pin", model),
                ("cycles_per_pin", cycles),
                ("vm_unmap_aliases", 10.0),
                ("vm_unmap_aliases_flushed", 5.0),
            ];
            let mut cr = result(spec(2, &[]), "x", &figs);
            cr.cell = c.clone();
            r.push(cr);
        }
        let v = verdicts(&r, true);
        let w = get(&v, "which strategy");
        assert_eq!(w.status, Status::Measured, "{w}");
        assert!(w.text.contains("every 1: always-flush by the model (3.000e3 per pin, 3.33x the oracle"), "{w}");
        assert!(w.text.contains(", host-trap by the cycles (2.000e3)"), "{w}");
        assert!(w.text.contains("every 4: host-trap by the model (2.000e3 per pin"), "{w}");
        assert!(w.text.contains("same strategy at 4 of 5 frequencies"), "{w}");
        assert!(!w.text.contains("none by"), "none is no answer: {w}");
        // Nothing of the sweep ran: not measured.
        let v = verdicts(&r[..0], true);
        assert_eq!(get(&v, "which strategy").status, Status::NotMeasured);
    }

    #[test]
    fn claims_2_to_6() {
        let mut r = Vec::new();
        let mm = |n: &str, sleeps, flushes, hits| {
            result(
                spec(2, &[("workload", "mm-all"), ("pte", "persistent"), ("last-pkmap", n), ("tasks", "16")]),
                "pkmap-pool",
                &[
                    ("kmap_sleeps", sleeps),
                    ("pkmap_flushes_per_kfault", flushes),
                    ("kmap_lock_waits_per_kfault", 3.0),
                    ("kmap_cache_hits_per_kfault", hits),
                ],
            )
        };
        r.push(mm("256", 0.0, 2.0, 2000.0));
        r.push(mm("2048", 0.0, 0.5, 2100.0));
        let wrap = |n: &str, wraps, span| {
            result(
                spec(2, &[("workload", "task-capacity"), ("pte", "persistent"), ("last-pkmap", n)]),
                "pkmap-wrap",
                &[("pkmap_wrap_flushes", wraps), ("workload_cycles_max", span)],
            )
        };
        r.push(wrap("256", 32.0, 5e9));
        r.push(wrap("2048", 3.0, 4e9));
        let pb = |pte, v, cost, waits| {
            let mut c = result(
                spec(v, &[("workload", "pte-bench"), ("pte", pte)]),
                "pte-cost",
                &[("pte_cycles_per_access", cost), ("kmap_lock_waits", waits)],
            );
            c.cell.experiments.push("kmap-scaling".into());
            c
        };
        // A second vCPU doubles lowpte's cost (the emulator's share) and
        // atomic's; the pool's four times.
        r.extend([pb("atomic", 1, 120.0, 0.0), pb("atomic", 2, 250.0, 0.0), pb("persistent", 1, 300.0, 0.0)]);
        r.extend([pb("persistent", 2, 1200.0, 40.0), pb("lowpte", 1, 100.0, 0.0), pb("per-task", 1, 150.0, 0.0)]);
        r.push(pb("lowpte", 2, 200.0, 0.0));
        // Claim 6's own, longer pte-bench cells.
        for (pte, v, cost) in
            [("per-task", 1, 350.0), ("persistent", 1, 300.0), ("per-task", 2, 360.0), ("persistent", 2, 600.0)]
        {
            r.push(result(
                spec(v, &[("workload", "pte-bench"), ("pte", pte), ("rounds", "20000")]),
                "per-task-kmaps",
                &[("pte_cycles_per_access", cost)],
            ));
        }
        let tc = |low, pte, n| {
            result(
                spec(2, &[("workload", "task-capacity"), ("pte", pte), ("lowmem", low)]),
                "task-capacity",
                &[("tasks_started", n)],
            )
        };
        r.extend([tc("16m", "lowpte", 30.0), tc("16m", "atomic", 200.0)]);
        let m6 = |pte, v, span| {
            result(
                spec(v, &[("workload", "mm-all"), ("pte", pte), ("tasks", "8")]),
                "per-task-kmaps",
                &[("workload_cycles_max", span)],
            )
        };
        r.extend([
            m6("per-task", 1, 11.0),
            m6("persistent", 1, 10.0),
            m6("per-task", 2, 8.0),
            m6("persistent", 2, 10.0),
        ]);
        let v = verdicts(&r, true);
        for id in ["claim 2", "claim 3", "claim 4", "claim 5", "claim 6"] {
            assert_eq!(get(&v, id).status, Status::Confirmed, "{}", get(&v, id));
        }
        assert!(get(&v, "claim 5").text.contains("1.20x"), "{}", get(&v, "claim 5"));
        assert!(get(&v, "claim 2").text.contains("wraps 32 -> 3"), "{}", get(&v, "claim 2"));
        // The wrapping load slower with 2048 entries (the longer scan), or
        // without its cells: only part of claim 2 holds.
        let mut slower = r.clone();
        slower.retain(|c| !c.cell.experiments.iter().any(|e| e == "pkmap-wrap"));
        slower.extend([wrap("256", 32.0, 4e9), wrap("2048", 3.0, 5e9)]);
        let c2 = get(&verdicts(&slower, true), "claim 2").clone();
        assert_eq!(c2.status, Status::Partly, "{c2}");
        assert!(c2.text.contains("(2048 slower)") && c2.text.contains("caches better but flushes no less"), "{c2}");
        assert!(get(&v, "claim 4").text.contains("30 tasks with lowpte, 200 with highpte"));
        assert!(
            get(&v, "claim 3").text.contains("beyond that, atomic 1.04x, persistent 2.00x"),
            "{}",
            get(&v, "claim 3")
        );
        // Atomic slowing by more than the emulator's share does not scale.
        let mut slow = r.clone();
        slow.retain(|c| !(c.matches(&[is(S::Pte(PteVariant::Atomic)), Vcpus(2)]) && c.cell.experiments.len() == 2));
        slow.push(pb("atomic", 2, 400.0, 0.0));
        let c3 = get(&verdicts(&slow, true), "claim 3").clone();
        assert_eq!(c3.status, Status::Partly, "{c3}");
        assert!(c3.text.contains("beyond that, atomic 1.67x"), "{c3}");
    }

    /// Claim 6 is decided on the kmap (pte-bench); mm-all's span only rides along.
    #[test]
    fn claim_6_is_decided_per_access() {
        let pb = |pte, v, cost: [f64; 3], hits, invlpg| {
            let mut c = result(
                spec(v, &[("workload", "pte-bench"), ("pte", pte)]),
                "per-task-kmaps",
                &[
                    ("pte_cycles_per_access", cost[1]),
                    ("kmap_cache_hits_per_access", hits),
                    ("tlb_invlpg_per_access", invlpg),
                    ("kmap_lock_waits", if pte == "persistent" && v == 2 { 300.0 } else { 0.0 }),
                ],
            );
            c.stats.insert("pte_cycles_per_access".into(), Stat::exact(cost[0], cost[1], cost[2], 3));
            c
        };
        let mm = |pte, v, span| {
            result(
                spec(v, &[("workload", "mm-all"), ("pte", pte), ("tasks", "8")]),
                "per-task-kmaps",
                &[("workload_cycles_max", span)],
            )
        };
        // Per-task faster on both: SMP holds, UP does not (as measured QEMU-hosted).
        let mut r = vec![
            pb("per-task", 1, [1800.0, 1900.0, 2000.0], 0.0, 1.0),
            pb("persistent", 1, [2400.0, 2500.0, 2600.0], 1.0, 0.0),
            pb("per-task", 2, [1800.0, 1850.0, 1900.0], 0.0, 1.0),
            pb("persistent", 2, [4800.0, 5000.0, 5200.0], 1.0, 0.0),
        ];
        // pte-cost's shorter cells of the same variants are not claim 6's.
        let short = result(
            spec(2, &[("workload", "pte-bench"), ("pte", "per-task")]),
            "pte-cost",
            &[("pte_cycles_per_access", 9000.0)],
        );
        let c6 = get(&verdicts(&[vec![short], r.clone()].concat(), true), "claim 6").clone();
        assert_eq!(c6.status, Status::Partly, "{c6}");
        assert!(c6.text.contains("1850 against 5000 cycles on SMP (0.37x, 2 vCPUs, per-task faster)"), "{c6}");
        assert!(c6.text.contains("on UP (0.76x, per-task faster)"), "{c6}");
        assert!(c6.text.contains("cache served 1.00 maps per access on UP") && c6.text.contains("300 kmap_lock"));
        assert!(!c6.text.contains("mm-all span"), "{c6}");
        // mm-all within its noise does not decide, but is reported.
        r.extend([
            mm("per-task", 1, 10.0),
            mm("persistent", 1, 10.0),
            mm("per-task", 2, 9.0),
            mm("persistent", 2, 9.0),
        ]);
        let c6 = get(&verdicts(&r, true), "claim 6").clone();
        assert_eq!(c6.status, Status::Partly, "{c6}");
        assert!(
            c6.text.contains("whole mm-all span, per-task / pool: 1.00x on SMP, within the noise, 1.00x on UP, within"),
            "{c6}"
        );
        // The UP pool within per-task's range: that half is undecided.
        r[1] = pb("persistent", 1, [1700.0, 1950.0, 2600.0], 1.0, 0.0);
        let c6 = get(&verdicts(&r, true), "claim 6").clone();
        assert_eq!(c6.status, Status::Partly, "{c6}");
        assert!(
            c6.text.contains(
                "UP (0.97x, within the noise: per-task 1.800e3..2.000e3 (75% interval), pool 1.700e3..2.600e3 (75% \
                 interval))"
            ),
            "{c6}"
        );
        // Without pte-bench the claim is not measured, whatever mm-all says.
        r.drain(..4);
        assert_eq!(get(&verdicts(&r, true), "claim 6").status, Status::NotMeasured);
    }
}

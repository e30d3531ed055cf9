//! Statistics over repetitions: min, median, max, a distribution-free
//! confidence interval of the median with its real coverage, and a bootstrap
//! interval of the ratio of two medians to say whether two configurations
//! differ by more than the noise.

use serde::{Deserialize, Serialize};

/// A figure over the repetitions that measured it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "StatFields")]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Repetitions that measured it.
    pub n: usize,
    /// A confidence interval of the median from order statistics (no
    /// assumption about the distribution): the k-th smallest and k-th largest
    /// value, with the largest k that keeps the coverage at least 95%. Fewer
    /// than 6 repetitions cannot reach 95%; then it is min..max (75% at 3).
    pub lo: f64,
    pub hi: f64,
    /// The probability that `lo..hi` holds the true median: what the interval
    /// really is, since few repetitions cannot make it 95% (see [`coverage`]).
    /// Missing in older result files; it is then recomputed from `n`.
    #[serde(default)]
    pub coverage: f64,
}

/// What a [`Stat`] is read from: `coverage` is optional so that older result
/// files still load, and an absent one is computed from `n` rather than left 0.
#[derive(Deserialize)]
struct StatFields {
    min: f64,
    median: f64,
    max: f64,
    n: usize,
    lo: f64,
    hi: f64,
    #[serde(default)]
    coverage: Option<f64>,
}

impl From<StatFields> for Stat {
    fn from(f: StatFields) -> Stat {
        let coverage = f.coverage.unwrap_or_else(|| coverage(f.n));
        Stat { min: f.min, median: f.median, max: f.max, n: f.n, lo: f.lo, hi: f.hi, coverage }
    }
}

impl Stat {
    /// The statistics of the finite values (None when there are none).
    pub fn of(values: &[f64]) -> Option<Stat> {
        let v = sorted_finite(values);
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let k = median_ci_rank(n);
        Some(Stat {
            min: v[0],
            median: median_of_sorted(&v),
            max: v[n - 1],
            n,
            lo: v[k - 1],
            hi: v[n - k],
            coverage: rank_coverage(n, k),
        })
    }

    /// A Stat whose median interval is min..max (test fixtures), with the
    /// coverage of min..max for n values.
    #[cfg(test)]
    pub fn exact(min: f64, median: f64, max: f64, n: usize) -> Stat {
        Stat { min, median, max, n, lo: min, hi: max, coverage: rank_coverage(n, 1) }
    }

    /// "96% interval", "75% interval": the coverage rounded down, so the label
    /// never claims more than the interval holds; "no interval" for a single
    /// repetition, whose min..max is one point.
    pub fn interval_label(&self) -> String {
        if self.coverage <= 0.0 {
            return "no interval".into();
        }
        // The epsilon keeps an exact 0.75 from flooring to 74 through rounding.
        format!("{}% interval", (self.coverage * 100.0 + 1e-9).floor())
    }
}

/// The largest k (at least 1) such that the k-th smallest and k-th largest of n
/// values bracket the median with probability at least 95%: P(Binomial(n, 1/2)
/// < k) <= 2.5% on each side.
pub fn median_ci_rank(n: usize) -> usize {
    let mut k = 1;
    // P(X <= j) for X ~ Binomial(n, 1/2), summed term by term.
    let mut term = 0.5f64.powi(n as i32);
    let mut cdf = term;
    for j in 0..n / 2 {
        // cdf = P(X <= j): the k-th smallest and k-th largest with k = j + 1
        // miss the median with probability 2 * P(X <= j).
        if cdf > 0.025 {
            break;
        }
        k = j + 1;
        term *= (n - j) as f64 / (j + 1) as f64;
        cdf += term;
    }
    k.min(n.div_ceil(2)).max(1)
}

/// The real coverage of the median interval [`Stat`] reports for n values
/// (k from [`median_ci_rank`]): 1 - 2 P(Binomial(n, 1/2) <= k - 1). It is at
/// least 95% from 6 values on, but 75% at 3 and 0 at 1; a report should say
/// which. 0 for n = 0.
pub fn coverage(n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    rank_coverage(n, median_ci_rank(n))
}

/// The probability that the k-th smallest and k-th largest of n values from a
/// continuous distribution bracket its median: each is on the wrong side of it
/// when at most k - 1 values fall below (or above) it.
fn rank_coverage(n: usize, k: usize) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    let mut term = 0.5f64.powi(n as i32);
    let mut cdf = 0.0;
    for j in 0..k.min(n + 1) {
        cdf += term;
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    (1.0 - 2.0 * cdf).max(0.0)
}

/// The finite values, sorted.
fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The median of sorted, non-empty values (the mean of the middle two for an
/// even count).
fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// An interval of median(a) / median(b), for asking whether configuration `a`
/// differs from `b` by more than the repetitions' noise. A ratio, not a
/// difference, so that one threshold serves figures of every scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioCi {
    /// median(a) / median(b) of the samples themselves.
    pub ratio: f64,
    /// The percentile-bootstrap interval of the ratio.
    pub lo: f64,
    pub hi: f64,
    /// The nominal level asked for (e.g. 0.95). Nominal: with few repetitions
    /// the bootstrap distribution of a median is coarse and the true coverage
    /// can be lower.
    pub coverage: f64,
    /// The finite values in each sample.
    pub n_a: usize,
    pub n_b: usize,
}

/// How `a` compares with `b`, read off a [`RatioCi`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Difference {
    /// The whole interval is below 1: `a`'s median is smaller.
    Lower,
    /// The whole interval is above 1: `a`'s median is larger.
    Higher,
    /// The interval holds 1: the repetitions cannot tell them apart.
    WithinNoise,
}

impl RatioCi {
    /// Lower if hi < 1, Higher if lo > 1, otherwise WithinNoise.
    pub fn difference(&self) -> Difference {
        if self.hi < 1.0 {
            Difference::Lower
        } else if self.lo > 1.0 {
            Difference::Higher
        } else {
            Difference::WithinNoise
        }
    }
}

/// A percentile-bootstrap interval at `level` (e.g. 0.95) of median(a) /
/// median(b): each of `resamples` rounds redraws each sample independently
/// with replacement (the two configurations ran independently) and takes the
/// ratio of the redrawn medians; lo and hi are the (1 - level)/2 and
/// (1 + level)/2 quantiles of those ratios, taken outward (the lower rank for
/// lo, the higher for hi) so that a coarse bootstrap errs toward "within the
/// noise". The same seed gives the same interval.
///
/// Non-finite values are dropped first. None when either sample is then
/// empty, when median(b) is 0 (no ratio), when `resamples` is 0 or when
/// `level` is not strictly between 0 and 1. Meant for non-negative figures
/// (counts, times); a redrawn median of b that is 0 gives an infinite ratio,
/// which widens the interval as it should, and a 0/0 round is dropped.
pub fn ratio_of_medians(a: &[f64], b: &[f64], level: f64, resamples: usize, seed: u64) -> Option<RatioCi> {
    let ci = of_medians(&[a, b], |m| m[0] / m[1], level, resamples, seed)?;
    if !ci.value.is_finite() {
        return None;
    }
    Some(RatioCi { ratio: ci.value, lo: ci.lo, hi: ci.hi, coverage: level, n_a: ci.n[0], n_b: ci.n[1] })
}

/// An interval of a function of several configurations' medians (a ratio of
/// ratios, for example), by the same percentile bootstrap as
/// [`ratio_of_medians`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ci {
    /// The function of the samples' own medians.
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// The finite values in each sample.
    pub n: Vec<usize>,
}

impl Ci {
    /// How the value compares with `threshold`: Lower if the whole interval
    /// is below it, Higher if above, otherwise WithinNoise.
    pub fn against(&self, threshold: f64) -> Difference {
        if self.hi < threshold {
            Difference::Lower
        } else if self.lo > threshold {
            Difference::Higher
        } else {
            Difference::WithinNoise
        }
    }
}

/// A percentile-bootstrap interval at `level` of `f(medians)`, where each
/// round redraws every sample independently with replacement; lo and hi are
/// taken outward, as in [`ratio_of_medians`]. Rounds where `f` is NaN are
/// dropped. None when a sample has no finite value, when `resamples` is 0 or
/// `level` is not strictly between 0 and 1, or when no round gave a number.
pub fn of_medians(
    samples: &[&[f64]],
    f: impl Fn(&[f64]) -> f64,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Option<Ci> {
    let sorted: Vec<Vec<f64>> = samples.iter().map(|s| sorted_finite(s)).collect();
    if sorted.iter().any(|s| s.is_empty()) || resamples == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let medians: Vec<f64> = sorted.iter().map(|s| median_of_sorted(s)).collect();
    let value = f(&medians);
    let mut rng = SplitMix64(seed);
    let mut bufs: Vec<Vec<f64>> = sorted.iter().map(|s| vec![0.0; s.len()]).collect();
    let mut m = vec![0.0; sorted.len()];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for (i, s) in sorted.iter().enumerate() {
            m[i] = rng.resampled_median(s, &mut bufs[i]);
        }
        let v = f(&m);
        if !v.is_nan() {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let last = (values.len() - 1) as f64;
    let tail = (1.0 - level) / 2.0;
    let lo = values[(tail * last).floor() as usize];
    let hi = values[((1.0 - tail) * last).ceil() as usize];
    Some(Ci { value, lo, hi, n: sorted.iter().map(Vec::len).collect() })
}

/// How much a figure varies between repetitions: the median absolute
/// deviation from the median, relative to the median (0.02: a repetition is
/// typically within 2% of the median). Robust, so one wild repetition does not
/// inflate it. None without finite values or with a median of 0.
pub fn relative_spread(values: &[f64]) -> Option<f64> {
    let v = sorted_finite(values);
    if v.is_empty() {
        return None;
    }
    let m = median_of_sorted(&v);
    if m == 0.0 {
        return None;
    }
    let dev = sorted_finite(&v.iter().map(|x| (x - m).abs()).collect::<Vec<_>>());
    Some(median_of_sorted(&dev) / m.abs())
}

/// Roughly how many repetitions of each configuration bring the 95% interval
/// of median(a) / median(b) to ±`halfwidth` (0.01: ±1%) when both vary by
/// `spread` ([`relative_spread`]). A normal approximation, to plan runs, not
/// to decide: a median of n normal values has standard deviation
/// sqrt(pi/2) * sigma / sqrt(n), sigma = 1.4826 * MAD, and the log of the
/// ratio adds two such variances, so n = pi * (1.96 * 1.4826 * spread /
/// halfwidth)^2. At least 1; None unless spread >= 0 and halfwidth > 0 are
/// finite.
pub fn reps_to_resolve(spread: f64, halfwidth: f64) -> Option<usize> {
    if !(spread.is_finite() && halfwidth.is_finite() && spread >= 0.0 && halfwidth > 0.0) {
        return None;
    }
    let z = 1.96 * 1.4826 * spread / halfwidth;
    Some(((std::f64::consts::PI * z * z).ceil() as usize).max(1))
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny generator with good output,
/// kept here so bootstrap intervals are reproducible from a seed without a
/// dependency whose stream could change between versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index below n (multiply-shift; the bias is below n / 2^64).
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }

    /// The median of `v.len()` draws with replacement from `v`, using `buf`
    /// (of the same length) as scratch.
    fn resampled_median(&mut self, v: &[f64], buf: &mut [f64]) -> f64 {
        for x in buf.iter_mut() {
            *x = v[self.below(v.len())];
        }
        buf.sort_unstable_by(f64::total_cmp);
        median_of_sorted(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_median_max() {
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[f64::NAN]), None);
        assert_eq!(Stat::of(&[3.0]), Some(Stat::exact(3.0, 3.0, 3.0, 1)));
        assert_eq!(Stat::of(&[5.0, 1.0, 3.0]), Some(Stat::exact(1.0, 3.0, 5.0, 3)));
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 10.0]), Some(Stat::exact(1.0, 3.0, 10.0, 4)));
    }

    #[test]
    fn the_median_interval_narrows_with_repetitions() {
        // Ranks from the binomial tables: n = 9 -> 2nd..8th (96.1%), 15 -> 4th..12th
        // (96.5%), 30 -> 10th..21st (95.7%); below 6 no interval reaches 95%.
        for (n, k) in [(1, 1), (3, 1), (5, 1), (6, 1), (8, 1), (9, 2), (15, 4), (30, 10)] {
            assert_eq!(median_ci_rank(n), k, "n = {n}");
        }
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        let s = Stat::of(&v).unwrap();
        assert_eq!((s.lo, s.median, s.hi), (2.0, 5.0, 8.0));
        // One wild repetition moves min..max, not the interval.
        let mut w = v.clone();
        w[8] = 1e9;
        let t = Stat::of(&w).unwrap();
        assert_eq!((t.lo, t.hi, t.max), (2.0, 8.0, 1e9));
    }

    #[test]
    fn median_is_between_min_and_max() {
        let mut x = 12345u64;
        for len in 1..40 {
            let v: Vec<f64> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 40) as f64
                })
                .collect();
            let s = Stat::of(&v).unwrap();
            assert!(s.min <= s.lo && s.lo <= s.median && s.median <= s.hi && s.hi <= s.max);
            assert_eq!(s.n, len);
            assert_eq!(s.coverage, coverage(len));
        }
    }

    /// 1 - 2 P(Binomial(n, 1/2) <= k - 1) in exact integers.
    fn exact_coverage(n: u32, k: u32) -> f64 {
        let (mut c, mut sum) = (1u128, 0u128);
        for j in 0..k {
            sum += c;
            c = c * u128::from(n - j) / u128::from(j + 1);
        }
        1.0 - 2.0 * sum as f64 / (1u128 << n) as f64
    }

    #[test]
    fn coverage_is_what_the_binomial_says() {
        // n = 1 -> min..max of one value is a point: 0. 3 -> 75%, 5 -> 93.75%,
        // 6 -> 96.875%, 9 -> 96.09%, 15 -> 96.48%, 30 -> 95.72%.
        let table = [(1, 0.0), (3, 0.750), (5, 0.9375), (6, 0.96875), (9, 0.961), (15, 0.965), (30, 0.957)];
        for (n, want) in table {
            let c = coverage(n);
            let exact = exact_coverage(n as u32, median_ci_rank(n) as u32);
            assert!((c - exact).abs() < 1e-12, "n = {n}: {c} against {exact}");
            assert!((c - want).abs() < 5e-4, "n = {n}: {c} against {want}");
        }
        assert_eq!(coverage(0), 0.0);
        for n in 6..=60 {
            assert!(coverage(n) >= 0.95, "n = {n}: {}", coverage(n));
        }
        // The min..max of the fixtures: 1 - 2^(1 - n).
        assert_eq!(Stat::exact(1.0, 2.0, 3.0, 9).coverage, 1.0 - 2.0 / 512.0);
    }

    #[test]
    fn every_interval_says_its_coverage() {
        let label = |n: usize| Stat::of(&(0..n).map(|i| i as f64).collect::<Vec<_>>()).unwrap().interval_label();
        assert_eq!(label(1), "no interval");
        assert_eq!(label(3), "75% interval");
        assert_eq!(label(5), "93% interval");
        assert_eq!(label(9), "96% interval");
        assert_eq!(label(30), "95% interval");
    }

    #[test]
    fn older_results_get_their_coverage_back() {
        let old = r#"{"min":1.0,"median":5.0,"max":9.0,"n":9,"lo":2.0,"hi":8.0}"#;
        let s: Stat = serde_json::from_str(old).unwrap();
        assert_eq!(s.coverage, coverage(9));
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        let t = Stat::of(&v).unwrap();
        assert_eq!(s, t);
        let back: Stat = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn clearly_separated_samples_are_lower_or_higher() {
        let a = [10.0, 11.0, 12.0, 10.0, 11.0];
        let b = [20.0, 21.0, 22.0, 20.0, 21.0];
        let r = ratio_of_medians(&a, &b, 0.95, 2000, 1).unwrap();
        assert_eq!(r.ratio, 11.0 / 21.0);
        // No redrawn median of a exceeds 12, none of b is below 20.
        assert!(10.0 / 22.0 <= r.lo && r.lo <= r.ratio && r.ratio <= r.hi && r.hi <= 12.0 / 20.0, "{r:?}");
        assert!(r.hi < 1.0);
        assert_eq!(r.difference(), Difference::Lower);
        assert_eq!((r.coverage, r.n_a, r.n_b), (0.95, 5, 5));
        let s = ratio_of_medians(&b, &a, 0.95, 2000, 1).unwrap();
        assert!(s.lo > 1.0);
        assert_eq!(s.difference(), Difference::Higher);
    }

    #[test]
    fn identical_constant_samples_have_ratio_exactly_one() {
        let r = ratio_of_medians(&[7.0; 4], &[7.0; 6], 0.95, 500, 9).unwrap();
        assert_eq!((r.ratio, r.lo, r.hi), (1.0, 1.0, 1.0));
        assert_eq!(r.difference(), Difference::WithinNoise);
    }

    /// n values near `centre` with relative normal noise `sd`, from splitmix64
    /// through Box–Muller.
    fn noisy(n: usize, centre: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut g = SplitMix64(seed);
        let mut unit = || ((g.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (0..n)
            .map(|_| {
                let z = (-2.0 * unit().ln()).sqrt() * (std::f64::consts::TAU * unit()).cos();
                centre * (1.0 + sd * z)
            })
            .collect()
    }

    #[test]
    fn samples_of_one_distribution_are_within_noise() {
        // The same values in another order.
        let a = [10.0, 11.0, 12.0, 10.0, 11.0];
        let b = [11.0, 10.0, 12.0, 11.0, 10.0];
        let r = ratio_of_medians(&a, &b, 0.95, 2000, 3).unwrap();
        assert_eq!(r.ratio, 1.0);
        assert!(r.lo < 1.0 && r.hi > 1.0, "{r:?}");
        assert_eq!(r.difference(), Difference::WithinNoise);
        // Independent draws of one distribution.
        let r = ratio_of_medians(&noisy(15, 1000.0, 0.03, 1), &noisy(15, 1000.0, 0.03, 2), 0.95, 2000, 4).unwrap();
        assert_eq!(r.difference(), Difference::WithinNoise, "{r:?}");
    }

    #[test]
    fn within_noise_means_what_it_says() {
        // Over many pairs from one distribution, a 95% interval should call a
        // difference rarely: about 5%; the bootstrap of small-sample medians
        // is coarse, so allow up to 10%. And a 5% shift, large against 1% noise,
        // is found every time with 15 repetitions.
        let (mut false_calls, pairs) = (0, 200);
        for i in 0..pairs {
            let a = noisy(15, 100.0, 0.01, 2 * i);
            let b = noisy(15, 100.0, 0.01, 2 * i + 1);
            if ratio_of_medians(&a, &b, 0.95, 1000, i).unwrap().difference() != Difference::WithinNoise {
                false_calls += 1;
            }
            let c = noisy(15, 105.0, 0.01, 2 * i + 1);
            assert_eq!(ratio_of_medians(&a, &c, 0.95, 1000, i).unwrap().difference(), Difference::Lower);
        }
        assert!(false_calls <= pairs / 10, "{false_calls} of {pairs}");
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let (a, b) = (noisy(9, 50.0, 0.05, 10), noisy(7, 52.0, 0.05, 11));
        let r = ratio_of_medians(&a, &b, 0.9, 1000, 42).unwrap();
        assert_eq!(ratio_of_medians(&a, &b, 0.9, 1000, 42), Some(r));
        // Another seed moves the bootstrap ends, not the point estimate.
        let s = ratio_of_medians(&a, &b, 0.9, 1000, 43).unwrap();
        assert_eq!(s.ratio, r.ratio);
        assert!(r.lo <= r.ratio && r.ratio <= r.hi && s.lo <= s.ratio && s.ratio <= s.hi);
        // A wider level gives a wider interval from the same rounds.
        let w = ratio_of_medians(&a, &b, 0.99, 1000, 42).unwrap();
        assert!(w.lo <= r.lo && w.hi >= r.hi);
    }

    #[test]
    fn no_ratio_without_data_or_with_a_zero_median() {
        assert_eq!(ratio_of_medians(&[], &[1.0], 0.95, 100, 0), None);
        assert_eq!(ratio_of_medians(&[1.0], &[f64::NAN, f64::INFINITY], 0.95, 100, 0), None);
        assert_eq!(ratio_of_medians(&[1.0], &[0.0, 0.0, 5.0], 0.95, 100, 0), None);
        assert_eq!(ratio_of_medians(&[1.0], &[1.0], 0.95, 0, 0), None);
        assert_eq!(ratio_of_medians(&[1.0], &[1.0], 1.0, 100, 0), None);
        assert_eq!(ratio_of_medians(&[1.0], &[1.0], f64::NAN, 100, 0), None);
        // Non-finite values are dropped, not counted.
        let r = ratio_of_medians(&[2.0, f64::NAN, 2.0], &[1.0, f64::INFINITY], 0.95, 100, 0).unwrap();
        assert_eq!((r.ratio, r.lo, r.hi, r.n_a, r.n_b), (2.0, 2.0, 2.0, 2, 1));
        // A redrawn median of b that is 0 makes the interval unbounded above.
        let r = ratio_of_medians(&[1.0, 1.0, 1.0], &[0.0, 1.0, 1.0], 0.95, 1000, 5).unwrap();
        assert_eq!((r.ratio, r.hi), (1.0, f64::INFINITY));
        assert_eq!(r.difference(), Difference::WithinNoise);
    }

    #[test]
    fn relative_spread_is_mad_over_median() {
        assert_eq!(relative_spread(&[1.0, 2.0, 3.0]), Some(0.5));
        // One wild repetition does not inflate it.
        assert_eq!(relative_spread(&[100.0, 101.0, 99.0, 100.0, 1000.0]), Some(0.01));
        assert_eq!(relative_spread(&[5.0; 4]), Some(0.0));
        assert_eq!(relative_spread(&[]), None);
        assert_eq!(relative_spread(&[0.0, 0.0, 1.0]), None);
        // Normal noise of relative sd s has MAD/median near 0.6745 s.
        let s = relative_spread(&noisy(2001, 100.0, 0.02, 3)).unwrap();
        assert!((s / 0.02 - 0.6745).abs() < 0.05, "{s}");
    }

    #[test]
    fn reps_to_resolve_plans_the_interval_it_promises() {
        // pi * (1.96 * 1.4826 * 2)^2 = 106.1.
        assert_eq!(reps_to_resolve(0.02, 0.01), Some(107));
        assert_eq!(reps_to_resolve(0.0, 0.01), Some(1));
        assert_eq!(reps_to_resolve(0.01, 0.0), None);
        assert_eq!(reps_to_resolve(-0.01, 0.01), None);
        assert_eq!(reps_to_resolve(f64::NAN, 0.01), None);
        // With that many repetitions the bootstrap interval is about +-1%.
        let n = reps_to_resolve(0.02, 0.01).unwrap();
        let sd = 0.02 / 0.6745;
        let r = ratio_of_medians(&noisy(n, 100.0, sd, 20), &noisy(n, 100.0, sd, 21), 0.95, 2000, 6).unwrap();
        let half = (r.hi - r.lo) / 2.0;
        assert!((0.006..0.016).contains(&half), "{half}");
    }

    #[test]
    fn an_interval_of_a_function_of_several_medians() {
        // A ratio of ratios: the 2-vCPU slowdown of one variant over another's.
        let (a1, a2) = ([100.0, 101.0, 99.0, 100.5, 99.5], [200.0, 202.0, 198.0, 201.0, 199.0]);
        let (l1, l2) = ([50.0, 50.5, 49.5, 50.2, 49.8], [100.0, 101.0, 99.0, 100.4, 99.6]);
        let f = |m: &[f64]| (m[0] / m[1]) / (m[2] / m[3]);
        let ci = of_medians(&[&a2, &a1, &l2, &l1], f, 0.95, 2000, 5).unwrap();
        assert_eq!(ci.value, 1.0);
        assert!(ci.lo < 1.0 && ci.hi > 1.0 && ci.hi < 1.1, "{ci:?}");
        assert_eq!(ci.against(1.0), Difference::WithinNoise);
        assert_eq!(ci.against(1.25), Difference::Lower);
        assert_eq!(ci.against(0.8), Difference::Higher);
        assert_eq!(ci.n, [5, 5, 5, 5]);
        // The two-sample case is ratio_of_medians, round for round.
        let r = ratio_of_medians(&a2, &a1, 0.95, 2000, 5).unwrap();
        let c = of_medians(&[&a2, &a1], |m| m[0] / m[1], 0.95, 2000, 5).unwrap();
        assert_eq!((r.ratio, r.lo, r.hi), (c.value, c.lo, c.hi));
        assert!(of_medians(&[&a1, &[]], f, 0.95, 10, 1).is_none());
    }
}

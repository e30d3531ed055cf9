//! Statistics over repetitions: min, median, max, and a distribution-free
//! confidence interval of the median.

use serde::{Deserialize, Serialize};

/// A figure over the repetitions that measured it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
}

impl Stat {
    /// The statistics of the finite values (None when there are none).
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let k = median_ci_rank(n);
        Some(Stat { min: v[0], median, max: v[n - 1], n, lo: v[k - 1], hi: v[n - k] })
    }

    /// A Stat whose median interval is min..max (test fixtures).
    #[cfg(test)]
    pub fn exact(min: f64, median: f64, max: f64, n: usize) -> Stat {
        Stat { min, median, max, n, lo: min, hi: max }
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
        }
    }
}

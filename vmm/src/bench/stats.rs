//! Statistics over repetitions: min, median, max.

use serde::{Deserialize, Serialize};

/// A figure over the repetitions that measured it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Repetitions that measured it.
    pub n: usize,
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
        Some(Stat { min: v[0], median, max: v[n - 1], n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_median_max() {
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[f64::NAN]), None);
        assert_eq!(Stat::of(&[3.0]), Some(Stat { min: 3.0, median: 3.0, max: 3.0, n: 1 }));
        assert_eq!(Stat::of(&[5.0, 1.0, 3.0]), Some(Stat { min: 1.0, median: 3.0, max: 5.0, n: 3 }));
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 10.0]), Some(Stat { min: 1.0, median: 3.0, max: 10.0, n: 4 }));
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
            assert!(s.min <= s.median && s.median <= s.max);
            assert_eq!(s.n, len);
        }
    }
}

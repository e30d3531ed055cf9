//! `--shard i/n`: the i-th of n slices of a matrix's cells (1-based), so a sweep
//! can be spread over machines and joined again with `vmm bench merge`. Cells are
//! dealt round-robin, so each slice gets a share of every experiment.
//!
//! `--shard auto` takes the slice from the batch system that started the
//! process: a Slurm array job (`SLURM_ARRAY_TASK_ID` and
//! `SLURM_ARRAY_TASK_COUNT`, with `SLURM_ARRAY_TASK_MIN` the first id of a
//! contiguous array) or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, and
//! `VMM_SHARD_COUNT` set to the job's completions: Kubernetes does not pass
//! them on).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One slice: `index` of `count`, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--shard {0:?}: {1}")]
pub struct BadShard(pub String, pub String);

impl FromStr for Shard {
    type Err = BadShard;

    fn from_str(s: &str) -> Result<Self, BadShard> {
        if s == "auto" {
            return Shard::from_env(|k| std::env::var(k).ok());
        }
        let bad = || BadShard(s.to_owned(), "expected i/n with 1 <= i <= n, for example 1/2, or auto".into());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The slice a Slurm array job or a Kubernetes Indexed Job gives this
    /// process, read through `get` (the environment).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Shard, BadShard> {
        let bad = |why: String| BadShard("auto".into(), why);
        let num = |k: &str| -> Result<Option<usize>, BadShard> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| bad(format!("{k}={v:?} is not a number"))),
            }
        };
        let (index, count, from) = if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?
                .ok_or_else(|| bad("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT".into()))?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index =
                id.checked_sub(min).ok_or_else(|| bad(format!("task id {id} below the array's first, {min}")))?;
            (index + 1, count, "the Slurm array")
        } else if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            let count = num("VMM_SHARD_COUNT")?.ok_or_else(|| {
                bad("JOB_COMPLETION_INDEX is set but not VMM_SHARD_COUNT (set it to the job's completions)".into())
            })?;
            (i + 1, count, "the Kubernetes Indexed Job")
        } else {
            return Err(bad(
                "no Slurm array (SLURM_ARRAY_TASK_ID) or Kubernetes Indexed Job (JOB_COMPLETION_INDEX) in the \
                 environment"
                    .into(),
            ));
        };
        if count == 0 || index > count {
            return Err(bad(format!("{from} gives slice {index} of {count}")));
        }
        Ok(Shard { index, count })
    }

    /// Whether the cell at this position (in matrix order) is in the slice.
    pub fn has(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// The items of the slice, in order.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().enumerate().filter(|(i, _)| self.has(*i)).map(|(_, t)| t.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/2", "3/2", "1/0", "1", "a/b", "", "1/2/3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!("0/2".parse::<Shard>().unwrap_err().to_string().contains("1 <= i <= n"));
    }

    #[test]
    fn auto_takes_the_slice_from_slurm_or_kubernetes() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        // Slurm: --array=0-3 (ids 0..3) and --array=1-4 (ids 1..4).
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "0")]);
        assert_eq!(Shard::from_env(slurm), Ok(Shard { index: 3, count: 4 }));
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert_eq!(Shard::from_env(slurm), Ok(Shard { index: 4, count: 4 }));
        // Kubernetes: a 0-based index and the count the manifest passes on.
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("VMM_SHARD_COUNT", "3")]);
        assert_eq!(Shard::from_env(k8s), Ok(Shard { index: 1, count: 3 }));
        // What cannot be a slice says why.
        for (pairs, why) in [
            (&[][..], "no Slurm array"),
            (&[("SLURM_ARRAY_TASK_ID", "1")][..], "not SLURM_ARRAY_TASK_COUNT"),
            (&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")][..], "not a number"),
            (&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "4")][..], "slice 6 of 4"),
            (&[("JOB_COMPLETION_INDEX", "0")][..], "VMM_SHARD_COUNT"),
        ] {
            let e = Shard::from_env(env(pairs)).unwrap_err().to_string();
            assert!(e.starts_with("--shard \"auto\": ") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn slices_partition_the_cells() {
        let items: Vec<usize> = (0..17).collect();
        for n in 1..6 {
            let mut all: Vec<usize> = (1..=n).flat_map(|i| Shard { index: i, count: n }.select(&items)).collect();
            all.sort();
            assert_eq!(all, items, "n={n}");
        }
        assert_eq!(Shard { index: 2, count: 3 }.select(&items), vec![1, 4, 7, 10, 13, 16]);
    }
}

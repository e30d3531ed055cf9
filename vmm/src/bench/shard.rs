//! `--shard i/n`: the i-th of n slices of a matrix's cells (1-based), so a sweep
//! can be spread over machines and joined again with `vmm bench merge`. Cells are
//! dealt round-robin, so each slice gets a share of every experiment.

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
#[error("--shard {0:?}: expected i/n with 1 <= i <= n, for example 1/2")]
pub struct BadShard(pub String);

impl FromStr for Shard {
    type Err = BadShard;

    fn from_str(s: &str) -> Result<Self, BadShard> {
        let bad = || BadShard(s.to_owned());
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

//! Which slice of a model one worker holds when the model is split across
//! several workers (tensor parallelism), each with its own memory.
//!
//! Every layer is cut into the same fixed segments whatever the number of
//! workers: one per key/value head group (its query, key and value rows and
//! the matching input columns of the attention output) and as many slices of
//! the feed-forward hidden units (gate and up rows, down columns). Worker
//! `rank` of `count` holds a near-equal run of those segments, and a share of
//! the vocabulary rows of the embedding and output tables.
//!
//! Each segment yields a partial sum for the residual stream. Every worker
//! adds all the segments' partial sums in segment order, exactly as a single
//! worker holding the whole model does: so a split model computes bit for bit
//! what the whole one computes, with any number of workers.

use std::ops::Range;

use super::ModelError;

/// One worker's place in a model split across `count` workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    rank: usize,
    count: usize,
}

impl Partition {
    /// The whole model in one worker.
    pub const WHOLE: Self = Self { rank: 0, count: 1 };

    /// Worker `rank` (from 0) of `count`.
    ///
    /// # Errors
    /// [`ModelError::Partition`] when `count` is 0 or `rank` is not below it.
    pub fn new(rank: usize, count: usize) -> Result<Self, ModelError> {
        if count == 0 || rank >= count {
            return Err(ModelError::Partition(format!("worker {rank} of {count} does not exist")));
        }
        Ok(Self { rank, count })
    }

    /// This worker's rank, from 0.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of workers.
    pub fn count(&self) -> usize {
        self.count
    }

    /// This worker's near-equal share of `0..n` (shares differ by at most one,
    /// and are in rank order).
    pub fn share(&self, n: usize) -> Range<usize> {
        n * self.rank / self.count..n * (self.rank + 1) / self.count
    }

    /// This worker's share of `0..n` in whole units of `unit`.
    ///
    /// # Errors
    /// [`ModelError::Partition`] when `unit` does not divide `n`.
    pub fn share_in_units(&self, n: usize, unit: usize, what: &str) -> Result<Range<usize>, ModelError> {
        if unit == 0 || !n.is_multiple_of(unit) {
            return Err(ModelError::Partition(format!("{what}: {n} is not a whole number of {unit}-wide blocks")));
        }
        let r = self.share(n / unit);
        Ok(r.start * unit..r.end * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once_in_order() {
        for count in 1..=5 {
            let mut next = 0;
            for rank in 0..count {
                let r = Partition::new(rank, count).unwrap().share(9);
                assert_eq!(r.start, next);
                assert!(r.len() == 9 / count || r.len() == 9 / count + 1);
                next = r.end;
            }
            assert_eq!(next, 9);
        }
        let p = Partition::new(1, 2).unwrap();
        assert_eq!(p.share_in_units(1536, 32, "ffn").unwrap(), 768..1536);
        assert!(p.share_in_units(100, 32, "ffn").is_err());
        assert!(Partition::new(2, 2).is_err());
        assert!(Partition::new(0, 0).is_err());
    }
}

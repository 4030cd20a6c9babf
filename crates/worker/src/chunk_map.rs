//! Which fixed-size chunks of a file are stored: the resume record of a
//! download. Kept on disk as one byte per chunk (1 = stored), each byte written
//! only after its chunk's data was flushed, so a record never claims more than
//! the store holds.

use sprig_protocol::MAX_MODEL_BYTES;

/// Size of the chunks a download is fetched and stored in (one HTTP Range
/// request each).
pub const CHUNK: u64 = 4 << 20;

/// A file size no [`ChunkMap`] is made for: larger than the largest model
/// Sprig stores ([`MAX_MODEL_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a file of {0} bytes is larger than the {MAX_MODEL_BYTES} bytes (64 GiB) Sprig stores")]
pub struct TooLarge(pub u64);

/// The stored/missing state of each chunk of a file of known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMap {
    size: u64,
    stored: Vec<bool>,
}

impl ChunkMap {
    /// Nothing stored yet, for a file of `size` bytes.
    ///
    /// # Errors
    /// [`TooLarge`] past [`MAX_MODEL_BYTES`], before anything is allocated.
    pub fn new(size: u64) -> Result<Self, TooLarge> {
        if size > MAX_MODEL_BYTES {
            return Err(TooLarge(size));
        }
        Ok(Self { size, stored: vec![false; size.div_ceil(CHUNK) as usize] })
    }

    /// Reads the on-disk record (one byte per chunk). Bytes other than 1, and
    /// missing bytes (a record cut short), read as "not stored".
    ///
    /// # Errors
    /// As [`ChunkMap::new`].
    pub fn from_record(size: u64, record: &[u8]) -> Result<Self, TooLarge> {
        let mut map = Self::new(size)?;
        for (i, s) in map.stored.iter_mut().enumerate() {
            *s = record.get(i) == Some(&1);
        }
        Ok(map)
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Whether the file is empty (no chunks).
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }

    /// The byte range `[start, end)` of chunk `i`.
    pub fn range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * CHUNK;
        (start, (start + CHUNK).min(self.size))
    }

    /// Whether chunk `i` is stored.
    pub fn is_stored(&self, i: usize) -> bool {
        self.stored.get(i).copied().unwrap_or(false)
    }

    /// Marks chunk `i` stored.
    pub fn mark(&mut self, i: usize) {
        if let Some(s) = self.stored.get_mut(i) {
            *s = true;
        }
    }

    /// Forgets every chunk (the file is to be fetched again).
    pub fn clear(&mut self) {
        self.stored.iter_mut().for_each(|s| *s = false);
    }

    /// The chunks still to fetch, in order.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| !self.stored[i]).collect()
    }

    /// Whether every chunk is stored.
    pub fn complete(&self) -> bool {
        self.stored.iter().all(|&s| s)
    }

    /// Bytes stored.
    pub fn stored_bytes(&self) -> u64 {
        (0..self.len()).filter(|&i| self.stored[i]).map(|i| self.range(i).1 - self.range(i).0).sum()
    }

    /// How many chunks from the start are stored without a gap.
    pub fn stored_prefix(&self) -> usize {
        self.stored.iter().take_while(|&&s| s).count()
    }
}

/// Whether an HTTP status is worth retrying (the server or a proxy may
/// recover), as opposed to a definite answer such as 404.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Attempts per chunk before a download fails.
pub const MAX_ATTEMPTS: u32 = 6;

/// Milliseconds to wait before retry number `attempt` (1-based): 250 ms,
/// doubling, capped at 8 s.
pub fn backoff_ms(attempt: u32) -> u32 {
    250u32.saturating_mul(1 << attempt.saturating_sub(1).min(5)).min(8_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_exactly() {
        let map = ChunkMap::new(2 * CHUNK + 5).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.range(0), (0, CHUNK));
        assert_eq!(map.range(2), (2 * CHUNK, 2 * CHUNK + 5));
        assert_eq!(ChunkMap::new(0).unwrap().len(), 0);
        assert!(ChunkMap::new(0).unwrap().complete());
        assert_eq!(ChunkMap::new(CHUNK).unwrap().len(), 1);
    }

    #[test]
    fn sizes_past_the_largest_model_are_refused_before_allocating() {
        assert_eq!(ChunkMap::new(1 << 53), Err(TooLarge(1 << 53)));
        assert_eq!(ChunkMap::from_record(u64::MAX, &[1]), Err(TooLarge(u64::MAX)));
        assert_eq!(ChunkMap::new(MAX_MODEL_BYTES).unwrap().len(), (MAX_MODEL_BYTES / CHUNK) as usize);
    }

    #[test]
    fn record_round_trip_and_damage() {
        let mut map = ChunkMap::new(3 * CHUNK).unwrap();
        map.mark(0);
        map.mark(2);
        assert_eq!(map.missing(), vec![1]);
        assert_eq!(map.stored_bytes(), 2 * CHUNK);
        assert_eq!(map.stored_prefix(), 1);
        // A record cut short or holding other bytes claims nothing more.
        assert_eq!(ChunkMap::from_record(3 * CHUNK, &[1, 0, 1]).unwrap(), map);
        assert_eq!(ChunkMap::from_record(3 * CHUNK, &[1]).unwrap().missing(), vec![1, 2]);
        assert_eq!(ChunkMap::from_record(3 * CHUNK, &[7, 1, 1, 1, 1]).unwrap().missing(), vec![0]);
        map.clear();
        assert_eq!(map.stored_bytes(), 0);
    }

    #[test]
    fn only_transient_statuses_are_retried_with_growing_waits() {
        assert!(is_transient(503) && is_transient(500) && is_transient(429));
        assert!(!is_transient(404) && !is_transient(403) && !is_transient(416) && !is_transient(200));
        assert_eq!((1..=7).map(backoff_ms).collect::<Vec<_>>(), vec![250, 500, 1000, 2000, 4000, 8000, 8000]);
    }
}

//! A per-layer key/value cache that grows in place and can be cut back, so a
//! conversation can keep the prefix it shares with the next prompt.

/// Positions per block of a cache.
const BLOCK: usize = 256;

/// Keys and values of one layer for the key/value heads this worker holds:
/// position `p` is `width` keys and `width` values. Stored in blocks of
/// [`BLOCK`] positions, each its own allocation: growing never copies (nor
/// needs the old and the new buffer at once, which in a wasm memory that
/// never shrinks would leave the old one as a hole), and blocks cut off by
/// [`truncate`](Self::truncate) are kept for the positions that come next.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    k: Vec<Box<[f32]>>,
    v: Vec<Box<[f32]>>,
    width: usize,
    len: usize,
}

impl LayerCache {
    /// An empty cache of `width` values (heads × head dim) per position.
    pub fn new(width: usize) -> Self {
        Self { k: Vec::new(), v: Vec::new(), width, len: 0 }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated for keys and values.
    pub fn allocated_bytes(&self) -> usize {
        2 * self.k.len() * BLOCK * self.width * std::mem::size_of::<f32>()
    }

    /// Allocates room for `positions` positions in all, so that the cache
    /// does not allocate again until it holds more.
    ///
    /// # Errors
    /// [`std::collections::TryReserveError`] when the memory cannot hold it
    /// (nothing is allocated past what was).
    pub fn reserve(&mut self, positions: usize) -> Result<(), std::collections::TryReserveError> {
        let blocks = positions.div_ceil(BLOCK);
        let size = BLOCK * self.width;
        while self.k.len() < blocks && size > 0 {
            let (mut k, mut v) = (Vec::new(), Vec::new());
            k.try_reserve_exact(size)?;
            v.try_reserve_exact(size)?;
            k.resize(size, 0.0);
            v.resize(size, 0.0);
            self.k.push(k.into_boxed_slice());
            self.v.push(v.into_boxed_slice());
        }
        Ok(())
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends the keys and values of some positions (`width` values each).
    pub fn append(&mut self, k: &[f32], v: &[f32]) {
        if self.width == 0 {
            return;
        }
        for (k, v) in k.chunks_exact(self.width).zip(v.chunks_exact(self.width)) {
            let (block, at) = (self.len / BLOCK, self.len % BLOCK * self.width);
            if block == self.k.len() {
                self.k.push(vec![0.0; BLOCK * self.width].into_boxed_slice());
                self.v.push(vec![0.0; BLOCK * self.width].into_boxed_slice());
            }
            self.k[block][at..at + self.width].copy_from_slice(k);
            self.v[block][at..at + self.width].copy_from_slice(v);
            self.len += 1;
        }
    }

    /// The keys of position `p`.
    pub fn key(&self, p: usize) -> &[f32] {
        debug_assert!(p < self.len);
        let at = p % BLOCK * self.width;
        &self.k[p / BLOCK][at..at + self.width]
    }

    /// The values of position `p`.
    pub fn value(&self, p: usize) -> &[f32] {
        debug_assert!(p < self.len);
        let at = p % BLOCK * self.width;
        &self.v[p / BLOCK][at..at + self.width]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_keeps_and_truncates() {
        let mut c = LayerCache::new(4);
        for i in 0..300 {
            c.append(&[i as f32; 4], &[-(i as f32); 4]);
        }
        assert_eq!(c.len(), 300);
        assert_eq!(c.key(299), &[299.0; 4]);
        assert_eq!(c.value(256), &[-256.0; 4]);
        assert_eq!(c.allocated_bytes(), 2 * 2 * 256 * 4 * 4);
        c.truncate(10);
        c.append(&[7.0; 8], &[-7.0; 8]);
        assert_eq!(c.len(), 12);
        assert_eq!(c.key(9), &[9.0; 4]);
        assert_eq!(c.key(10), &[7.0; 4]);
        assert_eq!(c.value(11), &[-7.0; 4]);
        // The blocks stay for the positions that come next.
        assert_eq!(c.allocated_bytes(), 2 * 2 * 256 * 4 * 4);
        c.reserve(600).unwrap();
        assert_eq!(c.allocated_bytes(), 2 * 3 * 256 * 4 * 4);
        assert_eq!(c.len(), 12);
        c.reserve(10).unwrap();
        assert_eq!(c.allocated_bytes(), 2 * 3 * 256 * 4 * 4);
    }
}

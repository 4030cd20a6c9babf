//! A per-layer key/value cache that grows in place and can be cut back, so a
//! conversation can keep the prefix it shares with the next prompt.

/// Keys and values of one layer for the key/value heads this worker holds,
/// position-major: position `p` is `width` keys at `k[p * width..]`.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
    width: usize,
}

/// Positions added to a cache's capacity at a time.
const GROW: usize = 256;

impl LayerCache {
    /// An empty cache of `width` values (heads × head dim) per position.
    pub fn new(width: usize) -> Self {
        Self { k: Vec::new(), v: Vec::new(), width }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.k.len().checked_div(self.width).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.k.is_empty()
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.k.truncate(len * self.width);
        self.v.truncate(len * self.width);
    }

    /// Appends the keys and values of some positions (`width` values each).
    pub fn append(&mut self, k: &[f32], v: &[f32]) {
        if self.k.len() + k.len() > self.k.capacity() {
            // Whole blocks of positions, not doubling: a 7B cache must not
            // overshoot its memory by half.
            let more = k.len().div_ceil(self.width * GROW).max(1) * self.width * GROW;
            self.k.reserve_exact(more);
            self.v.reserve_exact(more);
        }
        self.k.extend_from_slice(k);
        self.v.extend_from_slice(v);
    }

    /// The keys of position `p`.
    pub fn key(&self, p: usize) -> &[f32] {
        &self.k[p * self.width..(p + 1) * self.width]
    }

    /// The values of position `p`.
    pub fn value(&self, p: usize) -> &[f32] {
        &self.v[p * self.width..(p + 1) * self.width]
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
        c.truncate(10);
        c.append(&[7.0; 4], &[-7.0; 4]);
        assert_eq!(c.len(), 11);
        assert_eq!(c.key(9), &[9.0; 4]);
        assert_eq!(c.key(10), &[7.0; 4]);
        assert_eq!(c.value(10), &[-7.0; 4]);
    }
}

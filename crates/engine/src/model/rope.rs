//! Rotary position embeddings in GGUF's llama layout (interleaved pairs).

/// Precomputed cos/sin tables, `[positions, head_dim / 2]`, grown with the
/// KV cache ([`Rope::reserve`]) so that they cover the positions in use, not
/// the whole trained context.
#[derive(Debug, Clone)]
pub struct Rope {
    half: usize,
    inv_freq: Vec<f64>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Empty tables for heads of `head_dim` values and base frequency `theta`.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        // In f64, rounded once to f32: the platforms' libms differ in their
        // last bits, which rounding hides (so the tables match everywhere).
        let inv_freq = (0..half).map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)).collect();
        Self { half, inv_freq, cos: Vec::new(), sin: Vec::new() }
    }

    /// Positions the tables cover.
    pub fn positions(&self) -> usize {
        self.cos.len().checked_div(self.half).unwrap_or(usize::MAX)
    }

    /// Extends the tables to cover positions `0..positions`.
    ///
    /// # Errors
    /// [`std::collections::TryReserveError`] when the memory cannot hold them
    /// (the tables stay as they were).
    pub fn reserve(&mut self, positions: usize) -> Result<(), std::collections::TryReserveError> {
        let have = self.positions();
        if positions <= have {
            return Ok(());
        }
        let more = (positions - have).saturating_mul(self.half);
        self.cos.try_reserve_exact(more)?;
        self.sin.try_reserve_exact(more)?;
        for p in have..positions {
            for f in &self.inv_freq {
                let angle = p as f64 * f;
                self.cos.push(angle.cos() as f32);
                self.sin.push(angle.sin() as f32);
            }
        }
        Ok(())
    }

    /// Rotates every head of `x` (heads of `2 * half` values back to back) for
    /// position `pos`, which must be below [`Rope::positions`].
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let (cos, sin) = (&self.cos[pos * self.half..][..self.half], &self.sin[pos * self.half..][..self.half]);
        for head in x.chunks_exact_mut(2 * self.half) {
            for ((pair, c), s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rope;

    #[test]
    fn tables_grown_in_steps_equal_tables_made_at_once() {
        let (mut grown, mut whole) = (Rope::new(8, 10_000.0), Rope::new(8, 10_000.0));
        assert_eq!(grown.positions(), 0);
        for n in [3, 3, 10, 64] {
            grown.reserve(n).unwrap();
        }
        whole.reserve(64).unwrap();
        assert_eq!(grown.positions(), 64);
        assert_eq!((grown.cos == whole.cos, grown.sin == whole.sin), (true, true));
        let (mut a, mut b) = (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        grown.apply(&mut a, 63);
        whole.apply(&mut b, 63);
        assert_eq!(a, b);
    }
}

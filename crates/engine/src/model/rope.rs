//! Rotary position embeddings in GGUF's llama layout (interleaved pairs).

/// Precomputed cos/sin tables, `[max_positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Tables for positions `0..max_positions` with base frequency `theta`.
    pub fn new(head_dim: usize, max_positions: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        // In f64, rounded once to f32: the platforms' libms differ in their
        // last bits, which rounding hides (so the tables match everywhere).
        let inv_freq: Vec<f64> = (0..half).map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)).collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in &inv_freq {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { half, cos, sin }
    }

    /// Rotates every head of `x` (heads of `2 * half` values back to back) for
    /// position `pos`; `pos` must be below the table's length.
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

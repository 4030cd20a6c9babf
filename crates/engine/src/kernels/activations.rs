//! Activations quantized for the kernels, the way llama.cpp quantizes them
//! for each weight family:
//! - per block of 32 (Q8_0/Q8_1) for the legacy types: `d = max|x| / 127`,
//!   `q = round(x / d)` (ties to even), with `d · Σq` (for minimums) and
//!   `Σq` (for offsets) per block;
//! - per super-block of 256 (Q8_K) for the K-quants, when the width is a
//!   multiple of 256: one `d` per 256 values, with `Σq` per 16.
//!
//! Both forms are computed on every [`Activations::quantize`]; each costs one
//! pass over the values, which the matrix products then read many times.

use super::{scalar, Backend, GgmlDType, KernelError};

/// Activations of `tokens` tokens × `cols`, quantized for the kernels; buffers
/// are reused across calls (no allocation once grown).
#[derive(Debug, Default, Clone)]
pub struct Activations {
    tokens: usize,
    cols: usize,
    /// The f32 values, for the F16/F32 path.
    x: Vec<f32>,
    /// Per-32 quantized values, token-major.
    q: Vec<i8>,
    /// Scale of each block of 32.
    d: Vec<f32>,
    /// `d · Σq` over each block of 32.
    sum32: Vec<f32>,
    /// `Σq` over each block of 32.
    qsum32: Vec<i32>,
    /// Whether the per-256 form below is filled (`cols` a multiple of 256).
    has_k: bool,
    /// Per-256 quantized values, token-major.
    qk: Vec<i8>,
    /// Scale of each super-block of 256.
    dk: Vec<f32>,
    /// `Σq` over each group of 16 of the per-256 values.
    bsum16: Vec<i32>,
    /// The per-32 values of each token reordered for the SIMD tiles
    /// (`simd128::interleave` by 32, whole runs of four blocks).
    qi: Vec<i8>,
    /// The per-256 values reordered by 32 (for Q4_K, Q5_K tiles).
    qki32: Vec<i8>,
    /// The per-256 values reordered by 16 (for Q2_K, Q3_K, Q6_K tiles).
    qki16: Vec<i8>,
    /// `bsum16` as i16 (each |Σq| ≤ 16·127), for the K-quant tiles.
    bsum16_i16: Vec<i16>,
    /// `Σq` per 32 of the per-256 values as i16 (each |Σq| ≤ 32·127), for
    /// the K-quant tiles with groups of 32.
    bsum32_i16: Vec<i16>,
}

/// One token's per-32 quantization.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token32<'a> {
    /// Quantized values.
    pub q: &'a [i8],
    /// Block scales.
    pub d: &'a [f32],
    /// `d · Σq` per block.
    pub sum32: &'a [f32],
    /// `Σq` per block.
    pub qsum: &'a [i32],
    /// `q` reordered for the SIMD tiles (empty in builds without them).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub qi: &'a [i8],
}

/// One token's per-256 quantization.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenK<'a> {
    /// Quantized values.
    pub q: &'a [i8],
    /// Super-block scales.
    pub d: &'a [f32],
    /// `Σq` per 16.
    pub bsum16: &'a [i32],
    /// `q` reordered by 32 for the SIMD tiles (empty in builds without them).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub qi32: &'a [i8],
    /// `q` reordered by 16 for the SIMD tiles (empty in builds without them).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub qi16: &'a [i8],
    /// `bsum16` as i16 for the SIMD tiles (empty in builds without them).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub bsum16_i16: &'a [i16],
    /// `Σq` per 32 as i16 for the SIMD tiles (empty in builds without them).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub bsum32_i16: &'a [i16],
}

/// Quantizes one block of 32 activations with `backend`: returns `d` and
/// the sums of `q` over its two halves.
#[inline(always)]
fn block32(backend: Backend, x: &[f32], q: &mut [i8]) -> (f32, i32, i32) {
    let d = block_amax(backend, x) / 127.0;
    let (s0, s1) = round_block(backend, x, inverse(d), q);
    (d, s0, s1)
}

/// `1 / d`, or 0 for a block of zeros.
#[inline(always)]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

#[inline(always)]
fn block_amax(backend: Backend, x: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if backend.simd() {
        return super::simd128::amax32(x);
    }
    let _ = backend;
    scalar::amax(&x[..32])
}

#[inline(always)]
fn round_block(backend: Backend, x: &[f32], id: f32, q: &mut [i8]) -> (i32, i32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if backend.simd() {
        return super::simd128::round_block(x, id, q);
    }
    let _ = backend;
    scalar::round_block(x, id, q)
}

impl Activations {
    /// Empty activations (no tokens).
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `x` (`tokens * cols` f32, token-major).
    ///
    /// # Errors
    ///
    /// [`KernelError::NotBlockMultiple`] when `cols` is not a multiple of 32,
    /// [`KernelError::InputLength`] when `x.len() != tokens * cols`.
    pub fn quantize(&mut self, x: &[f32], tokens: usize, cols: usize) -> Result<(), KernelError> {
        self.quantize_with(x, tokens, cols, Backend::BEST)
    }

    /// [`quantize`](Self::quantize) with a chosen backend.
    ///
    /// # Errors
    ///
    /// As [`quantize`](Self::quantize).
    #[doc(hidden)]
    pub fn quantize_with(&mut self, x: &[f32], tokens: usize, cols: usize, backend: Backend) -> Result<(), KernelError> {
        if !cols.is_multiple_of(32) {
            return Err(KernelError::NotBlockMultiple { dtype: GgmlDType::Q8_0, cols, block: 32 });
        }
        if tokens.checked_mul(cols) != Some(x.len()) {
            return Err(KernelError::InputLength { tokens, cols, actual: x.len() });
        }
        let blocks = x.len() / 32;
        self.tokens = tokens;
        self.cols = cols;
        self.x.clear();
        self.x.extend_from_slice(x);
        self.q.resize(x.len(), 0);
        self.d.resize(blocks, 0.0);
        self.sum32.resize(blocks, 0.0);
        self.qsum32.resize(blocks, 0);
        let outs = self.d.iter_mut().zip(self.sum32.iter_mut()).zip(self.qsum32.iter_mut());
        for ((xb, qb), ((d, s32), qs)) in x.chunks_exact(32).zip(self.q.chunks_exact_mut(32)).zip(outs) {
            let (scale, s0, s1) = block32(backend, xb, qb);
            *d = scale;
            *qs = s0 + s1;
            *s32 = scale * (s0 + s1) as f32;
        }
        self.has_k = cols.is_multiple_of(256);
        if self.has_k {
            let supers = x.len() / 256;
            self.qk.resize(x.len(), 0);
            self.dk.resize(supers, 0.0);
            self.bsum16.resize(16 * supers, 0);
            let outs = self.dk.iter_mut().zip(self.bsum16.chunks_exact_mut(16));
            for ((xs, qs), (d, sums)) in x.chunks_exact(256).zip(self.qk.chunks_exact_mut(256)).zip(outs) {
                let amax = xs.chunks_exact(32).fold(0f32, |m, b| {
                    let a = block_amax(backend, b);
                    // NaN wins, as in a block's own maximum.
                    if a.is_nan() || m.is_nan() {
                        f32::NAN
                    } else {
                        m.max(a)
                    }
                });
                *d = amax / 127.0;
                let id = inverse(*d);
                for ((xb, qb), s) in xs.chunks_exact(32).zip(qs.chunks_exact_mut(32)).zip(sums.chunks_exact_mut(2)) {
                    (s[0], s[1]) = round_block(backend, xb, id, qb);
                }
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        self.interleave();
        Ok(())
    }

    /// Fills the reordered copies the SIMD tiles read.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn interleave(&mut self) {
        use super::simd128::interleave;
        let (cols, tokens) = (self.cols, self.tokens);
        let padded = (cols / 32).next_multiple_of(4) * 32;
        self.qi.resize(tokens * padded, 0);
        for (q, qi) in self.q.chunks_exact(cols.max(1)).zip(self.qi.chunks_exact_mut(padded.max(1))) {
            interleave::<32>(q, qi);
        }
        if self.has_k {
            self.qki32.resize(self.qk.len(), 0);
            self.qki16.resize(self.qk.len(), 0);
            interleave::<32>(&self.qk, &mut self.qki32);
            interleave::<16>(&self.qk, &mut self.qki16);
            self.bsum16_i16.clear();
            self.bsum16_i16.extend(self.bsum16.iter().map(|&s| s as i16));
            self.bsum32_i16.clear();
            self.bsum32_i16.extend(self.bsum16.chunks_exact(2).map(|s| (s[0] + s[1]) as i16));
        }
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Values per token.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The per-32 quantized values and block scales, token-major.
    #[doc(hidden)]
    pub fn quantized(&self) -> (&[i8], &[f32]) {
        (&self.q, &self.d)
    }

    /// The per-256 quantized values and super-block scales, token-major
    /// (empty unless `cols` is a multiple of 256).
    #[doc(hidden)]
    pub fn quantized_k(&self) -> (&[i8], &[f32]) {
        if self.has_k {
            (&self.qk, &self.dk)
        } else {
            (&[], &[])
        }
    }

    /// Whether the per-256 form is there.
    pub(crate) fn has_k(&self) -> bool {
        self.has_k
    }

    /// Token `t`'s f32 values.
    #[inline]
    pub(crate) fn x(&self, t: usize) -> &[f32] {
        &self.x[t * self.cols..(t + 1) * self.cols]
    }

    /// Token `t`'s per-32 quantization.
    #[inline]
    pub(crate) fn token32(&self, t: usize) -> Token32<'_> {
        let (c, b) = (self.cols, self.cols / 32);
        Token32 {
            q: &self.q[t * c..(t + 1) * c],
            d: &self.d[t * b..(t + 1) * b],
            sum32: &self.sum32[t * b..(t + 1) * b],
            qsum: &self.qsum32[t * b..(t + 1) * b],
            qi: self.qi.get(t * b.next_multiple_of(4) * 32..(t + 1) * b.next_multiple_of(4) * 32).unwrap_or(&[]),
        }
    }

    /// Token `t`'s per-256 quantization (only when [`has_k`](Self::has_k)).
    #[inline]
    pub(crate) fn token_k(&self, t: usize) -> TokenK<'_> {
        let (c, s) = (self.cols, self.cols / 256);
        TokenK {
            q: &self.qk[t * c..(t + 1) * c],
            d: &self.dk[t * s..(t + 1) * s],
            bsum16: &self.bsum16[16 * t * s..16 * (t + 1) * s],
            qi32: self.qki32.get(t * c..(t + 1) * c).unwrap_or(&[]),
            qi16: self.qki16.get(t * c..(t + 1) * c).unwrap_or(&[]),
            bsum16_i16: self.bsum16_i16.get(16 * t * s..16 * (t + 1) * s).unwrap_or(&[]),
            bsum32_i16: self.bsum32_i16.get(8 * t * s..8 * (t + 1) * s).unwrap_or(&[]),
        }
    }
}

//! Quantized matrix × activations kernels.
//!
//! Every supported GGUF weight type reduces to one *unpacked row* form: an
//! `i8` per weight plus, per group of 16 or 32 weights, an f32 `scale` and
//! (for the types that have one) an f32 `min`, with
//! `weight = scale · val + min` computed exactly as candle dequantizes.
//!
//! Activations are quantized per token to `i8` in blocks of 32
//! (`d = max|x| / 127`, `q = round(x / d)`), as llama.cpp's Q8_0, with the
//! per-16 and per-32 sums `d · Σq` kept for the minimum term. A row dot a
//! token is then
//! `Σ_g scale[g]·d[g]·Σ_{i∈g} val[i]·q[i] + Σ_g min[g]·d[g]·Σ_{i∈g} q[i]`,
//! integer inside each group. F16 and F32 matrices take an f32 path instead.
//!
//! [`QMatrix::matmul`] unpacks each weight row once and dots it with every
//! token. Native builds split rows across rayon threads and use portable
//! code LLVM autovectorizes; wasm builds with `+simd128` use
//! `core::arch::wasm32` intrinsics, single-threaded.
//!
//! The two give bit-identical results, so that native and browser engines
//! pick the same greedy tokens: integer sums are exact, and every f32
//! operation (the per-group `f32(isum) · (scale · d)`, its accumulation in
//! four lanes, the horizontal sum, the minimum term and the F16/F32 dot
//! product) happens in the same order on both, never fused into a
//! multiply-add. The order is documented on `scalar::dot_per32` and
//! `scalar::fdot`; a change to either backend's order must be made to both.

pub mod bench;
mod layout;
mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use std::cell::RefCell;
use std::ops::Range;

pub use candle_core::quantized::GgmlDType;

use layout::{layout, Groups, Layout};

/// Errors of building a [`QMatrix`], quantizing [`Activations`] or
/// multiplying them.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The weight type has no kernel.
    #[error("no kernel for weight type {0:?}")]
    Unsupported(GgmlDType),
    /// A row length that is not a whole number of blocks.
    #[error("{cols} columns are not a multiple of the {dtype:?} block size {block}")]
    NotBlockMultiple {
        /// The weight (or activation) type.
        dtype: GgmlDType,
        /// Columns asked for.
        cols: usize,
        /// Elements per block of the type.
        block: usize,
    },
    /// Weight bytes that do not match the shape.
    #[error("{dtype:?} matrix [{rows}, {cols}] needs {expected} bytes, got {actual}")]
    DataLength {
        /// The weight type.
        dtype: GgmlDType,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A shape whose size overflows `usize`.
    #[error("{dtype:?} matrix [{rows}, {cols}] is too large")]
    TooLarge {
        /// The weight type.
        dtype: GgmlDType,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// Activation values that do not match `tokens × cols`.
    #[error("{actual} activation values for {tokens} tokens of {cols} columns")]
    InputLength {
        /// Tokens asked for.
        tokens: usize,
        /// Columns asked for.
        cols: usize,
        /// Values given.
        actual: usize,
    },
    /// Activations whose width is not the matrix's.
    #[error("activations have {activations} columns, the matrix has {matrix}")]
    ColsMismatch {
        /// Columns of the matrix.
        matrix: usize,
        /// Columns of the activations.
        activations: usize,
    },
    /// An output buffer of the wrong length.
    #[error("output has {actual} values, expected {expected}")]
    OutputLength {
        /// `tokens × rows` (or `cols` for one row).
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A row index past the end.
    #[error("row {row} is out of range for a matrix of {rows} rows")]
    RowOutOfRange {
        /// Row asked for.
        row: usize,
        /// Rows of the matrix.
        rows: usize,
    },
}

/// Which implementation runs: the portable one, or wasm `simd128` where the
/// build has it (elsewhere [`Backend::Simd`] falls back to portable code).
/// For tests comparing the two (their results must be bit-identical).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Portable code (the reference).
    Scalar,
    /// wasm `simd128` intrinsics when compiled in.
    Simd,
}

impl Backend {
    /// The fastest backend of this build.
    pub const BEST: Backend = Backend::Simd;

    /// Whether this backend really uses wasm SIMD in this build.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn simd(self) -> bool {
        self == Backend::Simd
    }
}

/// Unpacks one row: `(src, vals, scales, mins)`.
type UnpackFn = fn(&[u8], &mut [i8], &mut [f32], &mut [f32]);
/// Dots an unpacked row with a token: `(vals, scales, q, d)`.
type DotFn = fn(&[i8], &[f32], &[i8], &[f32]) -> f32;
/// An f32 dot product.
type FdotFn = fn(&[f32], &[f32]) -> f32;
/// Dequantizes an F16/F32 row's bytes.
type FloatFn = fn(&[u8], &mut [f32]);

/// The functions one matmul uses.
#[derive(Clone, Copy)]
struct Kernels {
    unpack: UnpackFn,
    float: FloatFn,
    dot: DotFn,
    fdot: FdotFn,
}

/// Picks the kernels of `dtype` for `backend`.
fn kernels(dtype: GgmlDType, groups: Groups, backend: Backend) -> Kernels {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if backend.simd() {
        use simd128 as s;
        let unpack: UnpackFn = match dtype {
            GgmlDType::Q4_0 => s::unpack_q4_0,
            GgmlDType::Q4_1 => s::unpack_q4_1,
            GgmlDType::Q5_0 => s::unpack_q5_0,
            GgmlDType::Q5_1 => s::unpack_q5_1,
            GgmlDType::Q8_0 => s::unpack_q8_0,
            GgmlDType::Q2K => s::unpack_q2k,
            GgmlDType::Q3K => s::unpack_q3k,
            GgmlDType::Q4K => s::unpack_q4k,
            GgmlDType::Q5K => s::unpack_q5k,
            // Q6_K; the float types use `float` instead.
            _ => s::unpack_q6k,
        };
        let float: FloatFn = if dtype == GgmlDType::F16 { s::unpack_f16 } else { scalar::unpack_f32 };
        let dot: DotFn = if groups == Groups::Per16 { s::dot_per16 } else { s::dot_per32 };
        return Kernels { unpack, float, dot, fdot: s::fdot };
    }
    let _ = backend;
    let unpack: UnpackFn = match dtype {
        GgmlDType::Q4_0 => scalar::unpack_q4_0,
        GgmlDType::Q4_1 => scalar::unpack_q4_1,
        GgmlDType::Q5_0 => scalar::unpack_q5_0,
        GgmlDType::Q5_1 => scalar::unpack_q5_1,
        GgmlDType::Q8_0 => scalar::unpack_q8_0,
        GgmlDType::Q2K => scalar::unpack_q2k,
        GgmlDType::Q3K => scalar::unpack_q3k,
        GgmlDType::Q4K => scalar::unpack_q4k,
        GgmlDType::Q5K => scalar::unpack_q5k,
        // Q6_K; the float types use `float` instead.
        _ => scalar::unpack_q6k,
    };
    let float: FloatFn = if dtype == GgmlDType::F16 { scalar::unpack_f16 } else { scalar::unpack_f32 };
    let dot: DotFn = if groups == Groups::Per16 { scalar::dot_per16 } else { scalar::dot_per32 };
    Kernels { unpack, float, dot, fdot: scalar::fdot }
}

/// Quantizes one block of 32 activations with `backend`.
#[inline(always)]
fn quantize_block(backend: Backend, x: &[f32], q: &mut [i8]) -> (f32, i32, i32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if backend.simd() {
        return simd128::quantize_block(x, q);
    }
    let _ = backend;
    scalar::quantize_block(x, q)
}

/// Activations of `tokens` tokens × `cols`, quantized for the kernels; buffers
/// are reused across calls (no allocation once grown).
#[derive(Debug, Default, Clone)]
pub struct Activations {
    tokens: usize,
    cols: usize,
    /// The f32 values, for the F16/F32 path.
    x: Vec<f32>,
    /// Quantized values, token-major.
    q: Vec<i8>,
    /// Scale of each block of 32.
    d: Vec<f32>,
    /// `d · Σq` over each group of 16.
    sum16: Vec<f32>,
    /// `d · Σq` over each block of 32.
    sum32: Vec<f32>,
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
        self.sum16.resize(2 * blocks, 0.0);
        self.sum32.resize(blocks, 0.0);
        let outs = self.d.iter_mut().zip(self.sum16.chunks_exact_mut(2)).zip(&mut self.sum32);
        for ((xb, qb), ((d, s16), s32)) in x.chunks_exact(32).zip(self.q.chunks_exact_mut(32)).zip(outs) {
            let (scale, s0, s1) = quantize_block(backend, xb, qb);
            *d = scale;
            s16[0] = scale * s0 as f32;
            s16[1] = scale * s1 as f32;
            *s32 = scale * (s0 + s1) as f32;
        }
        Ok(())
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Values per token.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The quantized values and the per-32 block scales, token-major.
    #[doc(hidden)]
    pub fn quantized(&self) -> (&[i8], &[f32]) {
        (&self.q, &self.d)
    }

    /// Token `t`'s slices.
    #[inline]
    fn token(&self, t: usize) -> Token<'_> {
        let (c, b) = (self.cols, self.cols / 32);
        Token {
            x: &self.x[t * c..(t + 1) * c],
            q: &self.q[t * c..(t + 1) * c],
            d: &self.d[t * b..(t + 1) * b],
            sum16: &self.sum16[2 * t * b..2 * (t + 1) * b],
            sum32: &self.sum32[t * b..(t + 1) * b],
        }
    }
}

/// One token of [`Activations`].
struct Token<'a> {
    /// f32 values.
    x: &'a [f32],
    /// Quantized values.
    q: &'a [i8],
    /// Block scales.
    d: &'a [f32],
    /// `d · Σq` per 16.
    sum16: &'a [f32],
    /// `d · Σq` per 32.
    sum32: &'a [f32],
}

/// A quantized (or F16/F32) weight matrix `[rows, cols]` in GGUF's raw block
/// layout, row-major.
#[derive(Debug, Clone)]
pub struct QMatrix {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

/// Rows unpacked together when several tokens share them: the activations
/// are then streamed once per tile instead of once per row.
const TILE: usize = 8;

/// Per-thread buffers of unpacked rows, grown once and reused.
#[derive(Default)]
struct Scratch {
    vals: Vec<i8>,
    scales: Vec<f32>,
    mins: Vec<f32>,
    floats: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (a fresh one if it is already in use).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// The output of a matmul shared by the threads that fill disjoint rows of it.
struct Out {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Out` is only built from a `&mut [f32]` that outlives every use,
// and the threads sharing it write disjoint indices (each owns a row range,
// and writes `t * rows + r` only for its rows `r`).
unsafe impl Sync for Out {}
// SAFETY: as for `Sync`.
unsafe impl Send for Out {}

impl Out {
    fn new(out: &mut [f32]) -> Self {
        Self { ptr: out.as_mut_ptr(), len: out.len() }
    }

    #[inline]
    fn write(&self, i: usize, v: f32) {
        assert!(i < self.len);
        // SAFETY: in bounds (checked above); no other thread writes index `i`
        // (see the `Sync` impl) and nothing reads the buffer meanwhile.
        unsafe { *self.ptr.add(i) = v }
    }
}

impl QMatrix {
    /// Wraps `data`, `rows` rows of `cols` weights of type `dtype` in GGUF's
    /// block layout.
    ///
    /// # Errors
    ///
    /// When the type has no kernel, `cols` is not a multiple of its block
    /// size, or `data` does not hold exactly `rows` rows.
    pub fn new(dtype: GgmlDType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, KernelError> {
        let row_bytes = Self::row_bytes(dtype, cols)?;
        let expected = row_bytes.checked_mul(rows).ok_or(KernelError::TooLarge { dtype, rows, cols })?;
        if data.len() != expected {
            return Err(KernelError::DataLength { dtype, rows, cols, expected, actual: data.len() });
        }
        Ok(Self { dtype, rows, cols, row_bytes, data })
    }

    /// The weight type.
    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row of `cols` weights of type `dtype`.
    ///
    /// # Errors
    ///
    /// When the type has no kernel or `cols` is not a multiple of its block
    /// size.
    pub fn row_bytes(dtype: GgmlDType, cols: usize) -> Result<usize, KernelError> {
        let l = layout(dtype).ok_or(KernelError::Unsupported(dtype))?;
        if !cols.is_multiple_of(l.block) {
            return Err(KernelError::NotBlockMultiple { dtype, cols, block: l.block });
        }
        Ok(cols / l.block * l.bytes)
    }

    /// Bytes of weight data.
    pub fn size_in_bytes(&self) -> usize {
        self.data.len()
    }

    fn layout(&self) -> Layout {
        // Checked in `new`.
        layout(self.dtype).unwrap_or(Layout { block: 1, bytes: 4, groups: Groups::Float, has_min: false })
    }

    /// `out[t * rows + r] = Σ_c W[r, c] · x_t[c]` for every token `t` of `x`.
    ///
    /// # Errors
    ///
    /// [`KernelError::ColsMismatch`] when `x` is not `cols` wide,
    /// [`KernelError::OutputLength`] unless `out.len() == x.tokens() * rows`.
    pub fn matmul(&self, x: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
        self.matmul_with(x, out, Backend::BEST)
    }

    /// [`matmul`](Self::matmul) with a chosen backend (the portable one is
    /// the reference for the SIMD one).
    #[doc(hidden)]
    pub fn matmul_with(&self, x: &Activations, out: &mut [f32], backend: Backend) -> Result<(), KernelError> {
        if x.cols != self.cols {
            return Err(KernelError::ColsMismatch { matrix: self.cols, activations: x.cols });
        }
        let expected = x.tokens * self.rows;
        if out.len() != expected {
            return Err(KernelError::OutputLength { expected, actual: out.len() });
        }
        if self.cols == 0 {
            out.fill(0.0);
        }
        if expected == 0 || self.cols == 0 {
            return Ok(());
        }
        let k = kernels(self.dtype, self.layout().groups, backend);
        let out = Out::new(out);
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            let threads = rayon::current_num_threads();
            let work = self.rows * self.cols * x.tokens;
            if threads > 1 && work >= 1 << 16 {
                let chunk = self.rows.div_ceil(4 * threads).max(TILE).next_multiple_of(TILE);
                (0..self.rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
                    let rows = c * chunk..((c + 1) * chunk).min(self.rows);
                    with_scratch(|s| self.run(rows, x, &out, k, s));
                });
                return Ok(());
            }
        }
        with_scratch(|s| self.run(0..self.rows, x, &out, k, s));
        Ok(())
    }

    /// Computes the outputs of `rows` for every token.
    fn run(&self, rows: Range<usize>, x: &Activations, out: &Out, k: Kernels, s: &mut Scratch) {
        let l = self.layout();
        let cols = self.cols;
        let tile = if x.tokens > 1 { TILE } else { 1 };
        let mut r0 = rows.start;
        if l.groups == Groups::Float {
            s.floats.resize(tile * cols, 0.0);
            while r0 < rows.end {
                let n = tile.min(rows.end - r0);
                for (i, f) in s.floats.chunks_exact_mut(cols).take(n).enumerate() {
                    (k.float)(self.row(r0 + i), f);
                }
                for t in 0..x.tokens {
                    let xt = x.token(t).x;
                    for (i, f) in s.floats.chunks_exact(cols).take(n).enumerate() {
                        out.write(t * self.rows + r0 + i, (k.fdot)(f, xt));
                    }
                }
                r0 += n;
            }
            return;
        }
        let groups = cols / l.groups.size();
        s.vals.resize(tile * cols, 0);
        s.scales.resize(tile * groups, 0.0);
        s.mins.resize(tile * groups, 0.0);
        while r0 < rows.end {
            let n = tile.min(rows.end - r0);
            let unpacked = s.vals.chunks_exact_mut(cols).zip(s.scales.chunks_exact_mut(groups));
            for (i, ((v, sc), mn)) in unpacked.zip(s.mins.chunks_exact_mut(groups)).take(n).enumerate() {
                (k.unpack)(self.row(r0 + i), v, sc, mn);
            }
            for t in 0..x.tokens {
                let tok = x.token(t);
                let sums = if l.groups == Groups::Per16 { tok.sum16 } else { tok.sum32 };
                let unpacked = s.vals.chunks_exact(cols).zip(s.scales.chunks_exact(groups));
                for (i, ((v, sc), mn)) in unpacked.zip(s.mins.chunks_exact(groups)).take(n).enumerate() {
                    let mut acc = (k.dot)(v, sc, tok.q, tok.d);
                    if l.has_min {
                        acc += (k.fdot)(mn, sums);
                    }
                    out.write(t * self.rows + r0 + i, acc);
                }
            }
            r0 += n;
        }
    }

    /// The bytes of row `r`.
    #[inline]
    fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Row `r` dequantized into `out` (`cols` values), bit for bit as candle
    /// dequantizes it.
    ///
    /// # Errors
    ///
    /// [`KernelError::RowOutOfRange`] or [`KernelError::OutputLength`].
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
        self.dequantize_row_with(r, out, Backend::BEST)
    }

    /// [`dequantize_row`](Self::dequantize_row) with a chosen backend.
    #[doc(hidden)]
    pub fn dequantize_row_with(&self, r: usize, out: &mut [f32], backend: Backend) -> Result<(), KernelError> {
        if r >= self.rows {
            return Err(KernelError::RowOutOfRange { row: r, rows: self.rows });
        }
        if out.len() != self.cols {
            return Err(KernelError::OutputLength { expected: self.cols, actual: out.len() });
        }
        let l = self.layout();
        let k = kernels(self.dtype, l.groups, backend);
        if l.groups == Groups::Float || self.cols == 0 {
            (k.float)(self.row(r), out);
            return Ok(());
        }
        let g = l.groups.size();
        let groups = self.cols / g;
        with_scratch(|s| {
            s.vals.resize(self.cols, 0);
            s.scales.resize(groups, 0.0);
            s.mins.resize(groups, 0.0);
            let (vals, scales, mins) = (&mut s.vals[..self.cols], &mut s.scales[..groups], &mut s.mins[..groups]);
            (k.unpack)(self.row(r), vals, scales, mins);
            let parts = out.chunks_exact_mut(g).zip(vals.chunks_exact(g)).zip(scales.iter().zip(mins.iter()));
            for ((o, v), (&s, &m)) in parts {
                for (o, &v) in o.iter_mut().zip(v) {
                    // No `+ 0.0` for the types without a minimum: it would turn -0 into +0.
                    *o = if l.has_min { s * f32::from(v) + m } else { s * f32::from(v) };
                }
            }
        });
        Ok(())
    }
}

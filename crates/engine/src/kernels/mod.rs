//! Quantized matrix × activations kernels.
//!
//! Every supported GGUF weight type unpacks into one of two integer forms
//! (see `layout::Family`), each dotted with activations quantized the way
//! llama.cpp quantizes them for that type ([`Activations`]):
//! - **legacy types** (Q4_0 … Q8_0): an `i8` value `u` per weight and an f32
//!   scale (and minimum) per 32, against activations quantized per 32:
//!   `Σ_b f32(Σ u·q - offset·Σq) · (scale · d) (+ Σ_b min · d·Σq)`;
//! - **K-quants** (Q2_K … Q6_K): `u` per weight, small integer scales (and
//!   minimums) per 16 or 32 and an f32 `d` (and `dmin`) per 256, against
//!   activations quantized per 256: per super-block the integer
//!   `Σ_g sc·(Σ u·q - offset·Σq)` (and `Σ_g m·Σq`), then two f32 products.
//!
//! F16 and F32 matrices take an f32 path instead.
//!
//! [`QMatrix::matmul`] dots a single token (decoding) against the packed
//! blocks directly where the backend has a kernel for the type, and
//! otherwise unpacks a tile of rows once and dots it with every token (a
//! prompt). Three backends: the portable code ([`Backend::Scalar`]: native
//! builds, rows split across rayon threads), wasm `simd128`
//! ([`Backend::Simd`]), and wasm relaxed SIMD ([`Backend::Relaxed`], in
//! builds with the `relaxed-simd` feature: `i32x4.relaxed_dot_i8x16_i7x16_add`,
//! one instruction per 16 multiply-adds on x86 with VNNI), single-threaded.
//!
//! All give bit-identical results, so that native and browser engines pick
//! the same greedy tokens: integer sums are exact (the relaxed dot product
//! takes the weights, 7-bit unsigned for every type but Q8_0, as its
//! deterministic operand), and every f32 operation happens in the same order
//! on all of them, never fused into a multiply-add. The orders are
//! documented on `scalar::dot_legacy`, `scalar::dot_k` and `scalar::fdot`;
//! a change to one backend's order must be made to all.

mod activations;
pub mod bench;
pub(crate) mod layout;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
mod relaxed;
mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use std::cell::RefCell;
use std::ops::Range;

pub use activations::Activations;
pub use candle_core::quantized::GgmlDType;

use activations::{Token32, TokenK};
use layout::{layout, Family, Layout, QK_K};
use scalar::{KRow, KRowMut, LegacyRow, LegacyRowMut};

/// The kernel build: `"relaxed-simd"`, `"simd128"` or `"portable"`.
pub const BUILD: &str = if cfg!(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd")) {
    "relaxed-simd"
} else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
    "simd128"
} else {
    "portable"
};

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

/// Which implementation runs. For tests comparing them (their results must
/// be bit-identical); a backend the build lacks falls back to the best one
/// it has below it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Portable code (the reference).
    Scalar,
    /// wasm `simd128` intrinsics when compiled in.
    Simd,
    /// wasm relaxed SIMD when compiled in (the `relaxed-simd` feature).
    Relaxed,
}

impl Backend {
    /// The fastest backend of this build.
    pub const BEST: Backend = Backend::Relaxed;

    /// The backends this build really has, slowest first.
    pub fn available() -> &'static [Backend] {
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd")) {
            &[Backend::Scalar, Backend::Simd, Backend::Relaxed]
        } else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            &[Backend::Scalar, Backend::Simd]
        } else {
            &[Backend::Scalar]
        }
    }

    /// Whether this backend uses wasm SIMD in this build.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(crate) fn simd(self) -> bool {
        self != Backend::Scalar
    }
}

/// Unpacks one legacy row.
pub(crate) type LegacyUnpackFn = fn(&[u8], LegacyRowMut<'_>);
/// Unpacks one K-quant row.
pub(crate) type KUnpackFn = fn(&[u8], KRowMut<'_>);
/// Dots an unpacked legacy row with a token (without the minimum term).
pub(crate) type LegacyDotFn = fn(LegacyRow<'_>, &Token32<'_>) -> f32;
/// Dots an unpacked K-quant row with a token.
pub(crate) type KDotFn = fn(KRow<'_>, &TokenK<'_>) -> f32;
/// Dots packed legacy rows (`out.len()` of them, back to back) with a token
/// (with the minimum term).
pub(crate) type LegacyPackedFn = fn(&[u8], &Token32<'_>, &mut [f32]);
/// Dots packed K-quant rows (`out.len()` of them, back to back) with a token.
pub(crate) type KPackedFn = fn(&[u8], &TokenK<'_>, &mut [f32]);
/// Dots unpacked, interleaved legacy rows with every token
/// (`out[token · rows + row]`), with the minimum term.
pub(crate) type LegacyTileFn = fn(&[LegacyRow<'_>], &Activations, &mut [f32]);
/// Dots unpacked, interleaved K-quant rows with every token.
pub(crate) type KTileFn = fn(&[KRow<'_>], &Activations, &mut [f32]);
/// Reorders unpacked values for a tile function (see `simd128::interleave`).
pub(crate) type InterleaveFn = fn(&[i8], &mut [i8]);
/// An f32 dot product.
pub(crate) type FdotFn = fn(&[f32], &[f32]) -> f32;
/// Dequantizes an F16/F32 row's bytes.
pub(crate) type FloatFn = fn(&[u8], &mut [f32]);

/// A tiled dot product of legacy rows and its value order.
#[derive(Clone, Copy)]
pub(crate) struct LegacyTile {
    /// Puts unpacked values in the order `dot` reads.
    pub interleave: InterleaveFn,
    /// Unpacks a row straight into that order (values in whole runs of
    /// four blocks), where the type has such an unpacker.
    pub unpack: Option<LegacyUnpackFn>,
    /// The dot product.
    pub dot: LegacyTileFn,
}

/// A tiled dot product of K-quant rows and its value order.
#[derive(Clone, Copy)]
pub(crate) struct KTile {
    /// Puts unpacked values in the order `dot` reads.
    pub interleave: InterleaveFn,
    /// Unpacks a row straight into that order, where the type has such an
    /// unpacker.
    pub unpack: Option<KUnpackFn>,
    /// The dot product.
    pub dot: KTileFn,
}

/// How unpacked legacy rows are dotted with tokens: a row with a token, or
/// tiles of rows and tokens.
#[derive(Clone, Copy)]
pub(crate) enum LegacyDot {
    Row(LegacyDotFn),
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    Tile(LegacyTile),
}

/// How unpacked K-quant rows are dotted with tokens.
#[derive(Clone, Copy)]
pub(crate) enum KDot {
    Row(KDotFn),
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    Tile(KTile),
}

/// The functions one matmul uses, by weight family.
#[derive(Clone, Copy)]
pub(crate) enum Kernels {
    /// F16/F32.
    Float { float: FloatFn, fdot: FdotFn },
    /// Q4_0 … Q8_0.
    Legacy { unpack: LegacyUnpackFn, dot: LegacyDot, fdot: FdotFn, packed: Option<LegacyPackedFn> },
    /// Q2_K … Q6_K.
    K { unpack: KUnpackFn, dot: KDot, packed: Option<KPackedFn> },
}

/// Picks the kernels of `dtype` for `backend`.
fn kernels(dtype: GgmlDType, backend: Backend) -> Kernels {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
    if backend == Backend::Relaxed {
        return relaxed::kernels(dtype);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if backend.simd() {
        return simd128::kernels(dtype);
    }
    let _ = backend;
    scalar::kernels(dtype)
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

/// Rows unpacked together when several tokens share them: each unpacked
/// row then serves every token while it is in cache.
const TILE: usize = 8;

/// Per-thread buffers of unpacked rows, grown once and reused.
#[derive(Default)]
struct Scratch {
    /// Outputs of a tile of rows for every token.
    out: Vec<f32>,
    vals: Vec<i8>,
    /// Unpacked values reordered for a tile function.
    ivals: Vec<i8>,
    scales: Vec<f32>,
    mins: Vec<f32>,
    isc: Vec<i32>,
    imin: Vec<i32>,
    d: Vec<f32>,
    dmin: Vec<f32>,
    floats: Vec<f32>,
}

impl Scratch {
    /// Room for `n` unpacked legacy rows of `cols`: values, values
    /// reordered (in whole runs of four blocks), scales (also in whole
    /// runs), minimums.
    fn legacy(&mut self, n: usize, cols: usize) -> (&mut [i8], &mut [i8], &mut [f32], &mut [f32]) {
        let (blocks, padded) = (cols / 32, (cols / 32).next_multiple_of(4));
        self.vals.resize(n * cols, 0);
        self.ivals.resize(n * padded * 32, 0);
        self.scales.resize(n * padded, 0.0);
        self.mins.resize(n * blocks, 0.0);
        (&mut self.vals[..n * cols], &mut self.ivals[..n * padded * 32], &mut self.scales[..n * padded], &mut self.mins[..n * blocks])
    }

    /// Room for `n` unpacked K-quant rows of `cols` with `group`-wide groups.
    fn k(&mut self, n: usize, cols: usize, group: usize) {
        let (groups, supers) = (cols / group, cols / QK_K);
        self.vals.resize(n * cols, 0);
        self.ivals.resize(n * cols, 0);
        self.isc.resize(n * groups, 0);
        self.imin.resize(n * groups, 0);
        self.d.resize(n * supers, 0.0);
        self.dmin.resize(n * supers, 0.0);
    }

    /// Where K-quant row `i` is unpacked by a tile's own unpacker (values in
    /// the tile's order).
    fn k_row_mut_reordered(&mut self, i: usize, cols: usize, group: usize) -> KRowMut<'_> {
        let (g, s) = (cols / group, cols / QK_K);
        KRowMut {
            vals: &mut self.ivals[i * cols..(i + 1) * cols],
            sc: &mut self.isc[i * g..(i + 1) * g],
            m: &mut self.imin[i * g..(i + 1) * g],
            d: &mut self.d[i * s..(i + 1) * s],
            dmin: &mut self.dmin[i * s..(i + 1) * s],
        }
    }

    /// Unpacked K-quant row `i` (of rows of `cols`, `group`-wide groups).
    fn k_row(&self, i: usize, cols: usize, group: usize) -> KRow<'_> {
        let (g, s) = (cols / group, cols / QK_K);
        KRow {
            vals: &self.vals[i * cols..(i + 1) * cols],
            sc: &self.isc[i * g..(i + 1) * g],
            m: &self.imin[i * g..(i + 1) * g],
            d: &self.d[i * s..(i + 1) * s],
            dmin: &self.dmin[i * s..(i + 1) * s],
        }
    }

    /// Where K-quant row `i` is unpacked.
    fn k_row_mut(&mut self, i: usize, cols: usize, group: usize) -> KRowMut<'_> {
        let (g, s) = (cols / group, cols / QK_K);
        KRowMut {
            vals: &mut self.vals[i * cols..(i + 1) * cols],
            sc: &mut self.isc[i * g..(i + 1) * g],
            m: &mut self.imin[i * g..(i + 1) * g],
            d: &mut self.d[i * s..(i + 1) * s],
            dmin: &mut self.dmin[i * s..(i + 1) * s],
        }
    }
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
        layout(self.dtype).unwrap_or(Layout { block: 1, bytes: 4, family: Family::Float })
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
    /// the reference for the SIMD ones).
    ///
    /// # Errors
    ///
    /// As [`matmul`](Self::matmul).
    #[doc(hidden)]
    pub fn matmul_with(&self, x: &Activations, out: &mut [f32], backend: Backend) -> Result<(), KernelError> {
        if x.cols() != self.cols {
            return Err(KernelError::ColsMismatch { matrix: self.cols, activations: x.cols() });
        }
        let expected = x.tokens() * self.rows;
        if out.len() != expected {
            return Err(KernelError::OutputLength { expected, actual: out.len() });
        }
        if self.cols == 0 {
            out.fill(0.0);
        }
        if expected == 0 || self.cols == 0 {
            return Ok(());
        }
        let k = kernels(self.dtype, backend);
        if matches!(k, Kernels::K { .. }) && !x.has_k() {
            // Cannot happen: a K-quant's columns are whole super-blocks.
            return Err(KernelError::NotBlockMultiple { dtype: GgmlDType::Q8K, cols: self.cols, block: QK_K });
        }
        let out = Out::new(out);
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            let threads = rayon::current_num_threads();
            let work = self.rows * self.cols * x.tokens();
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
        // The tiles' outputs, before they go to `out` (taken out of `s` so
        // that the unpacked rows can be borrowed beside it).
        let mut got = std::mem::take(&mut s.out);
        self.run_with(rows, x, out, k, s, &mut got);
        s.out = got;
    }

    fn run_with(&self, rows: Range<usize>, x: &Activations, out: &Out, k: Kernels, s: &mut Scratch, got: &mut Vec<f32>) {
        let cols = self.cols;
        let tokens = x.tokens();
        let tile = if tokens > 1 { TILE } else { 1 };
        match k {
            Kernels::Float { float, fdot } => {
                s.floats.resize(tile * cols, 0.0);
                for r0 in rows.clone().step_by(tile) {
                    let n = tile.min(rows.end - r0);
                    for (i, f) in s.floats.chunks_exact_mut(cols).take(n).enumerate() {
                        float(self.row(r0 + i), f);
                    }
                    for t in 0..tokens {
                        let xt = x.x(t);
                        for (i, f) in s.floats.chunks_exact(cols).take(n).enumerate() {
                            out.write(t * self.rows + r0 + i, fdot(f, xt));
                        }
                    }
                }
            }
            Kernels::Legacy { packed: Some(packed), .. } if tokens == 1 => {
                let tok = x.token32(0);
                for r0 in rows.clone().step_by(64) {
                    let n = 64.min(rows.end - r0);
                    got.resize(n, 0.0);
                    packed(&self.data[r0 * self.row_bytes..(r0 + n) * self.row_bytes], &tok, &mut got[..n]);
                    for (i, &v) in got[..n].iter().enumerate() {
                        out.write(r0 + i, v);
                    }
                }
            }
            Kernels::K { packed: Some(packed), .. } if tokens == 1 => {
                let tok = x.token_k(0);
                // Blocks of rows (a few KiB of results), each in one call.
                for r0 in rows.clone().step_by(64) {
                    let n = 64.min(rows.end - r0);
                    got.resize(n, 0.0);
                    packed(&self.data[r0 * self.row_bytes..(r0 + n) * self.row_bytes], &tok, &mut got[..n]);
                    for (i, &v) in got[..n].iter().enumerate() {
                        out.write(r0 + i, v);
                    }
                }
            }
            Kernels::Legacy { unpack, dot, fdot, .. } => {
                let has_min = matches!(self.layout().family, Family::Legacy { has_min: true, .. });
                let blocks = cols / 32;
                // Scales and interleaved values padded to whole runs of four blocks.
                let (padded, pcols) = (blocks.next_multiple_of(4), blocks.next_multiple_of(4) * 32);
                let (vals, ivals, scales, mins) = s.legacy(tile, cols);
                for r0 in rows.clone().step_by(tile) {
                    let n = tile.min(rows.end - r0);
                    for i in 0..n {
                        let row_scales = &mut scales[i * padded..(i + 1) * padded];
                        let (v, m) = (&mut vals[i * cols..(i + 1) * cols], &mut mins[i * blocks..(i + 1) * blocks]);
                        match dot {
                            LegacyDot::Tile(LegacyTile { unpack: Some(fused), .. }) => {
                                let iv = &mut ivals[i * pcols..(i + 1) * pcols];
                                fused(self.row(r0 + i), LegacyRowMut { vals: iv, scales: &mut row_scales[..blocks], mins: m });
                            }
                            LegacyDot::Tile(t) => {
                                unpack(self.row(r0 + i), LegacyRowMut { vals: &mut *v, scales: &mut row_scales[..blocks], mins: m });
                                (t.interleave)(v, &mut ivals[i * pcols..(i + 1) * pcols]);
                            }
                            LegacyDot::Row(_) => {
                                unpack(self.row(r0 + i), LegacyRowMut { vals: v, scales: &mut row_scales[..blocks], mins: m })
                            }
                        }
                        row_scales[blocks..].fill(0.0);
                    }
                    let min_term =
                        |i: usize, tok: &Token32<'_>| if has_min { fdot(&mins[i * blocks..(i + 1) * blocks], tok.sum32) } else { 0.0 };
                    match dot {
                        LegacyDot::Row(dot) => {
                            for t in 0..tokens {
                                let tok = x.token32(t);
                                for i in 0..n {
                                    let w = LegacyRow {
                                        vals: &vals[i * cols..(i + 1) * cols],
                                        scales: &scales[i * padded..i * padded + blocks],
                                        mins: &[],
                                    };
                                    let mut acc = dot(w, &tok);
                                    if has_min {
                                        acc += min_term(i, &tok);
                                    }
                                    out.write(t * self.rows + r0 + i, acc);
                                }
                            }
                        }
                        LegacyDot::Tile(tile_fn) => {
                            // (Entries past `n` repeat the last row; only `n` are passed.)
                            let w: [LegacyRow<'_>; TILE] = std::array::from_fn(|i| {
                                let i = i.min(n - 1);
                                LegacyRow {
                                    vals: &ivals[i * pcols..(i + 1) * pcols],
                                    scales: &scales[i * padded..(i + 1) * padded],
                                    mins: if has_min { &mins[i * blocks..(i + 1) * blocks] } else { &[] },
                                }
                            });
                            got.resize(n * tokens, 0.0);
                            (tile_fn.dot)(&w[..n], x, &mut got[..n * tokens]);
                            for t in 0..tokens {
                                for i in 0..n {
                                    out.write(t * self.rows + r0 + i, got[t * n + i]);
                                }
                            }
                        }
                    }
                }
            }
            Kernels::K { unpack, dot, .. } => {
                let Family::K { group, .. } = self.layout().family else { return };
                s.k(tile, cols, group);
                for r0 in rows.clone().step_by(tile) {
                    let n = tile.min(rows.end - r0);
                    for i in 0..n {
                        match dot {
                            KDot::Tile(KTile { unpack: Some(fused), .. }) => fused(self.row(r0 + i), s.k_row_mut_reordered(i, cols, group)),
                            KDot::Tile(t) => {
                                unpack(self.row(r0 + i), s.k_row_mut(i, cols, group));
                                let (vals, ivals) = (&s.vals[i * cols..(i + 1) * cols], &mut s.ivals[i * cols..(i + 1) * cols]);
                                (t.interleave)(vals, ivals);
                            }
                            KDot::Row(_) => unpack(self.row(r0 + i), s.k_row_mut(i, cols, group)),
                        }
                    }
                    match dot {
                        KDot::Row(dot) => {
                            for t in 0..tokens {
                                let tok = x.token_k(t);
                                for i in 0..n {
                                    out.write(t * self.rows + r0 + i, dot(s.k_row(i, cols, group), &tok));
                                }
                            }
                        }
                        KDot::Tile(tile_fn) => {
                            // (Entries past `n` repeat the last row; only `n` are passed.)
                            let w: [KRow<'_>; TILE] = std::array::from_fn(|i| {
                                let i = i.min(n - 1);
                                KRow { vals: &s.ivals[i * cols..(i + 1) * cols], ..s.k_row(i, cols, group) }
                            });
                            got.resize(n * tokens, 0.0);
                            (tile_fn.dot)(&w[..n], x, &mut got[..n * tokens]);
                            for t in 0..tokens {
                                for i in 0..n {
                                    out.write(t * self.rows + r0 + i, got[t * n + i]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The bytes of row `r`.
    #[inline]
    fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Unpacks every row as a prompt's matrix product does (interleaving
    /// them where the backend's tiles want it) and returns a checksum of the
    /// values: for the benchmark, which times this part alone.
    #[doc(hidden)]
    pub fn unpack_all_with(&self, backend: Backend) -> i64 {
        let cols = self.cols;
        with_scratch(|s| match (kernels(self.dtype, backend), self.layout().family) {
            (Kernels::K { unpack, dot, .. }, Family::K { group, .. }) => {
                s.k(1, cols, group);
                let mut sum = 0i64;
                for r in 0..self.rows {
                    match dot {
                        KDot::Tile(KTile { unpack: Some(fused), .. }) => fused(self.row(r), s.k_row_mut_reordered(0, cols, group)),
                        KDot::Tile(t) => {
                            unpack(self.row(r), s.k_row_mut(0, cols, group));
                            (t.interleave)(&s.vals[..cols], &mut s.ivals[..cols]);
                        }
                        KDot::Row(_) => unpack(self.row(r), s.k_row_mut(0, cols, group)),
                    }
                    sum += i64::from(s.ivals[r % cols.max(1)]) + i64::from(s.isc[0]);
                }
                sum
            }
            (Kernels::Legacy { unpack, dot, .. }, Family::Legacy { .. }) => {
                let (padded, blocks) = ((cols / 32).next_multiple_of(4), cols / 32);
                let mut sum = 0i64;
                let (vals, ivals, scales, mins) = s.legacy(1, cols);
                for r in 0..self.rows {
                    match dot {
                        LegacyDot::Tile(LegacyTile { unpack: Some(fused), .. }) => {
                            fused(
                                self.row(r),
                                LegacyRowMut { vals: &mut ivals[..padded * 32], scales: &mut scales[..blocks], mins: &mut *mins },
                            );
                        }
                        LegacyDot::Tile(t) => {
                            unpack(self.row(r), LegacyRowMut { vals: &mut *vals, scales: &mut scales[..blocks], mins: &mut *mins });
                            (t.interleave)(vals, &mut ivals[..padded * 32]);
                        }
                        LegacyDot::Row(_) => {
                            unpack(self.row(r), LegacyRowMut { vals: &mut *vals, scales: &mut scales[..blocks], mins: &mut *mins })
                        }
                    }
                    sum += i64::from(ivals[r % cols.max(1)]);
                }
                sum
            }
            _ => 0,
        })
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
    ///
    /// # Errors
    ///
    /// As [`dequantize_row`](Self::dequantize_row).
    #[doc(hidden)]
    pub fn dequantize_row_with(&self, r: usize, out: &mut [f32], backend: Backend) -> Result<(), KernelError> {
        if r >= self.rows {
            return Err(KernelError::RowOutOfRange { row: r, rows: self.rows });
        }
        if out.len() != self.cols {
            return Err(KernelError::OutputLength { expected: self.cols, actual: out.len() });
        }
        if self.cols == 0 {
            return Ok(());
        }
        let cols = self.cols;
        with_scratch(|s| match (kernels(self.dtype, backend), self.layout().family) {
            (Kernels::Float { float, .. }, _) => float(self.row(r), out),
            (Kernels::Legacy { unpack, .. }, Family::Legacy { offset, has_min }) => {
                let (vals, _, scales, mins) = s.legacy(1, cols);
                let scales = &mut scales[..cols / 32];
                unpack(self.row(r), LegacyRowMut { vals, scales: &mut *scales, mins: &mut *mins });
                let parts = out.chunks_exact_mut(32).zip(vals.chunks_exact(32)).zip(scales.iter().zip(mins.iter()));
                for ((o, v), (&s, &m)) in parts {
                    for (o, &v) in o.iter_mut().zip(v) {
                        let w = s * (i32::from(v) - offset) as f32;
                        // No `+ 0.0` for the types without a minimum: it would turn -0 into +0.
                        *o = if has_min { w + m } else { w };
                    }
                }
            }
            (Kernels::K { unpack, .. }, Family::K { group, offset, has_min }) => {
                s.k(1, cols, group);
                unpack(self.row(r), s.k_row_mut(0, cols, group));
                let w = s.k_row(0, cols, group);
                let per = QK_K / group;
                for (i, o) in out.iter_mut().enumerate() {
                    let (sb, g) = (i / QK_K, i / group);
                    // candle's expressions: `d·sc` first, then times the value, minus `dmin·m`.
                    let v = (w.d[sb] * w.sc[g] as f32) * (i32::from(w.vals[i]) - offset) as f32;
                    *o = if has_min { v - w.dmin[sb] * w.m[g] as f32 } else { v };
                    debug_assert!(g / per == sb);
                }
            }
            _ => unreachable!("kernels follow the layout's family"),
        });
        Ok(())
    }
}

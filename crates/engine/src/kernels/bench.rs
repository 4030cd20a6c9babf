//! A micro-benchmark of [`QMatrix::matmul`], runnable natively (the
//! `kernels_bench` example) and in the browser (call [`run`] from a worker).

use std::fmt;

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use web_time::Instant;

use super::{Activations, GgmlDType, QMatrix};

/// One measured case.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Weight type.
    pub dtype: GgmlDType,
    /// Matrix rows.
    pub rows: usize,
    /// Matrix columns.
    pub cols: usize,
    /// Tokens per matmul.
    pub tokens: usize,
    /// Milliseconds per matmul.
    pub ms: f64,
    /// Multiply-adds per second, in billions.
    pub gmacs: f64,
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = format!("[{} x {}]", self.rows, self.cols);
        write!(
            f,
            "{:>5} {:>13} tokens {:>3}: {:>9.3} ms/matmul {:>7.2} GMAC/s",
            format!("{:?}", self.dtype),
            shape,
            self.tokens,
            self.ms,
            self.gmacs
        )
    }
}

/// The cases the benchmark runs by default: Q4_1, Q4_0, Q8_0, Q4_K and Q6_K
/// at `[1536 x 576]` and `[4096 x 4096]`, 1, 16 and 32 tokens (`[576 x 1536]`
/// for the K-quants, whose rows must be a multiple of 256); then Q4_K and
/// Q6_K at `[32768 x 4096]`, 1 token: 75 and 110 MB, more than the caches
/// hold, read from memory as a 7B model's weights are; then the shapes of a
/// 7B layer's gate and down projections split across two workers, for one
/// and 14 tokens.
pub fn default_cases() -> Vec<(GgmlDType, usize, usize, usize)> {
    let mut cases = Vec::new();
    for (rows, cols) in [(1536usize, 576usize), (4096, 4096)] {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let k_quant = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K);
            let (rows, cols) = if k_quant && !cols.is_multiple_of(256) { (cols, rows) } else { (rows, cols) };
            for tokens in [1, 16, 32] {
                cases.push((dtype, rows, cols, tokens));
            }
        }
    }
    for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
        cases.push((dtype, 32768, 4096, 1));
    }
    // One of two workers' slices of Mistral-7B's gate (or up) and down
    // projections, one segment of its attention output and its value
    // projection, for a 14-token prompt and for one token.
    for (dtype, rows, cols) in [
        (GgmlDType::Q4K, 7168, 4096),
        (GgmlDType::Q4K, 4096, 1792),
        (GgmlDType::Q6K, 4096, 1792),
        (GgmlDType::Q4K, 4096, 512),
        (GgmlDType::Q6K, 512, 4096),
    ] {
        for tokens in [1, 14] {
            cases.push((dtype, rows, cols, tokens));
        }
    }
    cases
}

/// A seeded pseudo-random value in [-1, 1).
fn lcg(state: &mut u64) -> f32 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (*state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// A `[rows, cols]` matrix of `dtype`: 16 rows quantized by candle, repeated.
///
/// # Errors
///
/// A description of what failed.
pub fn matrix(dtype: GgmlDType, rows: usize, cols: usize) -> Result<QMatrix, String> {
    let mut state = 7;
    let sample = 16.min(rows);
    let w: Vec<f32> = (0..sample * cols).map(|_| lcg(&mut state)).collect();
    let t = Tensor::from_vec(w, (sample, cols), &Device::Cpu).map_err(|e| e.to_string())?;
    let q = QTensor::quantize(&t, dtype).map_err(|e| e.to_string())?;
    let bytes = q.data().map_err(|e| e.to_string())?;
    let data: Vec<u8> = bytes.iter().copied().cycle().take(bytes.len() / sample * rows).collect();
    QMatrix::new(dtype, rows, cols, data).map_err(|e| e.to_string())
}

/// The fastest of five rounds of about `budget_ms / 5` each (at least one
/// call per round), in milliseconds per call: on a shared machine the
/// fastest round is the one least disturbed by other work.
fn best_of_rounds(budget_ms: f64, mut call: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    call()?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let mut runs = 0u32;
        while runs < 1 || start.elapsed().as_secs_f64() * 1e3 < budget_ms / 5.0 {
            call()?;
            runs += 1;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e3 / f64::from(runs));
    }
    Ok(best)
}

/// Measures one case for about `budget_ms` milliseconds: the fastest of
/// five rounds.
///
/// # Errors
///
/// A description of what failed.
pub fn measure(dtype: GgmlDType, rows: usize, cols: usize, tokens: usize, budget_ms: f64) -> Result<BenchResult, String> {
    let m = matrix(dtype, rows, cols)?;
    let mut state = 11;
    let x: Vec<f32> = (0..tokens * cols).map(|_| lcg(&mut state)).collect();
    let mut a = Activations::new();
    let mut out = vec![0f32; tokens * rows];
    let ms = best_of_rounds(budget_ms, || {
        a.quantize(&x, tokens, cols).map_err(|e| e.to_string())?;
        m.matmul(&a, &mut out).map_err(|e| e.to_string())
    })?;
    let secs = ms / 1e3;
    let macs = (rows * cols * tokens) as f64;
    Ok(BenchResult { dtype, rows, cols, tokens, ms: secs * 1e3, gmacs: macs / secs / 1e9 })
}

/// Times unpacking every row of a `[rows, cols]` matrix of `dtype` as a
/// prompt's matrix product does: milliseconds per matrix.
///
/// # Errors
///
/// A description of what failed.
pub fn measure_unpack(dtype: GgmlDType, rows: usize, cols: usize, budget_ms: f64) -> Result<f64, String> {
    let m = matrix(dtype, rows, cols)?;
    best_of_rounds(budget_ms, || {
        std::hint::black_box(m.unpack_all_with(super::Backend::BEST));
        Ok(())
    })
}

/// Runs [`default_cases`], about `budget_ms` milliseconds each.
///
/// # Errors
///
/// A description of what failed.
pub fn run(budget_ms: f64) -> Result<Vec<BenchResult>, String> {
    default_cases().into_iter().map(|(d, r, c, t)| measure(d, r, c, t, budget_ms)).collect()
}

//! What quantization did to a tensor: zeros kept, error on the other weights.

use candle_core::quantized::QTensor;
use candle_core::Device;

use super::{quantize, QuantError, QuantMode};

/// How well a quantized tensor matches its original weights.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QuantStats {
    /// Weights that were exactly 0 (either sign) in the original.
    pub zeros: usize,
    /// Of those, how many dequantize to exactly 0.
    pub zeros_kept: usize,
    /// Weights that were not 0 in the original.
    pub nonzeros: usize,
    /// Root-mean-square error over the original non-zero weights.
    pub rmse_nonzero: f64,
    /// The same for candle's plain quantization to the same type, when compared.
    pub rmse_nonzero_plain: Option<f64>,
}

impl QuantStats {
    /// The fraction of zeros kept (1 when there were none).
    pub fn zeros_kept_fraction(&self) -> f64 {
        if self.zeros == 0 {
            1.0
        } else {
            self.zeros_kept as f64 / self.zeros as f64
        }
    }

    /// `rmse_nonzero / rmse_nonzero_plain`, when compared and the plain error is not 0.
    pub fn rmse_ratio(&self) -> Option<f64> {
        self.rmse_nonzero_plain.filter(|&p| p > 0.0).map(|p| self.rmse_nonzero / p)
    }

    /// Adds another tensor's figures, for totals over a model (errors are
    /// pooled over all non-zero weights; the plain error stays only if both
    /// have it). Merging into `QuantStats::default()` copies `other`.
    pub fn merge(&mut self, other: &QuantStats) {
        if self.zeros + self.nonzeros == 0 {
            *self = *other;
            return;
        }
        let pool = |a: f64, na: usize, b: f64, nb: usize| {
            let n = na + nb;
            if n == 0 {
                0.0
            } else {
                ((a * a * na as f64 + b * b * nb as f64) / n as f64).sqrt()
            }
        };
        self.rmse_nonzero_plain = match (self.rmse_nonzero_plain, other.rmse_nonzero_plain) {
            (Some(a), Some(b)) => Some(pool(a, self.nonzeros, b, other.nonzeros)),
            _ => None,
        };
        self.rmse_nonzero = pool(self.rmse_nonzero, self.nonzeros, other.rmse_nonzero, other.nonzeros);
        self.zeros += other.zeros;
        self.zeros_kept += other.zeros_kept;
        self.nonzeros += other.nonzeros;
    }
}

/// Dequantizes `q` with candle and compares it with `original`: zeros kept
/// and RMSE over the non-zero weights. `rmse_nonzero_plain` is left `None`.
///
/// # Errors
/// [`QuantError::Shape`] if `q` does not hold `original.len()` values;
/// [`QuantError::Candle`] if candle cannot dequantize it.
pub fn measure(original: &[f32], q: &QTensor) -> Result<QuantStats, QuantError> {
    let decoded = dequantize(q)?;
    if decoded.len() != original.len() {
        return Err(QuantError::Shape {
            shape: q.shape().dims().to_vec(),
            reason: format!("it holds {} values, the original has {}", decoded.len(), original.len()),
        });
    }
    Ok(compare(original, &decoded))
}

/// [`measure`], plus candle's plain quantization of `original` to the same
/// type and shape as `q`, measured the same way into `rmse_nonzero_plain`.
///
/// # Errors
/// As [`measure`] and [`quantize`].
pub fn compare_with_plain(original: &[f32], q: &QTensor) -> Result<QuantStats, QuantError> {
    let mut stats = measure(original, q)?;
    let plain = quantize(original, q.shape().dims(), q.dtype(), QuantMode::Plain)?;
    stats.rmse_nonzero_plain = Some(measure(original, &plain)?.rmse_nonzero);
    Ok(stats)
}

/// Candle's dequantization of `q`, flattened.
fn dequantize(q: &QTensor) -> Result<Vec<f32>, QuantError> {
    let candle = |source| QuantError::Candle { op: "dequantize", source };
    q.dequantize(&Device::Cpu).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(candle)
}

/// Zero and error counts of `decoded` against `original` (same length).
fn compare(original: &[f32], decoded: &[f32]) -> QuantStats {
    let mut stats = QuantStats::default();
    let mut sse = 0f64;
    for (&x, &y) in original.iter().zip(decoded) {
        if x == 0.0 {
            stats.zeros += 1;
            stats.zeros_kept += usize::from(y == 0.0);
        } else {
            stats.nonzeros += 1;
            let e = f64::from(x) - f64::from(y);
            sse += e * e;
        }
    }
    if stats.nonzeros > 0 {
        stats.rmse_nonzero = (sse / stats.nonzeros as f64).sqrt();
    }
    stats
}

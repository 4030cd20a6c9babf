//! Quantizing one checkpoint tensor in row blocks (a few MiB of f32 at a
//! time, so memory stays small whatever the tensor), with the figures the
//! converter reports: zeros before and kept, and the error on the non-zero
//! weights next to candle's plain quantizer on the same rows.

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use sprig_engine::quant::{self, QuantMode};

use super::checkpoint::{Checkpoint, TensorRef};
use super::mapping::{source_row, TensorPlan};

/// Values converted at a time.
const BLOCK_VALUES: usize = 1 << 22;

/// Figures of one converted tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStats {
    /// GGUF name.
    pub name: String,
    /// Its type.
    pub dtype: GgmlDType,
    /// Values.
    pub values: usize,
    /// Exact zeros in the checkpoint.
    pub zeros: usize,
    /// Of those, how many dequantize to exactly 0.
    pub zeros_kept: usize,
    /// Sum of squared errors over the non-zero weights.
    pub sq_err: f64,
    /// The same for candle's plain quantization, when compared.
    pub sq_err_plain: Option<f64>,
    /// Bytes in the GGUF file.
    pub bytes: usize,
}

impl TensorStats {
    /// Non-zero weights.
    pub fn nonzeros(&self) -> usize {
        self.values - self.zeros
    }

    /// RMSE over the non-zero weights.
    pub fn rmse(&self) -> f64 {
        (self.sq_err / self.nonzeros().max(1) as f64).sqrt()
    }

    /// RMSE of plain quantization over the non-zero weights.
    pub fn rmse_plain(&self) -> Option<f64> {
        self.sq_err_plain.map(|e| (e / self.nonzeros().max(1) as f64).sqrt())
    }
}

/// Why a tensor could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Quantizing failed.
    #[error("cannot quantize {name} to {dtype:?}: {message}")]
    Quantize {
        /// The tensor.
        name: String,
        /// The type.
        dtype: GgmlDType,
        /// Why.
        message: String,
    },
    /// The checkpoint holds a NaN or an infinity.
    #[error("{name} holds a non-finite value (row {row}); the checkpoint is damaged")]
    NonFinite {
        /// The tensor.
        name: String,
        /// The checkpoint row.
        row: usize,
    },
}

fn dequantize(q: &QTensor) -> candle_core::Result<Vec<f32>> {
    q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
}

/// Converts tensor `t` (stored as `src`) to `dtype`, keeping pruned zeros
/// exact when `mode` says so, comparing with plain quantization when `compare`.
///
/// # Errors
/// [`ConvertError`].
pub fn convert(
    ck: &Checkpoint,
    t: &TensorPlan,
    src: &TensorRef,
    dtype: GgmlDType,
    mode: QuantMode,
    compare: bool,
) -> Result<(QTensor, TensorStats), ConvertError> {
    let fail = |message: String| ConvertError::Quantize { name: t.gguf.clone(), dtype, message };
    let (rows, cols) = (src.rows(), src.cols());
    let per_block = (BLOCK_VALUES / cols).max(1);
    let mut stats = TensorStats {
        name: t.gguf.clone(),
        dtype,
        values: rows * cols,
        zeros: 0,
        zeros_kept: 0,
        sq_err: 0.0,
        sq_err_plain: compare.then_some(0.0),
        bytes: 0,
    };
    let mut bytes = Vec::new();
    let mut data = Vec::with_capacity(per_block * cols);
    for first in (0..rows).step_by(per_block) {
        let n = per_block.min(rows - first);
        data.clear();
        for row in first..first + n {
            let from = t.permute_heads.map_or(row, |heads| source_row(row, rows, heads));
            let start = data.len();
            ck.read_row(src, from, &mut data);
            if data[start..].iter().any(|v| !v.is_finite()) {
                return Err(ConvertError::NonFinite { name: t.hf.clone(), row: from });
            }
        }
        let shape = if src.shape.len() == 1 { vec![cols] } else { vec![n, cols] };
        let q = quant::quantize(&data, &shape, dtype, mode).map_err(|e| fail(e.to_string()))?;
        let back = dequantize(&q).map_err(|e| fail(e.to_string()))?;
        for (x, y) in data.iter().zip(&back) {
            if *x == 0.0 {
                stats.zeros += 1;
                stats.zeros_kept += usize::from(*y == 0.0);
            } else {
                stats.sq_err += f64::from(x - y).powi(2);
            }
        }
        if let Some(plain_err) = stats.sq_err_plain.as_mut() {
            let tensor = Tensor::from_slice(&data, shape.as_slice(), &Device::Cpu).map_err(|e| fail(e.to_string()))?;
            let plain = QTensor::quantize(&tensor, dtype).and_then(|p| dequantize(&p)).map_err(|e| fail(e.to_string()))?;
            *plain_err += data.iter().zip(&plain).filter(|(x, _)| **x != 0.0).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
        }
        bytes.extend_from_slice(&q.data().map_err(|e| fail(e.to_string()))?);
    }
    ck.release(src);
    stats.bytes = bytes.len();
    let q = qtensor_from_ggml(dtype, &bytes, t.shape.clone(), &Device::Cpu).map_err(|e| fail(e.to_string()))?;
    Ok((q, stats))
}

//! Quantizing f32 weights to GGUF types, with an option that keeps the exact
//! zeros of pruned (e.g. Wanda-sparsified) weights.
//!
//! [`QuantMode::Plain`] is candle's quantizer. [`QuantMode::KeepZeros`] makes
//! every weight that is exactly 0 dequantize to exactly 0:
//!
//! - the symmetric formats (Q8_0, Q4_0, Q6_K, Q3_K, and F32/F16/BF16) already
//!   do with candle's quantizer, which is used as is;
//! - the formats with a per-block minimum (Q4_K, Q5_K, Q2_K) normally do not;
//!   Sprig's own encoder picks scales and minimums whose grid holds 0 exactly,
//!   searching them for the lowest error on the non-zero weights (see the
//!   `kquant` module for how). Super-blocks without any zero get Sprig's or
//!   candle's encoding, whichever is closer, so a dense tensor comes out at
//!   least as accurate as in `Plain` mode.
//!
//! [`zero_fraction`] measures sparsity before quantizing; [`measure`] and
//! [`compare_with_plain`] report zeros kept and the error on non-zero weights.
//! Everything works on one tensor at a time and is `Send`: callers can
//! quantize tensors in parallel.

mod kquant;
mod pack;
mod stats;

use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

pub use stats::{compare_with_plain, measure, QuantStats};

use kquant::{Format, Plan, QK_K};

/// Largest weight magnitude accepted: block scales are f16, whose largest
/// finite value this is.
pub const MAX_ABS: f32 = 65504.0;

/// How to quantize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantMode {
    /// Candle's quantizer, unchanged.
    Plain,
    /// Weights that are exactly 0 dequantize to exactly 0; the other weights
    /// get an error as low as a bounded search finds.
    KeepZeros,
}

/// Errors of quantizing a tensor.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The shape does not fit the data or the type's block size.
    #[error("shape {shape:?} does not fit: {reason}")]
    Shape {
        /// The shape given.
        shape: Vec<usize>,
        /// What is wrong with it.
        reason: String,
    },
    /// A weight is NaN or infinite.
    #[error("weight {index} is not finite ({value})")]
    NonFinite {
        /// Its flat index.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// A weight is larger than f16 block scales can represent.
    #[error("weight {index} ({value}) exceeds the f16 range ±{MAX_ABS}")]
    OutOfRange {
        /// Its flat index.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The type cannot be produced in this mode.
    #[error("{dtype:?} is not supported in {mode:?} mode (its per-block minimum cannot hold 0 exactly: quantize it plainly)")]
    Unsupported {
        /// The type asked for.
        dtype: GgmlDType,
        /// The mode asked for.
        mode: QuantMode,
    },
    /// Candle failed.
    #[error("candle failed to {op}: {source}")]
    Candle {
        /// What was being done.
        op: &'static str,
        /// Candle's error.
        #[source]
        source: candle_core::Error,
    },
}

/// The fraction of `data` that is exactly 0 (either sign); 0 for no data.
pub fn zero_fraction(data: &[f32]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let zeros = data.iter().filter(|&&x| x == 0.0).count();
    zeros as f64 / data.len() as f64
}

/// Quantizes `data`, laid out as `shape` (ggml order as candle uses it:
/// row-major, the last dimension a multiple of the type's block size), to
/// `dtype` on the CPU.
///
/// # Errors
/// [`QuantError::Shape`] if `shape` does not hold `data.len()` values or its
/// last dimension is not a multiple of the block size;
/// [`QuantError::NonFinite`] / [`QuantError::OutOfRange`] for a NaN, infinite
/// or too large weight; [`QuantError::Unsupported`] for a type `KeepZeros`
/// does not handle (Q4_1, Q5_0, Q5_1, Q8_1, Q8_K); [`QuantError::Candle`] if
/// candle fails.
pub fn quantize(data: &[f32], shape: &[usize], dtype: GgmlDType, mode: QuantMode) -> Result<QTensor, QuantError> {
    check_shape(data, shape, dtype)?;
    check_values(data)?;
    match (mode, OwnFormat::of(dtype)) {
        (QuantMode::KeepZeros, Some(own)) => {
            let bytes = own.encode(data, dtype, None)?;
            ggml_file::qtensor_from_ggml(dtype, &bytes, shape.to_vec(), &Device::Cpu)
                .map_err(|source| QuantError::Candle { op: "build the quantized tensor", source })
        }
        (QuantMode::KeepZeros, None) if !keeps_zeros(dtype) => Err(QuantError::Unsupported { dtype, mode }),
        _ => candle_quantize(data, shape, dtype),
    }
}

/// Sprig's zero-keeping encoder for Q4_K, Q5_K and Q2_K: the raw ggml blocks
/// of `data` (a multiple of 256 values, row-major). Super-blocks that hold a
/// zero get Sprig's encoding; those without any (nothing to keep) get
/// Sprig's or candle's plain encoding, whichever has the lower error. If
/// `intended` is given (same length as `data`), it receives what each weight
/// will dequantize to: candle's dequantization of the blocks gives exactly
/// these values.
///
/// # Errors
/// [`QuantError::Unsupported`] for other types; [`QuantError::Shape`] if the
/// lengths do not fit; [`QuantError::NonFinite`] / [`QuantError::OutOfRange`]
/// for a NaN, infinite or too large weight; [`QuantError::Candle`] if
/// candle's plain quantizer fails on the zero-free super-blocks.
pub fn encode_keep_zeros(data: &[f32], dtype: GgmlDType, intended: Option<&mut [f32]>) -> Result<Vec<u8>, QuantError> {
    let Some(own) = OwnFormat::of(dtype) else {
        return Err(QuantError::Unsupported { dtype, mode: QuantMode::KeepZeros });
    };
    check_flat(data, intended.as_deref())?;
    check_values(data)?;
    own.encode(data, dtype, intended)
}

/// Candle's plain blocks of `data`, or `None` when every super-block holds a
/// zero (the usual case for pruned weights: nothing is computed then).
fn plain_blocks(data: &[f32], dtype: GgmlDType) -> Result<Option<Vec<u8>>, QuantError> {
    if data.chunks_exact(QK_K).all(has_zero) {
        return Ok(None);
    }
    let q = candle_quantize(data, &[data.len()], dtype)?;
    let bytes = q.data().map_err(|source| QuantError::Candle { op: "read the quantized blocks", source })?;
    Ok(Some(bytes.into_owned()))
}

/// Whether `xs` holds an exact zero (either sign: `-0.0 == 0.0`).
fn has_zero(xs: &[f32]) -> bool {
    xs.contains(&0.0)
}

/// Writes a plan as a block.
type Packer = fn(&Plan, &mut [u8]);
/// Reads a block back as candle does.
type Decoder = fn(&[u8], &mut [f32]);

/// A type with a per-block minimum that Sprig encodes itself.
struct OwnFormat {
    /// The search parameters.
    fmt: &'static Format,
    /// Bytes per block.
    block_bytes: usize,
    /// Writes a plan as a block.
    pack: Packer,
    /// Reads a block back as candle does.
    decode: Decoder,
}

impl OwnFormat {
    /// Q4_K, Q5_K and Q2_K; `None` for other types.
    fn of(dtype: GgmlDType) -> Option<Self> {
        let (fmt, block_bytes, pack, decode): (_, _, Packer, Decoder) = match dtype {
            GgmlDType::Q2K => (&kquant::Q2K, pack::Q2K_BYTES, pack::q2k, pack::decode_q2k),
            GgmlDType::Q4K => (&kquant::Q4K, pack::Q4K_BYTES, pack::q4k, pack::decode_q4k),
            GgmlDType::Q5K => (&kquant::Q5K, pack::Q5K_BYTES, pack::q5k, pack::decode_q5k),
            _ => return None,
        };
        Some(Self { fmt, block_bytes, pack, decode })
    }

    /// [`encode_keep_zeros`] on checked input.
    fn encode(&self, data: &[f32], dtype: GgmlDType, mut intended: Option<&mut [f32]>) -> Result<Vec<u8>, QuantError> {
        let plain = plain_blocks(data, dtype)?;
        let mut bytes = vec![0u8; data.len() / QK_K * self.block_bytes];
        let mut plan = Plan::zero();
        let blocks = data.chunks_exact(QK_K).zip(bytes.chunks_exact_mut(self.block_bytes));
        for (b, (xs, out)) in blocks.enumerate() {
            let slot = intended.as_deref_mut().map(|v| &mut v[b * QK_K..(b + 1) * QK_K]);
            match plain.as_deref().filter(|_| !has_zero(xs)) {
                Some(plain) => {
                    let candle = &plain[b * self.block_bytes..(b + 1) * self.block_bytes];
                    self.encode_dense(xs, candle, &mut plan, out, slot);
                }
                None => {
                    kquant::encode_superblock(xs, self.fmt, &mut plan, slot);
                    (self.pack)(&plan, out);
                }
            }
        }
        Ok(bytes)
    }

    /// A zero-free super-block: Sprig's encoding or `candle`'s block,
    /// whichever decodes closer to `xs`, into `out` (and `intended`).
    fn encode_dense(&self, xs: &[f32], candle: &[u8], plan: &mut Plan, out: &mut [u8], intended: Option<&mut [f32]>) {
        let (mut ours, mut theirs) = ([0f32; QK_K], [0f32; QK_K]);
        kquant::encode_superblock(xs, self.fmt, plan, Some(&mut ours));
        (self.decode)(candle, &mut theirs);
        let sse = |y: &[f32; QK_K]| xs.iter().zip(y).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
        // A NaN error (candle overflowing) compares false: ours is kept.
        let decoded = if sse(&theirs) < sse(&ours) {
            out.copy_from_slice(candle);
            &theirs
        } else {
            (self.pack)(plan, out);
            &ours
        };
        if let Some(slot) = intended {
            slot.copy_from_slice(decoded);
        }
    }
}

/// Whether candle's own quantizer to `dtype` keeps exact zeros (symmetric
/// formats: a zero rounds to the code of 0). The tests check each.
fn keeps_zeros(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(dtype, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q6K | Q3K)
}

/// Candle's quantizer.
fn candle_quantize(data: &[f32], shape: &[usize], dtype: GgmlDType) -> Result<QTensor, QuantError> {
    let tensor =
        Tensor::from_slice(data, shape, &Device::Cpu).map_err(|source| QuantError::Candle { op: "build the f32 tensor", source })?;
    QTensor::quantize(&tensor, dtype).map_err(|source| QuantError::Candle { op: "quantize", source })
}

/// `shape` holds `data.len()` values and its last dimension is a whole
/// number of `dtype` blocks.
fn check_shape(data: &[f32], shape: &[usize], dtype: GgmlDType) -> Result<(), QuantError> {
    let fail = |reason: String| Err(QuantError::Shape { shape: shape.to_vec(), reason });
    let Some(&last) = shape.last() else {
        return fail("a tensor needs at least one dimension".into());
    };
    let count: usize = shape.iter().product();
    if count != data.len() {
        return fail(format!("it holds {count} values, the data has {}", data.len()));
    }
    let block = dtype.block_size();
    if !last.is_multiple_of(block) {
        return fail(format!("the last dimension {last} is not a multiple of the {dtype:?} block size {block}"));
    }
    Ok(())
}

/// `data` is whole super-blocks and `intended`, if any, matches it.
fn check_flat(data: &[f32], intended: Option<&[f32]>) -> Result<(), QuantError> {
    let fail = |reason: String| Err(QuantError::Shape { shape: vec![data.len()], reason });
    if !data.len().is_multiple_of(QK_K) {
        return fail(format!("{} values are not a multiple of the block size {QK_K}", data.len()));
    }
    match intended {
        Some(v) if v.len() != data.len() => fail(format!("the output for intended values has {}", v.len())),
        _ => Ok(()),
    }
}

/// Every weight is finite and within [`MAX_ABS`].
fn check_values(data: &[f32]) -> Result<(), QuantError> {
    let Some(index) = data.iter().position(|x| x.is_nan() || x.abs() > MAX_ABS) else {
        return Ok(());
    };
    let value = data[index];
    if value.is_finite() {
        Err(QuantError::OutOfRange { index, value })
    } else {
        Err(QuantError::NonFinite { index, value })
    }
}

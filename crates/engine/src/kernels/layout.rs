//! Block geometry of the supported GGUF types, and the f16 → f32 conversion
//! of block scales.

use candle_core::quantized::GgmlDType;

/// Elements of a K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// How a type's unpacked row carries its scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Groups {
    /// One scale (and minimum) per 32 weights: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K.
    Per32,
    /// One scale (and minimum) per 16 weights: Q2_K, Q3_K, Q6_K.
    Per16,
    /// Not quantized: F16 and F32 rows are dequantized to f32.
    Float,
}

impl Groups {
    /// Weights per scale (1 for the float types).
    pub(crate) fn size(self) -> usize {
        match self {
            Groups::Per32 => 32,
            Groups::Per16 => 16,
            Groups::Float => 1,
        }
    }
}

/// Block geometry of one weight type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Weights per block.
    pub(crate) block: usize,
    /// Bytes per block.
    pub(crate) bytes: usize,
    /// Granularity of the scales.
    pub(crate) groups: Groups,
    /// Whether weights carry an additive minimum (`scale·q + min`).
    pub(crate) has_min: bool,
}

/// The geometry of `dtype`, or `None` when the kernels do not support it.
pub(crate) fn layout(dtype: GgmlDType) -> Option<Layout> {
    use GgmlDType as T;
    use Groups::{Float, Per16, Per32};
    let l = |block, bytes, groups, has_min| Some(Layout { block, bytes, groups, has_min });
    match dtype {
        T::F32 => l(1, 4, Float, false),
        T::F16 => l(1, 2, Float, false),
        T::Q4_0 => l(32, 18, Per32, false),
        T::Q4_1 => l(32, 20, Per32, true),
        T::Q5_0 => l(32, 22, Per32, false),
        T::Q5_1 => l(32, 24, Per32, true),
        T::Q8_0 => l(32, 34, Per32, false),
        T::Q2K => l(QK_K, 84, Per16, true),
        T::Q3K => l(QK_K, 110, Per16, false),
        T::Q4K => l(QK_K, 144, Per32, true),
        T::Q5K => l(QK_K, 176, Per32, true),
        T::Q6K => l(QK_K, 210, Per16, false),
        T::BF16 | T::Q8_1 | T::Q8K => None,
    }
}

/// IEEE half → single precision, branch-free for finite values: the half's
/// magnitude bits moved into an f32 and scaled by 2^112 give the exact value
/// for normal and subnormal halves alike (the same value `half` computes).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let mag = (h & 0x7fff) << 13;
    let v = if mag >= 0x0f80_0000 {
        // Infinity or NaN: all-ones exponent, mantissa kept.
        f32::from_bits(mag | 0x7f80_0000)
    } else {
        f32::from_bits(mag) * f32::from_bits(0x7780_0000)
    };
    f32::from_bits(v.to_bits() | sign)
}

/// The little-endian f16 at `b[at..at + 2]`, as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Unpacks sub-block `j`'s 6-bit scale and minimum of a Q4_K/Q5_K block
/// (candle's `get_scale_min_k4`).
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The sixteen 6-bit scales of a Q3_K block, still offset by 32.
#[inline(always)]
pub(crate) fn q3k_scales(s: &[u8]) -> [u8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, a) in out.chunks_exact_mut(4).zip(aux) {
        o.copy_from_slice(&a.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_half_for_every_value() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = f16_to_f32(bits);
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }
}

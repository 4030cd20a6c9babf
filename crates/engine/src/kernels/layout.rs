//! Block geometry of the supported GGUF types, and the f16 → f32 conversion
//! of block scales.

use candle_core::quantized::GgmlDType;

/// Elements of a K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// How a type's weights are reconstructed from its unpacked row, which is
/// what decides the activation quantization and the dot product it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Blocks of 32 with one f16 scale (and minimum) each, dotted with
    /// activations quantized per 32 (llama.cpp's Q8_0/Q8_1):
    /// `weight = scale · (u - offset) (+ min)`. Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
    Legacy {
        /// Subtracted from every stored value `u` (8 for Q4_0, 16 for Q5_0).
        offset: i32,
        /// Whether blocks carry an additive minimum.
        has_min: bool,
    },
    /// Super-blocks of 256 with an f16 `d` (and `dmin`) and small integer
    /// scales (and minimums) per group of 16 or 32, dotted with activations
    /// quantized per 256 (llama.cpp's Q8_K):
    /// `weight = d · sc · (u - offset) - dmin · m`. Q2_K … Q6_K.
    K {
        /// Weights per integer scale: 16 or 32.
        group: usize,
        /// Subtracted from every stored value `u` (32 for Q6_K, 4 for Q3_K).
        offset: i32,
        /// Whether the type has minimums.
        has_min: bool,
    },
    /// Not quantized: F16 and F32 rows are dequantized to f32.
    Float,
}

/// Block geometry of one weight type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Weights per block.
    pub(crate) block: usize,
    /// Bytes per block.
    pub(crate) bytes: usize,
    /// How weights are reconstructed.
    pub(crate) family: Family,
}

/// The geometry of `dtype`, or `None` when the kernels do not support it.
pub(crate) fn layout(dtype: GgmlDType) -> Option<Layout> {
    use Family::{Float, Legacy, K};
    use GgmlDType as T;
    let l = |block, bytes, family| Some(Layout { block, bytes, family });
    let legacy = |offset, has_min| Legacy { offset, has_min };
    let k = |group, offset, has_min| K { group, offset, has_min };
    match dtype {
        T::F32 => l(1, 4, Float),
        T::F16 => l(1, 2, Float),
        T::Q4_0 => l(32, 18, legacy(8, false)),
        T::Q4_1 => l(32, 20, legacy(0, true)),
        T::Q5_0 => l(32, 22, legacy(16, false)),
        T::Q5_1 => l(32, 24, legacy(0, true)),
        T::Q8_0 => l(32, 34, legacy(0, false)),
        T::Q2K => l(QK_K, 84, k(16, 0, true)),
        T::Q3K => l(QK_K, 110, k(16, 4, false)),
        T::Q4K => l(QK_K, 144, k(32, 0, true)),
        T::Q5K => l(QK_K, 176, k(32, 0, true)),
        T::Q6K => l(QK_K, 210, k(16, 32, false)),
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
/// (candle's `get_scale_min_k4`): the reference for [`k4_scale_bytes`], and
/// what the quantizer's decoders read.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The eight 6-bit scales (bytes 0..8) and minimums (bytes 8..16) of a
/// Q4_K/Q5_K block's packed `scales[12]`, all at once: what
/// [`scale_min_k4`] gives for `j = 0..8`, with whole-word masks.
#[inline(always)]
pub(crate) fn k4_scale_bytes(s: &[u8]) -> [u8; 16] {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, c) = (word(0), word(1), word(2));
    let words = [a & LOW6, (c & LOW4) | (((a >> 6) & TOP2) << 4), b & LOW6, ((c >> 4) & LOW4) | (((b >> 6) & TOP2) << 4)];
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
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
    fn k4_scale_bytes_match_scale_min_k4() {
        let mut state = 1u32;
        for _ in 0..2000 {
            let s: Vec<u8> = (0..12)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 24) as u8
                })
                .collect();
            let all = k4_scale_bytes(&s);
            for j in 0..8 {
                assert_eq!(scale_min_k4(j, &s), (all[j], all[8 + j]), "{s:?} j {j}");
            }
        }
    }

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

//! Byte layouts of the ggml K-quant blocks the encoder writes, exactly as
//! candle's `k_quants.rs` (and llama.cpp) lay them out, and decoders that
//! read them back with candle's own f32 arithmetic (so the values match
//! candle's dequantization bit for bit), on the kernels' block helpers
//! (`kernels::layout`: the f16 scales, the packed 6-bit scales).

use super::kquant::{Plan, QK_K};
use crate::kernels::layout::{f16_at, scale_min_k4};

/// Bytes of a `BlockQ2K`: scales[16], qs[64], d, dmin.
pub(crate) const Q2K_BYTES: usize = QK_K / 16 + QK_K / 4 + 4;
/// Bytes of a `BlockQ4K`: d, dmin, scales[12], qs[128].
pub(crate) const Q4K_BYTES: usize = 4 + 12 + QK_K / 2;
/// Bytes of a `BlockQ5K`: d, dmin, scales[12], qh[32], qs[128].
pub(crate) const Q5K_BYTES: usize = 4 + 12 + QK_K / 8 + QK_K / 2;

/// Packs eight 6-bit scales and minimums the way `get_scale_min_k4` unpacks them.
fn pack_scales_k4(sc: &[u8], m: &[u8], out: &mut [u8]) {
    out[..12].fill(0);
    for j in 0..8 {
        let (ls, lm) = (sc[j] & 63, m[j] & 63);
        if j < 4 {
            out[j] |= ls;
            out[j + 4] |= lm;
        } else {
            out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            out[j - 4] |= (ls >> 4) << 6;
            out[j] |= (lm >> 4) << 6;
        }
    }
}

/// Writes `plan` as a `BlockQ4K`.
pub(crate) fn q4k(plan: &Plan, out: &mut [u8]) {
    out[0..2].copy_from_slice(&plan.d.to_le_bytes());
    out[2..4].copy_from_slice(&plan.dmin.to_le_bytes());
    pack_scales_k4(&plan.sc, &plan.m, &mut out[4..16]);
    let qs = &mut out[16..16 + QK_K / 2];
    for c in 0..QK_K / 64 {
        for l in 0..32 {
            qs[32 * c + l] = plan.q[64 * c + l] | (plan.q[64 * c + 32 + l] << 4);
        }
    }
}

/// Writes `plan` as a `BlockQ5K`.
pub(crate) fn q5k(plan: &Plan, out: &mut [u8]) {
    out[0..2].copy_from_slice(&plan.d.to_le_bytes());
    out[2..4].copy_from_slice(&plan.dmin.to_le_bytes());
    pack_scales_k4(&plan.sc, &plan.m, &mut out[4..16]);
    let (qh, qs) = out[16..Q5K_BYTES].split_at_mut(QK_K / 8);
    qh.fill(0);
    for c in 0..QK_K / 64 {
        for l in 0..32 {
            let (lo, hi) = (plan.q[64 * c + l], plan.q[64 * c + 32 + l]);
            qs[32 * c + l] = (lo & 0xF) | ((hi & 0xF) << 4);
            qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
        }
    }
}

/// Writes `plan` as a `BlockQ2K`.
pub(crate) fn q2k(plan: &Plan, out: &mut [u8]) {
    for ((o, &sc), &m) in out[..QK_K / 16].iter_mut().zip(&plan.sc).zip(&plan.m) {
        *o = (sc & 0xF) | ((m & 0xF) << 4);
    }
    let qs = &mut out[QK_K / 16..QK_K / 16 + QK_K / 4];
    for c in 0..QK_K / 128 {
        for l in 0..32 {
            let q = |k: usize| plan.q[128 * c + 32 * k + l];
            qs[32 * c + l] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
        }
    }
    out[Q2K_BYTES - 4..Q2K_BYTES - 2].copy_from_slice(&plan.d.to_le_bytes());
    out[Q2K_BYTES - 2..Q2K_BYTES].copy_from_slice(&plan.dmin.to_le_bytes());
}

/// Decodes a `BlockQ4K` with the same f32 operations as candle's `to_float`.
pub(crate) fn decode_q4k(block: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(block, 0), f16_at(block, 2));
    let (scales, qs) = (&block[4..16], &block[16..Q4K_BYTES]);
    for c in 0..QK_K / 64 {
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1, d2, m2) = (d * f32::from(sc1), min * f32::from(m1), d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            let q = qs[32 * c + l];
            y[64 * c + l] = d1 * f32::from(q & 0xF) - m1;
            y[64 * c + 32 + l] = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Decodes a `BlockQ5K` with the same f32 operations as candle's `to_float`.
pub(crate) fn decode_q5k(block: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(block, 0), f16_at(block, 2));
    let (scales, qh, qs) = (&block[4..16], &block[16..48], &block[48..Q5K_BYTES]);
    let high = |h: u8, bit: usize| if h & (1 << bit) != 0 { 16f32 } else { 0f32 };
    for c in 0..QK_K / 64 {
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1, d2, m2) = (d * f32::from(sc1), min * f32::from(m1), d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            let q = qs[32 * c + l];
            y[64 * c + l] = d1 * (f32::from(q & 0xF) + high(qh[l], 2 * c)) - m1;
            y[64 * c + 32 + l] = d2 * (f32::from(q >> 4) + high(qh[l], 2 * c + 1)) - m2;
        }
    }
}

/// Decodes a `BlockQ2K` with the same f32 operations as candle's `to_float`.
pub(crate) fn decode_q2k(block: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(block, Q2K_BYTES - 4), f16_at(block, Q2K_BYTES - 2));
    let (scales, qs) = (&block[..QK_K / 16], &block[QK_K / 16..QK_K / 16 + QK_K / 4]);
    for (j, y) in y.chunks_exact_mut(16).enumerate() {
        let sc = scales[j];
        let (dl, ml) = (d * f32::from(sc & 0xF), min * f32::from(sc >> 4));
        // Sub-block j: 128-value half j / 8, 2-bit plane (j / 2) % 4, lanes 16·(j % 2)..
        let (half, shift, lane) = (j / 8, 2 * ((j / 2) % 4), 16 * (j % 2));
        for (l, y) in y.iter_mut().enumerate() {
            *y = dl * f32::from((qs[32 * half + lane + l] >> shift) & 3) - ml;
        }
    }
}

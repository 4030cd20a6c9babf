//! Byte layouts of the ggml K-quant blocks the encoder writes, exactly as
//! candle's `k_quants.rs` (and llama.cpp) lay them out and read them back.

use super::kquant::{Plan, QK_K};

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
    for j in 0..QK_K / 16 {
        out[j] = (plan.sc[j] & 0xF) | ((plan.m[j] & 0xF) << 4);
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

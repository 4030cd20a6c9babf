//! Portable kernels: the reference the SIMD code is tested against, and the
//! native path. Written as plain loops over fixed-size chunks with integer
//! accumulation so that LLVM autovectorizes them.
//!
//! Every unpacker reads exactly one row (`src`, whole blocks) and writes
//! `vals` (one i8 per weight), `scales` and, for the types with a minimum,
//! `mins` (one per 32 or per 16 weights, see [`Groups`](super::layout::Groups)),
//! such that `weight = scale · val + min` with candle's f32 arithmetic.

use super::layout::{f16_at, f16_to_f32, q3k_scales, scale_min_k4, QK_K};

/// Low nibble of `b` as an i8.
#[inline(always)]
fn lo(b: u8) -> i8 {
    (b & 0xF) as i8
}

/// High nibble of `b` as an i8.
#[inline(always)]
fn hi(b: u8) -> i8 {
    (b >> 4) as i8
}

/// Q4_0: `d · (q - 8)`.
pub(crate) fn unpack_q4_0(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    for ((blk, v), s) in src.chunks_exact(18).zip(vals.chunks_exact_mut(32)).zip(scales) {
        *s = f16_at(blk, 0);
        let (v0, v1) = v.split_at_mut(16);
        for ((a, b), &q) in v0.iter_mut().zip(v1).zip(&blk[2..18]) {
            *a = lo(q) - 8;
            *b = hi(q) - 8;
        }
    }
}

/// Q4_1: `d · q + m`.
pub(crate) fn unpack_q4_1(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let groups = scales.iter_mut().zip(mins);
    for ((blk, v), (s, m)) in src.chunks_exact(20).zip(vals.chunks_exact_mut(32)).zip(groups) {
        *s = f16_at(blk, 0);
        *m = f16_at(blk, 2);
        let (v0, v1) = v.split_at_mut(16);
        for ((a, b), &q) in v0.iter_mut().zip(v1).zip(&blk[4..20]) {
            *a = lo(q);
            *b = hi(q);
        }
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block: nibbles of `qs`, fifth bits in `qh`.
#[inline(always)]
fn q5_values(qh: &[u8], qs: &[u8], v: &mut [i8], offset: i8) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let (v0, v1) = v.split_at_mut(16);
    for (j, ((a, b), &q)) in v0.iter_mut().zip(v1).zip(&qs[..16]).enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as i8;
        let h1 = ((qh >> (j + 12)) & 0x10) as i8;
        *a = (lo(q) | h0) - offset;
        *b = (hi(q) | h1) - offset;
    }
}

/// Q5_0: `d · (q - 16)`.
pub(crate) fn unpack_q5_0(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    for ((blk, v), s) in src.chunks_exact(22).zip(vals.chunks_exact_mut(32)).zip(scales) {
        *s = f16_at(blk, 0);
        q5_values(&blk[2..6], &blk[6..22], v, 16);
    }
}

/// Q5_1: `d · q + m`.
pub(crate) fn unpack_q5_1(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let groups = scales.iter_mut().zip(mins);
    for ((blk, v), (s, m)) in src.chunks_exact(24).zip(vals.chunks_exact_mut(32)).zip(groups) {
        *s = f16_at(blk, 0);
        *m = f16_at(blk, 2);
        q5_values(&blk[4..8], &blk[8..24], v, 0);
    }
}

/// Q8_0: `d · q`.
pub(crate) fn unpack_q8_0(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    for ((blk, v), s) in src.chunks_exact(34).zip(vals.chunks_exact_mut(32)).zip(scales) {
        *s = f16_at(blk, 0);
        for (a, &q) in v.iter_mut().zip(&blk[2..34]) {
            *a = q as i8;
        }
    }
}

/// Q2_K: `d·sc · q - dmin·m`, 4-bit `sc`/`m` per 16 weights, 2-bit `q`.
/// Layout: scales[16], qs[64], d, dmin.
pub(crate) fn unpack_q2k(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let groups = scales.chunks_exact_mut(16).zip(mins.chunks_exact_mut(16));
    for ((blk, v), (sc, mn)) in src.chunks_exact(84).zip(vals.chunks_exact_mut(QK_K)).zip(groups) {
        let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
        for ((s, m), &b) in sc.iter_mut().zip(mn.iter_mut()).zip(&blk[..16]) {
            *s = d * f32::from(b & 0xF);
            *m = -(dmin * f32::from(b >> 4));
        }
        let qs = &blk[16..80];
        // Weight 128·c + 32·j + l is 2-bit plane j of qs[32·c + l].
        for (v, qs) in v.chunks_exact_mut(128).zip(qs.chunks_exact(32)) {
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                for (a, &q) in v.iter_mut().zip(qs) {
                    *a = ((q >> (2 * j)) & 3) as i8;
                }
            }
        }
    }
}

/// Q3_K: `d·(sc - 32) · (q - 4·!hbit)`, 6-bit `sc` per 16 weights.
/// Layout: hmask[32], qs[64], scales[12], d.
pub(crate) fn unpack_q3k(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    for ((blk, v), sc) in src.chunks_exact(110).zip(vals.chunks_exact_mut(QK_K)).zip(scales.chunks_exact_mut(16)) {
        let d = f16_at(blk, 108);
        for (s, b) in sc.iter_mut().zip(q3k_scales(&blk[96..108])) {
            *s = d * (f32::from(b as i8) - 32.0);
        }
        let (hmask, qs) = (&blk[..32], &blk[32..96]);
        // Weight 128·c + 32·j + l: plane j of qs[32·c + l], high bit (4·c + j) of hmask[l].
        for (c, (v, qs)) in v.chunks_exact_mut(128).zip(qs.chunks_exact(32)).enumerate() {
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                let bit = 4 * c + j;
                for ((a, &q), &h) in v.iter_mut().zip(qs).zip(hmask) {
                    let high = ((h >> bit) & 1) as i8;
                    *a = ((q >> (2 * j)) & 3) as i8 + 4 * high - 4;
                }
            }
        }
    }
}

/// Q4_K: `d·sc · q - dmin·m`, 6-bit `sc`/`m` per 32 weights.
/// Layout: d, dmin, scales[12], qs[128].
pub(crate) fn unpack_q4k(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let groups = scales.chunks_exact_mut(8).zip(mins.chunks_exact_mut(8));
    for ((blk, v), (sc, mn)) in src.chunks_exact(144).zip(vals.chunks_exact_mut(QK_K)).zip(groups) {
        k4_scales(blk, sc, mn);
        // Weights 64·c + l and 64·c + 32 + l: nibbles of qs[32·c + l].
        for (v, qs) in v.chunks_exact_mut(64).zip(blk[16..144].chunks_exact(32)) {
            let (v0, v1) = v.split_at_mut(32);
            for ((a, b), &q) in v0.iter_mut().zip(v1).zip(qs) {
                *a = lo(q);
                *b = hi(q);
            }
        }
    }
}

/// The eight scales and minimums of a Q4_K/Q5_K block (d, dmin, scales[12]).
#[inline(always)]
pub(crate) fn k4_scales(blk: &[u8], sc: &mut [f32], mn: &mut [f32]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let packed = &blk[4..16];
    for (j, (s, m)) in sc.iter_mut().zip(mn.iter_mut()).enumerate() {
        let (a, b) = scale_min_k4(j, packed);
        *s = d * f32::from(a);
        *m = -(dmin * f32::from(b));
    }
}

/// Q5_K: `d·sc · q - dmin·m` with 5-bit `q` (fifth bits in qh).
/// Layout: d, dmin, scales[12], qh[32], qs[128].
pub(crate) fn unpack_q5k(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let groups = scales.chunks_exact_mut(8).zip(mins.chunks_exact_mut(8));
    for ((blk, v), (sc, mn)) in src.chunks_exact(176).zip(vals.chunks_exact_mut(QK_K)).zip(groups) {
        k4_scales(blk, sc, mn);
        let qh = &blk[16..48];
        for (c, (v, qs)) in v.chunks_exact_mut(64).zip(blk[48..176].chunks_exact(32)).enumerate() {
            let (v0, v1) = v.split_at_mut(32);
            for (((a, b), &q), &h) in v0.iter_mut().zip(v1).zip(qs).zip(qh) {
                *a = lo(q) | ((((h >> (2 * c)) & 1) << 4) as i8);
                *b = hi(q) | ((((h >> (2 * c + 1)) & 1) << 4) as i8);
            }
        }
    }
}

/// Q6_K: `d·sc · (q - 32)`, i8 `sc` per 16 weights, 6-bit `q`.
/// Layout: ql[128], qh[64], scales[16], d.
pub(crate) fn unpack_q6k(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    for ((blk, v), sc) in src.chunks_exact(210).zip(vals.chunks_exact_mut(QK_K)).zip(scales.chunks_exact_mut(16)) {
        let d = f16_at(blk, 208);
        for (s, &b) in sc.iter_mut().zip(&blk[192..208]) {
            *s = d * f32::from(b as i8);
        }
        let (ql, qh) = (&blk[..128], &blk[128..192]);
        // Weights 128·n + 32·k + l from ql[64·n + l (+32)] and 2-bit plane k of qh[32·n + l].
        for ((v, ql), qh) in v.chunks_exact_mut(128).zip(ql.chunks_exact(64)).zip(qh.chunks_exact(32)) {
            let (v01, v23) = v.split_at_mut(64);
            let (v0, v1) = v01.split_at_mut(32);
            let (v2, v3) = v23.split_at_mut(32);
            let (la, lb) = ql.split_at(32);
            for (l, &h) in qh.iter().enumerate() {
                let (a, b) = (la[l], lb[l]);
                v0[l] = (lo(a) | (((h & 3) << 4) as i8)) - 32;
                v1[l] = (lo(b) | ((((h >> 2) & 3) << 4) as i8)) - 32;
                v2[l] = (hi(a) | ((((h >> 4) & 3) << 4) as i8)) - 32;
                v3[l] = (hi(b) | (((h >> 6) << 4) as i8)) - 32;
            }
        }
    }
}

/// F32 row bytes to f32.
pub(crate) fn unpack_f32(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// F16 row bytes to f32 (with `simd128`'s conversion: NaN payloads too).
pub(crate) fn unpack_f16(src: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// Σ w[i]·x[i] over the first `N` pairs, exact in i32 (a constant length
/// for LLVM to unroll and vectorize).
#[inline(always)]
fn idot<const N: usize>(w: &[i8], x: &[i8]) -> i32 {
    w[..N].iter().zip(&x[..N]).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum()
}

/// One step of the dot products' f32 accumulation: lane `k` of `acc` gains
/// `f32(isum[k]) · sd[k]`.
#[inline(always)]
fn accumulate(acc: &mut [f32; 4], isum: [i32; 4], sd: [f32; 4]) {
    for ((a, i), s) in acc.iter_mut().zip(isum).zip(sd) {
        *a += i as f32 * s;
    }
}

/// The sum of four lanes, in `simd128`'s order: `(a0 + a2) + (a1 + a3)`.
#[inline(always)]
fn hsum4(a: [f32; 4]) -> f32 {
    (a[0] + a[2]) + (a[1] + a[3])
}

/// Partial sums of Σ w[i]·x[i] over the first `N` pairs: lane `j` sums the
/// pairs `8c + 2j` and `8c + 2j + 1` (an x86 `pmaddwd` layout). Integer sums
/// are exact in any order; this split is the one LLVM compiles best.
#[inline(always)]
fn idot_lanes<const N: usize>(w: &[i8], x: &[i8]) -> [i32; 4] {
    let mut l = [0i32; 4];
    for (w, x) in w[..N].chunks_exact(8).zip(x[..N].chunks_exact(8)) {
        for (j, l) in l.iter_mut().enumerate() {
            *l += i32::from(w[2 * j]) * i32::from(x[2 * j]) + i32::from(w[2 * j + 1]) * i32::from(x[2 * j + 1]);
        }
    }
    l
}

/// The sums of four [`idot_lanes`] results (exact: any order).
#[inline(always)]
fn hsum_lanes(p: [[i32; 4]; 4]) -> [i32; 4] {
    [
        (p[0][0] + p[0][2]) + (p[0][1] + p[0][3]),
        (p[1][0] + p[1][2]) + (p[1][1] + p[1][3]),
        (p[2][0] + p[2][2]) + (p[2][1] + p[2][3]),
        (p[3][0] + p[3][2]) + (p[3][1] + p[3][3]),
    ]
}

/// One step of [`dot_per32`]: four blocks of 32 (`w`, `x`: 128 values,
/// `s`, `d`: 4).
#[inline(always)]
fn step32(acc: &mut [f32; 4], w: &[i8], x: &[i8], s: &[f32], d: &[f32]) {
    let p = [
        idot_lanes::<32>(w, x),
        idot_lanes::<32>(&w[32..], &x[32..]),
        idot_lanes::<32>(&w[64..], &x[64..]),
        idot_lanes::<32>(&w[96..], &x[96..]),
    ];
    accumulate(acc, hsum_lanes(p), [s[0] * d[0], s[1] * d[1], s[2] * d[2], s[3] * d[3]]);
}

/// One step of [`dot_per16`]: four groups of 16 (`w`, `x`: 64 values,
/// `s`: 4, `d`: 2).
#[inline(always)]
fn step16(acc: &mut [f32; 4], w: &[i8], x: &[i8], s: &[f32], d: &[f32]) {
    let p = [
        idot_lanes::<16>(w, x),
        idot_lanes::<16>(&w[16..], &x[16..]),
        idot_lanes::<16>(&w[32..], &x[32..]),
        idot_lanes::<16>(&w[48..], &x[48..]),
    ];
    accumulate(acc, hsum_lanes(p), [s[0] * d[0], s[1] * d[0], s[2] * d[1], s[3] * d[1]]);
}

/// Σ_b scale[b]·d[b]·Σ_{i∈b} vals[i]·q[i] over blocks of 32.
///
/// The f32 order (shared with `simd128`, bit for bit): four accumulators
/// from +0, block `4n + k` into lane `k` as `acc[k] += f32(isum) · (scale · d)`
/// (`isum` exact: `|isum| ≤ 32·128·128 < 2^24`), in block order, then the lanes
/// summed as [`hsum4`] does. No fused multiply-add.
pub(crate) fn dot_per32(vals: &[i8], scales: &[f32], q: &[i8], d: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let (w4, x4, s4, d4) = (vals.chunks_exact(128), q.chunks_exact(128), scales.chunks_exact(4), d.chunks_exact(4));
    let (wr, xr, sr, dr) = (w4.remainder(), x4.remainder(), s4.remainder(), d4.remainder());
    for (((w, x), s), d) in w4.zip(x4).zip(s4).zip(d4) {
        step32(&mut acc, w, x, s, d);
    }
    // The blocks of a last partial step. `simd128` also adds `0 · 0` to the
    // lanes without one, which leaves them unchanged: a lane starts at +0 and
    // so is never -0.
    for (((w, x), (&s, &d)), acc) in wr.chunks_exact(32).zip(xr.chunks_exact(32)).zip(sr.iter().zip(dr)).zip(&mut acc) {
        *acc += idot::<32>(w, x) as f32 * (s * d);
    }
    hsum4(acc)
}

/// Σ_g scale[g]·d[g/2]·Σ_{i∈g} vals[i]·q[i] over groups of 16 (`d` per 32).
///
/// The f32 order is [`dot_per32`]'s with groups of 16 for blocks:
/// group `4n + k` into lane `k`, `acc[k] += f32(isum) · (scale · d)`.
pub(crate) fn dot_per16(vals: &[i8], scales: &[f32], q: &[i8], d: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let (w4, x4, s4, d2) = (vals.chunks_exact(64), q.chunks_exact(64), scales.chunks_exact(4), d.chunks_exact(2));
    let (wr, xr, sr, dr) = (w4.remainder(), x4.remainder(), s4.remainder(), d2.remainder());
    for (((w, x), s), d) in w4.zip(x4).zip(s4).zip(d2) {
        step16(&mut acc, w, x, s, d);
    }
    // As in `dot_per32`.
    for (((w, x), &s), (k, acc)) in wr.chunks_exact(16).zip(xr.chunks_exact(16)).zip(sr).zip(acc.iter_mut().enumerate())
    {
        *acc += idot::<16>(w, x) as f32 * (s * dr[k / 2]);
    }
    hsum4(acc)
}

/// f32 dot product in `simd128`'s order, bit for bit: four f32x4
/// accumulators from +0 (element `16n + 4k + l` into `acc[k][l]` as
/// `acc[k][l] += a·b`), folded as `(acc[0] + acc[1]) + (acc[2] + acc[3])`
/// lane by lane, summed as [`hsum4`] does, then plus the sequential sum of
/// the last `len % 16` products. No fused multiply-add.
pub(crate) fn fdot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0f32; 4]; 4];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((acc, x), y) in acc.iter_mut().zip(x.chunks_exact(4)).zip(y.chunks_exact(4)) {
            for ((acc, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                *acc += x * y;
            }
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    hsum4(add4(add4(acc[0], acc[1]), add4(acc[2], acc[3]))) + tail
}

/// `a + b`, lane by lane.
#[inline(always)]
fn add4(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

/// Quantizes one block of 32 activations: returns `d`, writes `q`, and the
/// sums of `q` over its two halves.
#[inline(always)]
pub(crate) fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    // `simd128`'s `f32x4_max` propagates NaN where `f32::max` drops it.
    let amax = if x.iter().any(|v| v.is_nan()) { f32::NAN } else { amax };
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = ((v * id).round_ties_even() as i32).clamp(-128, 127) as i8;
    }
    let s0: i32 = q[..16].iter().map(|&v| i32::from(v)).sum();
    let s1: i32 = q[16..32].iter().map(|&v| i32::from(v)).sum();
    (d, s0, s1)
}

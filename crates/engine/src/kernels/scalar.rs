//! Portable kernels: the reference the SIMD code is tested against, and the
//! native path. Written as plain loops over fixed-size chunks with integer
//! accumulation so that LLVM autovectorizes them.
//!
//! Every unpacker reads exactly one row (`src`, whole blocks) into its
//! family's unpacked form (see [`Family`](super::layout::Family)): one `i8`
//! per weight holding the stored value `u` (unsigned for every type but
//! Q8_0), and
//! - for the legacy types, an f32 `scale` and (Q4_1, Q5_1) `min` per 32
//!   ([`LegacyRowMut`]);
//! - for the K-quants, an integer scale (and minimum) per group of 16 or 32
//!   and an f32 `d` (and `dmin`) per super-block of 256 ([`KRowMut`]).

use super::activations::{Token32, TokenK};
use super::layout::{f16_at, f16_to_f32, k4_scale_bytes, q3k_scales, QK_K};
use super::{GgmlDType, KDot, KDotFn, KUnpackFn, Kernels, LegacyDot, LegacyDotFn, LegacyUnpackFn};

/// An unpacked legacy row (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LegacyRow<'a> {
    /// One stored value per weight.
    pub vals: &'a [i8],
    /// Scale per 32.
    pub scales: &'a [f32],
    /// Minimum per 32 (the tiled SIMD dot products add the minimum term;
    /// empty for the types without one).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
    pub mins: &'a [f32],
}

/// Where a legacy row is unpacked.
#[derive(Debug)]
pub(crate) struct LegacyRowMut<'a> {
    /// One stored value per weight.
    pub vals: &'a mut [i8],
    /// Scale per 32.
    pub scales: &'a mut [f32],
    /// Minimum per 32 (left alone by the types without one).
    pub mins: &'a mut [f32],
}

/// An unpacked K-quant row (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KRow<'a> {
    /// One stored value `u` per weight, 0..=63.
    pub vals: &'a [i8],
    /// Integer scale per group.
    pub sc: &'a [i32],
    /// Integer minimum per group (unused by the types without one).
    pub m: &'a [i32],
    /// `d` per super-block.
    pub d: &'a [f32],
    /// `dmin` per super-block (unused by the types without one).
    pub dmin: &'a [f32],
}

/// Where a K-quant row is unpacked.
#[derive(Debug)]
pub(crate) struct KRowMut<'a> {
    /// One stored value `u` per weight.
    pub vals: &'a mut [i8],
    /// Integer scale per group.
    pub sc: &'a mut [i32],
    /// Integer minimum per group (left alone by the types without one).
    pub m: &'a mut [i32],
    /// `d` per super-block.
    pub d: &'a mut [f32],
    /// `dmin` per super-block (left alone by the types without one).
    pub dmin: &'a mut [f32],
}

/// Low nibble of `b`.
#[inline(always)]
fn lo(b: u8) -> i8 {
    (b & 0xF) as i8
}

/// High nibble of `b`.
#[inline(always)]
fn hi(b: u8) -> i8 {
    (b >> 4) as i8
}

/// Q4_0: `d · (u - 8)`.
pub(crate) fn unpack_q4_0(src: &[u8], out: LegacyRowMut<'_>) {
    for ((blk, v), s) in src.chunks_exact(18).zip(out.vals.chunks_exact_mut(32)).zip(out.scales) {
        *s = f16_at(blk, 0);
        let (v0, v1) = v.split_at_mut(16);
        for ((a, b), &q) in v0.iter_mut().zip(v1).zip(&blk[2..18]) {
            *a = lo(q);
            *b = hi(q);
        }
    }
}

/// Q4_1: `d · u + m`.
pub(crate) fn unpack_q4_1(src: &[u8], out: LegacyRowMut<'_>) {
    let groups = out.scales.iter_mut().zip(out.mins);
    for ((blk, v), (s, m)) in src.chunks_exact(20).zip(out.vals.chunks_exact_mut(32)).zip(groups) {
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
fn q5_values(qh: &[u8], qs: &[u8], v: &mut [i8]) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let (v0, v1) = v.split_at_mut(16);
    for (j, ((a, b), &q)) in v0.iter_mut().zip(v1).zip(&qs[..16]).enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as i8;
        let h1 = ((qh >> (j + 12)) & 0x10) as i8;
        *a = lo(q) | h0;
        *b = hi(q) | h1;
    }
}

/// Q5_0: `d · (u - 16)`.
pub(crate) fn unpack_q5_0(src: &[u8], out: LegacyRowMut<'_>) {
    for ((blk, v), s) in src.chunks_exact(22).zip(out.vals.chunks_exact_mut(32)).zip(out.scales) {
        *s = f16_at(blk, 0);
        q5_values(&blk[2..6], &blk[6..22], v);
    }
}

/// Q5_1: `d · u + m`.
pub(crate) fn unpack_q5_1(src: &[u8], out: LegacyRowMut<'_>) {
    let groups = out.scales.iter_mut().zip(out.mins);
    for ((blk, v), (s, m)) in src.chunks_exact(24).zip(out.vals.chunks_exact_mut(32)).zip(groups) {
        *s = f16_at(blk, 0);
        *m = f16_at(blk, 2);
        q5_values(&blk[4..8], &blk[8..24], v);
    }
}

/// Q8_0: `d · u`, `u` signed.
pub(crate) fn unpack_q8_0(src: &[u8], out: LegacyRowMut<'_>) {
    for ((blk, v), s) in src.chunks_exact(34).zip(out.vals.chunks_exact_mut(32)).zip(out.scales) {
        *s = f16_at(blk, 0);
        for (a, &q) in v.iter_mut().zip(&blk[2..34]) {
            *a = q as i8;
        }
    }
}

/// Q2_K: `d·sc · u - dmin·m`, 4-bit `sc`/`m` per 16 weights, 2-bit `u`.
/// Layout: scales[16], qs[64], d, dmin.
pub(crate) fn unpack_q2k(src: &[u8], out: KRowMut<'_>) {
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(16).zip(out.m.chunks_exact_mut(16));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(84).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        (*d, *dmin) = (f16_at(blk, 80), f16_at(blk, 82));
        for ((s, m), &b) in sc.iter_mut().zip(mn.iter_mut()).zip(&blk[..16]) {
            *s = i32::from(b & 0xF);
            *m = i32::from(b >> 4);
        }
        // Weight 128·c + 32·j + l is 2-bit plane j of qs[32·c + l].
        for (v, qs) in v.chunks_exact_mut(128).zip(blk[16..80].chunks_exact(32)) {
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                for (a, &q) in v.iter_mut().zip(qs) {
                    *a = ((q >> (2 * j)) & 3) as i8;
                }
            }
        }
    }
}

/// Q3_K: `d·(sc - 32) · (u - 4)`, 6-bit `sc` per 16 weights, `u` from two
/// low bits and a high bit. Layout: hmask[32], qs[64], scales[12], d.
pub(crate) fn unpack_q3k(src: &[u8], out: KRowMut<'_>) {
    for (((blk, v), sc), d) in
        src.chunks_exact(110).zip(out.vals.chunks_exact_mut(QK_K)).zip(out.sc.chunks_exact_mut(16)).zip(out.d.iter_mut())
    {
        *d = f16_at(blk, 108);
        for (s, b) in sc.iter_mut().zip(q3k_scales(&blk[96..108])) {
            *s = i32::from(b as i8) - 32;
        }
        let (hmask, qs) = (&blk[..32], &blk[32..96]);
        // Weight 128·c + 32·j + l: plane j of qs[32·c + l], high bit (4·c + j) of hmask[l].
        for (c, (v, qs)) in v.chunks_exact_mut(128).zip(qs.chunks_exact(32)).enumerate() {
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                let bit = 4 * c + j;
                for ((a, &q), &h) in v.iter_mut().zip(qs).zip(hmask) {
                    *a = (((q >> (2 * j)) & 3) | (((h >> bit) & 1) << 2)) as i8;
                }
            }
        }
    }
}

/// The integer scales and minimums of a Q4_K/Q5_K block, and its `d`, `dmin`.
#[inline(always)]
fn k4_header(blk: &[u8], sc: &mut [i32], mn: &mut [i32], d: &mut f32, dmin: &mut f32) {
    (*d, *dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let b = k4_scale_bytes(&blk[4..16]);
    for (j, (s, m)) in sc.iter_mut().zip(mn.iter_mut()).enumerate() {
        *s = i32::from(b[j]);
        *m = i32::from(b[8 + j]);
    }
}

/// Q4_K: `d·sc · u - dmin·m`, 6-bit `sc`/`m` per 32 weights.
/// Layout: d, dmin, scales[12], qs[128].
pub(crate) fn unpack_q4k(src: &[u8], out: KRowMut<'_>) {
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(8).zip(out.m.chunks_exact_mut(8));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(144).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        k4_header(blk, sc, mn, d, dmin);
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

/// Q5_K: `d·sc · u - dmin·m` with 5-bit `u` (fifth bits in qh).
/// Layout: d, dmin, scales[12], qh[32], qs[128].
pub(crate) fn unpack_q5k(src: &[u8], out: KRowMut<'_>) {
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(8).zip(out.m.chunks_exact_mut(8));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(176).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        k4_header(blk, sc, mn, d, dmin);
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

/// Q6_K: `d·sc · (u - 32)`, i8 `sc` per 16 weights, 6-bit `u`.
/// Layout: ql[128], qh[64], scales[16], d.
pub(crate) fn unpack_q6k(src: &[u8], out: KRowMut<'_>) {
    for (((blk, v), sc), d) in
        src.chunks_exact(210).zip(out.vals.chunks_exact_mut(QK_K)).zip(out.sc.chunks_exact_mut(16)).zip(out.d.iter_mut())
    {
        *d = f16_at(blk, 208);
        for (s, &b) in sc.iter_mut().zip(&blk[192..208]) {
            *s = i32::from(b as i8);
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
                v0[l] = lo(a) | (((h & 3) << 4) as i8);
                v1[l] = lo(b) | ((((h >> 2) & 3) << 4) as i8);
                v2[l] = hi(a) | ((((h >> 4) & 3) << 4) as i8);
                v3[l] = hi(b) | (((h >> 6) << 4) as i8);
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

/// The sum of four lanes, in `simd128`'s order: `(a0 + a2) + (a1 + a3)`.
#[inline(always)]
fn hsum4(a: [f32; 4]) -> f32 {
    (a[0] + a[2]) + (a[1] + a[3])
}

/// Block `b`'s integer dot of a legacy row: `Σ u·q - OFFSET·Σq` (exact:
/// `|u·q| ≤ 128·128`, 32 of them).
#[inline(always)]
fn block_isum<const OFFSET: i32>(vals: &[i8], t: &Token32<'_>, b: usize) -> i32 {
    idot::<32>(&vals[32 * b..], &t.q[32 * b..]) - OFFSET * t.qsum[b]
}

/// Σ_b scale[b]·d[b]·(Σ_{i∈b} u[i]·q[i] - OFFSET·Σ_{i∈b} q[i]) over blocks
/// of 32: a legacy row dot a token, without the minimum term.
///
/// The f32 order (shared with the SIMD backends, bit for bit): four
/// accumulators from +0, block `4n + k` into lane `k` as
/// `acc[k] += f32(isum) · (scale · d)` (`isum` exact, `|isum| < 2^24`), in
/// block order, then the lanes summed as [`hsum4`] does. No fused
/// multiply-add. The SIMD code also adds `0 · 0` to the lanes a last
/// partial step lacks, which leaves them unchanged: a lane starts at +0 and
/// so is never -0.
pub(crate) fn dot_legacy<const OFFSET: i32>(w: LegacyRow<'_>, t: &Token32<'_>) -> f32 {
    let mut acc = [0f32; 4];
    for (b, (&s, &d)) in w.scales.iter().zip(t.d).enumerate() {
        acc[b % 4] += block_isum::<OFFSET>(w.vals, t, b) as f32 * (s * d);
    }
    hsum4(acc)
}

/// A K-quant row dot a token quantized per 256 ([`TokenK`]).
///
/// Per super-block, exactly in i32: `isc = Σ_g sc[g]·(Σ_{i∈g} u[i]·q[i] -
/// OFFSET·Σ_{i∈g} q[i])` and, with minimums, `imin = Σ_g m[g]·Σ_{i∈g} q[i]`
/// (|isc| < 2^29 for every type). Then in f32: `v = f32(isc) · (d · dx)`,
/// with minimums `v = v - f32(imin) · (dmin · dx)`, added to one of four
/// accumulators from +0, super-block `s` into `acc[s % 4]` in order, and
/// the four summed as [`hsum4`] does. No fused multiply-add. (Four lanes
/// let the SIMD code take four super-blocks' f32 steps at once.)
pub(crate) fn dot_k<const G: usize, const OFFSET: i32, const MIN: bool>(w: KRow<'_>, t: &TokenK<'_>) -> f32 {
    let per = QK_K / G;
    let mut acc = [0f32; 4];
    for (s, &dx) in t.d.iter().enumerate() {
        let (mut isc, mut imin) = (0i32, 0i32);
        for g in 0..per {
            let at = s * QK_K + g * G;
            let bsum = if G == 16 { t.bsum16[s * 16 + g] } else { t.bsum16[s * 16 + 2 * g] + t.bsum16[s * 16 + 2 * g + 1] };
            isc += w.sc[s * per + g] * (idot::<G>(&w.vals[at..], &t.q[at..]) - OFFSET * bsum);
            if MIN {
                imin += w.m[s * per + g] * bsum;
            }
        }
        let v = isc as f32 * (w.d[s] * dx);
        acc[s % 4] += if MIN { v - imin as f32 * (w.dmin[s] * dx) } else { v };
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

/// The largest magnitude of `x`, NaN if any value is NaN (as `simd128`'s
/// `f32x4_max`, where `f32::max` would drop it).
#[inline(always)]
pub(crate) fn amax(x: &[f32]) -> f32 {
    if x.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Rounds `x · id` to i8 (ties to even, saturating) into `q`; returns the
/// sums of `q` over its halves of 16.
#[inline(always)]
pub(crate) fn round_block(x: &[f32], id: f32, q: &mut [i8]) -> (i32, i32) {
    for (q, &v) in q[..32].iter_mut().zip(&x[..32]) {
        *q = ((v * id).round_ties_even() as i32).clamp(-128, 127) as i8;
    }
    let s0: i32 = q[..16].iter().map(|&v| i32::from(v)).sum();
    let s1: i32 = q[16..32].iter().map(|&v| i32::from(v)).sum();
    (s0, s1)
}

/// The portable kernels of `dtype` (no packed kernels: rows are unpacked).
pub(crate) fn kernels(dtype: GgmlDType) -> Kernels {
    use GgmlDType as T;
    let legacy = |unpack: LegacyUnpackFn, dot: LegacyDotFn| Kernels::Legacy { unpack, fdot, packed: None, dot: LegacyDot::Row(dot) };
    let k = |unpack: KUnpackFn, dot: KDotFn| Kernels::K { unpack, packed: None, dot: KDot::Row(dot) };
    match dtype {
        T::Q4_0 => legacy(unpack_q4_0, dot_legacy::<8>),
        T::Q4_1 => legacy(unpack_q4_1, dot_legacy::<0>),
        T::Q5_0 => legacy(unpack_q5_0, dot_legacy::<16>),
        T::Q5_1 => legacy(unpack_q5_1, dot_legacy::<0>),
        T::Q8_0 => legacy(unpack_q8_0, dot_legacy::<0>),
        T::Q2K => k(unpack_q2k, dot_k::<16, 0, true>),
        T::Q3K => k(unpack_q3k, dot_k::<16, 4, false>),
        T::Q4K => k(unpack_q4k, dot_k::<32, 0, true>),
        T::Q5K => k(unpack_q5k, dot_k::<32, 0, true>),
        T::Q6K => k(unpack_q6k, dot_k::<16, 32, false>),
        T::F16 => Kernels::Float { float: unpack_f16, fdot },
        // F32; the types without a kernel never get here (`QMatrix::new` refuses them).
        _ => Kernels::Float { float: unpack_f32, fdot },
    }
}

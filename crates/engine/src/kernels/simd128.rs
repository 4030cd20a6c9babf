//! wasm `simd128` kernels: the same integer math as [`scalar`](super::scalar),
//! sixteen lanes at a time. Same signatures and outputs as the scalar
//! functions, bit for bit: the dot products perform the scalar code's f32
//! operations in the scalar code's order (see [`scalar::dot_per32`](super::scalar::dot_per32)
//! and [`scalar::fdot`](super::scalar::fdot)), without fused multiply-adds
//! (wasm has none).

use core::arch::wasm32::*;

use super::layout::{f16_at, q3k_scales, QK_K};
use super::scalar::k4_scales;

/// Loads 16 bytes from the start of `s`.
#[inline(always)]
fn ld<T: Copy>(s: &[T]) -> v128 {
    assert!(core::mem::size_of_val(s) >= 16);
    // SAFETY: `s` holds at least 16 readable bytes (checked above; the check
    // folds away on fixed-size chunks); wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// Stores 16 bytes at the start of `s`.
#[inline(always)]
fn st<T: Copy>(s: &mut [T], v: v128) {
    assert!(core::mem::size_of_val(s) >= 16);
    // SAFETY: `s` holds at least 16 writable bytes of plain integers or
    // floats, for which every bit pattern is valid; no alignment needed.
    unsafe { v128_store(s.as_mut_ptr().cast(), v) }
}

/// Sum of the four f32 lanes, `(v0 + v2) + (v1 + v3)`.
#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    let v = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let v = f32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
    f32x4_extract_lane::<0>(v)
}

/// Sum of the four i32 lanes.
#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    let v = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let v = i32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
    i32x4_extract_lane::<0>(v)
}

/// Largest of the four f32 lanes.
#[inline(always)]
fn hmax_f32(v: v128) -> f32 {
    let v = f32x4_max(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let v = f32x4_max(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
    f32x4_extract_lane::<0>(v)
}

/// i32x4 partial sums of Σ w[i]·x[i] over 32 i8 pairs. Two products fit an
/// i16 (|w·x| ≤ 128·127), so pairs of products are added before widening.
#[inline(always)]
fn idot32(w: &[i8], x: &[i8]) -> v128 {
    let (w0, w1, x0, x1) = (ld(&w[..16]), ld(&w[16..32]), ld(&x[..16]), ld(&x[16..32]));
    let lo = i16x8_add(i16x8_extmul_low_i8x16(w0, x0), i16x8_extmul_low_i8x16(w1, x1));
    let hi = i16x8_add(i16x8_extmul_high_i8x16(w0, x0), i16x8_extmul_high_i8x16(w1, x1));
    i32x4_add(i32x4_extadd_pairwise_i16x8(lo), i32x4_extadd_pairwise_i16x8(hi))
}

/// i32x4 partial sums of Σ w[i]·x[i] over 16 i8 pairs.
#[inline(always)]
fn idot16(w: &[i8], x: &[i8]) -> v128 {
    let (w, x) = (ld(&w[..16]), ld(&x[..16]));
    i32x4_extadd_pairwise_i16x8(i16x8_add(i16x8_extmul_low_i8x16(w, x), i16x8_extmul_high_i8x16(w, x)))
}

/// The lane sums of four i32x4: `[Σv0, Σv1, Σv2, Σv3]`.
#[inline(always)]
fn hsum_i32x4(v0: v128, v1: v128, v2: v128, v3: v128) -> v128 {
    let a = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v0, v1), i32x4_shuffle::<2, 6, 3, 7>(v0, v1));
    let b = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v2, v3), i32x4_shuffle::<2, 6, 3, 7>(v2, v3));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
}

/// One accumulation step: `acc + f32(isum) · sd`, lane by lane.
#[inline(always)]
fn accumulate(acc: v128, isum: v128, sd: v128) -> v128 {
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(isum), sd))
}

/// See [`scalar::dot_per32`](super::scalar::dot_per32), whose f32 operations
/// this performs in the same order: four blocks per step, block `k` of a
/// step in lane `k`.
pub(crate) fn dot_per32(vals: &[i8], scales: &[f32], q: &[i8], d: &[f32]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let (w4, x4, s4, d4) = (vals.chunks_exact(128), q.chunks_exact(128), scales.chunks_exact(4), d.chunks_exact(4));
    let (wr, xr, sr, dr) = (w4.remainder(), x4.remainder(), s4.remainder(), d4.remainder());
    for (((w, x), s), d) in w4.zip(x4).zip(s4).zip(d4) {
        let isum = hsum_i32x4(
            idot32(&w[..32], &x[..32]),
            idot32(&w[32..64], &x[32..64]),
            idot32(&w[64..96], &x[64..96]),
            idot32(&w[96..], &x[96..]),
        );
        acc = accumulate(acc, isum, f32x4_mul(ld(s), ld(d)));
    }
    // A last partial step, its missing lanes adding 0 · 0 (a no-op, see the
    // scalar code).
    let (z, block) = (i32x4_splat(0), |k: usize| idot32(&wr[32 * k..], &xr[32 * k..]));
    let sd = |k: usize| sr[k] * dr[k];
    let last = match sr.len() {
        0 => None,
        1 => Some((hsum_i32x4(block(0), z, z, z), f32x4(sd(0), 0.0, 0.0, 0.0))),
        2 => Some((hsum_i32x4(block(0), block(1), z, z), f32x4(sd(0), sd(1), 0.0, 0.0))),
        _ => Some((hsum_i32x4(block(0), block(1), block(2), z), f32x4(sd(0), sd(1), sd(2), 0.0))),
    };
    if let Some((isum, sd)) = last {
        acc = accumulate(acc, isum, sd);
    }
    hsum_f32(acc)
}

/// See [`scalar::dot_per16`](super::scalar::dot_per16), whose f32 operations
/// this performs in the same order: two blocks (four groups) per step, group
/// `k` of a step in lane `k`.
pub(crate) fn dot_per16(vals: &[i8], scales: &[f32], q: &[i8], d: &[f32]) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let (w4, x4, s4, d2) = (vals.chunks_exact(64), q.chunks_exact(64), scales.chunks_exact(4), d.chunks_exact(2));
    let (wr, xr, sr, dr) = (w4.remainder(), x4.remainder(), s4.remainder(), d2.remainder());
    for (((w, x), s), d) in w4.zip(x4).zip(s4).zip(d2) {
        let isum = hsum_i32x4(
            idot16(&w[..16], &x[..16]),
            idot16(&w[16..32], &x[16..32]),
            idot16(&w[32..48], &x[32..48]),
            idot16(&w[48..], &x[48..]),
        );
        acc = accumulate(acc, isum, f32x4_mul(ld(s), f32x4(d[0], d[0], d[1], d[1])));
    }
    // A last block of 32 (two groups), as in `dot_per32`.
    if !sr.is_empty() {
        let z = i32x4_splat(0);
        let isum = hsum_i32x4(idot16(wr, xr), idot16(&wr[16..], &xr[16..]), z, z);
        acc = accumulate(acc, isum, f32x4(sr[0] * dr[0], sr[1] * dr[0], 0.0, 0.0));
    }
    hsum_f32(acc)
}

/// See [`scalar::fdot`](super::scalar::fdot), whose f32 operations this
/// performs in the same order.
pub(crate) fn fdot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [f32x4_splat(0.0); 4];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for (k, acc) in acc.iter_mut().enumerate() {
            *acc = f32x4_add(*acc, f32x4_mul(ld(&x[4 * k..]), ld(&y[4 * k..])));
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    hsum_f32(f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]))) + tail
}

/// See [`scalar::quantize_block`](super::scalar::quantize_block).
#[inline(always)]
pub(crate) fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32, i32) {
    let v: [v128; 8] = core::array::from_fn(|k| ld(&x[4 * k..4 * k + 4]));
    let amax = hmax_f32(v.iter().fold(f32x4_splat(0.0), |m, &v| f32x4_max(m, f32x4_abs(v))));
    let d = amax / 127.0;
    let id = f32x4_splat(if d != 0.0 { 1.0 / d } else { 0.0 });
    let i: [v128; 8] = core::array::from_fn(|k| i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v[k], id))));
    let a = i8x16_narrow_i16x8(i16x8_narrow_i32x4(i[0], i[1]), i16x8_narrow_i32x4(i[2], i[3]));
    let b = i8x16_narrow_i16x8(i16x8_narrow_i32x4(i[4], i[5]), i16x8_narrow_i32x4(i[6], i[7]));
    st(&mut q[..16], a);
    st(&mut q[16..32], b);
    let sum = |v| hsum_i32(i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(v)));
    (d, sum(a), sum(b))
}

/// Q4_0, see [`scalar::unpack_q4_0`](super::scalar::unpack_q4_0).
pub(crate) fn unpack_q4_0(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    let (m4, eight) = (u8x16_splat(0x0F), i8x16_splat(8));
    for ((blk, v), s) in src.chunks_exact(18).zip(vals.chunks_exact_mut(32)).zip(scales) {
        *s = f16_at(blk, 0);
        let q = ld(&blk[2..18]);
        st(&mut v[..16], i8x16_sub(v128_and(q, m4), eight));
        st(&mut v[16..], i8x16_sub(u8x16_shr(q, 4), eight));
    }
}

/// Q4_1, see [`scalar::unpack_q4_1`](super::scalar::unpack_q4_1).
pub(crate) fn unpack_q4_1(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let m4 = u8x16_splat(0x0F);
    let groups = scales.iter_mut().zip(mins);
    for ((blk, v), (s, m)) in src.chunks_exact(20).zip(vals.chunks_exact_mut(32)).zip(groups) {
        *s = f16_at(blk, 0);
        *m = f16_at(blk, 2);
        let q = ld(&blk[4..20]);
        st(&mut v[..16], v128_and(q, m4));
        st(&mut v[16..], u8x16_shr(q, 4));
    }
}

/// The fifth bits of a Q5_0/Q5_1 block as 0/16 bytes: weights 0..16, 16..32.
#[inline(always)]
fn q5_high(qh: &[u8]) -> (v128, v128) {
    let h = u32x4_splat(u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]));
    let bits = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    let sixteen = u8x16_splat(16);
    let h0 = i8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(h, h);
    let h1 = i8x16_shuffle::<2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3>(h, h);
    let expand = |h| v128_and(i8x16_eq(v128_and(h, bits), bits), sixteen);
    (expand(h0), expand(h1))
}

/// Q5_0, see [`scalar::unpack_q5_0`](super::scalar::unpack_q5_0).
pub(crate) fn unpack_q5_0(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    let (m4, off) = (u8x16_splat(0x0F), i8x16_splat(16));
    for ((blk, v), s) in src.chunks_exact(22).zip(vals.chunks_exact_mut(32)).zip(scales) {
        *s = f16_at(blk, 0);
        let (h0, h1) = q5_high(&blk[2..6]);
        let q = ld(&blk[6..22]);
        st(&mut v[..16], i8x16_sub(v128_or(v128_and(q, m4), h0), off));
        st(&mut v[16..], i8x16_sub(v128_or(u8x16_shr(q, 4), h1), off));
    }
}

/// Q5_1, see [`scalar::unpack_q5_1`](super::scalar::unpack_q5_1).
pub(crate) fn unpack_q5_1(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let m4 = u8x16_splat(0x0F);
    let groups = scales.iter_mut().zip(mins);
    for ((blk, v), (s, m)) in src.chunks_exact(24).zip(vals.chunks_exact_mut(32)).zip(groups) {
        *s = f16_at(blk, 0);
        *m = f16_at(blk, 2);
        let (h0, h1) = q5_high(&blk[4..8]);
        let q = ld(&blk[8..24]);
        st(&mut v[..16], v128_or(v128_and(q, m4), h0));
        st(&mut v[16..], v128_or(u8x16_shr(q, 4), h1));
    }
}

/// Q8_0, see [`scalar::unpack_q8_0`](super::scalar::unpack_q8_0).
pub(crate) fn unpack_q8_0(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    for ((blk, v), s) in src.chunks_exact(34).zip(vals.chunks_exact_mut(32)).zip(scales) {
        *s = f16_at(blk, 0);
        st(&mut v[..16], ld(&blk[2..18]));
        st(&mut v[16..], ld(&blk[18..34]));
    }
}

/// Q2_K, see [`scalar::unpack_q2k`](super::scalar::unpack_q2k).
pub(crate) fn unpack_q2k(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let m3 = u8x16_splat(3);
    let groups = scales.chunks_exact_mut(16).zip(mins.chunks_exact_mut(16));
    for ((blk, v), (sc, mn)) in src.chunks_exact(84).zip(vals.chunks_exact_mut(QK_K)).zip(groups) {
        let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
        for ((s, m), &b) in sc.iter_mut().zip(mn.iter_mut()).zip(&blk[..16]) {
            *s = d * f32::from(b & 0xF);
            *m = -(dmin * f32::from(b >> 4));
        }
        for (v, qs) in v.chunks_exact_mut(128).zip(blk[16..80].chunks_exact(32)) {
            let (q0, q1) = (ld(&qs[..16]), ld(&qs[16..]));
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                let shift = 2 * j as u32;
                st(&mut v[..16], v128_and(u8x16_shr(q0, shift), m3));
                st(&mut v[16..], v128_and(u8x16_shr(q1, shift), m3));
            }
        }
    }
}

/// Q3_K, see [`scalar::unpack_q3k`](super::scalar::unpack_q3k).
pub(crate) fn unpack_q3k(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    let (m3, one, four) = (u8x16_splat(3), u8x16_splat(1), i8x16_splat(4));
    for ((blk, v), sc) in src.chunks_exact(110).zip(vals.chunks_exact_mut(QK_K)).zip(scales.chunks_exact_mut(16)) {
        let d = f16_at(blk, 108);
        for (s, b) in sc.iter_mut().zip(q3k_scales(&blk[96..108])) {
            *s = d * (f32::from(b as i8) - 32.0);
        }
        let (hm0, hm1) = (ld(&blk[..16]), ld(&blk[16..32]));
        for (c, (v, qs)) in v.chunks_exact_mut(128).zip(blk[32..96].chunks_exact(32)).enumerate() {
            let (q0, q1) = (ld(&qs[..16]), ld(&qs[16..]));
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                let (shift, bit) = (2 * j as u32, (4 * c + j) as u32);
                let val = |q, hm| {
                    let low = v128_and(u8x16_shr(q, shift), m3);
                    let high = i8x16_shl(v128_and(u8x16_shr(hm, bit), one), 2);
                    i8x16_sub(v128_or(low, high), four)
                };
                st(&mut v[..16], val(q0, hm0));
                st(&mut v[16..], val(q1, hm1));
            }
        }
    }
}

/// Q4_K, see [`scalar::unpack_q4k`](super::scalar::unpack_q4k).
pub(crate) fn unpack_q4k(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let m4 = u8x16_splat(0x0F);
    let groups = scales.chunks_exact_mut(8).zip(mins.chunks_exact_mut(8));
    for ((blk, v), (sc, mn)) in src.chunks_exact(144).zip(vals.chunks_exact_mut(QK_K)).zip(groups) {
        k4_scales(blk, sc, mn);
        for (v, qs) in v.chunks_exact_mut(64).zip(blk[16..144].chunks_exact(32)) {
            let (q0, q1) = (ld(&qs[..16]), ld(&qs[16..]));
            st(&mut v[..16], v128_and(q0, m4));
            st(&mut v[16..32], v128_and(q1, m4));
            st(&mut v[32..48], u8x16_shr(q0, 4));
            st(&mut v[48..], u8x16_shr(q1, 4));
        }
    }
}

/// Q5_K, see [`scalar::unpack_q5k`](super::scalar::unpack_q5k).
pub(crate) fn unpack_q5k(src: &[u8], vals: &mut [i8], scales: &mut [f32], mins: &mut [f32]) {
    let (m4, one) = (u8x16_splat(0x0F), u8x16_splat(1));
    let groups = scales.chunks_exact_mut(8).zip(mins.chunks_exact_mut(8));
    for ((blk, v), (sc, mn)) in src.chunks_exact(176).zip(vals.chunks_exact_mut(QK_K)).zip(groups) {
        k4_scales(blk, sc, mn);
        let (h0, h1) = (ld(&blk[16..32]), ld(&blk[32..48]));
        for (c, (v, qs)) in v.chunks_exact_mut(64).zip(blk[48..176].chunks_exact(32)).enumerate() {
            let (q0, q1) = (ld(&qs[..16]), ld(&qs[16..]));
            let high = |h, bit: u32| i8x16_shl(v128_and(u8x16_shr(h, bit), one), 4);
            let (b0, b1) = (2 * c as u32, 2 * c as u32 + 1);
            st(&mut v[..16], v128_or(v128_and(q0, m4), high(h0, b0)));
            st(&mut v[16..32], v128_or(v128_and(q1, m4), high(h1, b0)));
            st(&mut v[32..48], v128_or(u8x16_shr(q0, 4), high(h0, b1)));
            st(&mut v[48..], v128_or(u8x16_shr(q1, 4), high(h1, b1)));
        }
    }
}

/// Q6_K, see [`scalar::unpack_q6k`](super::scalar::unpack_q6k).
pub(crate) fn unpack_q6k(src: &[u8], vals: &mut [i8], scales: &mut [f32], _mins: &mut [f32]) {
    let (m4, m3, off) = (u8x16_splat(0x0F), u8x16_splat(3), i8x16_splat(32));
    for ((blk, v), sc) in src.chunks_exact(210).zip(vals.chunks_exact_mut(QK_K)).zip(scales.chunks_exact_mut(16)) {
        let d = f16_at(blk, 208);
        for (s, &b) in sc.iter_mut().zip(&blk[192..208]) {
            *s = d * f32::from(b as i8);
        }
        let (ql, qh) = (&blk[..128], &blk[128..192]);
        for ((v, ql), qh) in v.chunks_exact_mut(128).zip(ql.chunks_exact(64)).zip(qh.chunks_exact(32)) {
            for h in 0..2 {
                let at = 16 * h;
                let (a, b, hq) = (ld(&ql[at..at + 16]), ld(&ql[32 + at..48 + at]), ld(&qh[at..at + 16]));
                let plane = |k: u32| i8x16_shl(v128_and(u8x16_shr(hq, 2 * k), m3), 4);
                st(&mut v[at..at + 16], i8x16_sub(v128_or(v128_and(a, m4), plane(0)), off));
                st(&mut v[32 + at..48 + at], i8x16_sub(v128_or(v128_and(b, m4), plane(1)), off));
                st(&mut v[64 + at..80 + at], i8x16_sub(v128_or(u8x16_shr(a, 4), plane(2)), off));
                st(&mut v[96 + at..112 + at], i8x16_sub(v128_or(u8x16_shr(b, 4), plane(3)), off));
            }
        }
    }
}

/// Four f16 (in the low halves of u32 lanes) to f32, as
/// [`f16_to_f32`](super::layout::f16_to_f32) does.
#[inline(always)]
fn f16x4_to_f32x4(h: v128) -> v128 {
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let mag = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
    let finite = f32x4_mul(mag, f32x4_splat(f32::from_bits(0x7780_0000)));
    let special = v128_or(mag, u32x4_splat(0x7f80_0000));
    let is_special = u32x4_ge(mag, u32x4_splat(0x0f80_0000));
    v128_or(v128_bitselect(special, finite, is_special), sign)
}

/// F16 row bytes to f32, eight at a time.
pub(crate) fn unpack_f16(src: &[u8], out: &mut [f32]) {
    let (cs, co) = (src.chunks_exact(16), out.chunks_exact_mut(8));
    let (rs, ro) = (cs.remainder(), co.into_remainder());
    super::scalar::unpack_f16(rs, ro);
    for (s, o) in src.chunks_exact(16).zip(out.chunks_exact_mut(8)) {
        let h = ld(s);
        st(&mut o[..4], f16x4_to_f32x4(u32x4_extend_low_u16x8(h)));
        st(&mut o[4..], f16x4_to_f32x4(u32x4_extend_high_u16x8(h)));
    }
}

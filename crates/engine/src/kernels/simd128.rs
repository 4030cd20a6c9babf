//! wasm `simd128` kernels: the same integer math as [`scalar`](super::scalar),
//! sixteen lanes at a time, and the same f32 operations in the same order
//! (see `scalar::dot_legacy`, `scalar::dot_k` and `scalar::fdot`), without
//! fused multiply-adds (wasm has none), so the results are bit-identical.
//!
//! The dot products are generic over the instruction that multiplies and
//! adds 16 byte pairs ([`IDot`]): here widening multiplies ([`Widening`]);
//! the relaxed-SIMD backend instantiates the same code with its single
//! instruction (`super::relaxed`).

use core::arch::wasm32::*;

use super::activations::{Activations, Token32, TokenK};
use super::layout::{f16_at, k4_scale_bytes, q3k_scales, QK_K};
use super::scalar::{self, KRow, KRowMut, LegacyRow, LegacyRowMut};
use super::{
    GgmlDType, KDot, KPackedFn, KTile, KTileFn, KUnpackFn, Kernels, LegacyDot, LegacyPackedFn, LegacyTile, LegacyTileFn, LegacyUnpackFn,
};

/// Loads 16 bytes from the start of `s`.
#[inline(always)]
pub(crate) fn ld<T: Copy>(s: &[T]) -> v128 {
    assert!(core::mem::size_of_val(s) >= 16);
    // SAFETY: `s` holds at least 16 readable bytes (checked above; the check
    // folds away on fixed-size chunks); wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// Loads 16 bytes at element `at` of `p`, unchecked: for the inner loops,
/// whose callers check every slice's length once up front.
///
/// # Safety
///
/// `p.add(at)` and the 16 bytes from it lie in one live allocation.
#[inline(always)]
unsafe fn ld_at<T>(p: *const T, at: usize) -> v128 {
    // SAFETY: the caller's contract; wasm loads need no alignment.
    unsafe { v128_load(p.add(at).cast()) }
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
pub(crate) fn hsum_f32(v: v128) -> f32 {
    let v = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let v = f32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
    f32x4_extract_lane::<0>(v)
}

/// Sum of the four i32 lanes.
#[inline(always)]
pub(crate) fn hsum_i32(v: v128) -> i32 {
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

/// The lane sums of four i32x4: `[Σv0, Σv1, Σv2, Σv3]`.
#[inline(always)]
pub(crate) fn hsum_i32x4(v0: v128, v1: v128, v2: v128, v3: v128) -> v128 {
    let a = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v0, v1), i32x4_shuffle::<2, 6, 3, 7>(v0, v1));
    let b = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v2, v3), i32x4_shuffle::<2, 6, 3, 7>(v2, v3));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
}

/// The 4×4 transpose of four vectors' 32-bit lanes: lane `j` of output `i`
/// is lane `i` of input `j`.
#[inline(always)]
fn transpose4(v: [v128; 4]) -> [v128; 4] {
    let t0 = i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]);
    let t1 = i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]);
    let t2 = i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]);
    let t3 = i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]);
    [
        i32x4_shuffle::<0, 1, 4, 5>(t0, t2),
        i32x4_shuffle::<2, 3, 6, 7>(t0, t2),
        i32x4_shuffle::<0, 1, 4, 5>(t1, t3),
        i32x4_shuffle::<2, 3, 6, 7>(t1, t3),
    ]
}

/// One accumulation step: `acc + f32(isum) · sd`, lane by lane.
#[inline(always)]
fn accumulate(acc: v128, isum: v128, sd: v128) -> v128 {
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(isum), sd))
}

/// Multiply-adds of byte pairs into i32 lanes, exact for activations `q`
/// (signed bytes, never -128) and weights `u` (bytes below 128; the
/// widening kind takes any signed byte).
///
/// Code generic over it must call it outside closures: a closure is a
/// function of its own, compiled without the relaxed backend's target
/// feature, into which its instruction cannot be inlined.
pub(crate) trait IDot {
    /// `acc` plus four i32 partial sums of `Σ q[i]·u[i]` over 16 pairs, in
    /// any lanes (only their total is meant).
    fn dot(q: v128, u: v128, acc: v128) -> v128;

    /// `acc` plus four i32 partial sums over 32 pairs (two vectors each).
    #[inline(always)]
    fn dot2(q0: v128, u0: v128, q1: v128, u1: v128, acc: v128) -> v128 {
        Self::dot(q1, u1, Self::dot(q0, u0, acc))
    }

    /// A running sum of products by lane: see [`IDot::lanes`].
    type Lanes: Copy;

    /// An empty running sum.
    fn lanes_zero() -> Self::Lanes;

    /// Adds the products of `q` and `u` to `acc`.
    fn lanes_dot(q: v128, u: v128, acc: Self::Lanes) -> Self::Lanes;

    /// The i32 lanes of a running sum: lane `m` holds the products of bytes
    /// `4m..4m + 4` of every vector added (what [`interleave`] lays out).
    fn lanes(acc: Self::Lanes) -> v128;
}

/// [`IDot`] with `simd128`'s widening multiplies: two products fit an i16
/// (`|q·u| ≤ 127·128`), so pairs are added before widening to i32.
pub(crate) struct Widening;

impl IDot for Widening {
    #[inline(always)]
    fn dot(q: v128, u: v128, acc: v128) -> v128 {
        let p = i16x8_add(i16x8_extmul_low_i8x16(q, u), i16x8_extmul_high_i8x16(q, u));
        i32x4_add(acc, i32x4_extadd_pairwise_i16x8(p))
    }

    #[inline(always)]
    fn dot2(q0: v128, u0: v128, q1: v128, u1: v128, acc: v128) -> v128 {
        let lo = i16x8_add(i16x8_extmul_low_i8x16(q0, u0), i16x8_extmul_low_i8x16(q1, u1));
        let hi = i16x8_add(i16x8_extmul_high_i8x16(q0, u0), i16x8_extmul_high_i8x16(q1, u1));
        i32x4_add(acc, i32x4_add(i32x4_extadd_pairwise_i16x8(lo), i32x4_extadd_pairwise_i16x8(hi)))
    }

    /// Bytes 0..8 in pairs `[01, 23, 45, 67]`, bytes 8..16 likewise.
    type Lanes = (v128, v128);

    #[inline(always)]
    fn lanes_zero() -> Self::Lanes {
        (i32x4_splat(0), i32x4_splat(0))
    }

    #[inline(always)]
    fn lanes_dot(q: v128, u: v128, acc: Self::Lanes) -> Self::Lanes {
        (
            i32x4_add(acc.0, i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(q, u))),
            i32x4_add(acc.1, i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(q, u))),
        )
    }

    #[inline(always)]
    fn lanes(acc: Self::Lanes) -> v128 {
        i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(acc.0, acc.1), i32x4_shuffle::<1, 3, 5, 7>(acc.0, acc.1))
    }
}

/// The largest magnitude of 32 values (NaN if any is NaN).
#[inline(always)]
pub(crate) fn amax32(x: &[f32]) -> f32 {
    let v: [v128; 8] = core::array::from_fn(|k| ld(&x[4 * k..4 * k + 4]));
    hmax_f32(v.iter().fold(f32x4_splat(0.0), |m, &v| f32x4_max(m, f32x4_abs(v))))
}

/// See [`scalar::round_block`].
#[inline(always)]
pub(crate) fn round_block(x: &[f32], id: f32, q: &mut [i8]) -> (i32, i32) {
    let id = f32x4_splat(id);
    let i: [v128; 8] = core::array::from_fn(|k| i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(ld(&x[4 * k..4 * k + 4]), id))));
    let a = i8x16_narrow_i16x8(i16x8_narrow_i32x4(i[0], i[1]), i16x8_narrow_i32x4(i[2], i[3]));
    let b = i8x16_narrow_i16x8(i16x8_narrow_i32x4(i[4], i[5]), i16x8_narrow_i32x4(i[6], i[7]));
    st(&mut q[..16], a);
    st(&mut q[16..32], b);
    let sum = |v| hsum_i32(i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(v)));
    (sum(a), sum(b))
}

/// `isum - OFFSET · qsum`, lane by lane.
#[inline(always)]
fn offset<const OFFSET: i32>(isum: v128, qsum: v128) -> v128 {
    if OFFSET == 0 {
        isum
    } else {
        i32x4_sub(isum, i32x4_mul(qsum, i32x4_splat(OFFSET)))
    }
}

/// The four group sums `Σq` of groups `4j..4j + 4` of super-block `s`.
#[inline(always)]
fn group_sums<const G: usize>(t: &TokenK<'_>, s: usize, j: usize) -> v128 {
    if G == 16 {
        ld(&t.bsum16[s * 16 + 4 * j..])
    } else {
        let (v0, v1) = (ld(&t.bsum16[s * 16 + 8 * j..]), ld(&t.bsum16[s * 16 + 8 * j + 4..]));
        i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(v0, v1), i32x4_shuffle::<1, 3, 5, 7>(v0, v1))
    }
}

/// The group sums `Σq` of super-block `sb` as i16 lanes: groups of 16 in
/// two vectors, groups of 32 in the first (the second unused).
#[inline(always)]
fn group_sums_i16<const G: usize>(t: &TokenK<'_>, sb: usize) -> (v128, v128) {
    if G == 16 {
        let b = &t.bsum16_i16[16 * sb..16 * sb + 16];
        (ld(&b[..8]), ld(&b[8..]))
    } else {
        (ld(&t.bsum32_i16[8 * sb..8 * sb + 8]), i16x8_splat(0))
    }
}

/// The integer scales (or minimums) `c[g0..]` of a super-block's groups as
/// i16 lanes, in the order of [`group_sums_i16`] (each |c| ≤ 128: the
/// narrowing is exact).
#[inline(always)]
fn group_factors_i16<const G: usize>(c: &[i32], g0: usize) -> (v128, v128) {
    if G == 16 {
        let c = &c[g0..g0 + 16];
        (i16x8_narrow_i32x4(ld(&c[..4]), ld(&c[4..8])), i16x8_narrow_i32x4(ld(&c[8..12]), ld(&c[12..])))
    } else {
        let c = &c[g0..g0 + 8];
        (i16x8_narrow_i32x4(ld(&c[..4]), ld(&c[4..])), i16x8_splat(0))
    }
}

/// Adds four groups' sums to the super-block's integer accumulators:
/// `acc_sc += sc·(S - OFFSET·Σq)`, `acc_m += m·Σq`.
#[inline(always)]
fn k_groups<const OFFSET: i32, const MIN: bool>(acc: (v128, v128), s4: v128, bs4: v128, sc4: v128, m4: v128) -> (v128, v128) {
    let s4 = if OFFSET == 0 { s4 } else { i32x4_sub(s4, i32x4_mul(bs4, i32x4_splat(OFFSET))) };
    let sc = i32x4_add(acc.0, i32x4_mul(s4, sc4));
    let m = if MIN { i32x4_add(acc.1, i32x4_mul(bs4, m4)) } else { acc.1 };
    (sc, m)
}

/// Interleaves runs of four groups of `G` bytes (16 or 32) for the tiled
/// dot products: vector `i` of a run (16 bytes) holds bytes `4i..4i + 4` of
/// each of its four groups, so that a dot product's lane `j` sums group `j`
/// with no horizontal sum. A last run with fewer groups is padded with
/// zeros: `dst` holds `⌈groups / 4⌉ · 4G` bytes.
pub(crate) fn interleave<const G: usize>(src: &[i8], dst: &mut [i8]) {
    let groups = src.len() / G;
    let z = i32x4_splat(0);
    for (run, out) in dst.chunks_exact_mut(4 * G).enumerate() {
        for h in 0..G / 16 {
            let v: [v128; 4] = core::array::from_fn(|j| {
                let g = 4 * run + j;
                if g < groups {
                    ld(&src[g * G + 16 * h..g * G + 16 * h + 16])
                } else {
                    z
                }
            });
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]);
            let t1 = i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]);
            let t2 = i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]);
            let o = &mut out[64 * h..64 * h + 64];
            st(&mut o[..16], i32x4_shuffle::<0, 1, 4, 5>(t0, t2));
            st(&mut o[16..32], i32x4_shuffle::<2, 3, 6, 7>(t0, t2));
            st(&mut o[32..48], i32x4_shuffle::<0, 1, 4, 5>(t1, t3));
            st(&mut o[48..], i32x4_shuffle::<2, 3, 6, 7>(t1, t3));
        }
    }
}

/// Tokens per tile: `out[TILE_TOKENS · row + token]`.
pub(crate) const TILE_TOKENS: usize = 4;

/// Up to two unpacked legacy rows (values [`interleave`]d by 32, scales
/// padded with zeros to whole runs of four) dot up to four tokens:
/// `out[TILE_TOKENS·r + t]` is what [`scalar::dot_legacy`] gives for row `r` and token `t`, bit for
/// bit: the lanes of a run's integer sums are its four blocks, so the f32
/// steps are the scalar code's four lanes.
#[inline(always)]
fn tile_legacy<D: IDot, const OFFSET: i32, const R: usize, const T: usize>(w: [LegacyRow<'_>; R], t: [Token32<'_>; T], out: &mut [f32; 8]) {
    let blocks = t[0].d.len();
    let runs = blocks.div_ceil(4);
    assert!(t.iter().all(|t| t.d.len() == blocks && t.qsum.len() == blocks && t.qi.len() >= 128 * runs));
    assert!(w.iter().all(|w| w.vals.len() >= 128 * runs && w.scales.len() >= 4 * runs));
    let (qi, vals): ([*const i8; T], [*const i8; R]) = (t.map(|t| t.qi.as_ptr()), w.map(|w| w.vals.as_ptr()));
    let mut acc = [[f32x4_splat(0.0); T]; R];
    for n in 0..runs {
        let at = 128 * n;
        let mut s = [[D::lanes_zero(); T]; R];
        // Kept a loop (not unrolled, as in `tile_k`): unrolled, LLVM hoists
        // the loads of all eight steps, and V8, allocating registers for
        // the wasm as written, spills the tile's accumulators.
        for i in 0..core::hint::black_box(8) {
            // SAFETY: `at + 16i + 16 ≤ 128·runs`, within every `qi` and `vals` (checked above).
            let q: [v128; T] = core::array::from_fn(|k| unsafe { ld_at(qi[k], at + 16 * i) });
            for r in 0..R {
                // SAFETY: as above.
                let u = unsafe { ld_at(vals[r], at + 16 * i) };
                for k in 0..T {
                    s[r][k] = D::lanes_dot(q[k], u, s[r][k]);
                }
            }
        }
        let b = 4 * n;
        for k in 0..T {
            let (d, qsum) = if b + 4 <= blocks {
                // SAFETY: `b + 4 ≤ blocks` = the length of `d` and `qsum` (checked above).
                unsafe { (ld_at(t[k].d.as_ptr(), b), ld_at(t[k].qsum.as_ptr(), b)) }
            } else {
                let (mut d, mut qs) = ([0f32; 4], [0i32; 4]);
                d[..blocks - b].copy_from_slice(&t[k].d[b..]);
                qs[..blocks - b].copy_from_slice(&t[k].qsum[b..]);
                (ld(&d), ld(&qs))
            };
            for r in 0..R {
                // Missing blocks of a last run have zero scales: 0 · 0 added.
                // SAFETY: `b + 4 ≤ 4·runs ≤` the length of `scales` (checked above).
                let sd = f32x4_mul(unsafe { ld_at(w[r].scales.as_ptr(), b) }, d);
                acc[r][k] = accumulate(acc[r][k], offset::<OFFSET>(D::lanes(s[r][k]), qsum), sd);
            }
        }
    }
    for r in 0..R {
        for k in 0..T {
            out[TILE_TOKENS * r + k] = hsum_f32(acc[r][k]);
        }
    }
}

/// Every token of `x` against every unpacked legacy row of `w` (values
/// [`interleave`]d, scales padded to whole runs of four), in tiles of two
/// rows by four tokens: `out[t · w.len() + i]` is what [`scalar::dot_legacy`]
/// gives for row `i` and token `t`, plus with `MIN` the minimum term
/// ([`fdot`] of the row's minimums and the token's `d·Σq`), bit for bit.
#[inline(always)]
pub(crate) fn legacy_tiles<D: IDot, const OFFSET: i32, const MIN: bool>(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) {
    let (n, tokens) = (w.len(), x.tokens());
    assert!(out.len() >= n * tokens);
    macro_rules! go {
        ($r:literal, $t:literal, $i0:expr, $toks:expr, $got:expr) => {
            tile_legacy::<D, OFFSET, $r, $t>(core::array::from_fn(|i| w[$i0 + i]), core::array::from_fn(|i| $toks[i]), $got)
        };
    }
    for t0 in (0..tokens).step_by(TILE_TOKENS) {
        let nt = (tokens - t0).min(TILE_TOKENS);
        let toks: [Token32<'_>; TILE_TOKENS] = core::array::from_fn(|k| x.token32(t0 + k.min(nt - 1)));
        for i0 in (0..n).step_by(2) {
            let nr = (n - i0).min(2);
            let mut got = [0f32; 8];
            match (nr, nt) {
                (2, 4) => go!(2, 4, i0, toks, &mut got),
                (2, 3) => go!(2, 3, i0, toks, &mut got),
                (2, 2) => go!(2, 2, i0, toks, &mut got),
                (2, 1) => go!(2, 1, i0, toks, &mut got),
                (1, 4) => go!(1, 4, i0, toks, &mut got),
                (1, 3) => go!(1, 3, i0, toks, &mut got),
                (1, 2) => go!(1, 2, i0, toks, &mut got),
                _ => go!(1, 1, i0, toks, &mut got),
            }
            for r in 0..nr {
                for (k, tok) in toks[..nt].iter().enumerate() {
                    let mut v = got[TILE_TOKENS * r + k];
                    if MIN {
                        v += fdot(w[i0 + r].mins, tok.sum32);
                    }
                    out[(t0 + k) * n + i0 + r] = v;
                }
            }
        }
    }
}

/// Up to two unpacked K-quant rows (values [`interleave`]d by `G`) dot up to
/// four tokens: `out[TILE_TOKENS·r + t]` is what [`scalar::dot_k`] gives, bit for bit.
#[inline(always)]
fn tile_k<D: IDot, const G: usize, const OFFSET: i32, const MIN: bool, const R: usize, const T: usize>(
    w: [KRow<'_>; R],
    t: [TokenK<'_>; T],
    out: &mut [f32; 8],
) {
    let per = QK_K / G;
    let z = i32x4_splat(0);
    let supers = t[0].d.len();
    let qi = t.map(|t| if G == 16 { t.qi16 } else { t.qi32 });
    assert!(t.iter().zip(&qi).all(|(t, qi)| t.d.len() == supers
        && t.bsum16.len() == 16 * supers
        && t.bsum16_i16.len() == 16 * supers
        && t.bsum32_i16.len() == 8 * supers
        && qi.len() >= QK_K * supers));
    assert!(w.iter().all(|w| {
        let groups = per * supers;
        w.vals.len() >= QK_K * supers
            && w.sc.len() >= groups
            && w.d.len() >= supers
            && (!MIN || (w.m.len() >= groups && w.dmin.len() >= supers))
    }));
    let (qi, vals) = (qi.map(<[i8]>::as_ptr), w.map(|w| w.vals.as_ptr()));
    // The f32 steps of four tokens at once (lane `k` for token `k`) into
    // `acc[r][sb % 4]`: lane `k` of `acc[r][j]` is the scalar code's
    // `acc[j]` for row `r` and token `k`, the same additions in the same
    // order. Lanes past `T` compute unused values.
    let mut acc = [[f32x4_splat(0.0); 4]; R];
    for sb in 0..supers {
        let mut ints = [[(z, z); T]; R];
        for j in 0..per / 4 {
            let at = sb * QK_K + j * 4 * G;
            let mut s = [[D::lanes_zero(); T]; R];
            for i in 0..core::hint::black_box(G / 4) {
                // SAFETY: `at + 16i + 16 ≤ 256·supers`, within every `qi` and `vals` (checked above).
                let q: [v128; T] = core::array::from_fn(|k| unsafe { ld_at(qi[k], at + 16 * i) });
                for r in 0..R {
                    // SAFETY: as above.
                    let u = unsafe { ld_at(vals[r], at + 16 * i) };
                    for k in 0..T {
                        s[r][k] = D::lanes_dot(q[k], u, s[r][k]);
                    }
                }
            }
            for r in 0..R {
                let g = sb * per + 4 * j;
                // SAFETY: `g + 4 ≤ per·supers`, within `sc` (checked above).
                let sc4 = unsafe { ld_at(w[r].sc.as_ptr(), g) };
                for k in 0..T {
                    ints[r][k].0 = i32x4_add(ints[r][k].0, i32x4_mul(D::lanes(s[r][k]), sc4));
                }
            }
        }
        // The part that does not depend on the values `u`, `Σ_g c_g·Σq_g`
        // (`c` the minimums, or the scales times the offset), once per
        // super-block in 16-bit lanes: each |c| ≤ 128 and |Σq| ≤ 32·127, so
        // the products and their pairs fit i32.
        if MIN || OFFSET != 0 {
            let b: [(v128, v128); T] = core::array::from_fn(|k| group_sums_i16::<G>(&t[k], sb));
            for r in 0..R {
                let c = group_factors_i16::<G>(if MIN { w[r].m } else { w[r].sc }, sb * per);
                for k in 0..T {
                    let corr = if G == 16 {
                        i32x4_add(i32x4_dot_i16x8(c.0, b[k].0), i32x4_dot_i16x8(c.1, b[k].1))
                    } else {
                        i32x4_dot_i16x8(c.0, b[k].0)
                    };
                    if MIN {
                        ints[r][k].1 = corr;
                    } else {
                        ints[r][k].0 = i32x4_sub(ints[r][k].0, i32x4_mul(corr, i32x4_splat(OFFSET)));
                    }
                }
            }
        }
        let dx = f32x4(t[0].d[sb], t[1.min(T - 1)].d[sb], t[2.min(T - 1)].d[sb], t[3.min(T - 1)].d[sb]);
        for r in 0..R {
            let lane = |k: usize, m: bool| {
                if k < T {
                    if m {
                        ints[r][k].1
                    } else {
                        ints[r][k].0
                    }
                } else {
                    z
                }
            };
            let isc = hsum_i32x4(lane(0, false), lane(1, false), lane(2, false), lane(3, false));
            let step = f32x4_mul(f32x4_convert_i32x4(isc), f32x4_mul(f32x4_splat(w[r].d[sb]), dx));
            let step = if MIN {
                let imin = hsum_i32x4(lane(0, true), lane(1, true), lane(2, true), lane(3, true));
                f32x4_sub(step, f32x4_mul(f32x4_convert_i32x4(imin), f32x4_mul(f32x4_splat(w[r].dmin[sb]), dx)))
            } else {
                step
            };
            acc[r][sb % 4] = f32x4_add(acc[r][sb % 4], step);
        }
    }
    for r in 0..R {
        // `(acc[0] + acc[2]) + (acc[1] + acc[3])`, as `hsum_f32` and the
        // scalar code sum their four lanes.
        let a = &acc[r];
        let sum = f32x4_add(f32x4_add(a[0], a[2]), f32x4_add(a[1], a[3]));
        let mut lanes = [0f32; 4];
        st(&mut lanes, sum);
        out[TILE_TOKENS * r..TILE_TOKENS * r + T].copy_from_slice(&lanes[..T]);
    }
}

/// Every token of `x` against every unpacked K-quant row of `w` (values
/// [`interleave`]d by `G`), in tiles of two rows by four tokens:
/// `out[t · w.len() + i]` is what [`scalar::dot_k`] gives, bit for bit.
#[inline(always)]
pub(crate) fn k_tiles<D: IDot, const G: usize, const OFFSET: i32, const MIN: bool>(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) {
    let (n, tokens) = (w.len(), x.tokens());
    assert!(out.len() >= n * tokens);
    macro_rules! go {
        ($r:literal, $t:literal, $i0:expr, $toks:expr, $got:expr) => {
            tile_k::<D, G, OFFSET, MIN, $r, $t>(core::array::from_fn(|i| w[$i0 + i]), core::array::from_fn(|i| $toks[i]), $got)
        };
    }
    for t0 in (0..tokens).step_by(TILE_TOKENS) {
        let nt = (tokens - t0).min(TILE_TOKENS);
        let toks: [TokenK<'_>; TILE_TOKENS] = core::array::from_fn(|k| x.token_k(t0 + k.min(nt - 1)));
        for i0 in (0..n).step_by(2) {
            let nr = (n - i0).min(2);
            let mut got = [0f32; 8];
            match (nr, nt) {
                (2, 4) => go!(2, 4, i0, toks, &mut got),
                (2, 3) => go!(2, 3, i0, toks, &mut got),
                (2, 2) => go!(2, 2, i0, toks, &mut got),
                (2, 1) => go!(2, 1, i0, toks, &mut got),
                (1, 4) => go!(1, 4, i0, toks, &mut got),
                (1, 3) => go!(1, 3, i0, toks, &mut got),
                (1, 2) => go!(1, 2, i0, toks, &mut got),
                _ => go!(1, 1, i0, toks, &mut got),
            }
            for r in 0..nr {
                for k in 0..nt {
                    out[(t0 + k) * n + i0 + r] = got[TILE_TOKENS * r + k];
                }
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

/// The first four bytes of four consecutive `bytes`-byte blocks from `p`,
/// one block per u32 lane (a Q4_0/Q4_1 block's `d`, and Q4_1's `m`, as the
/// low and high halves).
///
/// # Safety
/// `p + 3·bytes + 4` bytes must be readable.
#[inline(always)]
unsafe fn headers4(p: *const u8, bytes: usize) -> v128 {
    // SAFETY: within the four blocks (the caller's guarantee).
    let h = |k: usize| u32::from_le(unsafe { p.add(bytes * k).cast::<u32>().read_unaligned() });
    u32x4(h(0), h(1), h(2), h(3))
}

/// The partial sums of one Q4_0/Q4_1 block: its 16 bytes of nibbles `qs`
/// (weights 0..16 low, 16..32 high) against 32 activations `q`.
#[inline(always)]
fn q4_block<D: IDot>(qs: &[u8], q: &[i8]) -> v128 {
    assert!(qs.len() >= 16 && q.len() >= 32);
    // SAFETY: the lengths were just checked.
    unsafe { q4_block_at::<D>(qs.as_ptr(), q.as_ptr()) }
}

/// [`q4_block`] at raw pointers.
///
/// # Safety
/// 16 bytes at `qs` and 32 at `q` must be readable.
#[inline(always)]
unsafe fn q4_block_at<D: IDot>(qs: *const u8, q: *const i8) -> v128 {
    // SAFETY: the caller's guarantee.
    let (v, q0, q1) = unsafe { (ld_at(qs, 0), ld_at(q, 0), ld_at(q, 16)) };
    let (lo, hi) = (v128_and(v, u8x16_splat(0x0F)), u16x8_shr(v128_and(v, u8x16_splat(0xF0)), 4));
    D::dot2(q0, lo, q1, hi, i32x4_splat(0))
}

/// A packed Q4_0 (`MIN` false: `d·(u - 8)`) or Q4_1 (`MIN` true: `d·u + m`)
/// row dot a token: what unpacking then [`dot_legacy`] (plus, for Q4_1,
/// [`scalar::fdot`] of the minimums and the blocks' `d·Σq`) gives, bit for bit.
#[inline(always)]
pub(crate) fn packed_q4<D: IDot, const MIN: bool>(row: &[u8], t: &Token32<'_>) -> f32 {
    let bytes = if MIN { 20 } else { 18 };
    let qs_at = if MIN { 4 } else { 2 };
    let blocks = row.len() / bytes;
    assert!(t.q.len() >= 32 * blocks && t.d.len() >= blocks && t.qsum.len() >= blocks && t.sum32.len() >= blocks);
    let (w, q) = (row.as_ptr(), t.q.as_ptr());
    let mut acc = f32x4_splat(0.0);
    // The minimum term in `scalar::fdot`'s order: blocks 16c + 4k + l into
    // `macc[k]` lane `l` for whole chunks of 16 blocks, the rest after.
    let mut macc = [f32x4_splat(0.0); 4];
    let whole = blocks / 16 * 16;
    let steps = blocks / 4;
    for n in 0..steps {
        let b = 4 * n;
        // SAFETY: blocks `b..b + 4` of the row and the token (checked above:
        // `b + 4 ≤ blocks`).
        let (mut isum, hdr, d) = unsafe {
            let at = |k: usize| w.add(bytes * (b + k) + qs_at);
            let isum = hsum_i32x4(
                q4_block_at::<D>(at(0), q.add(32 * b)),
                q4_block_at::<D>(at(1), q.add(32 * (b + 1))),
                q4_block_at::<D>(at(2), q.add(32 * (b + 2))),
                q4_block_at::<D>(at(3), q.add(32 * (b + 3))),
            );
            (isum, headers4(w.add(bytes * b), bytes), ld_at(t.d.as_ptr(), b))
        };
        // `d`, the low halves (the conversion reads only those).
        let scales = f16x4_to_f32x4(hdr);
        if !MIN {
            // SAFETY: as above.
            isum = i32x4_sub(isum, i32x4_shl(unsafe { ld_at(t.qsum.as_ptr(), b) }, 3));
        }
        acc = accumulate(acc, isum, f32x4_mul(scales, d));
        if MIN && b < whole {
            // `m`, the high halves of the same headers.
            // SAFETY: as above.
            let s32 = unsafe { ld_at(t.sum32.as_ptr(), b) };
            macc[n % 4] = f32x4_add(macc[n % 4], f32x4_mul(f16x4_to_f32x4(u32x4_shr(hdr, 16)), s32));
        }
    }
    let b = 4 * steps;
    if b < blocks {
        let mut part = [i32x4_splat(0); 3];
        let (mut sd, mut qs) = ([0f32; 4], [0i32; 4]);
        for k in 0..blocks - b {
            let at = bytes * (b + k);
            part[k] = q4_block::<D>(&row[at + qs_at..at + qs_at + 16], &t.q[32 * (b + k)..32 * (b + k) + 32]);
            sd[k] = f16_at(row, at) * t.d[b + k];
            qs[k] = t.qsum[b + k];
        }
        let mut isum = hsum_i32x4(part[0], part[1], part[2], i32x4_splat(0));
        if !MIN {
            isum = i32x4_sub(isum, i32x4_shl(ld(&qs), 3));
        }
        acc = accumulate(acc, isum, ld(&sd));
    }
    let dot = hsum_f32(acc);
    if !MIN {
        return dot;
    }
    let mut tail = [0f32; 16];
    for (m, b) in tail.iter_mut().zip(whole..blocks) {
        *m = f16_at(row, 20 * b + 2);
    }
    let tail: f32 = tail[..blocks - whole].iter().zip(&t.sum32[whole..]).map(|(x, y)| x * y).sum();
    dot + (hsum_f32(f32x4_add(f32x4_add(macc[0], macc[1]), f32x4_add(macc[2], macc[3]))) + tail)
}

/// The partial sums of one Q8_0 block (32 signed bytes `w`) against 32
/// activations `q`, with 7-bit operands only: each byte `b` is
/// `16·h + l` with `l = b & 15` and `h + 8 = (b >> 4) ^ 8` (both 0..=15),
/// so `Σ w·q = 16·Σ (h + 8)·q + Σ l·q - 128·Σq`; the last term is left to
/// the caller (its sums are per block).
#[inline(always)]
fn q8_block<D: IDot>(w: *const u8, q: *const i8) -> v128 {
    let (m4, eight) = (u8x16_splat(0x0F), u8x16_splat(8));
    // SAFETY: the caller passes a block's 32 weight bytes and 32 activations.
    let (w0, w1, q0, q1) = unsafe { (ld_at(w, 0), ld_at(w, 16), ld_at(q, 0), ld_at(q, 16)) };
    let high = |w: v128| v128_xor(u16x8_shr(v128_and(w, u8x16_splat(0xF0)), 4), eight);
    let low = D::dot2(q0, v128_and(w0, m4), q1, v128_and(w1, m4), i32x4_splat(0));
    let high = D::dot2(q0, high(w0), q1, high(w1), i32x4_splat(0));
    i32x4_add(low, i32x4_shl(high, 4))
}

/// A packed Q8_0 row dot a token: what unpacking then
/// [`scalar::dot_legacy`] gives, bit for bit (the integer block sums are
/// the same; see [`q8_block`]).
#[inline(always)]
pub(crate) fn packed_q8_0<D: IDot>(row: &[u8], t: &Token32<'_>) -> f32 {
    let blocks = row.len() / 34;
    assert!(t.q.len() >= 32 * blocks && t.d.len() >= blocks && t.qsum.len() >= blocks);
    let (w, q) = (row.as_ptr(), t.q.as_ptr());
    let mut acc = f32x4_splat(0.0);
    let steps = blocks / 4;
    for n in 0..steps {
        let b = 4 * n;
        // SAFETY: blocks `b..b + 4` of the row and the token (checked above).
        let p = unsafe {
            [
                q8_block::<D>(w.add(34 * b + 2), q.add(32 * b)),
                q8_block::<D>(w.add(34 * (b + 1) + 2), q.add(32 * (b + 1))),
                q8_block::<D>(w.add(34 * (b + 2) + 2), q.add(32 * (b + 2))),
                q8_block::<D>(w.add(34 * (b + 3) + 2), q.add(32 * (b + 3))),
            ]
        };
        let isum = i32x4_sub(hsum_i32x4(p[0], p[1], p[2], p[3]), i32x4_shl(ld(&t.qsum[b..b + 4]), 7));
        // SAFETY: as above.
        let (hdr, d) = unsafe { (headers4(w.add(34 * b), 34), ld_at(t.d.as_ptr(), b)) };
        acc = accumulate(acc, isum, f32x4_mul(f16x4_to_f32x4(hdr), d));
    }
    let b = 4 * steps;
    if b < blocks {
        let mut part = [i32x4_splat(0); 3];
        let (mut sd, mut qs) = ([0f32; 4], [0i32; 4]);
        for k in 0..blocks - b {
            // SAFETY: block `b + k < blocks` (checked above).
            part[k] = unsafe { q8_block::<D>(w.add(34 * (b + k) + 2), q.add(32 * (b + k))) };
            sd[k] = f16_at(row, 34 * (b + k)) * t.d[b + k];
            qs[k] = t.qsum[b + k];
        }
        let isum = i32x4_sub(hsum_i32x4(part[0], part[1], part[2], i32x4_splat(0)), i32x4_shl(ld(&qs), 7));
        acc = accumulate(acc, isum, ld(&sd));
    }
    hsum_f32(acc)
}

/// Packed legacy rows (`out.len()` rows back to back) dot a token, row by
/// row: Q4_0 (`KIND` 0), Q4_1 (1) or Q8_0 (8), each as its one-row kernel.
/// (The kind is a constant rather than a closure so that the relaxed
/// backend's instruction inlines.)
#[inline(always)]
pub(crate) fn packed_legacy_rows<D: IDot, const KIND: u8>(rows: &[u8], t: &Token32<'_>, out: &mut [f32]) {
    let row_bytes = rows.len() / out.len().max(1);
    for (row, o) in rows.chunks_exact(row_bytes.max(1)).zip(out.iter_mut()) {
        *o = match KIND {
            0 => packed_q4::<D, false>(row, t),
            1 => packed_q4::<D, true>(row, t),
            _ => packed_q8_0::<D>(row, t),
        };
    }
}

/// The scales (or minimums) `bytes[4j..4j + 4]` as i32x4.
#[inline(always)]
fn u8x4_to_i32x4(v: v128, j: usize) -> v128 {
    match j {
        0 => u32x4_extend_low_u16x8(u16x8_extend_low_u8x16(v)),
        1 => u32x4_extend_high_u16x8(u16x8_extend_low_u8x16(v)),
        2 => u32x4_extend_low_u16x8(u16x8_extend_high_u8x16(v)),
        _ => u32x4_extend_high_u16x8(u16x8_extend_high_u8x16(v)),
    }
}

/// One Q4_K super-block (144 bytes at `blk`) against 256 activations at
/// `x`: the integer sums `(Σ_g sc·S_g, Σ_g m·Σq)` by lanes (the caller sums
/// the lanes), `bs` the token's group sums `Σq` of groups 0..4 and 4..8.
///
/// # Safety
///
/// `blk` points at a whole super-block and `x` at 256 activations.
#[inline(always)]
unsafe fn q4k_ints<D: IDot>(blk: *const u8, x: *const i8, bs: [v128; 2]) -> (v128, v128) {
    let (m4, mh, z) = (u8x16_splat(0x0F), u8x16_splat(0xF0), i32x4_splat(0));
    // SAFETY: the 12 scale bytes are bytes 4..16 of the block.
    let scales = ld(&k4_scale_bytes(unsafe { core::slice::from_raw_parts(blk.add(4), 12) }));
    let mut p = [z; 8];
    for c in 0..4 {
        // SAFETY: bytes 16 + 32c .. + 32 of the block, activations 64c .. + 64.
        unsafe {
            let (q0, q1) = (ld_at(blk, 16 + 32 * c), ld_at(blk, 32 + 32 * c));
            let xc = x.add(64 * c);
            p[2 * c] = D::dot2(ld_at(xc, 0), v128_and(q0, m4), ld_at(xc, 16), v128_and(q1, m4), z);
            let (h0, h1) = (u16x8_shr(v128_and(q0, mh), 4), u16x8_shr(v128_and(q1, mh), 4));
            p[2 * c + 1] = D::dot2(ld_at(xc, 32), h0, ld_at(xc, 48), h1, z);
        }
    }
    let mut ints = (z, z);
    for j in 0..2 {
        let s4 = hsum_i32x4(p[4 * j], p[4 * j + 1], p[4 * j + 2], p[4 * j + 3]);
        ints = k_groups::<0, true>(ints, s4, bs[j], u8x4_to_i32x4(scales, j), u8x4_to_i32x4(scales, 2 + j));
    }
    ints
}

/// One Q6_K super-block (210 bytes at `blk`) against 256 activations at
/// `x`: `Σ_g sc·(S_g - 32·Σq)` by lanes, `bs` the group sums `Σq` of the
/// sixteen groups, four by four.
///
/// # Safety
///
/// `blk` points at a whole super-block and `x` at 256 activations.
#[inline(always)]
unsafe fn q6k_ints<D: IDot>(blk: *const u8, x: *const i8, bs: [v128; 4]) -> v128 {
    let (m4, m30, z) = (u8x16_splat(0x0F), u8x16_splat(0x30), i32x4_splat(0));
    // SAFETY: the block's 16 scales are its bytes 192..208.
    let sc = unsafe { ld_at(blk, 192) };
    let (sc_lo, sc_hi) = (i16x8_extend_low_i8x16(sc), i16x8_extend_high_i8x16(sc));
    let scales =
        [i32x4_extend_low_i16x8(sc_lo), i32x4_extend_high_i16x8(sc_lo), i32x4_extend_low_i16x8(sc_hi), i32x4_extend_high_i16x8(sc_hi)];
    let mut ints = (z, z);
    for n in 0..2 {
        // Group 8n + 2k + h: weights 128n + 32k + 16h.., plane k.
        let mut p = [z; 8];
        for h in 0..2 {
            // SAFETY: bytes of the block's ql and qh, activations of the super-block.
            unsafe {
                let (a, b, hq) = (ld_at(blk, 64 * n + 16 * h), ld_at(blk, 64 * n + 32 + 16 * h), ld_at(blk, 128 + 32 * n + 16 * h));
                let u = [
                    v128_or(v128_and(a, m4), v128_and(i16x8_shl(hq, 4), m30)),
                    v128_or(v128_and(b, m4), v128_and(i16x8_shl(hq, 2), m30)),
                    v128_or(v128_and(u16x8_shr(a, 4), m4), v128_and(hq, m30)),
                    v128_or(v128_and(u16x8_shr(b, 4), m4), v128_and(u16x8_shr(hq, 2), m30)),
                ];
                p[h] = D::dot(ld_at(x, 128 * n + 16 * h), u[0], z);
                p[2 + h] = D::dot(ld_at(x, 128 * n + 32 + 16 * h), u[1], z);
                p[4 + h] = D::dot(ld_at(x, 128 * n + 64 + 16 * h), u[2], z);
                p[6 + h] = D::dot(ld_at(x, 128 * n + 96 + 16 * h), u[3], z);
            }
        }
        for j in 0..2 {
            let s4 = hsum_i32x4(p[4 * j], p[4 * j + 1], p[4 * j + 2], p[4 * j + 3]);
            ints = k_groups::<32, false>(ints, s4, bs[2 * n + j], scales[2 * n + j], z);
        }
    }
    ints.0
}

/// Packed K-quant rows (`rows`: `out.len()` rows of `supers` super-blocks)
/// dot a token: `out[r]` is what unpacking then [`scalar::dot_k`] gives for
/// row `r`, bit for bit. Rows are read one after the other (in memory
/// order: reading several rows side by side is slower from memory); the
/// integer sums of four super-blocks are transposed into one vector, and
/// their f32 steps taken with one super-block per lane, lane `s % 4` as
/// the scalar code's `acc[s % 4]`. `Q6` picks Q6_K (else Q4_K): both are
/// written here rather than passed in, since a closure could not inline the
/// relaxed backend's instruction.
#[inline(always)]
fn packed_k_rows<D: IDot, const Q6: bool>(rows: &[u8], t: &TokenK<'_>, out: &mut [f32]) {
    let (bytes, min, d_at, dmin_at) = if Q6 { (210, false, 208, 208) } else { (144, true, 0, 2) };
    let q = t.q.as_ptr();
    let n = out.len();
    let supers = t.d.len();
    assert!(rows.len() == n * supers * bytes && t.q.len() >= QK_K * supers && t.bsum16.len() >= 16 * supers);
    let z = i32x4_splat(0);
    for (row, o) in rows.chunks_exact(supers * bytes).zip(out.iter_mut()) {
        let mut acc = f32x4_splat(0.0);
        for s0 in (0..supers).step_by(4) {
            let count = (supers - s0).min(4);
            let mut sums = [(z, z); 4];
            for (j, sum) in sums.iter_mut().enumerate().take(count) {
                let sb = s0 + j;
                // SAFETY: super-block `sb` of the row and of the token (checked above).
                let (blk, x) = unsafe { (row.as_ptr().add(sb * bytes), q.add(QK_K * sb)) };
                if Q6 {
                    let bs: [v128; 4] = core::array::from_fn(|g| group_sums::<16>(t, sb, g));
                    // SAFETY: a whole block and its super-block's activations.
                    sum.0 = unsafe { q6k_ints::<D>(blk, x, bs) };
                } else {
                    let bs = [group_sums::<32>(t, sb, 0), group_sums::<32>(t, sb, 1)];
                    // SAFETY: as above.
                    *sum = unsafe { q4k_ints::<D>(blk, x, bs) };
                }
            }
            // The lanes past `count` take 0 · (0 · 0): +0 added, no change.
            let (mut d, mut dmin, mut dx) = ([0u32; 4], [0u32; 4], [0f32; 4]);
            for j in 0..count {
                let b = &row[(s0 + j) * bytes..];
                d[j] = u32::from(u16::from_le_bytes([b[d_at], b[d_at + 1]]));
                dmin[j] = u32::from(u16::from_le_bytes([b[dmin_at], b[dmin_at + 1]]));
                dx[j] = t.d[s0 + j];
            }
            let dx = ld(&dx);
            let isc = hsum_i32x4(sums[0].0, sums[1].0, sums[2].0, sums[3].0);
            let v = f32x4_mul(f32x4_convert_i32x4(isc), f32x4_mul(f16x4_to_f32x4(ld(&d)), dx));
            let v = if min {
                let imin = hsum_i32x4(sums[0].1, sums[1].1, sums[2].1, sums[3].1);
                f32x4_sub(v, f32x4_mul(f32x4_convert_i32x4(imin), f32x4_mul(f16x4_to_f32x4(ld(&dmin)), dx)))
            } else {
                v
            };
            acc = f32x4_add(acc, v);
        }
        *o = hsum_f32(acc);
    }
}

/// Packed Q4_K rows dot a token: see [`packed_k_rows`].
#[inline(always)]
pub(crate) fn packed_q4k<D: IDot>(rows: &[u8], t: &TokenK<'_>, out: &mut [f32]) {
    packed_k_rows::<D, false>(rows, t, out);
}

/// Packed Q6_K rows dot a token: see [`packed_k_rows`].
#[inline(always)]
pub(crate) fn packed_q6k<D: IDot>(rows: &[u8], t: &TokenK<'_>, out: &mut [f32]) {
    packed_k_rows::<D, true>(rows, t, out);
}

/// See [`scalar::fdot`], whose f32 operations this performs in the same order.
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

/// Q4_0 (`MIN` false) or Q4_1 (`MIN` true) unpacked straight into the
/// tiles' order ([`interleave`] by 32, whole runs of four blocks, a last
/// run padded with zeros): the nibbles of four blocks, low halves then high
/// halves, transposed in 32-bit lanes. Scales (and minimums) as
/// [`scalar::unpack_q4_0`] / [`scalar::unpack_q4_1`] write them.
fn unpack_q4_tiled<const MIN: bool>(src: &[u8], out: LegacyRowMut<'_>) {
    let (bytes, qs_at) = if MIN { (20, 4) } else { (18, 2) };
    let blocks = src.len() / bytes;
    let (m4, mh) = (u8x16_splat(0x0F), u8x16_splat(0xF0));
    assert!(out.vals.len() >= 128 * blocks.div_ceil(4) && out.scales.len() >= blocks && (!MIN || out.mins.len() >= blocks));
    for (n, run) in out.vals.chunks_exact_mut(128).enumerate().take(blocks.div_ceil(4)) {
        let q: [v128; 4] = core::array::from_fn(|j| {
            let b = 4 * n + j;
            if b < blocks {
                ld(&src[bytes * b + qs_at..bytes * b + qs_at + 16])
            } else {
                i32x4_splat(0)
            }
        });
        let lo = transpose4(q.map(|q| v128_and(q, m4)));
        let hi = transpose4(q.map(|q| u16x8_shr(v128_and(q, mh), 4)));
        for (i, v) in lo.into_iter().chain(hi).enumerate() {
            st(&mut run[16 * i..16 * i + 16], v);
        }
    }
    for (b, blk) in src.chunks_exact(bytes).enumerate() {
        out.scales[b] = f16_at(blk, 0);
        if MIN {
            out.mins[b] = f16_at(blk, 2);
        }
    }
}

/// Q4_K unpacked straight into the tiles' order ([`interleave`] by 32):
/// the low and high nibbles of two chunks of 32 bytes are four groups,
/// transposed in 32-bit lanes; scales as [`scalar::unpack_q4k`] writes them.
fn unpack_q4k_tiled(src: &[u8], out: KRowMut<'_>) {
    let (m4, mh) = (u8x16_splat(0x0F), u8x16_splat(0xF0));
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(8).zip(out.m.chunks_exact_mut(8));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(144).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        k4_header(blk, sc, mn, d, dmin);
        // Quad j: groups 4j..4j + 4 are the low and high nibbles of chunks 2j and 2j + 1.
        for (j, v) in v.chunks_exact_mut(128).enumerate() {
            let (a, b) = (&blk[16 + 64 * j..48 + 64 * j], &blk[48 + 64 * j..80 + 64 * j]);
            let (a0, a1, b0, b1) = (ld(&a[..16]), ld(&a[16..]), ld(b), ld(&b[16..]));
            let lo = |x: v128| v128_and(x, m4);
            let hi = |x: v128| u16x8_shr(v128_and(x, mh), 4);
            let first = transpose4([lo(a0), hi(a0), lo(b0), hi(b0)]);
            let second = transpose4([lo(a1), hi(a1), lo(b1), hi(b1)]);
            for (i, x) in first.into_iter().chain(second).enumerate() {
                st(&mut v[16 * i..16 * i + 16], x);
            }
        }
    }
}

/// Q6_K unpacked straight into the tiles' order ([`interleave`] by 16):
/// each quad of groups is four 16-byte vectors of values, transposed in
/// 32-bit lanes; scales as [`scalar::unpack_q6k`] writes them.
fn unpack_q6k_tiled(src: &[u8], out: KRowMut<'_>) {
    let (m4, m30) = (u8x16_splat(0x0F), u8x16_splat(0x30));
    let rows = src.chunks_exact(210).zip(out.vals.chunks_exact_mut(QK_K)).zip(out.sc.chunks_exact_mut(16)).zip(out.d.iter_mut());
    for (((blk, v), sc), d) in rows {
        *d = f16_at(blk, 208);
        let scales = ld(&blk[192..208]);
        let (sc_lo, sc_hi) = (i16x8_extend_low_i8x16(scales), i16x8_extend_high_i8x16(scales));
        st(&mut sc[..4], i32x4_extend_low_i16x8(sc_lo));
        st(&mut sc[4..8], i32x4_extend_high_i16x8(sc_lo));
        st(&mut sc[8..12], i32x4_extend_low_i16x8(sc_hi));
        st(&mut sc[12..], i32x4_extend_high_i16x8(sc_hi));
        for n in 0..2 {
            // u[k][h]: group 8n + 2k + h (weights 128n + 32k + 16h..).
            let mut u = [[i32x4_splat(0); 2]; 4];
            for h in 0..2 {
                let (a, b, hq) = (ld(&blk[64 * n + 16 * h..]), ld(&blk[64 * n + 32 + 16 * h..]), ld(&blk[128 + 32 * n + 16 * h..]));
                u[0][h] = v128_or(v128_and(a, m4), v128_and(i16x8_shl(hq, 4), m30));
                u[1][h] = v128_or(v128_and(b, m4), v128_and(i16x8_shl(hq, 2), m30));
                u[2][h] = v128_or(v128_and(u16x8_shr(a, 4), m4), v128_and(hq, m30));
                u[3][h] = v128_or(v128_and(u16x8_shr(b, 4), m4), v128_and(u16x8_shr(hq, 2), m30));
            }
            // Quads 2n and 2n + 1: groups 8n + 4p .. + 4, that is planes 2p and 2p + 1.
            for p in 0..2 {
                let quad = transpose4([u[2 * p][0], u[2 * p][1], u[2 * p + 1][0], u[2 * p + 1][1]]);
                let at = 128 * n + 64 * p;
                for (i, x) in quad.into_iter().enumerate() {
                    st(&mut v[at + 16 * i..at + 16 * i + 16], x);
                }
            }
        }
    }
}

/// Q4_0, see [`scalar::unpack_q4_0`].
pub(crate) fn unpack_q4_0(src: &[u8], out: LegacyRowMut<'_>) {
    let m4 = u8x16_splat(0x0F);
    for ((blk, v), s) in src.chunks_exact(18).zip(out.vals.chunks_exact_mut(32)).zip(out.scales) {
        *s = f16_at(blk, 0);
        let q = ld(&blk[2..18]);
        st(&mut v[..16], v128_and(q, m4));
        st(&mut v[16..], u8x16_shr(q, 4));
    }
}

/// Q4_1, see [`scalar::unpack_q4_1`].
pub(crate) fn unpack_q4_1(src: &[u8], out: LegacyRowMut<'_>) {
    let m4 = u8x16_splat(0x0F);
    let groups = out.scales.iter_mut().zip(out.mins);
    for ((blk, v), (s, m)) in src.chunks_exact(20).zip(out.vals.chunks_exact_mut(32)).zip(groups) {
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

/// Q5_0, see [`scalar::unpack_q5_0`].
pub(crate) fn unpack_q5_0(src: &[u8], out: LegacyRowMut<'_>) {
    let m4 = u8x16_splat(0x0F);
    for ((blk, v), s) in src.chunks_exact(22).zip(out.vals.chunks_exact_mut(32)).zip(out.scales) {
        *s = f16_at(blk, 0);
        let (h0, h1) = q5_high(&blk[2..6]);
        let q = ld(&blk[6..22]);
        st(&mut v[..16], v128_or(v128_and(q, m4), h0));
        st(&mut v[16..], v128_or(u8x16_shr(q, 4), h1));
    }
}

/// Q5_1, see [`scalar::unpack_q5_1`].
pub(crate) fn unpack_q5_1(src: &[u8], out: LegacyRowMut<'_>) {
    let m4 = u8x16_splat(0x0F);
    let groups = out.scales.iter_mut().zip(out.mins);
    for ((blk, v), (s, m)) in src.chunks_exact(24).zip(out.vals.chunks_exact_mut(32)).zip(groups) {
        *s = f16_at(blk, 0);
        *m = f16_at(blk, 2);
        let (h0, h1) = q5_high(&blk[4..8]);
        let q = ld(&blk[8..24]);
        st(&mut v[..16], v128_or(v128_and(q, m4), h0));
        st(&mut v[16..], v128_or(u8x16_shr(q, 4), h1));
    }
}

/// Q8_0, see [`scalar::unpack_q8_0`].
pub(crate) fn unpack_q8_0(src: &[u8], out: LegacyRowMut<'_>) {
    for ((blk, v), s) in src.chunks_exact(34).zip(out.vals.chunks_exact_mut(32)).zip(out.scales) {
        *s = f16_at(blk, 0);
        st(&mut v[..16], ld(&blk[2..18]));
        st(&mut v[16..], ld(&blk[18..34]));
    }
}

/// Q2_K, see [`scalar::unpack_q2k`].
pub(crate) fn unpack_q2k(src: &[u8], out: KRowMut<'_>) {
    let m3 = u8x16_splat(3);
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(16).zip(out.m.chunks_exact_mut(16));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(84).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        (*d, *dmin) = (f16_at(blk, 80), f16_at(blk, 82));
        for ((s, m), &b) in sc.iter_mut().zip(mn.iter_mut()).zip(&blk[..16]) {
            *s = i32::from(b & 0xF);
            *m = i32::from(b >> 4);
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

/// Q3_K, see [`scalar::unpack_q3k`].
pub(crate) fn unpack_q3k(src: &[u8], out: KRowMut<'_>) {
    let (m3, four) = (u8x16_splat(3), u8x16_splat(4));
    let rows = src.chunks_exact(110).zip(out.vals.chunks_exact_mut(QK_K)).zip(out.sc.chunks_exact_mut(16)).zip(out.d.iter_mut());
    for (((blk, v), sc), d) in rows {
        *d = f16_at(blk, 108);
        for (s, b) in sc.iter_mut().zip(q3k_scales(&blk[96..108])) {
            *s = i32::from(b as i8) - 32;
        }
        let (hm0, hm1) = (ld(&blk[..16]), ld(&blk[16..32]));
        for (c, (v, qs)) in v.chunks_exact_mut(128).zip(blk[32..96].chunks_exact(32)).enumerate() {
            let (q0, q1) = (ld(&qs[..16]), ld(&qs[16..]));
            for (j, v) in v.chunks_exact_mut(32).enumerate() {
                let (shift, bit) = (2 * j as u32, (4 * c + j) as u32);
                let val = |q, hm| {
                    let low = v128_and(u8x16_shr(q, shift), m3);
                    let high = v128_and(i8x16_shl(u8x16_shr(hm, bit), 2), four);
                    v128_or(low, high)
                };
                st(&mut v[..16], val(q0, hm0));
                st(&mut v[16..], val(q1, hm1));
            }
        }
    }
}

/// The integer scales and minimums of a Q4_K/Q5_K block, and its `d`, `dmin`.
#[inline(always)]
fn k4_header(blk: &[u8], sc: &mut [i32], mn: &mut [i32], d: &mut f32, dmin: &mut f32) {
    (*d, *dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let b = ld(&k4_scale_bytes(&blk[4..16]));
    for j in 0..2 {
        st(&mut sc[4 * j..], u8x4_to_i32x4(b, j));
        st(&mut mn[4 * j..], u8x4_to_i32x4(b, 2 + j));
    }
}

/// Q4_K, see [`scalar::unpack_q4k`].
pub(crate) fn unpack_q4k(src: &[u8], out: KRowMut<'_>) {
    let m4 = u8x16_splat(0x0F);
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(8).zip(out.m.chunks_exact_mut(8));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(144).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        k4_header(blk, sc, mn, d, dmin);
        for (v, qs) in v.chunks_exact_mut(64).zip(blk[16..144].chunks_exact(32)) {
            let (q0, q1) = (ld(&qs[..16]), ld(&qs[16..]));
            st(&mut v[..16], v128_and(q0, m4));
            st(&mut v[16..32], v128_and(q1, m4));
            st(&mut v[32..48], u8x16_shr(q0, 4));
            st(&mut v[48..], u8x16_shr(q1, 4));
        }
    }
}

/// Q5_K, see [`scalar::unpack_q5k`].
pub(crate) fn unpack_q5k(src: &[u8], out: KRowMut<'_>) {
    let (m4, one) = (u8x16_splat(0x0F), u8x16_splat(1));
    let sb = out.d.iter_mut().zip(out.dmin.iter_mut());
    let groups = out.sc.chunks_exact_mut(8).zip(out.m.chunks_exact_mut(8));
    for (((blk, v), (sc, mn)), (d, dmin)) in src.chunks_exact(176).zip(out.vals.chunks_exact_mut(QK_K)).zip(groups).zip(sb) {
        k4_header(blk, sc, mn, d, dmin);
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

/// Q6_K, see [`scalar::unpack_q6k`].
pub(crate) fn unpack_q6k(src: &[u8], out: KRowMut<'_>) {
    let (m4, m3) = (u8x16_splat(0x0F), u8x16_splat(3));
    let rows = src.chunks_exact(210).zip(out.vals.chunks_exact_mut(QK_K)).zip(out.sc.chunks_exact_mut(16)).zip(out.d.iter_mut());
    for (((blk, v), sc), d) in rows {
        *d = f16_at(blk, 208);
        for (s, &b) in sc.iter_mut().zip(&blk[192..208]) {
            *s = i32::from(b as i8);
        }
        let (ql, qh) = (&blk[..128], &blk[128..192]);
        for ((v, ql), qh) in v.chunks_exact_mut(128).zip(ql.chunks_exact(64)).zip(qh.chunks_exact(32)) {
            for h in 0..2 {
                let at = 16 * h;
                let (a, b, hq) = (ld(&ql[at..at + 16]), ld(&ql[32 + at..48 + at]), ld(&qh[at..at + 16]));
                let plane = |k: u32| i8x16_shl(v128_and(u8x16_shr(hq, 2 * k), m3), 4);
                st(&mut v[at..at + 16], v128_or(v128_and(a, m4), plane(0)));
                st(&mut v[32 + at..48 + at], v128_or(v128_and(b, m4), plane(1)));
                st(&mut v[64 + at..80 + at], v128_or(u8x16_shr(a, 4), plane(2)));
                st(&mut v[96 + at..112 + at], v128_or(u8x16_shr(b, 4), plane(3)));
            }
        }
    }
}

/// F16 row bytes to f32, eight at a time.
pub(crate) fn unpack_f16(src: &[u8], out: &mut [f32]) {
    let (cs, co) = (src.chunks_exact(16), out.chunks_exact_mut(8));
    let (rs, ro) = (cs.remainder(), co.into_remainder());
    scalar::unpack_f16(rs, ro);
    for (s, o) in src.chunks_exact(16).zip(out.chunks_exact_mut(8)) {
        let h = ld(s);
        st(&mut o[..4], f16x4_to_f32x4(u32x4_extend_low_u16x8(h)));
        st(&mut o[4..], f16x4_to_f32x4(u32x4_extend_high_u16x8(h)));
    }
}

/// The tiled dot products of the legacy types (Q4_1/Q5_1 with minimums,
/// offset 8, offset 16), and of
/// Q2_K, Q3_K, Q4_K/Q5_K, Q6_K; and the packed kernels of Q4_0, Q4_1, and of
/// Q4_K, Q6_K: each backend's instances.
pub(crate) struct Instances {
    pub legacy: [LegacyTileFn; 3],
    pub k: [KTileFn; 4],
    pub packed_q4: [LegacyPackedFn; 2],
    pub packed_q8_0: LegacyPackedFn,
    pub packed_k: [KPackedFn; 2],
}

/// The kernels of `dtype` with the unpackers here and the dot products of
/// `i`.
pub(crate) fn kernels_with(dtype: GgmlDType, i: Instances) -> Kernels {
    use GgmlDType as T;
    let [k16_0_min, k16_4, k32_0_min, k16_32] = i.k;
    let l = |unpack, dot, packed| Kernels::Legacy {
        unpack,
        fdot,
        packed,
        dot: LegacyDot::Tile(LegacyTile { interleave: interleave::<32>, unpack: None, dot }),
    };
    let fused = |k: Kernels, tiled: LegacyUnpackFn| match k {
        Kernels::Legacy { unpack, fdot, packed, dot: LegacyDot::Tile(t) } => {
            Kernels::Legacy { unpack, fdot, packed, dot: LegacyDot::Tile(LegacyTile { unpack: Some(tiled), ..t }) }
        }
        other => other,
    };
    let [legacy_min, legacy8, legacy16] = i.legacy;
    let kq = |unpack, dot, packed, group| Kernels::K {
        unpack,
        packed,
        dot: KDot::Tile(KTile { interleave: if group == 16 { interleave::<16> } else { interleave::<32> }, unpack: None, dot }),
    };
    let k_fused = |k: Kernels, tiled: KUnpackFn| match k {
        Kernels::K { unpack, packed, dot: KDot::Tile(t) } => {
            Kernels::K { unpack, packed, dot: KDot::Tile(KTile { unpack: Some(tiled), ..t }) }
        }
        other => other,
    };
    match dtype {
        T::Q4_0 => fused(l(unpack_q4_0, legacy8, Some(i.packed_q4[0])), unpack_q4_tiled::<false>),
        T::Q4_1 => fused(l(unpack_q4_1, legacy_min, Some(i.packed_q4[1])), unpack_q4_tiled::<true>),
        T::Q5_0 => l(unpack_q5_0, legacy16, None),
        T::Q5_1 => l(unpack_q5_1, legacy_min, None),
        // Q8_0's weights are signed bytes: always the widening dot product.
        T::Q8_0 => l(unpack_q8_0, legacy_tiles::<Widening, 0, false>, Some(i.packed_q8_0)),
        T::Q2K => kq(unpack_q2k, k16_0_min, None, 16),
        T::Q3K => kq(unpack_q3k, k16_4, None, 16),
        T::Q4K => k_fused(kq(unpack_q4k, k32_0_min, Some(i.packed_k[0]), 32), unpack_q4k_tiled),
        T::Q5K => kq(unpack_q5k, k32_0_min, None, 32),
        T::Q6K => k_fused(kq(unpack_q6k, k16_32, Some(i.packed_k[1]), 16), unpack_q6k_tiled),
        T::F16 => Kernels::Float { float: unpack_f16, fdot },
        _ => Kernels::Float { float: scalar::unpack_f32, fdot },
    }
}

/// The simd128 kernels of `dtype`.
pub(crate) fn kernels(dtype: GgmlDType) -> Kernels {
    kernels_with(
        dtype,
        Instances {
            legacy: [legacy_tiles::<Widening, 0, true>, legacy_tiles::<Widening, 8, false>, legacy_tiles::<Widening, 16, false>],
            k: [
                k_tiles::<Widening, 16, 0, true>,
                k_tiles::<Widening, 16, 4, false>,
                k_tiles::<Widening, 32, 0, true>,
                k_tiles::<Widening, 16, 32, false>,
            ],
            packed_q4: [packed_legacy_rows::<Widening, 0>, packed_legacy_rows::<Widening, 1>],
            packed_q8_0: packed_legacy_rows::<Widening, 8>,
            packed_k: [packed_q4k::<Widening>, packed_q6k::<Widening>],
        },
    )
}

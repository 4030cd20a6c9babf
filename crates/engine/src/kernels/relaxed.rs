//! wasm relaxed-SIMD kernels: the `simd128` code (`super::simd128`) with
//! `i32x4.relaxed_dot_i8x16_i7x16_add` as its byte multiply-add, one
//! instruction for 16 pairs (a single `vpdpbusd` on x86 with VNNI).
//!
//! The instruction is deterministic when its second operand's bytes are
//! below 128: the weights go there (every stored value `u` is unsigned and
//! at most 6 bits, but Q8_0's, which keeps the widening product), the
//! activations (signed bytes) first. Its 16-bit intermediate sums of two
//! products cannot saturate (`2·128·127 < 2^15`). So the integer sums, and
//! with them every result, are those of the other backends, bit for bit.
//!
//! Only the functions here are compiled with the `relaxed-simd` target
//! feature; they exist only in builds with the crate's `relaxed-simd`
//! feature, whose module browsers without relaxed SIMD refuse to compile.

use core::arch::wasm32::*;

use super::activations::{Activations, Token32, TokenK};
use super::scalar::{KRow, LegacyRow};
use super::simd128::{self, IDot};
use super::{GgmlDType, Kernels};

/// [`IDot`] with the relaxed dot product.
pub(crate) struct Relaxed;

impl IDot for Relaxed {
    #[inline(always)]
    fn dot(q: v128, u: v128, acc: v128) -> v128 {
        i32x4_relaxed_dot_i8x16_i7x16_add(q, u, acc)
    }

    /// Both halves' products summed in 16-bit lanes, then widened once:
    /// two `pmaddubsw`, an add and one `pmaddwd` on x86 without VNNI.
    #[inline(always)]
    fn dot2(q0: v128, u0: v128, q1: v128, u1: v128, acc: v128) -> v128 {
        let short = i16x8_add(i16x8_relaxed_dot_i8x16_i7x16(q0, u0), i16x8_relaxed_dot_i8x16_i7x16(q1, u1));
        i32x4_add(acc, i32x4_extadd_pairwise_i16x8(short))
    }

    /// Lane `m` of the instruction sums bytes `4m..4m + 4`: already by lane.
    type Lanes = v128;

    #[inline(always)]
    fn lanes_zero() -> v128 {
        i32x4_splat(0)
    }

    #[inline(always)]
    fn lanes(acc: v128) -> v128 {
        acc
    }

    /// `i16x8.relaxed_dot_i8x16_i7x16`: lane `j` sums bytes `2j, 2j + 1`
    /// (one `pmaddubsw` on x86; the i32 form without VNNI is that, a
    /// `pmaddwd` by ones and an add, for every 16 pairs).
    type Short = v128;

    const SHORT_PRODUCTS: i32 = 2;

    #[inline(always)]
    fn short_zero() -> v128 {
        i16x8_splat(0)
    }

    #[inline(always)]
    fn short_dot(q: v128, u: v128, acc: v128) -> v128 {
        i16x8_add(acc, i16x8_relaxed_dot_i8x16_i7x16(q, u))
    }

    #[inline(always)]
    fn widen(short: v128, acc: v128) -> v128 {
        i32x4_add(acc, i32x4_extadd_pairwise_i16x8(short))
    }
}

/// Wraps a generic `simd128` kernel instantiated with [`Relaxed`] into a
/// function compiled with the `relaxed-simd` target feature (so that the
/// instruction is inlined into it), callable through a plain `fn` pointer.
macro_rules! relaxed_fn {
    ($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:expr) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[target_feature(enable = "relaxed-simd")]
            fn inner($($arg: $ty),*) -> $ret {
                $body
            }
            inner($($arg),*)
        }
    };
}

relaxed_fn!(q4_0(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 8, false, 15>(w, x, out));
relaxed_fn!(q4_1(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 0, true, 15>(w, x, out));
relaxed_fn!(q5_0(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 16, false, 31>(w, x, out));
relaxed_fn!(q5_1(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 0, true, 31>(w, x, out));
relaxed_fn!(q2k(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 16, 0, true, 3>(w, x, out));
relaxed_fn!(q3k(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 16, 4, false, 7>(w, x, out));
relaxed_fn!(q4k(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 32, 0, true, 15>(w, x, out));
relaxed_fn!(q5k(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 32, 0, true, 31>(w, x, out));
relaxed_fn!(q6k(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 16, 32, false, 63>(w, x, out));
relaxed_fn!(packed_q4_0(rows: &[u8], t: &Token32<'_>, out: &mut [f32]) -> () = simd128::packed_legacy_rows::<Relaxed, 0>(rows, t, out));
relaxed_fn!(packed_q4_1(rows: &[u8], t: &Token32<'_>, out: &mut [f32]) -> () = simd128::packed_legacy_rows::<Relaxed, 1>(rows, t, out));
relaxed_fn!(packed_q8_0(rows: &[u8], t: &Token32<'_>, out: &mut [f32]) -> () = simd128::packed_legacy_rows::<Relaxed, 8>(rows, t, out));
relaxed_fn!(packed_q4k(rows: &[u8], t: &TokenK<'_>, out: &mut [f32]) -> () = simd128::packed_q4k::<Relaxed>(rows, t, out));
relaxed_fn!(packed_q6k(rows: &[u8], t: &TokenK<'_>, out: &mut [f32]) -> () = simd128::packed_q6k::<Relaxed>(rows, t, out));

/// The relaxed-SIMD kernels of `dtype`.
pub(crate) fn kernels(dtype: GgmlDType) -> Kernels {
    simd128::kernels_with(
        dtype,
        simd128::Instances {
            legacy: [q4_0, q4_1, q5_0, q5_1],
            k: [q2k, q3k, q4k, q5k, q6k],
            packed_q4: [packed_q4_0, packed_q4_1],
            packed_q8_0,
            packed_k: [packed_q4k, packed_q6k],
        },
    )
}

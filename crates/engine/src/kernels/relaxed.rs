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

    /// Lane `m` of the instruction sums bytes `4m..4m + 4`: already by lane.
    type Lanes = v128;

    #[inline(always)]
    fn lanes_zero() -> v128 {
        i32x4_splat(0)
    }

    #[inline(always)]
    fn lanes_dot(q: v128, u: v128, acc: v128) -> v128 {
        i32x4_relaxed_dot_i8x16_i7x16_add(q, u, acc)
    }

    #[inline(always)]
    fn lanes(acc: v128) -> v128 {
        acc
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

relaxed_fn!(legacy_min(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 0, true>(w, x, out));
relaxed_fn!(legacy8(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 8, false>(w, x, out));
relaxed_fn!(legacy16(w: &[LegacyRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::legacy_tiles::<Relaxed, 16, false>(w, x, out));
relaxed_fn!(k16_0_min(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 16, 0, true>(w, x, out));
relaxed_fn!(k16_4(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 16, 4, false>(w, x, out));
relaxed_fn!(k32_0_min(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 32, 0, true>(w, x, out));
relaxed_fn!(k16_32(w: &[KRow<'_>], x: &Activations, out: &mut [f32]) -> () = simd128::k_tiles::<Relaxed, 16, 32, false>(w, x, out));
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
            legacy: [legacy_min, legacy8, legacy16],
            k: [k16_0_min, k16_4, k32_0_min, k16_32],
            packed_q4: [packed_q4_0, packed_q4_1],
            packed_q8_0,
            packed_k: [packed_q4k, packed_q6k],
        },
    )
}

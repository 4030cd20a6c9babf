//! The small f32 operations of a forward pass, written so the compiler turns
//! them into SIMD (eight independent accumulators, no bounds checks in loops).
//!
//! Every operation is plain IEEE arithmetic in a fixed order, including
//! [`exp`] (no platform `expf`, whose last bit differs between libms), so
//! the engine computes the same bits natively and in the browser.

/// Σ a·b.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// e^x to about one ulp, from IEEE operations only: the same bits on every
/// platform. Saturates to 0 below -104 and to infinity above 88.7.
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n · LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    if x.is_nan() {
        return x;
    }
    if x > 88.72 {
        return f32::INFINITY;
    }
    if x < -104.0 {
        return 0.0;
    }
    let n = (x * LOG2E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // e^r on |r| <= ln2/2: Taylor terms to r^7 (error below 2^-25).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // p · 2^n, in two steps so that 2^n never overflows or goes subnormal.
    let n = n as i32;
    let half = n / 2;
    p * f32::from_bits(((127 + half) as u32) << 23) * f32::from_bits(((127 + n - half) as u32) << 23)
}

/// out += w · x.
pub fn axpy(out: &mut [f32], w: f32, x: &[f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

/// out = x / rms(x) * weight, for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let mean = dot(x, x) / x.len() as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// Softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = simd::sub_exp(x, max);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for v in &mut x[done..] {
        *v = exp(*v - max);
    }
    let sum = x.iter().fold(0.0, |s, v| s + v);
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// gate = silu(gate) · up.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = simd::swiglu(gate, up);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (g, u) in gate[done..].iter_mut().zip(&up[done..]) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// The wasm SIMD versions of [`exp`], [`softmax`]'s exponentials and
/// [`swiglu`], four values at a time: each lane performs exactly the scalar
/// code's IEEE operations, so the results are the same bits.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd {
    use core::arch::wasm32::*;

    /// [`super::exp`] on four lanes.
    #[inline(always)]
    pub fn exp4(x: v128) -> v128 {
        let splat = f32x4_splat;
        let n = f32x4_nearest(f32x4_mul(x, splat(std::f32::consts::LOG2_E)));
        let r = f32x4_sub(f32x4_sub(x, f32x4_mul(n, splat(0.693_145_75))), f32x4_mul(n, splat(1.428_606_8e-6)));
        let mut p = splat(1.0 / 5040.0);
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = f32x4_add(splat(c), f32x4_mul(r, p));
        }
        // n / 2 rounded toward zero, as i32 division does.
        let n = i32x4_trunc_sat_f32x4(n);
        let half = i32x4_shr(i32x4_add(n, u32x4_shr(n, 31)), 1);
        let scale = |e: v128| i32x4_shl(i32x4_add(e, i32x4_splat(127)), 23);
        let y = f32x4_mul(f32x4_mul(p, scale(half)), scale(i32x4_sub(n, half)));
        let y = v128_bitselect(f32x4_splat(f32::INFINITY), y, f32x4_gt(x, splat(88.72)));
        let y = v128_bitselect(splat(0.0), y, f32x4_lt(x, splat(-104.0)));
        v128_bitselect(x, y, f32x4_ne(x, x))
    }

    /// Loads four f32 at `s[at..]`.
    #[inline(always)]
    fn ld(s: &[f32], at: usize) -> v128 {
        let s = &s[at..at + 4];
        // SAFETY: four readable f32 (the slice above); wasm loads need no alignment.
        unsafe { v128_load(s.as_ptr().cast()) }
    }

    /// Stores four f32 at `s[at..]`.
    #[inline(always)]
    fn st(s: &mut [f32], at: usize, v: v128) {
        let s = &mut s[at..at + 4];
        // SAFETY: four writable f32 (the slice above).
        unsafe { v128_store(s.as_mut_ptr().cast(), v) }
    }

    /// `x[i] = exp(x[i] - max)` for the whole fours of `x`; returns how
    /// many values it did.
    pub fn sub_exp(x: &mut [f32], max: f32) -> usize {
        let whole = x.len() / 4 * 4;
        for at in (0..whole).step_by(4) {
            st(x, at, exp4(f32x4_sub(ld(x, at), f32x4_splat(max))));
        }
        whole
    }

    /// [`super::swiglu`] for the whole fours; returns how many it did.
    pub fn swiglu(gate: &mut [f32], up: &[f32]) -> usize {
        let whole = gate.len().min(up.len()) / 4 * 4;
        for at in (0..whole).step_by(4) {
            let g = ld(gate, at);
            let silu = f32x4_div(g, f32x4_add(f32x4_splat(1.0), exp4(f32x4_neg(g))));
            st(gate, at, f32x4_mul(silu, ld(up, at)));
        }
        whole
    }
}

/// a += b.
pub fn add(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_platform_one() {
        let mut worst = 0u32;
        let mut x = -103.9f32;
        while x < 88.7 {
            let (a, b) = (exp(x), x.exp());
            if b.is_normal() {
                worst = worst.max(a.to_bits().abs_diff(b.to_bits()));
            }
            x += 0.0137;
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn small_ops() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
        let mut s = [1.0, 2.0, 3.0];
        softmax(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6 && s[2] > s[1]);
        let mut out = [0.0; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
        let mut g = [0.0, 1.0];
        swiglu(&mut g, &[5.0, 2.0]);
        assert!(g[0] == 0.0 && (g[1] - 2.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
    }
}

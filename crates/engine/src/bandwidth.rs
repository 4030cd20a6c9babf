//! A memory-read bandwidth probe: how fast this thread streams a buffer much
//! larger than the caches. Decoding one token reads every weight once, so
//! this rate divided by the bytes of weights read per token bounds decode
//! speed (what `scripts/bench-browser` compares Sprig and wllama against).
//!
//! In wasm with `+simd128` the loop is 16-byte `v128` loads summed into four
//! independent `i32x4` accumulators; natively it is a plain `u64` add/xor
//! loop with four accumulators (which the compiler may vectorize).

use web_time::Instant;

/// Bytes read per step of the loops: eight 16-byte loads.
const STEP: usize = 128;

/// The best rate, in GB/s (10⁹ bytes per second), at which this thread reads
/// a buffer of `bytes` bytes (rounded down to a multiple of 128), over `reps`
/// timed passes. The buffer is allocated and written once before timing, so
/// its pages are real; every pass folds the whole buffer into a value kept
/// with [`std::hint::black_box`], so the reads are not optimized away.
///
/// Returns 0 when there is nothing to time (`bytes` below 128, `reps` 0),
/// when the buffer cannot be allocated, or when the clock does not advance.
/// In wasm the module's memory grows by `bytes` and keeps that size.
pub fn read_bandwidth(bytes: usize, reps: usize) -> f64 {
    let words = bytes / STEP * (STEP / 8);
    if words == 0 || reps == 0 {
        return 0.0;
    }
    let mut buf: Vec<u64> = Vec::new();
    if buf.try_reserve_exact(words).is_err() {
        return 0.0;
    }
    // Distinct non-zero words: untouched or zero pages could be shared by the OS.
    buf.extend((0..words as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1));
    let read = (words * 8) as f64;
    let mut best = 0.0f64;
    for _ in 0..reps {
        let start = Instant::now();
        std::hint::black_box(fold(std::hint::black_box(&buf)));
        let secs = start.elapsed().as_secs_f64();
        if secs > 0.0 {
            best = best.max(read / secs / 1e9);
        }
    }
    best
}

/// Folds `words` (a multiple of 16 long) into one value, reading each once
/// with 128-bit loads.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn fold(words: &[u64]) -> u64 {
    use core::arch::wasm32::{i32x4_add, i32x4_extract_lane, i32x4_splat, v128, v128_load, v128_xor};
    let (mut a, mut b, mut c, mut d) = (i32x4_splat(0), i32x4_splat(0), i32x4_splat(0), i32x4_splat(0));
    for step in words.chunks_exact(STEP / 8) {
        let p = step.as_ptr().cast::<v128>();
        // SAFETY: `step` holds 16 u64 = 8 × 16 bytes, so `p.add(0..8)` stay
        // within it; `v128_load` has no alignment requirement.
        unsafe {
            a = i32x4_add(a, v128_load(p));
            b = i32x4_add(b, v128_load(p.add(1)));
            c = i32x4_add(c, v128_load(p.add(2)));
            d = i32x4_add(d, v128_load(p.add(3)));
            a = i32x4_add(a, v128_load(p.add(4)));
            b = i32x4_add(b, v128_load(p.add(5)));
            c = i32x4_add(c, v128_load(p.add(6)));
            d = i32x4_add(d, v128_load(p.add(7)));
        }
    }
    let v = v128_xor(i32x4_add(a, b), i32x4_add(c, d));
    let lanes = [i32x4_extract_lane::<0>(v), i32x4_extract_lane::<1>(v), i32x4_extract_lane::<2>(v), i32x4_extract_lane::<3>(v)];
    lanes.iter().fold(0u64, |acc, &l| (acc << 16) ^ u64::from(l as u32))
}

/// Folds `words` into one value, reading each once.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn fold(words: &[u64]) -> u64 {
    let (mut a, mut b, mut c, mut d) = (0u64, 0u64, 0u64, 0u64);
    for w in words.chunks_exact(4) {
        a = a.wrapping_add(w[0]);
        b ^= w[1];
        c = c.wrapping_add(w[2]);
        d ^= w[3];
    }
    a ^ b ^ c ^ d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_gives_a_positive_rate() {
        let gbs = read_bandwidth(8 << 20, 3);
        assert!(gbs > 0.0 && gbs.is_finite(), "{gbs}");
    }

    #[test]
    fn nothing_to_time_gives_zero() {
        assert_eq!(read_bandwidth(0, 3), 0.0);
        assert_eq!(read_bandwidth(127, 3), 0.0);
        assert_eq!(read_bandwidth(1 << 20, 0), 0.0);
    }

    #[test]
    fn a_buffer_too_large_to_allocate_gives_zero() {
        assert_eq!(read_bandwidth(usize::MAX, 1), 0.0);
    }

    #[test]
    fn the_fold_reads_every_word() {
        let words: Vec<u64> = (0..64).collect();
        let base = fold(&words);
        for i in [0, 17, 63] {
            let mut changed = words.clone();
            changed[i] ^= 1 << 5;
            assert_ne!(fold(&changed), base, "word {i}");
        }
    }
}

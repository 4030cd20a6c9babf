//! The wasm kernels (`simd128`, and relaxed SIMD in a build with the
//! `relaxed-simd` feature) against the portable reference (the code native
//! builds run), in headless Chromium: unpacking, activation quantization and
//! matmul bit for bit (one token takes the packed kernels, several the
//! unpacked ones), so that native and browser engines pick the same tokens.
//! `scripts/test` runs it once per worker build.
#![cfg(target_arch = "wasm32")]

use sprig_engine::kernels::{Activations, Backend, GgmlDType, QMatrix};
use wasm_bindgen_test::*;

mod kernel_cases;

use kernel_cases::{block, build, Rng, TYPES};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The backends compared with the portable one.
fn simd_backends() -> Vec<Backend> {
    Backend::available().iter().copied().filter(|&b| b != Backend::Scalar).collect()
}

#[wasm_bindgen_test]
fn simd_is_compiled_in() {
    assert!(std::hint::black_box(sprig_engine::SIMD128), "built without +simd128");
    let (build, backends) = if cfg!(feature = "relaxed-simd") {
        ("relaxed-simd", vec![Backend::Simd, Backend::Relaxed])
    } else {
        ("simd128", vec![Backend::Simd])
    };
    assert_eq!(sprig_engine::kernels::BUILD, build);
    assert_eq!(simd_backends(), backends);
    console_log!("kernels: {build}");
}

/// The bits of `v`, any NaN as one pattern (NaN payloads of f32 arithmetic
/// are not deterministic in wasm).
fn bits(v: f32) -> u32 {
    if v.is_nan() {
        f32::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

#[wasm_bindgen_test]
fn activation_quantization_is_identical() {
    let mut x = Rng(9).values(7 * 256);
    // Blocks of zeros, with an infinity, with a NaN, and of subnormals.
    x[32..64].fill(0.0);
    x[70] = f32::INFINITY;
    x[100] = f32::NEG_INFINITY;
    x[130] = f32::NAN;
    x[200] = -f32::NAN;
    for (i, v) in x[224..256].iter_mut().enumerate() {
        *v = f32::from_bits(i as u32 * 1000 + 1) * if i % 2 == 0 { 1.0 } else { -1.0 };
    }
    for backend in simd_backends() {
        for (tokens, cols) in [(7, 256), (56, 32), (1, 1792)] {
            let (mut a, mut b) = (Activations::new(), Activations::new());
            a.quantize_with(&x, tokens, cols, Backend::Scalar).unwrap();
            b.quantize_with(&x, tokens, cols, backend).unwrap();
            for ((qa, da), (qb, db)) in [(a.quantized(), b.quantized()), (a.quantized_k(), b.quantized_k())] {
                assert_eq!(qa, qb, "{backend:?} {tokens} x {cols}");
                let (da, db): (Vec<u32>, Vec<u32>) = (da.iter().map(|&v| bits(v)).collect(), db.iter().map(|&v| bits(v)).collect());
                assert_eq!(da, db, "{backend:?} {tokens} x {cols}");
            }
        }
    }
}

#[wasm_bindgen_test]
fn unpacking_is_identical() {
    for backend in simd_backends() {
        for dtype in TYPES {
            let cols = if matches!(dtype, GgmlDType::F16 | GgmlDType::F32) { 264 } else { 512 };
            let (m, _) = build(dtype, 3, cols, 5);
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..3 {
                m.dequantize_row_with(r, &mut a, Backend::Scalar).unwrap();
                m.dequantize_row_with(r, &mut b, backend).unwrap();
                for (c, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(x.to_bits(), y.to_bits(), "{backend:?} {dtype:?} [{r}, {c}]: scalar {x}, simd {y}");
                }
            }
        }
    }
}

#[wasm_bindgen_test]
fn f16_conversion_is_identical_for_every_value() {
    // One row of every f16 bit pattern, NaNs and infinities included.
    let data: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let m = QMatrix::new(GgmlDType::F16, 1, 1 << 16, data).unwrap();
    let (mut a, mut b) = (vec![0f32; 1 << 16], vec![0f32; 1 << 16]);
    m.dequantize_row_with(0, &mut a, Backend::Scalar).unwrap();
    for backend in simd_backends() {
        m.dequantize_row_with(0, &mut b, backend).unwrap();
        for (h, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{backend:?} f16 {h:#06x}: scalar {x}, simd {y}");
        }
    }
}

/// `m` times `tokens` activations `x`, by the portable kernels and by
/// `backend`, each end to end (its own activation quantization too).
fn scalar_and(backend: Backend, m: &QMatrix, x: &[f32], tokens: usize) -> (Vec<f32>, Vec<f32>) {
    let (cols, rows) = (m.cols(), m.rows());
    let (mut xa, mut xb) = (Activations::new(), Activations::new());
    xa.quantize_with(x, tokens, cols, Backend::Scalar).unwrap();
    xb.quantize_with(x, tokens, cols, backend).unwrap();
    let (mut want, mut got) = (vec![0f32; tokens * rows], vec![0f32; tokens * rows]);
    m.matmul_with(&xa, &mut want, Backend::Scalar).unwrap();
    m.matmul_with(&xb, &mut got, backend).unwrap();
    (want, got)
}

/// Row counts of the matmul comparison.
const ROWS: [usize; 4] = [1, 37, 64, 192];
/// Column counts (those that are a multiple of the type's block): partial
/// and whole steps of four blocks, chunks of sixteen, one to six super-blocks.
const COLS: [usize; 10] = [32, 96, 192, 256, 384, 576, 608, 768, 1536, 2560];
/// Token counts: single, a few, and more than one row tile.
const TOKENS: [usize; 6] = [1, 2, 3, 17, 18, 37];

#[wasm_bindgen_test]
fn matmul_is_identical_to_the_scalar_reference() {
    let mut failures = Vec::new();
    let mut compared = 0usize;
    for backend in simd_backends() {
        for (n, dtype) in TYPES.into_iter().enumerate() {
            for cols in COLS.into_iter().filter(|c| c.is_multiple_of(block(dtype))) {
                for rows in ROWS {
                    let (m, _) = build(dtype, rows, cols, (1000 * n + rows * cols) as u64);
                    for tokens in TOKENS {
                        let x = Rng((tokens * cols) as u64).values(tokens * cols);
                        let (want, got) = scalar_and(backend, &m, &x, tokens);
                        compared += want.len();
                        let diff: Vec<usize> = (0..want.len()).filter(|&i| want[i].to_bits() != got[i].to_bits()).collect();
                        if let Some(&i) = diff.first() {
                            failures.push(format!(
                            "{backend:?} {dtype:?} [{rows} x {cols}] tokens {tokens}: {} of {} outputs differ, first {i}: scalar {:e} ({:#010x}), simd {:e} ({:#010x})",
                            diff.len(),
                            want.len(),
                            want[i],
                            want[i].to_bits(),
                            got[i],
                            got[i].to_bits()
                        ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
    console_log!("{compared} outputs bit-identical");
}

/// Arbitrary bytes as weights (every bit pattern of every field, scales
/// that are NaN or infinite included) against activations at the extremes
/// of the 8-bit range: the integer sums at their largest, where a
/// saturating or wrapping intermediate would show.
#[wasm_bindgen_test]
fn matmul_is_identical_on_raw_bytes() {
    let mut rng = Rng(77);
    for backend in simd_backends() {
        for dtype in TYPES {
            let cols = if block(dtype) == 256 { 768 } else { 608 };
            let rows = 19;
            let bytes = rows * QMatrix::row_bytes(dtype, cols).unwrap();
            let data: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
            let m = QMatrix::new(dtype, rows, cols, data).unwrap();
            for tokens in [1, 3] {
                // Every value at ±1e3 (one per block surely positive): q at ±127.
                let x: Vec<f32> =
                    (0..tokens * cols).map(|i| if i % 32 == 5 || rng.next().is_multiple_of(2) { 1e3 } else { -1e3 }).collect();
                let (want, got) = scalar_and(backend, &m, &x, tokens);
                let (want, got): (Vec<u32>, Vec<u32>) = (want.iter().map(|&v| bits(v)).collect(), got.iter().map(|&v| bits(v)).collect());
                assert_eq!(want, got, "{backend:?} {dtype:?} tokens {tokens}");
            }
        }
    }
}

/// Every stored value at its largest (all value bits set; Q8_0's at -128),
/// with finite scales (every f16 field 1.0), against activations all at
/// +127: each integer sum at its largest in one direction, where a 16-bit
/// running sum that could not hold it would wrap.
#[wasm_bindgen_test]
fn matmul_is_identical_at_the_largest_sums() {
    for backend in simd_backends() {
        for dtype in TYPES.into_iter().filter(|&t| block(t) > 1) {
            // The fill byte and the offsets of the block's f16 fields.
            let (fill, halves): (u8, &[usize]) = match dtype {
                GgmlDType::Q4_0 | GgmlDType::Q5_0 => (0xff, &[0]),
                GgmlDType::Q8_0 => (0x80, &[0]),
                GgmlDType::Q4_1 | GgmlDType::Q5_1 | GgmlDType::Q4K | GgmlDType::Q5K => (0xff, &[0, 2]),
                GgmlDType::Q2K => (0xff, &[80, 82]),
                GgmlDType::Q3K => (0xff, &[108]),
                GgmlDType::Q6K => (0xff, &[208]),
                other => panic!("no layout for {other:?}"),
            };
            let (rows, cols) = (5, if block(dtype) == 256 { 768 } else { 608 });
            let row_bytes = QMatrix::row_bytes(dtype, cols).unwrap();
            let mut data = vec![fill; rows * row_bytes];
            for blk in data.chunks_exact_mut(row_bytes * block(dtype) / cols) {
                for &at in halves {
                    blk[at..at + 2].copy_from_slice(&0x3c00u16.to_le_bytes());
                }
            }
            let m = QMatrix::new(dtype, rows, cols, data).unwrap();
            for tokens in [1, 4, 5] {
                let (want, got) = scalar_and(backend, &m, &vec![1e3; tokens * cols], tokens);
                assert!(want.iter().all(|v| v.is_finite()), "{dtype:?}: the reference is not finite");
                let (want, got): (Vec<u32>, Vec<u32>) = (want.iter().map(|&v| bits(v)).collect(), got.iter().map(|&v| bits(v)).collect());
                assert_eq!(want, got, "{backend:?} {dtype:?} tokens {tokens}");
            }
        }
    }
}

/// The benchmark, when built with `SPRIG_KERNELS_BENCH=<budget ms>` (run
/// with `--release` and `-- --nocapture` to see the figures).
#[wasm_bindgen_test]
fn bench() {
    let Some(budget) = option_env!("SPRIG_KERNELS_BENCH").and_then(|b| b.parse().ok()) else {
        return;
    };
    // SPRIG_KERNELS_BENCH_ONLY: only the cases whose shape is one of these,
    // e.g. `4096x4096,32768x4096`.
    let only: Vec<&str> = option_env!("SPRIG_KERNELS_BENCH_ONLY").map(|s| s.split(',').collect()).unwrap_or_default();
    for (dtype, rows, cols, tokens) in sprig_engine::kernels::bench::default_cases() {
        if only.is_empty() || only.contains(&format!("{rows}x{cols}").as_str()) {
            console_log!("{}", sprig_engine::kernels::bench::measure(dtype, rows, cols, tokens, budget).unwrap());
            if tokens == 1 {
                let ms = sprig_engine::kernels::bench::measure_unpack(dtype, rows, cols, budget).unwrap();
                console_log!("{dtype:?} [{rows} x {cols}] unpacking for the tiles: {ms:.3} ms");
            }
        }
    }
}

/// The forward pass's SIMD exponential (softmax, SwiGLU) gives the scalar
/// one's bits, over the whole range and at its edges.
#[wasm_bindgen_test]
fn simd_exp_and_swiglu_are_identical() {
    use core::arch::wasm32::*;
    use sprig_engine::model::math;
    let mut xs: Vec<f32> = (-2_100_000..2_100_000).map(|i| i as f32 * 5e-5).collect();
    xs.extend([88.72, 88.73, -104.0, -104.1, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, 1e-40, -87.5, 88.0]);
    for &x in &xs {
        let got = f32x4_extract_lane::<0>(math::simd::exp4(f32x4_splat(x)));
        assert_eq!(bits(got), bits(math::exp(x)), "exp({x:e})");
    }
    let g: Vec<f32> = Rng(5).values(1027).iter().map(|v| v * 20.0).collect();
    let u = Rng(6).values(1027);
    let (mut a, mut b) = (g.clone(), g.clone());
    math::swiglu(&mut a, &u);
    for (g, u) in b.iter_mut().zip(&u) {
        *g = *g / (1.0 + math::exp(-*g)) * u;
    }
    assert_eq!(a.iter().map(|&v| bits(v)).collect::<Vec<_>>(), b.iter().map(|&v| bits(v)).collect::<Vec<_>>());
}

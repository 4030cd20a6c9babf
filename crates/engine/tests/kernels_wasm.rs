//! The wasm `simd128` kernels against the portable reference, in headless
//! Chromium: unpacking and activation quantization bit for bit, matmul up to
//! f32 summation order.
#![cfg(target_arch = "wasm32")]

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use sprig_engine::kernels::{Activations, Backend, GgmlDType, QMatrix};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// Every type with a kernel.
const TYPES: [GgmlDType; 12] = [
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
    GgmlDType::F16,
    GgmlDType::F32,
];

/// A seeded SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `n` values in [-s, s) with s varying per 32, and some zeros.
    fn values(&mut self, n: usize) -> Vec<f32> {
        let mut scale = 1.0;
        (0..n)
            .map(|i| {
                let u = (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                if i % 32 == 0 {
                    scale = 10f32.powf(u);
                }
                if self.next().is_multiple_of(64) {
                    0.0
                } else {
                    scale * u
                }
            })
            .collect()
    }
}

fn build(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let w = Rng(seed).values(rows * cols);
    let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, dtype).unwrap();
    QMatrix::new(dtype, rows, cols, q.data().unwrap().to_vec()).unwrap()
}

#[wasm_bindgen_test]
fn simd_is_compiled_in() {
    assert!(std::hint::black_box(sprig_engine::SIMD128), "built without +simd128");
}

#[wasm_bindgen_test]
fn activation_quantization_is_identical() {
    let x = Rng(9).values(7 * 256);
    let (mut a, mut b) = (Activations::new(), Activations::new());
    a.quantize_with(&x, 7, 256, Backend::Scalar).unwrap();
    b.quantize_with(&x, 7, 256, Backend::Simd).unwrap();
    let ((qa, da), (qb, db)) = (a.quantized(), b.quantized());
    assert_eq!(qa, qb);
    assert_eq!(da, db);
}

#[wasm_bindgen_test]
fn unpacking_is_identical() {
    for dtype in TYPES {
        let cols = if matches!(dtype, GgmlDType::F16 | GgmlDType::F32) { 264 } else { 512 };
        let m = build(dtype, 3, cols, 5);
        let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
        for r in 0..3 {
            m.dequantize_row_with(r, &mut a, Backend::Scalar).unwrap();
            m.dequantize_row_with(r, &mut b, Backend::Simd).unwrap();
            for (c, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "{dtype:?} [{r}, {c}]: scalar {x}, simd {y}");
            }
        }
    }
}

#[wasm_bindgen_test]
fn matmul_agrees_with_the_scalar_reference() {
    for dtype in TYPES {
        for (rows, cols) in [(37, 256), (11, 512)] {
            for tokens in [1, 3, 17] {
                let m = build(dtype, rows, cols, (rows * cols + tokens) as u64);
                let x = Rng(tokens as u64).values(tokens * cols);
                let mut a = Activations::new();
                a.quantize(&x, tokens, cols).unwrap();
                let (mut want, mut got) = (vec![0f32; tokens * rows], vec![0f32; tokens * rows]);
                m.matmul_with(&a, &mut want, Backend::Scalar).unwrap();
                m.matmul_with(&a, &mut got, Backend::Simd).unwrap();
                let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
                for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                    assert!((w - g).abs() <= 1e-5 * scale, "{dtype:?} [{rows} x {cols}] tokens {tokens} out {i}: {w} vs {g}");
                }
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
    for r in sprig_engine::kernels::bench::run(budget).unwrap() {
        console_log!("{r}");
    }
}

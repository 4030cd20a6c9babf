//! Test data shared by the kernel tests (native and wasm): the types with a
//! kernel, seeded weights and activations, and matrices quantized by candle.
#![allow(dead_code)]

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use sprig_engine::kernels::{GgmlDType, QMatrix};

/// Every type with a kernel.
pub const TYPES: [GgmlDType; 12] = [
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

/// A seeded SplitMix64, enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// `n` values of varying scale: per-32 magnitudes spread over two decades,
    /// an occasional outlier, some exact zeros.
    pub fn values(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n);
        let mut scale = 1.0;
        for i in 0..n {
            if i % 32 == 0 {
                scale = 10f32.powf(self.unit());
            }
            let v = match self.next() % 64 {
                0 => 0.0,
                1 => 8.0 * scale * self.unit(),
                _ => scale * self.unit(),
            };
            out.push(v);
        }
        out
    }
}

/// Elements per block of a type.
pub fn block(dtype: GgmlDType) -> usize {
    match dtype {
        GgmlDType::F16 | GgmlDType::F32 => 1,
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K => 256,
        _ => 32,
    }
}

/// Random weights quantized by candle: the kernel matrix and candle's
/// dequantization of it.
pub fn build(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> (QMatrix, Vec<f32>) {
    let w = Rng(seed).values(rows * cols);
    let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, dtype).unwrap();
    let data = q.data().unwrap().to_vec();
    let deq = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let m = QMatrix::new(dtype, rows, cols, data).unwrap();
    (m, deq)
}

//! The quantized matmul kernels against candle: dequantization bit for bit,
//! matmul against an f64 reference and, bit for bit, against the f32
//! operation order the native and wasm `simd128` kernels share, and the error
//! cases.

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use sprig_engine::kernels::{Activations, GgmlDType, KernelError, QMatrix};

mod kernel_cases;

use kernel_cases::{block, build, Rng, TYPES};

/// The column counts to test for a type.
fn col_counts(dtype: GgmlDType) -> Vec<usize> {
    if block(dtype) == 256 {
        vec![256, 512]
    } else {
        vec![96, 256, 512]
    }
}

#[test]
fn dequantize_row_matches_candle_bit_for_bit() {
    for dtype in TYPES {
        for cols in col_counts(dtype) {
            let rows = 5;
            let (m, deq) = build(dtype, rows, cols, 7 + cols as u64);
            assert_eq!(m.size_in_bytes(), rows * QMatrix::row_bytes(dtype, cols).unwrap());
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                m.dequantize_row(r, &mut row).unwrap();
                for (c, (a, b)) in row.iter().zip(&deq[r * cols..(r + 1) * cols]).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{dtype:?} cols {cols} [{r}, {c}]: {a} vs candle {b}");
                }
            }
        }
    }
}

/// Checks `m.matmul` on `tokens` random tokens against two f64 references:
/// with the activations exactly as the kernels quantized them (only f32
/// rounding may differ), and with the f32 activations (the i8 quantization
/// error is bounded).
fn check_matmul(dtype: GgmlDType, rows: usize, cols: usize, tokens: usize, seed: u64) {
    let (m, w) = build(dtype, rows, cols, seed);
    let x = Rng(seed ^ 0x5555).values(tokens * cols);
    let mut a = Activations::new();
    a.quantize(&x, tokens, cols).unwrap();
    assert_eq!((a.tokens(), a.cols()), (tokens, cols));
    let mut out = vec![f32::NAN; tokens * rows];
    m.matmul(&a, &mut out).unwrap();

    let float = matches!(dtype, GgmlDType::F16 | GgmlDType::F32);
    // K-quants see activations quantized per 256, the others per 32.
    let (q, d, per) = if block(dtype) == 256 {
        let (q, d) = a.quantized_k();
        (q, d, 256)
    } else {
        let (q, d) = a.quantized();
        (q, d, 32)
    };
    let mut sq_ratio = 0f64;
    for t in 0..tokens {
        let xt = &x[t * cols..(t + 1) * cols];
        // The activations the integer kernels see: d_b · q_i.
        let xq: Vec<f64> = (0..cols)
            .map(|c| if float { f64::from(xt[c]) } else { f64::from(d[(t * cols + c) / per]) * f64::from(q[t * cols + c]) })
            .collect();
        let norm_x = xt.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        let norm_xq = xq.iter().map(|v| v * v).sum::<f64>().sqrt();
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let norm_w = wr.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            let exact: f64 = wr.iter().zip(&xq).map(|(&a, b)| f64::from(a) * b).sum();
            let reference: f64 = wr.iter().zip(xt).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let got = f64::from(out[t * rows + r]);
            let ctx = format!("{dtype:?} [{rows} x {cols}] token {t}/{tokens} row {r}: got {got}");
            // Only f32 rounding between the kernel and the exact product.
            assert!((got - exact).abs() <= 1e-5 * norm_w * norm_xq + 1e-30, "{ctx}, exact {exact}");
            // Rounding x to q·d errs by at most d/2 = amax/254 per value, and
            // Σ_b n·amax_b² ≤ n·‖x‖² over blocks of n, so ‖x - xq‖ ≤ √(n/4)/127·‖x‖
            // (0.0223·‖x‖ per 32, 0.063·‖x‖ per 256) and |W_r·(x - xq)| is at
            // most that times ‖W_r‖ (Cauchy-Schwarz).
            let bound = if float { 1e-5 } else { (per as f64 / 4.0).sqrt() / 127.0 } * norm_w * norm_x;
            assert!((got - reference).abs() <= bound + 1e-30, "{ctx}, reference {reference}");
            sq_ratio += ((got - reference) / (norm_w * norm_x).max(1e-30)).powi(2);
        }
    }
    // Rounding errors are independent: typically ‖W_r‖·d/√12 ≪ the bound.
    let rms = (sq_ratio / (tokens * rows) as f64).sqrt();
    assert!(rms < 2e-3, "{dtype:?} [{rows} x {cols}] tokens {tokens}: rms relative error {rms}");
}

#[test]
fn matmul_matches_reference_for_every_type() {
    for dtype in TYPES {
        for cols in col_counts(dtype) {
            for tokens in [1, 3, 17] {
                check_matmul(dtype, 37, cols, tokens, 1000 + cols as u64 + tokens as u64);
            }
        }
    }
}

/// Sum of four lanes in the kernels' order.
fn hsum4(a: [f32; 4]) -> f32 {
    (a[0] + a[2]) + (a[1] + a[3])
}

/// The kernels' f32 dot product: element `i` into accumulator `i % 16` for
/// the whole chunks of 16, lanes `l` of the four f32x4 added pairwise, then
/// [`hsum4`], then the sequential sum of the rest.
fn fdot_order(a: &[f32], b: &[f32]) -> f32 {
    let whole = a.len() / 16 * 16;
    let mut acc = [0f32; 16];
    for i in 0..whole {
        acc[i % 16] += a[i] * b[i];
    }
    let lanes = std::array::from_fn(|l| (acc[l] + acc[4 + l]) + (acc[8 + l] + acc[12 + l]));
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    hsum4(lanes) + tail
}

/// The kernels' per-32 dot: block `b` into lane `b % 4` as
/// `f32(Σ val·q) · (scale · d)`, then [`hsum4`].
fn dot32_order(vals: &[i8], scales: &[f32], q: &[i8], d: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    for (b, ((w, x), (&s, &d))) in vals.chunks(32).zip(q.chunks(32)).zip(scales.iter().zip(d)).enumerate() {
        let isum: i32 = w.iter().zip(x).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        acc[b % 4] += isum as f32 * (s * d);
    }
    hsum4(acc)
}

/// The f16 at `b[at..]`.
fn f16(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// A row (raw bytes of an F32, Q8_0 or Q4_1 row) dot a token (`x`, and its
/// quantization `q`, `d`) in the kernels' f32 order, with the row unpacked here.
fn row_dot_in_order(dtype: GgmlDType, row: &[u8], x: &[f32], q: &[i8], d: &[f32]) -> f32 {
    match dtype {
        GgmlDType::F32 => {
            let w: Vec<f32> = row.chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            fdot_order(&w, x)
        }
        GgmlDType::Q8_0 => {
            let scales: Vec<f32> = row.chunks(34).map(|b| f16(b, 0)).collect();
            let vals: Vec<i8> = row.chunks(34).flat_map(|b| b[2..].iter().map(|&v| v as i8)).collect();
            dot32_order(&vals, &scales, q, d)
        }
        GgmlDType::Q4_1 => {
            // `d · val + m`: the minimum term is `fdot(mins, d · Σq)`.
            let scales: Vec<f32> = row.chunks(20).map(|b| f16(b, 0)).collect();
            let mins: Vec<f32> = row.chunks(20).map(|b| f16(b, 2)).collect();
            let nibbles = |b: &[u8]| {
                let qs = b[4..].to_vec();
                qs.iter().map(|&v| (v & 0xF) as i8).chain(qs.iter().map(|&v| (v >> 4) as i8)).collect::<Vec<_>>()
            };
            let vals: Vec<i8> = row.chunks(20).flat_map(nibbles).collect();
            let sums: Vec<f32> = q.chunks(32).zip(d).map(|(q, &d)| d * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32).collect();
            dot32_order(&vals, &scales, q, d) + fdot_order(&mins, &sums)
        }
        _ => unreachable!("{dtype:?}"),
    }
}

/// A Q4_K or Q6_K row (raw bytes) dot a token quantized per 256 (`q`, `d`
/// per super-block) in the kernels' documented order: per super-block the
/// exact integer sums, then `v = f32(isc)·(d·dx)`, minus `f32(imin)·(dmin·dx)`
/// for Q4_K, super-block `s` added to `acc[s % 4]`, then [`hsum4`].
fn k_row_dot_in_order(dtype: GgmlDType, row: &[u8], q: &[i8], dx: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let bytes = if dtype == GgmlDType::Q4K { 144 } else { 210 };
    for (s, (blk, &dx)) in row.chunks(bytes).zip(dx).enumerate() {
        let x = &q[256 * s..256 * (s + 1)];
        let (mut isc, mut imin) = (0i64, 0i64);
        let v = if dtype == GgmlDType::Q4K {
            // scales[12]: 6-bit scale and minimum per 32, get_scale_min_k4's packing.
            let sc = &blk[4..16];
            let scale_min = |j: usize| {
                if j < 4 {
                    (sc[j] & 63, sc[j + 4] & 63)
                } else {
                    ((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4))
                }
            };
            for j in 0..8 {
                let (scale, min) = scale_min(j);
                let (c, high) = (j / 2, j % 2 == 1);
                let mut dot = 0i64;
                let mut sum = 0i64;
                for l in 0..32 {
                    let byte = blk[16 + 32 * c + l];
                    let u = if high { byte >> 4 } else { byte & 0xF };
                    dot += i64::from(u) * i64::from(x[32 * j + l]);
                    sum += i64::from(x[32 * j + l]);
                }
                isc += i64::from(scale) * dot;
                imin += i64::from(min) * sum;
            }
            let v = isc as i32 as f32 * (f16(blk, 0) * dx);
            v - imin as i32 as f32 * (f16(blk, 2) * dx)
        } else {
            // ql[128], qh[64], scales[16] (i8), d: weight 128n + 32k + l.
            for n in 0..2 {
                for k in 0..4 {
                    for l in 0..32 {
                        let i = 128 * n + 32 * k + l;
                        let ql = blk[64 * n + l + if k % 2 == 1 { 32 } else { 0 }];
                        let low = if k >= 2 { ql >> 4 } else { ql & 0xF };
                        let high = (blk[128 + 32 * n + l] >> (2 * k)) & 3;
                        let w = i64::from(low | (high << 4)) - 32;
                        isc += i64::from(blk[192 + i / 16] as i8) * w * i64::from(x[i]);
                    }
                }
            }
            isc as i32 as f32 * (f16(blk, 208) * dx)
        };
        acc[s % 4] += v;
    }
    hsum4(acc)
}

/// The native matmul is exactly (bit for bit) the documented f32 order that
/// the wasm `simd128` kernels also follow (`kernels_wasm` checks that one).
#[test]
fn matmul_follows_the_shared_f32_order() {
    let rows = 9;
    for dtype in [GgmlDType::F32, GgmlDType::Q8_0, GgmlDType::Q4_1] {
        for cols in [96, 192, 576, 1536] {
            let w = Rng(cols as u64).values(rows * cols);
            let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
            let data = QTensor::quantize(&t, dtype).unwrap().data().unwrap().to_vec();
            let m = QMatrix::new(dtype, rows, cols, data.clone()).unwrap();
            let row_bytes = data.len() / rows;
            for tokens in [1, 3] {
                let x = Rng(7 + tokens as u64).values(tokens * cols);
                let mut a = Activations::new();
                a.quantize(&x, tokens, cols).unwrap();
                let mut out = vec![0f32; tokens * rows];
                m.matmul(&a, &mut out).unwrap();
                let (q, d) = a.quantized();
                for (t, r) in (0..tokens).flat_map(|t| (0..rows).map(move |r| (t, r))) {
                    let (xt, qt, dt) = (&x[t * cols..][..cols], &q[t * cols..][..cols], &d[t * cols / 32..][..cols / 32]);
                    let want = row_dot_in_order(dtype, &data[r * row_bytes..][..row_bytes], xt, qt, dt);
                    let got = out[t * rows + r];
                    let ctx = format!("{dtype:?} [{rows} x {cols}] token {t}/{tokens} row {r}");
                    assert_eq!(got.to_bits(), want.to_bits(), "{ctx}: {got:e} vs {want:e}");
                }
            }
        }
    }
}

/// The K-quant matmul is exactly the documented per-super-block order (the
/// wasm backends follow the same, checked by `kernels_wasm`).
#[test]
fn k_quant_matmul_follows_the_shared_order() {
    let rows = 7;
    for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
        for cols in [256, 768, 1280, 2048] {
            let w = Rng(cols as u64 + 1).values(rows * cols);
            let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
            let data = QTensor::quantize(&t, dtype).unwrap().data().unwrap().to_vec();
            let m = QMatrix::new(dtype, rows, cols, data.clone()).unwrap();
            let row_bytes = data.len() / rows;
            for tokens in [1, 2, 9] {
                let x = Rng(3 + tokens as u64).values(tokens * cols);
                let mut a = Activations::new();
                a.quantize(&x, tokens, cols).unwrap();
                let mut out = vec![0f32; tokens * rows];
                m.matmul(&a, &mut out).unwrap();
                let (q, d) = a.quantized_k();
                for (t, r) in (0..tokens).flat_map(|t| (0..rows).map(move |r| (t, r))) {
                    let want = k_row_dot_in_order(
                        dtype,
                        &data[r * row_bytes..][..row_bytes],
                        &q[t * cols..][..cols],
                        &d[t * cols / 256..][..cols / 256],
                    );
                    let got = out[t * rows + r];
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{dtype:?} [{rows} x {cols}] token {t}/{tokens} row {r}: {got:e} vs {want:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_splits_many_rows() {
    // Enough work for several threads and several row tiles per thread.
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::F16] {
        check_matmul(dtype, 301, 512, 5, 42);
        check_matmul(dtype, 263, 256, 1, 43);
    }
}

#[test]
fn activations_reuse_their_buffers() {
    let (m, _) = build(GgmlDType::Q8_0, 9, 64, 3);
    let mut a = Activations::new();
    let big = Rng(1).values(20 * 64);
    a.quantize(&big, 20, 64).unwrap();
    let small = Rng(2).values(2 * 64);
    a.quantize(&small, 2, 64).unwrap();
    let mut out = vec![0f32; 18];
    m.matmul(&a, &mut out).unwrap();
    let mut fresh = Activations::new();
    fresh.quantize(&small, 2, 64).unwrap();
    let mut want = vec![0f32; 18];
    m.matmul(&fresh, &mut want).unwrap();
    assert_eq!(out, want);
}

#[test]
fn zero_activations_give_zero() {
    let (m, _) = build(GgmlDType::Q4_1, 4, 64, 5);
    let mut a = Activations::new();
    a.quantize(&[0.0; 128], 2, 64).unwrap();
    let mut out = vec![1f32; 8];
    m.matmul(&a, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0), "{out:?}");
}

#[test]
fn rejects_bad_shapes() {
    let dtype = GgmlDType::Q4K;
    let bytes = QMatrix::row_bytes(dtype, 256).unwrap();
    assert_eq!(bytes, 144);
    assert!(matches!(QMatrix::new(dtype, 2, 256, vec![0; 2 * bytes - 1]), Err(KernelError::DataLength { expected: 288, actual: 287, .. })));
    assert!(matches!(QMatrix::new(dtype, 2, 200, vec![0; 288]), Err(KernelError::NotBlockMultiple { cols: 200, block: 256, .. })));
    assert!(matches!(QMatrix::row_bytes(GgmlDType::Q4_0, 48), Err(KernelError::NotBlockMultiple { block: 32, .. })));
    assert!(matches!(QMatrix::row_bytes(GgmlDType::Q8K, 256), Err(KernelError::Unsupported(GgmlDType::Q8K))));
    assert!(matches!(QMatrix::new(GgmlDType::BF16, 1, 4, vec![0; 8]), Err(KernelError::Unsupported(_))));
    assert!(matches!(QMatrix::new(dtype, usize::MAX, 256, vec![]), Err(KernelError::TooLarge { .. })));
    let e = QMatrix::new(dtype, 2, 256, vec![0; 10]).unwrap_err();
    assert_eq!(e.to_string(), "Q4K matrix [2, 256] needs 288 bytes, got 10");

    let mut a = Activations::new();
    assert!(matches!(a.quantize(&[0.0; 66], 2, 33), Err(KernelError::NotBlockMultiple { cols: 33, .. })));
    assert!(matches!(a.quantize(&[0.0; 63], 2, 32), Err(KernelError::InputLength { actual: 63, .. })));

    let m = QMatrix::new(dtype, 2, 256, vec![0; 288]).unwrap();
    a.quantize(&[0.0; 64], 2, 32).unwrap();
    let mut out = [0f32; 4];
    assert!(matches!(m.matmul(&a, &mut out), Err(KernelError::ColsMismatch { matrix: 256, activations: 32 })));
    a.quantize(&[0.0; 512], 2, 256).unwrap();
    assert!(matches!(m.matmul(&a, &mut out[..3]), Err(KernelError::OutputLength { expected: 4, actual: 3 })));
    m.matmul(&a, &mut out).unwrap();
    let mut row = [0f32; 256];
    assert!(matches!(m.dequantize_row(2, &mut row), Err(KernelError::RowOutOfRange { row: 2, rows: 2 })));
    assert!(matches!(m.dequantize_row(0, &mut row[..255]), Err(KernelError::OutputLength { .. })));
}

#[test]
fn empty_shapes_are_fine() {
    let m = QMatrix::new(GgmlDType::Q4_0, 3, 0, vec![]).unwrap();
    let mut a = Activations::new();
    a.quantize(&[], 2, 0).unwrap();
    let mut out = [1f32; 6];
    m.matmul(&a, &mut out).unwrap();
    assert_eq!(out, [0.0; 6]);
    m.dequantize_row(2, &mut []).unwrap();
    let m = QMatrix::new(GgmlDType::Q6K, 0, 256, vec![]).unwrap();
    a.quantize(&[0.5; 256], 1, 256).unwrap();
    m.matmul(&a, &mut []).unwrap();
}

//! A tiny product that proves the engine's quantized kernels run where the
//! engine is, on the path every weight matrix of a model takes: Q8_0
//! weights dotted with activations rounded to 8 bits per block, by the best
//! kernels this build has (relaxed SIMD, `simd128` or portable).

use crate::kernels::{Activations, GgmlDType, KernelError, QMatrix};

/// Why the self-test failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// The kernels refused the product.
    #[error("the kernels failed: {0}")]
    Kernel(#[from] KernelError),
    /// The product is wrong.
    #[error("the kernels computed {got:?}, not {expected:?}")]
    Wrong {
        /// What the kernels gave.
        got: Vec<f32>,
        /// The exact product.
        expected: Vec<f32>,
    },
}

/// Multiplies [[1, 2], [3, 4]] (a Q8_0 matrix with scale 1, padded to one
/// block of 32 columns) by [[5, 6], [7, 8]] with the kernels, checks the
/// product against the exact one within what the activations' 8-bit
/// rounding allows, and returns it rounded, as text: `[[19, 22], [43, 50]]`.
///
/// # Errors
/// [`SelfTestError`].
pub fn matmul_2x2() -> Result<String, SelfTestError> {
    const COLS: usize = 32;
    let mut data = Vec::with_capacity(2 * 34);
    for row in [[1i8, 2], [3, 4]] {
        data.extend_from_slice(&half::f16::ONE.to_le_bytes());
        data.extend(row.iter().map(|&v| v as u8));
        data.extend(std::iter::repeat_n(0u8, COLS - 2));
    }
    let weights = QMatrix::new(GgmlDType::Q8_0, 2, COLS, data)?;
    // The two columns of [[5, 6], [7, 8]], one token each.
    let mut x = vec![0f32; 2 * COLS];
    x[..2].copy_from_slice(&[5.0, 7.0]);
    x[COLS..COLS + 2].copy_from_slice(&[6.0, 8.0]);
    let mut activations = Activations::new();
    activations.quantize(&x, 2, COLS)?;
    let mut out = [0f32; 4];
    weights.matmul(&activations, &mut out)?;
    // out[t * rows + r]: back to rows of the product.
    let got = vec![out[0], out[2], out[1], out[3]];
    let expected = vec![19.0, 22.0, 43.0, 50.0];
    // Each activation is off by at most half a step of amax / 127.
    if got.iter().zip(&expected).any(|(g, e)| (g - e).abs() > 0.5) {
        return Err(SelfTestError::Wrong { got, expected });
    }
    let r: Vec<String> = got.iter().map(|v| format!("{:.0}", v.round())).collect();
    Ok(format!("[[{}, {}], [{}, {}]]", r[0], r[1], r[2], r[3]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn product_is_right() {
        assert_eq!(super::matmul_2x2().unwrap(), "[[19, 22], [43, 50]]");
    }
}

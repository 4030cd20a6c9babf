//! A tiny computation that proves the tensor backend runs where the engine is.

use candle_core::{Device, Tensor};

/// Multiplies two fixed 2×2 matrices on the CPU device and returns the product
/// as text, e.g. `[[19, 22], [43, 50]]`.
///
/// # Errors
/// Any candle error, which would mean the backend cannot run here.
pub fn matmul_2x2() -> candle_core::Result<String> {
    let dev = Device::Cpu;
    let a = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev)?;
    let b = Tensor::new(&[[5f32, 6.], [7., 8.]], &dev)?;
    let rows = a.matmul(&b)?.to_vec2::<f32>()?;
    let rows: Vec<String> = rows
        .iter()
        .map(|r| format!("[{}]", r.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(", ")))
        .collect();
    Ok(format!("[{}]", rows.join(", ")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn product_is_right() {
        assert_eq!(super::matmul_2x2().unwrap(), "[[19, 22], [43, 50]]");
    }
}

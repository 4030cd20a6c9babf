//! The synthetic values: seeded, deterministic, computed row by row so any
//! block of rows can be generated on its own (and in parallel), and pruned
//! Wanda-style.
//!
//! Every row has its own generator, seeded from the run's seed, the tensor's
//! name and the row's index: the bytes do not depend on the block size or the
//! number of threads.

use super::shape::{Kind, TensorSpec};

/// The stored floating-point type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// IEEE half precision.
    F16,
    /// bfloat16 (Mistral's own checkpoints).
    Bf16,
    /// IEEE single precision.
    F32,
}

impl Dtype {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Self::F16 | Self::Bf16 => 2,
            Self::F32 => 4,
        }
    }

    /// The safetensors type.
    pub fn safetensors(self) -> safetensors::Dtype {
        match self {
            Self::F16 => safetensors::Dtype::F16,
            Self::Bf16 => safetensors::Dtype::BF16,
            Self::F32 => safetensors::Dtype::F32,
        }
    }

    /// The `torch_dtype` of `config.json`.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
            Self::F32 => "float32",
        }
    }

    /// Writes `values` as little-endian values of this type into `out`
    /// (`values.len() * self.size()` bytes), rounding to nearest even;
    /// `scratch` is reused space for the half-precision bits.
    pub fn encode(self, values: &[f32], out: &mut [u8], scratch: &mut Vec<u16>) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        debug_assert_eq!(out.len(), values.len() * self.size());
        scratch.resize(values.len(), 0);
        match self {
            // Vectorized (F16C on x86) over the whole row.
            Self::F16 => scratch.reinterpret_cast_mut::<half::f16>().convert_from_f32_slice(values),
            Self::Bf16 => scratch.reinterpret_cast_mut::<half::bf16>().convert_from_f32_slice(values),
            Self::F32 => {
                for (x, bytes) in values.iter().zip(out.chunks_exact_mut(4)) {
                    bytes.copy_from_slice(&x.to_le_bytes());
                }
                return;
            }
        }
        for (bits, bytes) in scratch.iter().zip(out.chunks_exact_mut(2)) {
            bytes.copy_from_slice(&bits.to_le_bytes());
        }
    }
}

/// Standard deviation of the matrices' values (Mistral's `initializer_range`).
const WEIGHT_STD: f32 = 0.02;
/// Standard deviation of the norms' scales around 1.
const NORM_STD: f32 = 0.05;
/// The smallest magnitude of a value that is not pruned: exactly representable
/// in f16 (as a subnormal), bf16 and f32, so no value rounds to zero and the
/// only zeros are the pruned ones.
const MIN_MAGNITUDE: f32 = 1.0 / 65_536.0;
/// Fraction of activation columns that are outliers (a few large features, as
/// in real LLM activations, are what makes Wanda differ from magnitude pruning).
const OUTLIER_RATE: f32 = 0.005;
/// How much larger an outlier column's norm is.
const OUTLIER_SCALE: f32 = 20.0;

/// splitmix64: a fast, well-mixed 64-bit generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A uniform value in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// A roughly standard normal value: the centred, scaled sum of four
    /// 16-bit uniforms (Irwin–Hall), one 64-bit draw; bounded by ±3.46.
    pub fn normalish(&mut self) -> f32 {
        /// The standard deviation of the sum of four uniforms over 0..65536.
        const SUM_STD: f32 = 37_837.23;
        let x = self.next_u64();
        let sum = (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48);
        (sum as f32 - 131_070.0) * (1.0 / SUM_STD)
    }
}

/// The splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed derived from the run's seed and a name (FNV-1a, then mixed).
fn seed_for(seed: u64, name: &str) -> u64 {
    let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    mix(seed ^ mix(fnv))
}

/// A value whose magnitude is at least [`MIN_MAGNITUDE`].
fn nonzero(x: f32) -> f32 {
    if x.abs() < MIN_MAGNITUDE {
        MIN_MAGNITUDE.copysign(x)
    } else {
        x
    }
}

/// The seeded per-column norms `||X_j||` of the activation named `input`:
/// log-normal around 1, with a few outlier columns 20 times larger. The same
/// for every matrix that reads that activation.
pub fn activation_norms(seed: u64, input: &str, n: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed_for(seed, input));
    (0..n)
        .map(|_| {
            let norm = (0.5 * rng.normalish()).exp();
            if rng.uniform() < OUTLIER_RATE {
                norm * OUTLIER_SCALE
            } else {
                norm
            }
        })
        .collect()
}

/// The number of entries pruned in a row of `cols`: `round(sparsity × cols)`.
pub fn zeros_per_row(sparsity: f64, cols: usize) -> usize {
    ((sparsity * cols as f64).round() as usize).min(cols)
}

/// How to compute the rows of one tensor.
#[derive(Debug, Clone)]
pub struct TensorValues {
    seed: u64,
    cols: usize,
    kind: RowKind,
}

#[derive(Debug, Clone)]
enum RowKind {
    Dense,
    Norm,
    Pruned { norms: Vec<f32>, zeros: usize },
}

impl TensorValues {
    /// The values of `spec` for the run's `seed`, its linear layers pruned to
    /// `sparsity`.
    pub fn new(spec: &TensorSpec, seed: u64, sparsity: f64) -> Self {
        let cols = spec.cols();
        let kind = match &spec.kind {
            Kind::Dense => RowKind::Dense,
            Kind::Norm => RowKind::Norm,
            Kind::Pruned { input } => RowKind::Pruned { norms: activation_norms(seed, input, cols), zeros: zeros_per_row(sparsity, cols) },
        };
        Self { seed: seed_for(seed, &spec.name), cols, kind }
    }

    /// The length of a row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Computes row `row` into `out` (`cols` values); `keys` is scratch space.
    pub fn row(&self, row: usize, out: &mut [f32], keys: &mut Vec<u64>) {
        let mut rng = Rng::new(mix(self.seed ^ mix(row as u64)));
        match &self.kind {
            RowKind::Dense => out.iter_mut().for_each(|x| *x = nonzero(WEIGHT_STD * rng.normalish())),
            RowKind::Norm => out.iter_mut().for_each(|x| *x = 1.0 + NORM_STD * rng.normalish()),
            RowKind::Pruned { norms, zeros } => {
                out.iter_mut().for_each(|x| *x = nonzero(WEIGHT_STD * rng.normalish()));
                prune_row(out, norms, *zeros, keys);
            }
        }
    }
}

/// Wanda on one output row: sets to +0.0 exactly the `zeros` entries with the
/// smallest score `|W_j| · ||X_j||`, ties broken by the lower column index;
/// `keys` is scratch space.
///
/// The scores are non-negative, so their bit patterns sort like their values:
/// each key is `score bits << 32 | column`, a total order, and a selection on
/// the keys picks the same set on every run. (Measured: faster than selecting
/// on the bare `u32` scores and resolving ties in a second pass; about 2 ns
/// per value.)
pub fn prune_row(row: &mut [f32], norms: &[f32], zeros: usize, keys: &mut Vec<u64>) {
    if zeros == 0 {
        return;
    }
    keys.clear();
    keys.extend(row.iter().zip(norms).enumerate().map(|(j, (w, n))| (u64::from((w.abs() * n).to_bits()) << 32) | j as u64));
    keys.select_nth_unstable(zeros - 1);
    for &key in &keys[..zeros] {
        row[(key & 0xffff_ffff) as usize] = 0.0;
    }
}

/// Computes the consecutive rows of `values` starting at `first_row` as
/// `dtype` bytes into `out` (whole rows), on up to `threads` threads.
pub fn fill_rows(values: &TensorValues, first_row: usize, dtype: Dtype, out: &mut [u8], threads: usize) {
    let row_bytes = values.cols * dtype.size();
    let rows = out.len() / row_bytes;
    let per_thread = rows.div_ceil(threads.max(1)).max(1);
    if per_thread >= rows {
        fill_serial(values, first_row, dtype, out);
        return;
    }
    std::thread::scope(|s| {
        let mut chunks = out.chunks_mut(per_thread * row_bytes).enumerate();
        let (_, mine) = chunks.next().expect("at least one row");
        for (i, chunk) in chunks {
            s.spawn(move || fill_serial(values, first_row + i * per_thread, dtype, chunk));
        }
        fill_serial(values, first_row, dtype, mine);
    });
}

fn fill_serial(values: &TensorValues, first_row: usize, dtype: Dtype, out: &mut [u8]) {
    let mut row = vec![0f32; values.cols];
    let (mut keys, mut scratch) = (Vec::with_capacity(values.cols), Vec::with_capacity(values.cols));
    for (i, bytes) in out.chunks_exact_mut(values.cols * dtype.size()).enumerate() {
        values.row(first_row + i, &mut row, &mut keys);
        dtype.encode(&row, bytes, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::synth::shape::{Shape, ShapeName};

    #[test]
    fn normalish_has_mean_zero_and_unit_variance() {
        let mut rng = Rng::new(1);
        let xs: Vec<f64> = (0..200_000).map(|_| f64::from(rng.normalish())).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "{mean} {var}");
    }

    #[test]
    fn pruning_zeroes_exactly_the_lowest_scores_with_ties_by_index() {
        let mut row = [0.5, -0.1, 0.1, 0.3, 0.1, -0.2];
        let norms = [1.0, 1.0, 1.0, 0.1, 1.0, 1.0];
        prune_row(&mut row, &norms, 3, &mut Vec::new());
        // Scores 0.5, 0.1, 0.1, 0.03, 0.1, 0.2: 0.03 then the first two 0.1s.
        assert_eq!(row, [0.5, 0.0, 0.0, 0.0, 0.1, -0.2]);
        assert!(row.iter().all(|x| x.is_sign_positive() || *x != 0.0));
    }

    #[test]
    fn every_pruned_row_has_exactly_its_zeros_in_every_dtype() {
        let tensors = Shape::new(ShapeName::Tiny, 32_000).tensors();
        for spec in tensors.iter().filter(|t| matches!(t.kind, Kind::Pruned { .. })) {
            let values = TensorValues::new(spec, 5, 0.3);
            for dtype in [Dtype::F16, Dtype::Bf16, Dtype::F32] {
                let mut out = vec![0u8; spec.len() * dtype.size()];
                fill_rows(&values, 0, dtype, &mut out, 3);
                for row in out.chunks(spec.cols() * dtype.size()) {
                    let zeros = row.chunks(dtype.size()).filter(|b| b.iter().all(|&x| x == 0)).count();
                    assert_eq!(zeros, zeros_per_row(0.3, spec.cols()), "{} {dtype:?}", spec.name);
                }
            }
        }
    }

    #[test]
    fn rows_do_not_depend_on_blocks_or_threads() {
        let spec = &Shape::new(ShapeName::Tiny, 32_000).tensors()[1];
        let values = TensorValues::new(spec, 9, 0.3);
        let bytes = spec.cols() * 2;
        let mut whole = vec![0u8; spec.len() * 2];
        fill_rows(&values, 0, Dtype::F16, &mut whole, 1);
        let mut parts = vec![0u8; spec.len() * 2];
        let (a, b) = parts.split_at_mut(7 * bytes);
        fill_rows(&values, 0, Dtype::F16, a, 4);
        fill_rows(&values, 7, Dtype::F16, b, 2);
        assert_eq!(whole, parts);
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use crate::commands::synth::shape::{Shape, ShapeName};

    /// The best of five timings of `f`, in nanoseconds per value of `values`.
    fn best(values: usize, mut f: impl FnMut()) -> f64 {
        (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                f();
                started.elapsed().as_secs_f64() * 1e9 / values as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// `cargo test --release -p sprig-cli --bin sprig -- --ignored --nocapture generation_speed`
    #[test]
    #[ignore = "a measurement, run in release"]
    fn generation_speed() {
        let tensors = Shape::new(ShapeName::Mistral7b, 32_000).tensors();
        for name in ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"] {
            let spec = tensors.iter().find(|t| t.name == name).unwrap();
            let values = TensorValues::new(spec, 1, 0.3);
            let rows = 512;
            let n = rows * spec.cols();
            let (mut row, mut keys, mut scratch) = (vec![0f32; spec.cols()], Vec::new(), Vec::new());
            let mut out = vec![0u8; n * 2];
            let gen = best(n, || (0..rows).for_each(|r| values.row(r, &mut row, &mut keys)));
            let enc = best(n, || out.chunks_exact_mut(spec.cols() * 2).for_each(|b| Dtype::F16.encode(&row, b, &mut scratch)));
            let all = best(n, || fill_rows(&values, 0, Dtype::F16, &mut out, 1));
            eprintln!("{name}: rows {gen:.2} + f16 {enc:.2} = {all:.2} ns per value on one thread");
        }
    }
}

//! `sprig synth-gguf --size 1GB --output FILE`: a synthetic, Mistral-shaped
//! (llama architecture, GQA 4:1, RoPE theta 1e6) GGUF of about the requested
//! size, with random seeded weights and a real SentencePiece vocabulary, for
//! benchmarking downloads and loads. Its output is noise.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use anyhow::Context;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::GgmlDType;
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};

/// The matrices' quantization type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// 4-bit, one scale per block of 32 (4.5 bits per weight).
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit, scale and minimum per block of 32 (5 bits per weight).
    #[value(name = "q4_1")]
    Q4_1,
    /// 8-bit, one scale per block of 32 (8.5 bits per weight).
    #[value(name = "q8_0")]
    Q8_0,
}

impl Dtype {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q8_0 => GgmlDType::Q8_0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
        }
    }
}

/// Arguments of `sprig synth-gguf`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The approximate file size: bytes, or a number with a unit (1GB, 512MiB).
    #[arg(long, value_parser = super::parse_size)]
    pub size: u64,
    /// The GGUF file to write (replaced if present).
    #[arg(long)]
    pub output: PathBuf,
    /// The matrices' quantization type (norms stay F32).
    #[arg(long, value_enum, default_value_t = Dtype::Q4_0)]
    pub dtype: Dtype,
    /// The SentencePiece `tokenizer.model` whose vocabulary the model carries.
    #[arg(long, default_value = "models/tokenizer.model.v1")]
    pub tokenizer: PathBuf,
    /// Seed of the weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// `general.name` (default: describes the shape).
    #[arg(long)]
    pub name: Option<String>,
}

/// Mistral-7B's context length (v0.2 and later).
const CONTEXT_LENGTH: usize = 32_768;
/// Residual widths tried, widest first.
const WIDTHS: [usize; 7] = [4096, 2048, 1024, 512, 256, 128, 64];

/// A Mistral-shaped model: what decides its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    n_head_kv: usize,
    n_ff: usize,
}

impl Shape {
    /// Mistral's proportions at width `n_embd`: heads of 128 (at least 4 heads),
    /// 4 query heads per key/value head, feed-forward 3.5 times the width.
    fn mistral(n_embd: usize, n_layer: usize) -> Self {
        let n_head = (n_embd / 128).max(4);
        Self { n_layer, n_embd, n_head, n_head_kv: n_head / 4, n_ff: n_embd * 7 / 2 }
    }

    fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    fn parameters(&self, vocab: usize) -> u64 {
        let (w, hd) = (self.n_embd as u64, self.head_dim() as u64);
        let attn = w * (self.n_head as u64 * hd) * 2 + w * (self.n_head_kv as u64 * hd) * 2;
        let layer = attn + 3 * w * self.n_ff as u64 + 2 * w;
        2 * vocab as u64 * w + w + self.n_layer as u64 * layer
    }

    /// The file size, given the size of the tokenizer metadata.
    fn file_bytes(&self, vocab: usize, dtype: GgmlDType, tokenizer_bytes: u64) -> u64 {
        let pad = |b: u64| b.div_ceil(32) * 32;
        let mat = |rows: usize, cols: usize| pad((rows * cols / dtype.block_size() * dtype.type_size()) as u64);
        let norm = |n: usize| pad(4 * n as u64);
        let (w, hd) = (self.n_embd, self.head_dim());
        let layer = 2 * norm(w)
            + 2 * mat(self.n_head * hd, w)
            + 2 * mat(self.n_head_kv * hd, w)
            + 3 * mat(self.n_ff, w)
            // Nine tensor entries in the header.
            + 9 * 64;
        // Tokenizer keys, the other keys, the other tensors' entries.
        let header = tokenizer_bytes + 1024 + 3 * 64;
        header + 2 * mat(vocab, w) + norm(w) + self.n_layer as u64 * layer
    }
}

/// The Mistral-shaped model closest to `target` bytes: the widest width whose
/// model has at least `width / 128` layers (Mistral 7B: 4096 wide, 32 layers)
/// and at least two,
/// the nearest layer count, then the feed-forward width tuned (between 3 and 4
/// times the width) to close the gap. The narrowest model when even that is
/// larger than `target`.
fn shape_for(target: u64, vocab: usize, dtype: GgmlDType, tokenizer_bytes: u64) -> Shape {
    let bytes = |s: &Shape| s.file_bytes(vocab, dtype, tokenizer_bytes);
    let narrowest = WIDTHS[WIDTHS.len() - 1];
    let mut shape = Shape::mistral(narrowest, 1);
    for &w in &WIDTHS {
        let fixed = bytes(&Shape::mistral(w, 0));
        let per_layer = bytes(&Shape::mistral(w, 1)) - fixed;
        let layers = target.saturating_sub(fixed) as f64 / per_layer as f64;
        if layers >= (w / 128).max(2) as f64 || (w == narrowest && layers >= 1.0) {
            shape = Shape::mistral(w, (layers.round() as usize).max(1));
            break;
        }
    }
    // Tune n_ff (in whole blocks of 32) to approach the target.
    let w = shape.n_embd;
    let without_ff = bytes(&Shape { n_ff: 0, ..shape });
    let per_ff = (bytes(&Shape { n_ff: 32, ..shape }) - without_ff) as f64 / 32.0;
    let ff = target.saturating_sub(without_ff) as f64 / per_ff;
    shape.n_ff = ((ff / 32.0).round() as usize * 32).clamp(3 * w, 4 * w);
    shape
}

/// The serialized size of the tokenizer metadata.
fn metadata_bytes(meta: &[(String, Value)]) -> anyhow::Result<u64> {
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &refs, &[]).context("cannot serialize the tokenizer metadata")?;
    Ok(out.into_inner().len() as u64)
}

/// Runs `sprig synth-gguf`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = web_time::Instant::now();
    let bytes = std::fs::read(&args.tokenizer).with_context(|| format!("cannot read {}", args.tokenizer.display()))?;
    let tokenizer = SentencePieceModel::parse(&bytes).with_context(|| format!("cannot read {}", args.tokenizer.display()))?;
    let vocab = tokenizer.pieces.len();
    let meta = tokenizer.gguf_metadata();
    let dtype = args.dtype.ggml();
    let shape = shape_for(args.size, vocab, dtype, metadata_bytes(&meta)?);
    let params = shape.parameters(vocab);
    let expected = shape.file_bytes(vocab, dtype, metadata_bytes(&meta)?);
    let name = args.name.clone().unwrap_or_else(|| format!("synthetic Mistral-shaped {:.0}M {}", params as f64 / 1e6, args.dtype.label()));
    eprintln!(
        "{name}: {} layers, width {}, {} heads ({} key/value), feed-forward {}, vocabulary {vocab}; {params} parameters, about {expected} bytes",
        shape.n_layer, shape.n_embd, shape.n_head, shape.n_head_kv, shape.n_ff
    );
    let spec = SyntheticSpec {
        n_layer: shape.n_layer,
        n_embd: shape.n_embd,
        n_head: shape.n_head,
        n_head_kv: shape.n_head_kv,
        n_ff: shape.n_ff,
        context_length: CONTEXT_LENGTH,
        rope_theta: 1_000_000.0,
        sliding_window: None,
        dtype,
        seed: args.seed,
        name,
        chat_template: None,
    };
    // write_gguf builds the file in memory (about twice its size at peak).
    let data = write_gguf(&spec, &meta).context("cannot build the synthetic model")?;
    let mut part = args.output.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut file = std::fs::File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
    file.write_all(&data).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", part.display()))?;
    drop(file);
    std::fs::rename(&part, &args.output).with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("wrote {} ({} bytes) in {:.1} s", args.output.display(), data.len(), started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: usize = 32_000;
    const TOKENIZER: u64 = 600_000;

    #[test]
    fn a_gigabyte_is_a_mistral_shaped_model_near_a_gigabyte() {
        let s = shape_for(1_000_000_000, VOCAB, GgmlDType::Q4_0, TOKENIZER);
        assert_eq!((s.n_embd, s.n_head, s.n_head_kv, s.head_dim()), (2048, 16, 4, 128));
        assert!(s.n_layer >= 16, "{s:?}");
        let bytes = s.file_bytes(VOCAB, GgmlDType::Q4_0, TOKENIZER) as f64;
        assert!((bytes / 1e9 - 1.0).abs() < 0.01, "{bytes}");
    }

    #[test]
    fn mistral_7b_size_gives_mistral_7b_shape() {
        let s = shape_for(4_100_000_000, VOCAB, GgmlDType::Q4_0, TOKENIZER);
        assert_eq!((s.n_embd, s.n_layer, s.n_head, s.n_head_kv), (4096, 32, 32, 8));
        assert!((3 * 4096..=4 * 4096).contains(&s.n_ff), "{s:?}");
    }

    #[test]
    fn tiny_sizes_give_the_narrowest_model() {
        let s = shape_for(4_000_000, VOCAB, GgmlDType::Q4_0, TOKENIZER);
        assert_eq!(s.n_embd, 64);
        assert!(s.n_layer >= 1 && s.n_ff.is_multiple_of(32), "{s:?}");
        // Smaller than the embeddings alone: one layer, larger than asked.
        assert_eq!(shape_for(1, VOCAB, GgmlDType::Q8_0, TOKENIZER).n_layer, 1);
    }
}

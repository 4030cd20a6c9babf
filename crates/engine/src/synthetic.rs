//! Synthetic llama-architecture GGUF models with deterministic weights, for
//! tests and benchmarks: real file structure, real tokenizer metadata, random
//! (seeded) weights. The same seed gives the same bytes on every platform.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The shape of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Layers.
    pub n_layer: usize,
    /// Residual width.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Context length.
    pub context_length: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// Sliding window, if any.
    pub sliding_window: Option<usize>,
    /// Type of the matrices (norms stay F32).
    pub dtype: GgmlDType,
    /// Seed of the weights.
    pub seed: u64,
    /// `general.name`.
    pub name: String,
    /// A chat template to embed, if any.
    pub chat_template: Option<String>,
}

impl SyntheticSpec {
    /// A tiny Mistral-shaped model (GQA 2:1, rope theta 1e6): 2 layers, width 64.
    pub fn tiny_mistral() -> Self {
        Self {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            context_length: 512,
            rope_theta: 1_000_000.0,
            sliding_window: None,
            dtype: GgmlDType::Q8_0,
            seed: 42,
            name: "synthetic tiny mistral".into(),
            chat_template: None,
        }
    }
}

/// A small, fast, seeded generator (xorshift64*), identical on every target.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        v as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Writes a synthetic GGUF file into memory.
///
/// `tokenizer` is the list of `tokenizer.ggml.*` keys (e.g. from
/// [`crate::sentencepiece::SentencePieceModel::gguf_metadata`]); the vocabulary
/// size is the length of its `tokenizer.ggml.tokens`.
///
/// # Errors
/// Candle errors (e.g. a width that is not a whole number of blocks of `dtype`).
pub fn write_gguf(spec: &SyntheticSpec, tokenizer: &[(String, Value)]) -> candle_core::Result<Vec<u8>> {
    let vocab = tokenizer
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .and_then(|(_, v)| v.to_vec().ok())
        .map(Vec::len)
        .ok_or_else(|| candle_core::Error::Msg("tokenizer metadata has no tokenizer.ggml.tokens".into()))?;
    let dev = Device::Cpu;
    let mut rng = Rng(spec.seed.max(1));
    let mut matrix = |rows: usize, cols: usize, dtype: GgmlDType| -> candle_core::Result<QTensor> {
        let scale = 1.0 / (cols as f32).sqrt() * 1.7;
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() * scale).collect();
        QTensor::quantize(&Tensor::from_vec(data, (rows, cols), &dev)?, dtype)
    };
    let ones =
        |n: usize| -> candle_core::Result<QTensor> { QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &dev)?, GgmlDType::F32) };
    let hd = spec.n_embd / spec.n_head;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    tensors.push(("token_embd.weight".into(), matrix(vocab, spec.n_embd, spec.dtype)?));
    for i in 0..spec.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}");
        tensors.push((p("attn_norm.weight"), ones(spec.n_embd)?));
        tensors.push((p("attn_q.weight"), matrix(spec.n_head * hd, spec.n_embd, spec.dtype)?));
        tensors.push((p("attn_k.weight"), matrix(spec.n_head_kv * hd, spec.n_embd, spec.dtype)?));
        tensors.push((p("attn_v.weight"), matrix(spec.n_head_kv * hd, spec.n_embd, spec.dtype)?));
        tensors.push((p("attn_output.weight"), matrix(spec.n_embd, spec.n_head * hd, spec.dtype)?));
        tensors.push((p("ffn_norm.weight"), ones(spec.n_embd)?));
        tensors.push((p("ffn_gate.weight"), matrix(spec.n_ff, spec.n_embd, spec.dtype)?));
        tensors.push((p("ffn_up.weight"), matrix(spec.n_ff, spec.n_embd, spec.dtype)?));
        tensors.push((p("ffn_down.weight"), matrix(spec.n_embd, spec.n_ff, spec.dtype)?));
    }
    tensors.push(("output_norm.weight".into(), ones(spec.n_embd)?));
    tensors.push(("output.weight".into(), matrix(vocab, spec.n_embd, spec.dtype)?));

    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String(spec.name.clone())),
        ("llama.block_count".into(), Value::U32(spec.n_layer as u32)),
        ("llama.context_length".into(), Value::U32(spec.context_length as u32)),
        ("llama.embedding_length".into(), Value::U32(spec.n_embd as u32)),
        ("llama.feed_forward_length".into(), Value::U32(spec.n_ff as u32)),
        ("llama.attention.head_count".into(), Value::U32(spec.n_head as u32)),
        ("llama.attention.head_count_kv".into(), Value::U32(spec.n_head_kv as u32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-5)),
        ("llama.rope.freq_base".into(), Value::F32(spec.rope_theta)),
        ("llama.rope.dimension_count".into(), Value::U32(hd as u32)),
        ("llama.vocab_size".into(), Value::U32(vocab as u32)),
    ];
    if let Some(w) = spec.sliding_window {
        meta.push(("llama.attention.sliding_window".into(), Value::U32(w as u32)));
    }
    if let Some(t) = &spec.chat_template {
        meta.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
    }
    meta.extend(tokenizer.iter().cloned());
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta_refs, &tensor_refs)?;
    Ok(out.into_inner())
}

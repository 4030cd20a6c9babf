//! A Llama-architecture forward pass in f32 over dense weights, one block at
//! a time, that shows each linear layer's inputs: what Wanda needs to weigh
//! the weights (the input norms ‖X_j‖₂ on calibration text). Matrix products
//! go through candle (f32 on the CPU); norms, RoPE (GGUF's interleaved pairs)
//! and SwiGLU are the engine's own.

use anyhow::Context;
use candle_core::{Device, Tensor};
use sprig_engine::model::{math, LlamaConfig, Rope};

/// The weights of one block, dense f32, `[out × in]` row-major.
#[derive(Debug, Clone)]
pub struct Block {
    /// RMS norm before attention.
    pub attn_norm: Vec<f32>,
    /// Query, key, value and output projections.
    pub wq: Vec<f32>,
    /// Key projection.
    pub wk: Vec<f32>,
    /// Value projection.
    pub wv: Vec<f32>,
    /// Output projection.
    pub wo: Vec<f32>,
    /// RMS norm before the feed-forward.
    pub ffn_norm: Vec<f32>,
    /// Gate projection.
    pub gate: Vec<f32>,
    /// Up projection.
    pub up: Vec<f32>,
    /// Down projection.
    pub down: Vec<f32>,
}

/// The inputs of a block's linear layers over every calibration token: the
/// squared sums per input column (‖X_j‖₂² before the square root).
#[derive(Debug, Clone, Default)]
pub struct InputNorms {
    /// Input of the query, key and value projections (the attention norm's output).
    pub qkv: Vec<f32>,
    /// Input of the output projection (the attention's output).
    pub o: Vec<f32>,
    /// Input of the gate and up projections (the feed-forward norm's output).
    pub gate_up: Vec<f32>,
    /// Input of the down projection (SwiGLU's output).
    pub down: Vec<f32>,
}

fn add_squares(acc: &mut Vec<f32>, x: &[f32], cols: usize) {
    if acc.is_empty() {
        acc.resize(cols, 0.0);
    }
    for row in x.chunks_exact(cols) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v * v;
        }
    }
}

/// `x` (`[rows × cols]`) times `w`ᵀ (`w`: `[out × cols]`): `[rows × out]`.
fn matmul_t(x: &[f32], rows: usize, w: &[f32], cols: usize) -> anyhow::Result<Vec<f32>> {
    let out = w.len() / cols;
    let x = Tensor::from_slice(x, (rows, cols), &Device::Cpu)?;
    let w = Tensor::from_slice(w, (out, cols), &Device::Cpu)?;
    Ok(x.matmul(&w.t()?)?.flatten_all()?.to_vec1()?)
}

/// Runs blocks over calibration chunks, keeping the hidden states.
pub struct Runner {
    cfg: LlamaConfig,
    rope: Rope,
    ctx: usize,
    /// Hidden states of every chunk, `[chunks × ctx × n_embd]`.
    pub x: Vec<f32>,
}

impl Runner {
    /// Starts from the token embeddings (`embedding`: `[vocab × n_embd]`) of
    /// `chunks`, each `ctx` tokens.
    ///
    /// # Errors
    /// A token outside the vocabulary; no memory for the tables.
    pub fn new(cfg: &LlamaConfig, embedding: &[f32], chunks: &[Vec<u32>], ctx: usize) -> anyhow::Result<Self> {
        let e = cfg.n_embd;
        let mut rope = Rope::new(cfg.head_dim, cfg.rope_theta);
        rope.reserve(ctx).context("no memory for the RoPE tables")?;
        let mut x = Vec::with_capacity(chunks.len() * ctx * e);
        for &t in chunks.iter().flatten() {
            let row = embedding.get(t as usize * e..(t as usize + 1) * e).with_context(|| format!("token {t} is outside the embedding"))?;
            x.extend_from_slice(row);
        }
        Ok(Self { cfg: cfg.clone(), rope, ctx, x })
    }

    fn rms(&self, x: &[f32], weight: &[f32]) -> Vec<f32> {
        let e = self.cfg.n_embd;
        let mut out = vec![0.0; x.len()];
        for (row, o) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
            math::rms_norm(row, weight, self.cfg.rms_eps as f32, o);
        }
        out
    }

    /// Causal attention of one chunk: `q` `[ctx × heads·hd]`, `k`/`v`
    /// `[ctx × kv·hd]`, RoPE applied to `q` and `k` here.
    fn attention(&self, mut q: Vec<f32>, mut k: Vec<f32>, v: &[f32]) -> Vec<f32> {
        let (hd, heads, kv) = (self.cfg.head_dim, self.cfg.n_head, self.cfg.n_head_kv);
        let ctx = self.ctx;
        for (p, row) in q.chunks_exact_mut(heads * hd).enumerate() {
            self.rope.apply(row, p);
        }
        for (p, row) in k.chunks_exact_mut(kv * hd).enumerate() {
            self.rope.apply(row, p);
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0.0f32; ctx * heads * hd];
        let mut scores = vec![0.0f32; ctx];
        for h in 0..heads {
            let g = h / (heads / kv);
            for i in 0..ctx {
                let qi = &q[i * heads * hd + h * hd..][..hd];
                for (j, s) in scores[..=i].iter_mut().enumerate() {
                    *s = math::dot(qi, &k[j * kv * hd + g * hd..][..hd]) * scale;
                }
                math::softmax(&mut scores[..=i]);
                let o = &mut out[i * heads * hd + h * hd..][..hd];
                for (j, &s) in scores[..=i].iter().enumerate() {
                    math::axpy(o, s, &v[j * kv * hd + g * hd..][..hd]);
                }
            }
        }
        out
    }

    /// Runs `block` over every chunk: with `norms`, adds up the inputs of its
    /// linear layers; the hidden states move on to the block's output.
    ///
    /// # Errors
    /// candle failing on a product.
    pub fn block(&mut self, b: &Block, mut norms: Option<&mut InputNorms>) -> anyhow::Result<()> {
        let (e, ctx) = (self.cfg.n_embd, self.ctx);
        let rows = self.x.len() / e;
        let h = self.rms(&self.x, &b.attn_norm);
        let (q, k, v) = (matmul_t(&h, rows, &b.wq, e)?, matmul_t(&h, rows, &b.wk, e)?, matmul_t(&h, rows, &b.wv, e)?);
        let (qd, kd) = (q.len() / rows, k.len() / rows);
        let mut attn = Vec::with_capacity(rows * qd);
        for c in 0..rows / ctx {
            let (q, k) = (q[c * ctx * qd..][..ctx * qd].to_vec(), k[c * ctx * kd..][..ctx * kd].to_vec());
            attn.extend(self.attention(q, k, &v[c * ctx * kd..][..ctx * kd]));
        }
        let o = matmul_t(&attn, rows, &b.wo, qd)?;
        math::add(&mut self.x, &o);
        let h2 = self.rms(&self.x, &b.ffn_norm);
        let mut gate = matmul_t(&h2, rows, &b.gate, e)?;
        let up = matmul_t(&h2, rows, &b.up, e)?;
        math::swiglu(&mut gate, &up);
        let ff = gate.len() / rows;
        let down = matmul_t(&gate, rows, &b.down, ff)?;
        math::add(&mut self.x, &down);
        if let Some(n) = norms.as_mut() {
            add_squares(&mut n.qkv, &h, e);
            add_squares(&mut n.o, &attn, qd);
            add_squares(&mut n.gate_up, &h2, e);
            add_squares(&mut n.down, &gate, ff);
        }
        Ok(())
    }

    /// The logits of every position (`[rows × vocab]`) after the blocks run:
    /// the output norm, then `output` (`[vocab × n_embd]`).
    ///
    /// # Errors
    /// candle failing on the product.
    #[cfg(test)]
    pub fn logits(&self, output_norm: &[f32], output: &[f32]) -> anyhow::Result<Vec<f32>> {
        let e = self.cfg.n_embd;
        let h = self.rms(&self.x, output_norm);
        matmul_t(&h, self.x.len() / e, output, e)
    }
}

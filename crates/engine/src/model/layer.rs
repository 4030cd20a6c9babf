//! One transformer layer, as two steps that each end in a reduction point:
//! attention (ending in the output projection) and the feed-forward network
//! (ending in the down projection). With the model split across workers each
//! step yields this worker's partial sum, which the workers add up.

use crate::kernels::{Activations, KernelError, QMatrix};

use super::kv_cache::LayerCache;
use super::math::{axpy, dot, rms_norm, softmax, swiglu};
use super::rope::Rope;

/// Attention weights of one layer: this worker's query/key/value heads and the
/// matching input columns of the output projection.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) norm: Vec<f32>,
    pub(crate) wq: QMatrix,
    pub(crate) wk: QMatrix,
    pub(crate) wv: QMatrix,
    pub(crate) wo: QMatrix,
    /// Query heads held here.
    pub(crate) heads: usize,
    /// Key/value heads held here.
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

/// Feed-forward weights of one layer (SwiGLU): this worker's hidden units.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub(crate) norm: Vec<f32>,
    pub(crate) gate: QMatrix,
    pub(crate) up: QMatrix,
    pub(crate) down: QMatrix,
    /// Hidden units held here.
    pub(crate) hidden: usize,
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Attention block.
    pub attention: Attention,
    /// Feed-forward block.
    pub ffn: FeedForward,
}

/// Buffers reused by every step, grown once to the largest call.
#[derive(Debug, Default)]
pub struct Scratch {
    h: Vec<f32>,
    act: Activations,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    scores: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Scratch {
    /// Bytes held.
    pub fn capacity_bytes(&self) -> usize {
        4 * [&self.h, &self.q, &self.k, &self.v, &self.att, &self.scores, &self.gate, &self.up]
            .iter()
            .map(|b| b.capacity())
            .sum::<usize>()
    }
}

/// Everything a step needs besides its weights.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// Number of tokens run.
    pub seq: usize,
    /// Position of the first of them.
    pub pos: usize,
    /// RoPE tables.
    pub rope: &'a Rope,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Attend to at most this many most recent positions.
    pub window: Option<usize>,
}

/// `buf` resized to `len` (growing its allocation only the first time).
fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        rms_norm(row, weight, eps, o);
    }
}

impl Attention {
    /// This worker's share of the attention block's contribution to the
    /// residual stream for `x` (`[seq, n_embd]`), written to `out`; the
    /// tokens' keys and values join `cache`.
    ///
    /// # Errors
    /// Kernel errors (shapes that do not fit).
    pub fn forward(&self, x: &[f32], cache: &mut LayerCache, input: &StepInput<'_>, s: &mut Scratch, out: &mut [f32]) -> Result<(), KernelError> {
        let (seq, hd) = (input.seq, self.head_dim);
        if self.kv_heads == 0 {
            out.fill(0.0);
            return Ok(());
        }
        let n = self.norm.len();
        norm_rows(x, &self.norm, input.eps, sized(&mut s.h, seq * n));
        s.act.quantize(&s.h, seq, n)?;
        let (qw, kw) = (self.heads * hd, self.kv_heads * hd);
        let q = sized(&mut s.q, seq * qw);
        self.wq.matmul(&s.act, q)?;
        let k = sized(&mut s.k, seq * kw);
        self.wk.matmul(&s.act, k)?;
        let v = sized(&mut s.v, seq * kw);
        self.wv.matmul(&s.act, v)?;
        for i in 0..seq {
            input.rope.apply(&mut q[i * qw..(i + 1) * qw], input.pos + i);
            input.rope.apply(&mut k[i * kw..(i + 1) * kw], input.pos + i);
        }
        cache.append(k, v);
        let n_rep = self.heads / self.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let att = sized(&mut s.att, seq * qw);
        att.fill(0.0);
        for i in 0..seq {
            let at = input.pos + i;
            // Keys older than the window of this token are never attended.
            let first = input.window.map_or(0, |w| (at + 1).saturating_sub(w));
            let scores = sized(&mut s.scores, at + 1 - first);
            for head in 0..self.heads {
                let kv = head / n_rep;
                let qh = &q[i * qw + head * hd..][..hd];
                for (t, sc) in (first..=at).zip(scores.iter_mut()) {
                    *sc = dot(qh, &cache.key(t)[kv * hd..][..hd]) * scale;
                }
                softmax(scores);
                let o = &mut att[i * qw + head * hd..][..hd];
                for (t, &w) in (first..=at).zip(scores.iter()) {
                    axpy(o, w, &cache.value(t)[kv * hd..][..hd]);
                }
            }
        }
        s.act.quantize(att, seq, qw)?;
        self.wo.matmul(&s.act, out)
    }
}

impl FeedForward {
    /// This worker's share of the feed-forward block's contribution to the
    /// residual stream for `x` (`[seq, n_embd]`), written to `out`.
    ///
    /// # Errors
    /// Kernel errors (shapes that do not fit).
    pub fn forward(&self, x: &[f32], input: &StepInput<'_>, s: &mut Scratch, out: &mut [f32]) -> Result<(), KernelError> {
        let seq = input.seq;
        if self.hidden == 0 {
            out.fill(0.0);
            return Ok(());
        }
        let n = self.norm.len();
        norm_rows(x, &self.norm, input.eps, sized(&mut s.h, seq * n));
        s.act.quantize(&s.h, seq, n)?;
        let gate = sized(&mut s.gate, seq * self.hidden);
        self.gate.matmul(&s.act, gate)?;
        let up = sized(&mut s.up, seq * self.hidden);
        self.up.matmul(&s.act, up)?;
        swiglu(gate, up);
        s.act.quantize(gate, seq, self.hidden)?;
        self.down.matmul(&s.act, out)
    }
}

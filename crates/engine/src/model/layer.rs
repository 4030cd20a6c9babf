//! One transformer layer, as two steps that each end in an exchange point:
//! attention (ending in the output projection) and the feed-forward network
//! (ending in the down projection). Each step yields one partial sum for the
//! residual stream per segment held here (see [`super::Partition`]); the
//! model adds every segment's partial sum in segment order.

use std::ops::Range;

use crate::kernels::{Activations, KernelError, QMatrix};

use super::kv_cache::LayerCache;
use super::math::{axpy, dot, rms_norm, softmax, swiglu};
use super::profile::{Profile, Stage};
use super::rope::Rope;

/// A segment's slice of a projection: the input columns it reads (within
/// this worker's input) and its weights for them.
pub type Segment = (Range<usize>, QMatrix);

/// Attention weights of one layer: this worker's query/key/value heads and,
/// per head group, the matching input columns of the output projection.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) norm: Vec<f32>,
    pub(crate) wq: QMatrix,
    pub(crate) wk: QMatrix,
    pub(crate) wv: QMatrix,
    pub(crate) wo: Vec<Segment>,
    /// Query heads held here.
    pub(crate) heads: usize,
    /// Key/value heads held here.
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

/// Feed-forward weights of one layer (SwiGLU): this worker's hidden units,
/// and per segment of them, the matching input columns of the down projection.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub(crate) norm: Vec<f32>,
    pub(crate) gate: QMatrix,
    pub(crate) up: QMatrix,
    pub(crate) down: Vec<Segment>,
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
    /// The activations of the tokens whose outputs are computed, when not all.
    act_out: Activations,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    scores: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    segment: Vec<f32>,
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

/// Each segment's projection of its columns of `src` (`[seq, width]`) into
/// its own `[seq, n_out]` block of `out`.
fn project(
    src: &[f32],
    seq: usize,
    segments: &[Segment],
    act: &mut Activations,
    tmp: &mut Vec<f32>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let width = src.len() / seq;
    let block = out.len() / segments.len().max(1);
    for ((cols, w), out) in segments.iter().zip(out.chunks_exact_mut(block)) {
        let n = cols.len();
        let gathered = sized(tmp, seq * n);
        for (t, g) in gathered.chunks_exact_mut(n).enumerate() {
            g.copy_from_slice(&src[t * width + cols.start..t * width + cols.end]);
        }
        act.quantize(gathered, seq, n)?;
        w.matmul(act, out)?;
    }
    Ok(())
}

impl Attention {
    /// The attention block's partial sums for the residual stream for `x`
    /// (`[seq, n_embd]`), one `[seq, n_embd]` block of `out` per head group
    /// held here; the tokens' keys and values join `cache`.
    ///
    /// # Errors
    /// Kernel errors (shapes that do not fit).
    ///
    /// With `last_only`, every token's keys and values still join the cache
    /// but only the last token's output is computed (`out` holds one token
    /// per segment): what the last layer of a prompt needs, since nothing
    /// reads the other tokens' outputs there.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        cache: &mut LayerCache,
        input: &StepInput<'_>,
        s: &mut Scratch,
        out: &mut [f32],
        profile: &mut Profile,
        last_only: bool,
    ) -> Result<(), KernelError> {
        let (seq, hd) = (input.seq, self.head_dim);
        let n = self.norm.len();
        // The tokens whose outputs are computed: the last `rows`.
        let rows = if last_only { 1 } else { seq };
        let skip = seq - rows;
        profile.lap(Stage::Other);
        norm_rows(x, &self.norm, input.eps, sized(&mut s.h, seq * n));
        s.act.quantize(&s.h, seq, n)?;
        profile.lap(Stage::Other);
        let (qw, kw) = (self.heads * hd, self.kv_heads * hd);
        let q = sized(&mut s.q, rows * qw);
        if last_only {
            s.act_out.quantize(&s.h[skip * n..], rows, n)?;
            self.wq.matmul(&s.act_out, q)?;
        } else {
            self.wq.matmul(&s.act, q)?;
        }
        let k = sized(&mut s.k, seq * kw);
        self.wk.matmul(&s.act, k)?;
        let v = sized(&mut s.v, seq * kw);
        self.wv.matmul(&s.act, v)?;
        profile.lap(Stage::Qkv);
        for i in 0..rows {
            input.rope.apply(&mut q[i * qw..(i + 1) * qw], input.pos + skip + i);
        }
        for i in 0..seq {
            input.rope.apply(&mut k[i * kw..(i + 1) * kw], input.pos + i);
        }
        cache.append(k, v);
        let n_rep = self.heads / self.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let att = sized(&mut s.att, rows * qw);
        att.fill(0.0);
        for i in 0..rows {
            let at = input.pos + skip + i;
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
        profile.lap(Stage::Attention);
        project(att, rows, &self.wo, &mut s.act, &mut s.segment, out)?;
        profile.lap(Stage::Wo);
        Ok(())
    }
}

impl FeedForward {
    /// The feed-forward block's partial sums for the residual stream for `x`
    /// (`[seq, n_embd]`), one `[seq, n_embd]` block of `out` per segment of
    /// hidden units held here.
    ///
    /// # Errors
    /// Kernel errors (shapes that do not fit).
    pub fn forward(
        &self,
        x: &[f32],
        input: &StepInput<'_>,
        s: &mut Scratch,
        out: &mut [f32],
        profile: &mut Profile,
    ) -> Result<(), KernelError> {
        let seq = input.seq;
        profile.lap(Stage::Other);
        if self.hidden == 0 {
            out.fill(0.0);
            return Ok(());
        }
        let n = self.norm.len();
        norm_rows(x, &self.norm, input.eps, sized(&mut s.h, seq * n));
        s.act.quantize(&s.h, seq, n)?;
        profile.lap(Stage::Other);
        let gate = sized(&mut s.gate, seq * self.hidden);
        self.gate.matmul(&s.act, gate)?;
        let up = sized(&mut s.up, seq * self.hidden);
        self.up.matmul(&s.act, up)?;
        swiglu(gate, up);
        profile.lap(Stage::GateUp);
        project(gate, seq, &self.down, &mut s.act, &mut s.segment, out)?;
        profile.lap(Stage::Down);
        Ok(())
    }
}

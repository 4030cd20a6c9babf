//! One transformer layer, as two steps that each end in a reduction point:
//! attention (ending in the output projection) and the feed-forward network
//! (ending in the down projection). A coordinator splitting a model across
//! workers sums the partial results of these two steps.

use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};
use candle_nn::ops::{rms_norm, silu, softmax_last_dim};

use super::kv_cache::LayerCache;
use super::rope::Rope;

/// Attention weights of one layer.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) norm: Tensor,
    pub(crate) wq: QMatMul,
    pub(crate) wk: QMatMul,
    pub(crate) wv: QMatMul,
    pub(crate) wo: QMatMul,
    pub(crate) n_head: usize,
    pub(crate) n_head_kv: usize,
    pub(crate) head_dim: usize,
}

/// Feed-forward weights of one layer (SwiGLU).
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub(crate) norm: Tensor,
    pub(crate) gate: QMatMul,
    pub(crate) up: QMatMul,
    pub(crate) down: QMatMul,
}

/// Everything attention needs besides its weights for one call.
#[derive(Debug)]
pub struct AttentionInput<'a> {
    /// Position of the first token of `x` in the sequence.
    pub pos: usize,
    /// RoPE tables.
    pub rope: &'a Rope,
    /// Additive mask `[seq, pos + seq]` for a multi-token step, `None` for one token.
    pub mask: Option<&'a Tensor>,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Attend to at most this many most recent positions.
    pub window: Option<usize>,
    /// Upper bound on the cache length (the context size).
    pub max_len: usize,
}

impl Attention {
    /// The attention block's contribution to the residual stream for `x`
    /// (`[1, seq, n_embd]`), appending this step's keys and values to `cache`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn forward(&self, x: &Tensor, cache: &mut LayerCache, input: &AttentionInput<'_>) -> Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.n_head, self.n_head_kv, self.head_dim);
        let h = rms_norm(x, &self.norm, input.eps)?;
        let heads = |w: &QMatMul, n: usize| -> Result<Tensor> {
            w.forward(&h)?.reshape((b, seq, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = input.rope.apply(&heads(&self.wq, nh)?, input.pos)?;
        let k = input.rope.apply(&heads(&self.wk, nkv)?, input.pos)?;
        let v = heads(&self.wv, nkv)?;
        let (mut k, mut v) = cache.append(&k, &v, input.max_len)?;
        let mut total = k.dim(2)?;
        let mut mask = input.mask.cloned();
        if let Some(w) = input.window {
            // Keys older than the window of the first new token are never attended.
            let first = (input.pos + 1).saturating_sub(w);
            if first > 0 {
                k = k.narrow(2, first, total - first)?;
                v = v.narrow(2, first, total - first)?;
                mask = mask.map(|m| m.narrow(1, first, total - first)).transpose()?;
                total -= first;
            }
        }
        // Grouped-query attention without copying keys: the n_rep query heads of
        // one key head are stacked along the sequence axis.
        let n_rep = nh / nkv;
        let q = q.reshape((b, nkv, n_rep * seq, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let att = (q.matmul(&k.t()?)? * scale)?;
        let att = match mask {
            Some(m) => att.reshape((b, nkv, n_rep, seq, total))?.broadcast_add(&m)?.reshape((b, nkv, n_rep * seq, total))?,
            None => att,
        };
        let att = softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.reshape((b, nh, seq, hd))?.transpose(1, 2)?.reshape((b, seq, nh * hd))?;
        self.wo.forward(&y)
    }
}

impl FeedForward {
    /// The feed-forward block's contribution to the residual stream for `x`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn forward(&self, x: &Tensor, eps: f32) -> Result<Tensor> {
        let h = rms_norm(x, &self.norm, eps)?;
        let gated = (silu(&self.gate.forward(&h)?)? * self.up.forward(&h)?)?;
        self.down.forward(&gated)
    }
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Attention block.
    pub attention: Attention,
    /// Feed-forward block.
    pub ffn: FeedForward,
}

/// An additive causal mask for `seq` new tokens after `pos` cached ones:
/// `[seq, pos + seq]`, 0 where attention is allowed, -inf elsewhere (future
/// tokens, and tokens outside the sliding window when there is one).
///
/// # Errors
/// Candle errors.
pub fn causal_mask(seq: usize, pos: usize, window: Option<usize>, device: &candle_core::Device) -> Result<Tensor> {
    let total = pos + seq;
    let mut m = vec![0f32; seq * total];
    for i in 0..seq {
        let at = pos + i;
        for j in 0..total {
            let future = j > at;
            let outside = window.is_some_and(|w| at - j.min(at) >= w);
            if future || outside {
                m[i * total + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (seq, total), device)
}

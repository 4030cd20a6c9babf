//! The hyper-parameters of a llama-family model, from GGUF metadata.

use crate::gguf::{GgufError, Metadata};

/// The longest context a session uses (positions of RoPE tables and of the
/// prompt budget): a model trained longer runs with this much.
pub const MAX_CONTEXT: usize = 131_072;

/// The largest trained context length accepted; more is not a real model's.
pub const MAX_TRAINED_CONTEXT: usize = 1 << 24;

/// Hyper-parameters of a llama-family model (`general.architecture` = `llama`,
/// which covers Llama 2/3, Mistral and SmolLM2).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The GGUF architecture name, prefix of the metadata keys.
    pub architecture: String,
    /// Number of transformer layers (`block_count`).
    pub n_layer: usize,
    /// Width of the residual stream (`embedding_length`).
    pub n_embd: usize,
    /// Hidden width of the feed-forward network (`feed_forward_length`).
    pub n_ff: usize,
    /// Query heads (`attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`attention.head_count_kv`), fewer than `n_head` with GQA.
    pub n_head_kv: usize,
    /// Dimension of one head (`n_embd / n_head` unless `attention.key_length` says otherwise).
    pub head_dim: usize,
    /// The context a session uses: the trained `context_length`, at most
    /// [`MAX_CONTEXT`].
    pub context_length: usize,
    /// RMSNorm epsilon (`attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// RoPE base frequency (`rope.freq_base`, 10 000 when absent).
    pub rope_theta: f64,
    /// Sliding attention window in tokens, when the model has one.
    pub sliding_window: Option<usize>,
}

/// Architectures this engine runs.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

impl LlamaConfig {
    /// Reads the hyper-parameters from GGUF metadata and checks they are coherent.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] / [`GgufError::BadKey`] naming the key at fault
    /// (an unsupported architecture is a bad `general.architecture`).
    pub fn from_metadata(meta: &Metadata<'_>) -> Result<Self, GgufError> {
        let arch = meta.string("general.architecture")?;
        if !SUPPORTED_ARCHITECTURES.contains(&arch) {
            return Err(GgufError::BadKey {
                key: "general.architecture".into(),
                reason: format!("`{arch}` is not supported (supported: {})", SUPPORTED_ARCHITECTURES.join(", ")),
            });
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer = meta.usize_at_least(&key("block_count"), 1)?;
        let n_embd = meta.usize_at_least(&key("embedding_length"), 1)?;
        let n_ff = meta.usize_at_least(&key("feed_forward_length"), 1)?;
        let n_head = meta.usize_at_least(&key("attention.head_count"), 1)?;
        let n_head_kv = match meta.opt_u64(&key("attention.head_count_kv"))? {
            Some(_) => meta.usize_at_least(&key("attention.head_count_kv"), 1)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(GgufError::BadKey {
                key: key("attention.head_count_kv"),
                reason: format!("{n_head_kv} does not divide the {n_head} query heads"),
            });
        }
        let head_dim = match meta.opt_u64(&key("attention.key_length"))? {
            Some(_) => meta.usize_at_least(&key("attention.key_length"), 2)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(GgufError::BadKey {
                        key: key("attention.head_count"),
                        reason: format!("{n_head} heads do not divide the embedding width {n_embd}"),
                    });
                }
                n_embd / n_head
            }
        };
        if head_dim % 2 != 0 {
            return Err(GgufError::BadKey { key: key("attention.key_length"), reason: format!("head dim {head_dim} is odd") });
        }
        let trained = meta.usize_at_least(&key("context_length"), 1)?;
        if trained > MAX_TRAINED_CONTEXT {
            return Err(GgufError::BadKey {
                key: key("context_length"),
                reason: format!("{trained} is beyond any model's ({MAX_TRAINED_CONTEXT} at most)"),
            });
        }
        // What a session may use: RoPE tables and prompt budgets are sized to it.
        let context_length = trained.min(MAX_CONTEXT);
        let rms_eps = meta.opt_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let rope_theta = meta.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        let sliding_window = match meta.opt_u64(&key("attention.sliding_window"))? {
            Some(0) | None => None,
            Some(_) => Some(meta.usize_at_least(&key("attention.sliding_window"), 1)?),
        };
        if !(rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(GgufError::BadKey { key: key("attention.layer_norm_rms_epsilon"), reason: format!("{rms_eps} is out of range") });
        }
        if !(rope_theta > 0.0 && rope_theta.is_finite()) {
            return Err(GgufError::BadKey { key: key("rope.freq_base"), reason: format!("{rope_theta} is out of range") });
        }
        Ok(Self {
            architecture: arch.to_string(),
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            context_length,
            rms_eps,
            rope_theta,
            sliding_window,
        })
    }
}

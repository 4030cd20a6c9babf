//! The llama-family quantized forward pass with its KV cache.
//!
//! [`Model::load`] reads the weights tensor by tensor from a [`GgufFile`] (peak
//! memory: the weights plus one tensor); [`Model::forward`] runs new tokens
//! through the layers, reusing the cache of earlier positions.

mod config;
mod embedding;
mod kv_cache;
mod layer;
mod rope;

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::ops::rms_norm;

pub use config::{LlamaConfig, SUPPORTED_ARCHITECTURES};
pub use embedding::QEmbedding;
pub use kv_cache::LayerCache;
pub use layer::{causal_mask, Attention, AttentionInput, FeedForward, Layer};
pub use rope::Rope;

use crate::gguf::{GgufError, GgufFile};

/// Errors of loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file's header, metadata or tensors are unusable.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor computation failed.
    #[error("{context}: {source}")]
    Compute {
        /// What was being computed.
        context: String,
        /// What candle said.
        #[source]
        source: candle_core::Error,
    },
    /// The sequence would pass the model's context length.
    #[error("the context is full: {needed} positions needed, the model holds {max}")]
    ContextFull {
        /// Positions the call needs.
        needed: usize,
        /// The context length.
        max: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
}

trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, ModelError>;
}

impl<T> Context<T> for candle_core::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, ModelError> {
        self.map_err(|source| ModelError::Compute { context: what(), source })
    }
}

/// Progress of loading: tensors and bytes read so far, and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// Tensors loaded.
    pub tensors_done: usize,
    /// Tensors to load.
    pub tensors_total: usize,
    /// Bytes of tensor data loaded.
    pub bytes_done: u64,
    /// Bytes of tensor data to load.
    pub bytes_total: u64,
}

/// A loaded llama-family model and its KV cache.
#[derive(Debug)]
pub struct Model {
    config: LlamaConfig,
    embedding: QEmbedding,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: QMatMul,
    rope: Rope,
    caches: Vec<LayerCache>,
    device: Device,
    weight_types: Vec<(String, GgmlDType)>,
}

struct Loader<'f, R> {
    file: &'f mut GgufFile<R>,
    device: Device,
    progress: LoadProgress,
    on_progress: &'f mut dyn FnMut(LoadProgress),
    types: Vec<(String, GgmlDType)>,
}

impl<R: Read + Seek> Loader<'_, R> {
    fn qtensor(&mut self, name: &str, expected: &[usize]) -> Result<QTensor, ModelError> {
        let info = self.file.tensor_info(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        if info.shape.dims() != expected {
            return Err(GgufError::Shape { name: name.into(), expected: expected.to_vec(), actual: info.shape.dims().to_vec() }.into());
        }
        let t = self.file.tensor(name, &self.device)?;
        self.progress.tensors_done += 1;
        self.progress.bytes_done += t.storage_size_in_bytes() as u64;
        (self.on_progress)(self.progress);
        self.types.push((name.to_string(), t.dtype()));
        Ok(t)
    }

    fn matmul(&mut self, name: &str, expected: &[usize]) -> Result<QMatMul, ModelError> {
        let t = self.qtensor(name, expected)?;
        QMatMul::from_qtensor(t).context(|| format!("cannot prepare `{name}`"))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, ModelError> {
        let t = self.qtensor(name, &[len])?;
        t.dequantize(&self.device).and_then(|t| t.to_dtype(DType::F32)).context(|| format!("cannot dequantize `{name}`"))
    }
}

impl Model {
    /// Loads a llama-family model from `file`, one tensor at a time.
    ///
    /// # Errors
    /// [`ModelError::Gguf`] naming the key or tensor at fault (missing, wrong
    /// shape, unreadable); [`ModelError::Compute`] if a tensor cannot be prepared.
    pub fn load<R: Read + Seek>(file: &mut GgufFile<R>, device: &Device) -> Result<Self, ModelError> {
        Self::load_with_progress(file, device, &mut |_| {})
    }

    /// As [`Model::load`], calling `on_progress` after each tensor.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn load_with_progress<R: Read + Seek>(
        file: &mut GgufFile<R>,
        device: &Device,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_metadata(&file.metadata())?;
        let embd_info = file.tensor_info("token_embd.weight").ok_or_else(|| GgufError::MissingTensor { name: "token_embd.weight".into() })?;
        let vocab = match embd_info.shape.dims() {
            [v, d] if *d == config.n_embd => *v,
            other => {
                return Err(GgufError::Shape { name: "token_embd.weight".into(), expected: vec![0, config.n_embd], actual: other.to_vec() }.into())
            }
        };
        let tied = file.tensor_info("output.weight").is_none();
        let (tensors_total, bytes_total) = {
            let all = file.tensors();
            let bytes = all
                .iter()
                .map(|(_, t)| t.shape.elem_count() as u64 / t.ggml_dtype.block_size() as u64 * t.ggml_dtype.type_size() as u64)
                .sum();
            (all.len(), bytes)
        };
        let mut l = Loader {
            file,
            device: device.clone(),
            progress: LoadProgress { tensors_done: 0, tensors_total, bytes_done: 0, bytes_total },
            on_progress,
            types: Vec::new(),
        };
        let c = &config;
        let (e, ff, hd) = (c.n_embd, c.n_ff, c.head_dim);
        let table = Arc::new(l.qtensor("token_embd.weight", &[vocab, e])?);
        let embedding = QEmbedding::new(table.clone()).context(|| "cannot use `token_embd.weight`".into())?;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let attention = Attention {
                norm: l.vector(&p("attn_norm.weight"), e)?,
                wq: l.matmul(&p("attn_q.weight"), &[c.n_head * hd, e])?,
                wk: l.matmul(&p("attn_k.weight"), &[c.n_head_kv * hd, e])?,
                wv: l.matmul(&p("attn_v.weight"), &[c.n_head_kv * hd, e])?,
                wo: l.matmul(&p("attn_output.weight"), &[e, c.n_head * hd])?,
                n_head: c.n_head,
                n_head_kv: c.n_head_kv,
                head_dim: hd,
            };
            let ffn = FeedForward {
                norm: l.vector(&p("ffn_norm.weight"), e)?,
                gate: l.matmul(&p("ffn_gate.weight"), &[ff, e])?,
                up: l.matmul(&p("ffn_up.weight"), &[ff, e])?,
                down: l.matmul(&p("ffn_down.weight"), &[e, ff])?,
            };
            layers.push(Layer { attention, ffn });
        }
        let output_norm = l.vector("output_norm.weight", e)?;
        let output = if tied {
            QMatMul::from_arc(table).context(|| "cannot use `token_embd.weight` as the output".into())?
        } else {
            l.matmul("output.weight", &[vocab, e])?
        };
        let weight_types = std::mem::take(&mut l.types);
        let rope = Rope::new(hd, c.context_length, c.rope_theta, device).context(|| "cannot build RoPE tables".into())?;
        Ok(Self {
            caches: vec![LayerCache::default(); c.n_layer],
            config,
            embedding,
            layers,
            output_norm,
            output,
            rope,
            device: device.clone(),
            weight_types,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Vocabulary size (rows of the embedding table).
    pub fn vocab(&self) -> usize {
        self.embedding.vocab()
    }

    /// The GGUF type of every weight tensor, in load order.
    pub fn weight_types(&self) -> &[(String, GgmlDType)] {
        &self.weight_types
    }

    /// Number of positions in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.caches.first().map_or(0, LayerCache::len)
    }

    /// Forgets cached positions from `len` on (all of them with 0).
    pub fn truncate_cache(&mut self, len: usize) {
        self.caches.iter_mut().for_each(|c| c.truncate(len));
    }

    /// Runs `tokens` after the cached positions and returns the logits of the
    /// last one (`[vocab]`, f32). The tokens' keys and values join the cache;
    /// on an error the cache is left as it was.
    ///
    /// # Errors
    /// [`ModelError::ContextFull`], [`ModelError::BadToken`], [`ModelError::Compute`].
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let seq = tokens.len();
        if seq == 0 {
            return Err(ModelError::Compute { context: "forward".into(), source: candle_core::Error::Msg("no tokens to run".into()) });
        }
        let pos = self.cached_len();
        let max = self.config.context_length;
        if pos + seq > max {
            return Err(ModelError::ContextFull { needed: pos + seq, max });
        }
        let vocab = self.vocab();
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::BadToken { id, vocab });
        }
        let result = self.run(tokens, pos);
        if result.is_err() {
            // Layers before the failing one appended to their caches: undo it,
            // so the cache always holds exactly the positions that ran.
            self.truncate_cache(pos);
        }
        result
    }

    fn run(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor, ModelError> {
        let seq = tokens.len();
        let max = self.config.context_length;
        let window = self.config.sliding_window;
        let mask = if seq > 1 {
            Some(causal_mask(seq, pos, window, &self.device).context(|| "cannot build the attention mask".into())?)
        } else {
            None
        };
        let eps = self.config.rms_eps as f32;
        let input = AttentionInput { pos, rope: &self.rope, mask: mask.as_ref(), eps, window, max_len: max };
        let mut x = self.embedding.forward(tokens, &self.device).context(|| "embedding".into())?;
        for (i, (layer, cache)) in self.layers.iter().zip(self.caches.iter_mut()).enumerate() {
            let attn = layer.attention.forward(&x, cache, &input).context(|| format!("layer {i} attention"))?;
            x = (x + attn).context(|| format!("layer {i} residual"))?;
            let ffn = layer.ffn.forward(&x, eps).context(|| format!("layer {i} feed-forward"))?;
            x = (x + ffn).context(|| format!("layer {i} residual"))?;
        }
        let last = x.narrow(1, seq - 1, 1).context(|| "last position".into())?;
        let h = rms_norm(&last, &self.output_norm, eps).context(|| "output norm".into())?;
        let logits = self.output.forward(&h).context(|| "output projection".into())?;
        logits.flatten_all().and_then(|l| l.to_dtype(DType::F32)).context(|| "logits".into())
    }
}

//! The llama-family quantized forward pass with its KV cache, on Sprig's own
//! kernels ([`crate::kernels`]).
//!
//! [`Model::load`] reads the weights tensor by tensor from a [`GgufFile`] (peak
//! memory: the weights plus one read buffer); [`Model::forward`] runs new
//! tokens through the layers, reusing the cache of earlier positions.
//!
//! A model can also be split across several workers, each with its own
//! memory ([`Partition`], [`Model::load_partition`]): every worker runs the
//! same forward passes on its slice and the workers add up their partial
//! results at two points per layer through a [`Collective`]
//! ([`Model::forward_with`]).

mod collective;
mod config;
mod kv_cache;
mod layer;
mod loader;
#[doc(hidden)]
pub mod math;
mod partition;
mod profile;
mod rope;

use std::io::{Read, Seek};
use std::ops::Range;

use candle_core::quantized::GgmlDType;

pub use collective::{run_to_completion, Alone, Collective, CollectiveError};
pub use config::{LlamaConfig, MAX_CONTEXT, MAX_TRAINED_CONTEXT, SUPPORTED_ARCHITECTURES};
pub use kv_cache::LayerCache;
pub use layer::{Attention, FeedForward, Layer, Scratch, StepInput};
pub use partition::Partition;
pub use profile::{Profile, Stage};
pub use rope::Rope;

use crate::gguf::{GgufError, GgufFile};
use crate::kernels::{Activations, KernelError, QMatrix};
use loader::Loader;

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
    /// A weight or activation does not fit the kernels.
    #[error("{context}: {source}")]
    Kernel {
        /// What was being done.
        context: String,
        /// What the kernels said.
        #[source]
        source: KernelError,
    },
    /// The model cannot be split this way across workers.
    #[error("cannot split the model across workers: {0}")]
    Partition(String),
    /// The exchange between workers failed.
    #[error("the workers running the model could not exchange results: {0}")]
    Collective(#[from] CollectiveError),
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
    /// A forward pass with no tokens.
    #[error("a forward pass needs at least one token")]
    NoTokens,
    /// The memory cannot hold the logits of every token asked for.
    #[error("not enough memory for the logits of {tokens} tokens")]
    LogitsMemory {
        /// Tokens asked for.
        tokens: usize,
    },
    /// The memory cannot hold the key/value cache asked for.
    #[error("not enough memory for the key/value cache of {positions} positions")]
    CacheMemory {
        /// Positions asked for.
        positions: usize,
    },
}

fn kernel(context: impl FnOnce() -> String) -> impl FnOnce(KernelError) -> ModelError {
    move |source| ModelError::Kernel { context: context(), source }
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

/// Into how many parts the layers of the model in `file` split: the most
/// workers it can be split across (see [`Partition`]).
///
/// # Errors
/// Unusable metadata; a missing or misshapen attention output.
pub fn split_parts<R>(file: &GgufFile<R>) -> Result<usize, ModelError> {
    let c = LlamaConfig::from_metadata(&file.metadata())?;
    Ok(c.n_head_kv / heads_per_part(file, &c)?)
}

/// Key/value head groups per segment: as few as keep the attention output's
/// columns of a segment in whole blocks of every layer's type.
fn heads_per_part<R>(file: &GgufFile<R>, c: &LlamaConfig) -> Result<usize, ModelError> {
    let group_width = c.n_head / c.n_head_kv * c.head_dim;
    let expected = [c.n_embd, c.n_head * c.head_dim];
    let mut block = 1;
    for i in 0..c.n_layer {
        let name = format!("blk.{i}.attn_output.weight");
        let info = file.tensor_info(&name).ok_or_else(|| GgufError::MissingTensor { name: name.clone() })?;
        if info.shape.dims() != expected {
            return Err(GgufError::Shape { name, expected: expected.to_vec(), actual: info.shape.dims().to_vec() }.into());
        }
        block = block.max(info.ggml_dtype.block_size());
    }
    Ok((1..=c.n_head_kv).find(|g| c.n_head_kv.is_multiple_of(*g) && (g * group_width).is_multiple_of(block)).unwrap_or(c.n_head_kv))
}

/// A loaded llama-family model (or one worker's slice of it) and its KV cache.
#[derive(Debug)]
pub struct Model {
    config: LlamaConfig,
    partition: Partition,
    vocab: usize,
    /// Rows of the embedding and output tables held here.
    vocab_rows: Range<usize>,
    /// Segments per layer step (all workers together).
    segments: usize,
    embedding: QMatrix,
    /// `None`: the output projection is the embedding table (tied).
    output: Option<QMatrix>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    caches: Vec<LayerCache>,
    rope: Rope,
    scratch: Scratch,
    x: Vec<f32>,
    /// This worker's partial sums of a step (or its logits).
    local: Vec<f32>,
    /// Every worker's, in rank order.
    gathered: Vec<f32>,
    last: Vec<f32>,
    head_act: Activations,
    logits: Vec<f32>,
    weight_types: Vec<(String, GgmlDType)>,
    /// Milliseconds spent in exchanges with the other workers, in all.
    exchange_ms: f64,
    /// Where forward passes spent their time since the last take.
    profile: Profile,
}

impl Model {
    /// Loads a llama-family model from `file`, one tensor at a time.
    ///
    /// # Errors
    /// [`ModelError::Gguf`] naming the key or tensor at fault (missing, wrong
    /// shape, unreadable); [`ModelError::Kernel`] for a weight type or shape the
    /// kernels do not run.
    pub fn load<R: Read + Seek>(file: &mut GgufFile<R>) -> Result<Self, ModelError> {
        Self::load_partition(file, Partition::WHOLE, &mut |_| {})
    }

    /// As [`Model::load`], calling `on_progress` after each tensor.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn load_with_progress<R: Read + Seek>(
        file: &mut GgufFile<R>,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Self, ModelError> {
        Self::load_partition(file, Partition::WHOLE, on_progress)
    }

    /// Loads worker `partition`'s slice of the model: reads only its rows and
    /// columns of every weight.
    ///
    /// # Errors
    /// As [`Model::load`]; [`ModelError::Partition`] when the model's heads or
    /// blocks cannot be divided among that many workers.
    pub fn load_partition<R: Read + Seek>(
        file: &mut GgufFile<R>,
        partition: Partition,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_metadata(&file.metadata())?;
        let embd_info =
            file.tensor_info("token_embd.weight").ok_or_else(|| GgufError::MissingTensor { name: "token_embd.weight".into() })?;
        let vocab = match embd_info.shape.dims() {
            [v, d] if *d == config.n_embd => *v,
            other => {
                return Err(
                    GgufError::Shape { name: "token_embd.weight".into(), expected: vec![0, config.n_embd], actual: other.to_vec() }.into()
                )
            }
        };
        let tied = file.tensor_info("output.weight").is_none();
        let c = config.clone();
        let (e, ff, hd) = (c.n_embd, c.n_ff, c.head_dim);
        let n_rep = c.n_head / c.n_head_kv;
        // Segments: runs of whole key/value head groups (see heads_per_part);
        // the hidden units are cut into as many slices.
        let per_segment = heads_per_part(file, &c)?;
        let group_width = n_rep * hd;
        let mut l = Loader::new(file, on_progress);
        let n_seg = c.n_head_kv / per_segment;
        if partition.count() > n_seg {
            return Err(ModelError::Partition(format!(
                "{} workers for a model whose layers split into {n_seg} parts ({} key/value heads, {per_segment} per part): at most {n_seg}",
                partition.count(),
                c.n_head_kv
            )));
        }
        let segments_here = partition.share(n_seg);
        let groups = segments_here.start * per_segment..segments_here.end * per_segment;
        let seg_width = per_segment * group_width;
        let (kv_rows, q_rows) = (groups.start * hd..groups.end * hd, groups.start * group_width..groups.end * group_width);
        let vocab_rows = partition.share(vocab);
        let embedding = l.rows("token_embd.weight", [vocab, e], vocab_rows.clone())?;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let wo_name = p("attn_output.weight");
            let mut wo = Vec::with_capacity(segments_here.len());
            for (j, seg) in segments_here.clone().enumerate() {
                let cols = seg * seg_width..(seg + 1) * seg_width;
                wo.push((j * seg_width..(j + 1) * seg_width, l.columns(&wo_name, [e, c.n_head * hd], cols)?));
            }
            let attention = Attention {
                norm: l.vector(&p("attn_norm.weight"), e)?,
                wq: l.rows(&p("attn_q.weight"), [c.n_head * hd, e], q_rows.clone())?,
                wk: l.rows(&p("attn_k.weight"), [c.n_head_kv * hd, e], kv_rows.clone())?,
                wv: l.rows(&p("attn_v.weight"), [c.n_head_kv * hd, e], kv_rows.clone())?,
                wo,
                heads: groups.len() * n_rep,
                kv_heads: groups.len(),
                head_dim: hd,
            };
            // Hidden units go in whole blocks of the down projection's type.
            let down_name = p("ffn_down.weight");
            let unit = l.dtype(&down_name, &[e, ff])?.block_size();
            let segments: Vec<Range<usize>> = (0..n_seg)
                .map(|j| Partition::new(j, n_seg).and_then(|s| s.share_in_units(ff, unit, &down_name)))
                .collect::<Result<_, _>>()?;
            let mine = &segments[segments_here.clone()];
            let hidden = mine.first().map_or(0, |r| r.start)..mine.last().map_or(0, |r| r.end);
            let mut down = Vec::with_capacity(mine.len());
            for cols in mine {
                down.push((cols.start - hidden.start..cols.end - hidden.start, l.columns(&down_name, [e, ff], cols.clone())?));
            }
            let ffn = FeedForward {
                norm: l.vector(&p("ffn_norm.weight"), e)?,
                gate: l.rows(&p("ffn_gate.weight"), [ff, e], hidden.clone())?,
                up: l.rows(&p("ffn_up.weight"), [ff, e], hidden.clone())?,
                down,
                hidden: hidden.len(),
            };
            layers.push(Layer { attention, ffn });
        }
        let output_norm = l.vector("output_norm.weight", e)?;
        let output = if tied { None } else { Some(l.rows("output.weight", [vocab, e], vocab_rows.clone())?) };
        let weight_types = std::mem::take(&mut l.types);
        let rope = Rope::new(hd, c.rope_theta);
        Ok(Self {
            caches: (0..c.n_layer).map(|_| LayerCache::new(groups.len() * hd)).collect(),
            config,
            partition,
            vocab,
            vocab_rows,
            segments: n_seg,
            embedding,
            output,
            output_norm,
            layers,
            rope,
            scratch: Scratch::default(),
            x: Vec::new(),
            local: Vec::new(),
            gathered: Vec::new(),
            last: Vec::new(),
            head_act: Activations::new(),
            logits: vec![0.0; vocab],
            weight_types,
            exchange_ms: 0.0,
            profile: Profile::default(),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// This worker's slice of the model.
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// Vocabulary size (rows of the embedding table).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The GGUF type of every weight tensor, in load order.
    pub fn weight_types(&self) -> &[(String, GgmlDType)] {
        &self.weight_types
    }

    /// Bytes of weights held here.
    pub fn weight_bytes(&self) -> usize {
        let layer = |l: &Layer| {
            let (a, f) = (&l.attention, &l.ffn);
            let segments = a.wo.iter().chain(&f.down).map(|(_, m)| m.size_in_bytes()).sum::<usize>();
            segments + [&a.wq, &a.wk, &a.wv, &f.gate, &f.up].iter().map(|m| m.size_in_bytes()).sum::<usize>()
        };
        self.embedding.size_in_bytes()
            + self.output.as_ref().map_or(0, QMatrix::size_in_bytes)
            + self.layers.iter().map(layer).sum::<usize>()
    }

    /// Milliseconds this worker has spent in exchanges with the other workers
    /// holding the model (waiting for them included), since it was loaded.
    pub fn exchange_ms(&self) -> f64 {
        self.exchange_ms
    }

    /// Where the forward passes since the last call spent their time.
    pub fn take_profile(&mut self) -> Profile {
        std::mem::take(&mut self.profile)
    }

    /// Allocates the KV cache and the RoPE tables for `positions` positions
    /// (at most the model's context), so that a conversation up to that
    /// length allocates no more of them.
    ///
    /// # Errors
    /// [`ModelError::CacheMemory`] when the memory cannot hold them.
    pub fn reserve_cache(&mut self, positions: usize) -> Result<(), ModelError> {
        let positions = positions.min(self.config.context_length);
        self.rope.reserve(positions).map_err(|_| ModelError::CacheMemory { positions })?;
        for cache in &mut self.caches {
            cache.reserve(positions).map_err(|_| ModelError::CacheMemory { positions })?;
        }
        Ok(())
    }

    /// Bytes allocated for the KV cache.
    pub fn cache_bytes(&self) -> usize {
        self.caches.iter().map(LayerCache::allocated_bytes).sum()
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
    /// last one (`[vocab]`). The tokens' keys and values join the cache; on an
    /// error the cache is left as it was.
    ///
    /// # Errors
    /// [`ModelError::ContextFull`], [`ModelError::BadToken`], [`ModelError::Kernel`];
    /// [`ModelError::Collective`] for a model split across workers (which needs
    /// [`Model::forward_with`]).
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        if self.partition.count() > 1 {
            return Err(CollectiveError("a model split across workers runs with forward_with".into()).into());
        }
        run_to_completion(self.forward_with(tokens, &mut Alone))?.map(<[f32]>::to_vec)
    }

    /// As [`Model::forward`], meeting the other workers holding the model
    /// through `collective` at every reduction point. Every worker makes the
    /// same calls; the coordinating worker's `collective` tells the others
    /// the `tokens` and the position they start at.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub async fn forward_with<C: Collective>(&mut self, tokens: &[u32], collective: &mut C) -> Result<&[f32], ModelError> {
        let pos = self.check_step(tokens)?;
        collective.begin(pos, tokens).await?;
        let result = self.run(tokens, pos, collective, false).await;
        if result.is_err() {
            // Layers before the failing one appended to their caches: undo it,
            // so the cache always holds exactly the positions that ran.
            self.truncate_cache(pos);
        }
        result?;
        Ok(&self.logits)
    }

    /// Runs `tokens` after the cached positions and returns the logits of
    /// every one of them (`[tokens × vocab]`, token after token), as a
    /// perplexity needs: the last layer and the output projection then run
    /// for every token, not only the last. The model must not be split.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        if self.partition.count() > 1 {
            return Err(CollectiveError("every position's logits are computed by a whole model only".into()).into());
        }
        let pos = self.check_step(tokens)?;
        let seq = tokens.len();
        let more = (seq * self.vocab).saturating_sub(self.logits.len());
        self.logits.try_reserve_exact(more).map_err(|_| ModelError::LogitsMemory { tokens: seq })?;
        let result = run_to_completion(self.run(tokens, pos, &mut Alone, true)).map_err(ModelError::from).and_then(|r| r);
        if result.is_err() {
            self.truncate_cache(pos);
        }
        result?;
        Ok(std::mem::replace(&mut self.logits, vec![0.0; self.vocab]))
    }

    /// Checks a step of `tokens` against the context and the vocabulary and
    /// reserves the cache's room (fallibly); returns the position it starts at.
    fn check_step(&mut self, tokens: &[u32]) -> Result<usize, ModelError> {
        let seq = tokens.len();
        if seq == 0 {
            return Err(ModelError::NoTokens);
        }
        let pos = self.cached_len();
        let max = self.config.context_length;
        if pos + seq > max {
            return Err(ModelError::ContextFull { needed: pos + seq, max });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(ModelError::BadToken { id, vocab: self.vocab });
        }
        // The cache's room first, fallibly: memory running out is an error
        // here, never an abort in the middle of a layer.
        self.reserve_cache(pos + seq)?;
        Ok(pos)
    }

    async fn run<C: Collective>(&mut self, tokens: &[u32], pos: usize, collective: &mut C, every: bool) -> Result<(), ModelError> {
        let seq = tokens.len();
        let e = self.config.n_embd;
        let split = self.partition.count() > 1;
        self.profile.begin(seq);
        let step = seq * e;
        // Each worker holds some rows of the embedding table: its block has
        // zeros for the tokens it does not hold.
        self.local.resize(step, 0.0);
        for (&id, row) in tokens.iter().zip(self.local.chunks_exact_mut(e)) {
            let id = id as usize;
            if self.vocab_rows.contains(&id) {
                self.embedding.dequantize_row(id - self.vocab_rows.start, row).map_err(kernel(|| format!("embedding of token {id}")))?;
            } else {
                row.fill(0.0);
            }
        }
        self.profile.lap(Stage::Other);
        let blocks =
            exchange(collective, split, &self.local, &mut self.gathered, self.partition.count() * step, &mut self.exchange_ms).await?;
        self.profile.lap(Stage::Exchange);
        self.x.clear();
        self.x.extend_from_slice(&blocks[..step]);
        blocks[step..].chunks_exact(step).for_each(|b| math::add(&mut self.x, b));
        let input = StepInput { seq, pos, rope: &self.rope, eps: self.config.rms_eps as f32, window: self.config.sliding_window };
        let n_layer = self.layers.len();
        for (i, (layer, cache)) in self.layers.iter().zip(self.caches.iter_mut()).enumerate() {
            // The last layer of a prompt computes only the last token's
            // output (all tokens' keys and values still join the cache):
            // nothing reads the others'. Every worker does the same.
            let last_only = i + 1 == n_layer && seq > 1 && !every;
            let step = if last_only { e } else { seq * e };
            self.local.resize(layer.attention.wo.len() * step, 0.0);
            layer
                .attention
                .forward(&self.x, cache, &input, &mut self.scratch, &mut self.local, &mut self.profile, last_only)
                .map_err(kernel(|| format!("layer {i} attention")))?;
            let parts = exchange(collective, split, &self.local, &mut self.gathered, self.segments * step, &mut self.exchange_ms).await?;
            self.profile.lap(Stage::Exchange);
            if last_only {
                self.x.drain(..(seq - 1) * e);
            }
            // Segment order, whoever computed them: the same sum as one worker's.
            parts.chunks_exact(step).for_each(|p| math::add(&mut self.x, p));
            let ffn_input = StepInput { seq: step / e, ..input };
            self.local.resize(layer.ffn.down.len() * step, 0.0);
            layer
                .ffn
                .forward(&self.x, &ffn_input, &mut self.scratch, &mut self.local, &mut self.profile)
                .map_err(kernel(|| format!("layer {i} feed-forward")))?;
            let parts = exchange(collective, split, &self.local, &mut self.gathered, self.segments * step, &mut self.exchange_ms).await?;
            self.profile.lap(Stage::Exchange);
            parts.chunks_exact(step).for_each(|p| math::add(&mut self.x, p));
        }
        // The output of the last token, or of every token.
        let rows = if every { seq } else { 1 };
        self.last.resize(rows * e, 0.0);
        for (x, out) in self.x[self.x.len() - rows * e..].chunks_exact(e).zip(self.last.chunks_exact_mut(e)) {
            math::rms_norm(x, &self.output_norm, input.eps, out);
        }
        self.head_act.quantize(&self.last, rows, e).map_err(kernel(|| "output norm".into()))?;
        self.logits.resize(rows * self.vocab, 0.0);
        self.profile.lap(Stage::Other);
        let table = self.output.as_ref().unwrap_or(&self.embedding);
        if split {
            // Each worker computes the logits of its vocabulary rows.
            self.local.resize(self.vocab_rows.len(), 0.0);
            table.matmul(&self.head_act, &mut self.local).map_err(kernel(|| "output projection".into()))?;
            self.profile.lap(Stage::Output);
            let all = exchange(collective, split, &self.local, &mut self.gathered, self.vocab, &mut self.exchange_ms).await?;
            self.logits.copy_from_slice(all);
            self.profile.lap(Stage::Exchange);
        } else {
            table.matmul(&self.head_act, &mut self.logits).map_err(kernel(|| "output projection".into()))?;
            self.profile.lap(Stage::Output);
        }
        Ok(())
    }
}

/// Every worker's `local` block in rank order (just `local` when the model is
/// not split), checked to hold `expected` values in all; the time it took is
/// added to `spent_ms`.
async fn exchange<'a, C: Collective>(
    collective: &mut C,
    split: bool,
    local: &'a [f32],
    gathered: &'a mut Vec<f32>,
    expected: usize,
    spent_ms: &mut f64,
) -> Result<&'a [f32], ModelError> {
    let all: &[f32] = if split {
        let started = web_time::Instant::now();
        collective.all_gather(local, gathered).await?;
        *spent_ms += started.elapsed().as_secs_f64() * 1e3;
        gathered
    } else {
        local
    };
    if all.len() != expected {
        return Err(CollectiveError(format!("the workers sent {} values in all, {expected} expected", all.len())).into());
    }
    Ok(all)
}

//! Pruning a model's linear layers: which weights go (`select`), the f32
//! forward pass that gives Wanda its input norms (`forward`), and the two
//! kinds of model pruned block by block, each read and written in its own
//! format: a GGUF file (`gguf_model`) and a Hugging Face checkpoint
//! (`hf_model`).

pub mod forward;
pub mod gguf_model;
pub mod hf_model;
pub mod select;

use sprig_engine::model::LlamaConfig;
use sprig_engine::Tokenizer;

use forward::Block;

/// What a pruning did, recorded in the output (GGUF keys, or the
/// safetensors `__metadata__`) as `sprig.pruning.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct PruningRecord {
    /// `wanda` or `magnitude`.
    pub method: String,
    /// The share of each linear row set to 0.
    pub sparsity: f64,
    /// The calibration text and its chunks, for Wanda.
    pub calibration: Option<String>,
}

/// A model being pruned: its blocks are taken out one at a time, pruned and
/// put back; `finish` writes what is left and puts the output in place.
pub trait BlockStore {
    /// The model's configuration, as the engine reads it.
    fn config(&self) -> &LlamaConfig;
    /// Its tokenizer, as the engine reads it (for the calibration text).
    fn tokenizer(&self) -> &Tokenizer;
    /// The token embedding, `[vocab × n_embd]`.
    ///
    /// # Errors
    /// The model has none.
    fn embedding(&self) -> anyhow::Result<Vec<f32>>;
    /// Block `l`'s weights, in GGUF order (query and key rows with their
    /// rotary pairs interleaved, as the engine's RoPE takes them).
    ///
    /// # Errors
    /// A tensor is missing.
    fn take_block(&mut self, l: usize) -> anyhow::Result<Block>;
    /// Gives block `l` back, pruned.
    ///
    /// # Errors
    /// The output cannot be written.
    fn put_block(&mut self, l: usize, block: Block) -> anyhow::Result<()>;
    /// Writes the rest of the model and moves the output into place.
    ///
    /// # Errors
    /// The output cannot be written; nothing is left at the output then.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

/// The names of a block's nine tensors, in [`Block`]'s order, as GGUF names
/// them (`attn_norm`, `attn_q`, …).
pub const BLOCK_PARTS: [&str; 9] = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];

impl Block {
    /// The block from its nine tensors in [`BLOCK_PARTS`] order.
    ///
    /// # Errors
    /// Not nine of them.
    pub fn from_parts(parts: Vec<Vec<f32>>) -> anyhow::Result<Self> {
        let [attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down]: [Vec<f32>; 9] =
            parts.try_into().map_err(|p: Vec<Vec<f32>>| anyhow::anyhow!("a block has 9 tensors, not {}", p.len()))?;
        Ok(Self { attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down })
    }

    /// Its nine tensors in [`BLOCK_PARTS`] order.
    pub fn into_parts(self) -> [Vec<f32>; 9] {
        [self.attn_norm, self.wq, self.wk, self.wv, self.wo, self.ffn_norm, self.gate, self.up, self.down]
    }
}

//! The GGUF metadata of a converted model: `general.*`, the full `llama.*`
//! hyper-parameters from `config.json`, the tokenizer from `tokenizer.model`
//! (SentencePiece), the chat template from `tokenizer_config.json`, and where
//! the weights came from (`sprig.*` provenance keys).

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;
use sprig_engine::sentencepiece::SentencePieceModel;

use super::checkpoint::{CheckpointError, HfConfig};
use super::recipe::Recipe;

/// How the checkpoint was pruned, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The checkpoint (its `_name_or_path`, else its directory name).
    pub source: String,
    /// The pruning method the user named (e.g. `wanda`).
    pub pruning_method: String,
    /// Zero fraction over the pruned (linear) weights.
    pub sparsity: f64,
    /// Whether pruned zeros were kept exactly through quantization.
    pub keep_zeros: bool,
}

/// The tokenizer and chat template, read (and checked) before converting.
#[derive(Debug)]
pub struct TokenizerFiles {
    /// `tokenizer.model`.
    pub model: SentencePieceModel,
    /// `tokenizer_config.json`'s chat template, if any.
    pub chat_template: Option<String>,
    /// `add_bos_token` (default true).
    pub add_bos: bool,
    /// `add_eos_token` (default false).
    pub add_eos: bool,
}

/// Reads `tokenizer.model` and `tokenizer_config.json` in `dir`.
///
/// # Errors
/// [`CheckpointError`] for a missing or malformed file.
pub fn read_tokenizer(dir: &Path) -> Result<TokenizerFiles, CheckpointError> {
    let path = dir.join("tokenizer.model");
    let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
    let model = SentencePieceModel::parse(&bytes).map_err(|e| CheckpointError::Json { path: path.clone(), message: e.to_string() })?;
    let path = dir.join("tokenizer_config.json");
    let (chat_template, add_bos, add_eos) = match std::fs::read(&path) {
        Ok(bytes) => {
            let json: Json =
                serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Json { path: path.clone(), message: e.to_string() })?;
            let template = match json.get("chat_template") {
                Some(Json::String(t)) => Some(t.clone()),
                // A list of named templates: the default one.
                Some(Json::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                    .and_then(|t| t.get("template").and_then(Json::as_str))
                    .map(String::from),
                _ => None,
            };
            let flag = |k: &str, d: bool| json.get(k).and_then(Json::as_bool).unwrap_or(d);
            (template, flag("add_bos_token", true), flag("add_eos_token", false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, true, false),
        Err(source) => return Err(CheckpointError::Io { path, source }),
    };
    Ok(TokenizerFiles { model, chat_template, add_bos, add_eos })
}

/// Every metadata key of the converted model (without `split.*`).
pub fn build(cfg: &HfConfig, tok: &TokenizerFiles, name: &str, recipe: Recipe, prov: &Provenance) -> Vec<(String, Value)> {
    let u32v = |v: usize| Value::U32(v as u32);
    let s = |v: &str| Value::String(v.into());
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s("llama")),
        ("general.name".into(), s(name)),
        ("general.file_type".into(), Value::U32(recipe.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        ("llama.vocab_size".into(), u32v(cfg.vocab_size)),
        ("llama.context_length".into(), u32v(cfg.max_position_embeddings)),
        ("llama.embedding_length".into(), u32v(cfg.hidden_size)),
        ("llama.block_count".into(), u32v(cfg.num_hidden_layers)),
        ("llama.feed_forward_length".into(), u32v(cfg.intermediate_size)),
        ("llama.rope.dimension_count".into(), u32v(cfg.head_dim())),
        ("llama.rope.freq_base".into(), Value::F32(cfg.rope_base() as f32)),
        ("llama.attention.head_count".into(), u32v(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv".into(), u32v(cfg.kv_heads())),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(cfg.rms_norm_eps as f32)),
        ("sprig.source".into(), s(&prov.source)),
        ("sprig.pruning.method".into(), s(&prov.pruning_method)),
        ("sprig.pruning.sparsity".into(), Value::F32(prov.sparsity as f32)),
        ("sprig.quantization.recipe".into(), s(&recipe.name())),
        ("sprig.quantization.keep_zeros".into(), Value::Bool(prov.keep_zeros)),
    ];
    if let Some(w) = cfg.sliding_window {
        meta.push(("llama.attention.sliding_window".into(), u32v(w)));
    }
    for (k, v) in tok.model.gguf_metadata() {
        let v = match k.as_str() {
            "tokenizer.ggml.add_bos_token" => Value::Bool(tok.add_bos),
            "tokenizer.ggml.add_eos_token" => Value::Bool(tok.add_eos),
            _ => v,
        };
        meta.push((k, v));
    }
    if let Some(t) = &tok.chat_template {
        meta.push(("tokenizer.chat_template".into(), s(t)));
    }
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    meta
}

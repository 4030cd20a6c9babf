//! `sprig verify DIR`: checks a converted model before it is published: the
//! manifest's shards exist with their sizes and SHA-256, the shards form one
//! GGUF model, and its tensor table (names, shapes, count) is what its own
//! `llama.*` hyper-parameters require.

use std::path::PathBuf;

use anyhow::{bail, Context};
use sprig_engine::LlamaConfig;
use sprig_protocol::Manifest;

use super::manifest::sha256_file;
use crate::convert::checkpoint::HfConfig;
use crate::convert::mapping::plan;

/// Arguments of `sprig verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory written by `sprig convert` (manifest.json and its shards).
    pub dir: PathBuf,
}

/// The tensors (GGUF name, candle dims) a llama model with `cfg` must have:
/// the converter's own tensor plan, for a config made from the GGUF's metadata.
fn expected_tensors(cfg: &LlamaConfig, vocab: usize, tied: bool) -> Vec<(String, Vec<usize>)> {
    let hf = HfConfig {
        architectures: Vec::new(),
        model_type: cfg.architecture.clone(),
        name_or_path: None,
        hidden_size: cfg.n_embd,
        intermediate_size: cfg.n_ff,
        num_hidden_layers: cfg.n_layer,
        num_attention_heads: cfg.n_head,
        num_key_value_heads: Some(cfg.n_head_kv),
        head_dim: Some(cfg.head_dim),
        max_position_embeddings: cfg.context_length,
        rms_norm_eps: cfg.rms_eps,
        rope_theta: Some(cfg.rope_theta),
        vocab_size: vocab,
        sliding_window: cfg.sliding_window,
        tie_word_embeddings: tied,
        bos_token_id: None,
        eos_token_id: None,
    };
    plan(&hf).into_iter().map(|t| (t.gguf, t.shape)).collect()
}

/// Runs `sprig verify`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let path = args.dir.join("manifest.json");
    let json = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest = Manifest::parse(&json).with_context(|| format!("{} is not a valid manifest", path.display()))?;
    let mut problems = Vec::new();
    for (i, shard) in manifest.shards.iter().enumerate() {
        let file = args.dir.join(&shard.url);
        match sha256_file(&file) {
            Err(e) => problems.push(format!("shard {} ({}): {e:#}", i + 1, shard.url)),
            Ok((sha, size)) => {
                if size != shard.size {
                    problems.push(format!("shard {} ({}): {size} bytes, the manifest says {}", i + 1, shard.url, shard.size));
                }
                if sha != shard.sha256 {
                    problems.push(format!("shard {} ({}): sha256 {sha}, the manifest says {}", i + 1, shard.url, shard.sha256));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("{} is damaged:\n  {}", args.dir.display(), problems.join("\n  "));
    }
    let first = args.dir.join(&manifest.shards[0].url);
    let model = super::open_gguf(&first)?;
    if model.shard_count() != manifest.shards.len() {
        bail!("the manifest lists {} shards, the GGUF split has {}", manifest.shards.len(), model.shard_count());
    }
    let cfg = LlamaConfig::from_metadata(&model.metadata()).context("the GGUF metadata does not describe a llama model")?;
    let vocab = model.tensor_info("token_embd.weight").map_or(0, |t| t.shape.dims()[0]);
    let tied = model.tensor_info("output.weight").is_none();
    let expected = expected_tensors(&cfg, vocab, tied);
    let actual = model.tensors();
    for (name, dims) in &expected {
        match model.tensor_info(name) {
            None => problems.push(format!("tensor {name} is missing")),
            Some(t) if t.shape.dims() != dims.as_slice() => {
                problems.push(format!("tensor {name} has shape {:?}, expected {dims:?}", t.shape.dims()))
            }
            Some(_) => {}
        }
    }
    for (name, _) in &actual {
        if !expected.iter().any(|(n, _)| n == name) {
            problems.push(format!("unexpected tensor {name}"));
        }
    }
    if !problems.is_empty() {
        bail!("{} does not match its configuration:\n  {}", args.dir.display(), problems.join("\n  "));
    }
    let info = model.info()?;
    println!(
        "ok: {} · {} shard(s), {} bytes, sha256 verified · {} tensors · {} layers, width {}, {} heads ({} kv), vocab {} · {}",
        manifest.name,
        manifest.shards.len(),
        manifest.total_size,
        actual.len(),
        cfg.n_layer,
        cfg.n_embd,
        cfg.n_head,
        cfg.n_head_kv,
        vocab,
        info.tensor_types.iter().map(|(t, n)| format!("{n} × {t}")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

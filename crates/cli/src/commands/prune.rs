//! `sprig prune --input MODEL --method wanda|magnitude --sparsity 0.3
//! --calib TEXT --output OUT`: prunes every linear layer of a model's blocks
//! (attention q, k, v, output; feed-forward gate, up, down), each output row
//! losing exactly `round(sparsity · in)` weights; the embeddings, the norms
//! and the output matrix stay dense, as in the Wanda paper.
//!
//! The output follows the input:
//! - a GGUF file (any type, split or not) is dequantized to f32 and written
//!   as one F16 (or F32) GGUF with its metadata, tokenizer and tensor order,
//!   plus the `sprig.pruning.*` keys; `sprig requant` then quantizes it,
//!   keeping the zeros or not;
//! - a Hugging Face checkpoint directory (`config.json`, safetensors,
//!   `tokenizer.model`) becomes a checkpoint of the same layout, the
//!   `sprig.pruning.*` keys in each file's `__metadata__`: what
//!   `sprig convert` takes, as it takes the real Wanda checkpoint.
//!
//! - **magnitude**: each row keeps its largest |W_ij|;
//! - **wanda** (Sun et al., 2023): each row keeps its largest |W_ij| · ‖X_j‖₂,
//!   with ‖X_j‖₂ the norm of input feature j over the calibration text's
//!   tokens, block by block: a block's inputs come from the blocks before it
//!   already pruned, its own layers are weighed on the block's unpruned
//!   pass, then pruned, and the block runs again to give the next one its
//!   inputs (as the paper's code does).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::quantized::GgmlDType;
use sprig_engine::model::LlamaConfig;

use super::requant::check_output;
use super::synth::Dtype;
use crate::prune::forward::{Block, InputNorms, Runner};
use crate::prune::gguf_model::GgufModel;
use crate::prune::hf_model::HfModel;
use crate::prune::select::{prune_rows, pruned_per_row};
use crate::prune::{BlockStore, PruningRecord};

/// How weights are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// |W_ij| · ‖X_j‖₂ on calibration text.
    Wanda,
    /// |W_ij|.
    Magnitude,
}

/// Arguments of `sprig prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model to prune: a GGUF file (any type; dequantized to f32), or a
    /// Hugging Face checkpoint directory.
    #[arg(long)]
    pub input: PathBuf,
    /// The output: a GGUF file for a GGUF input, a checkpoint directory for a
    /// checkpoint.
    #[arg(long)]
    pub output: PathBuf,
    /// How weights are chosen.
    #[arg(long, value_enum)]
    pub method: Method,
    /// The share of each row's weights set to 0.
    #[arg(long, default_value_t = 0.3)]
    pub sparsity: f64,
    /// Calibration text (UTF-8), for wanda.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration chunks (sequences) for wanda.
    #[arg(long, default_value_t = 16)]
    pub chunks: usize,
    /// Tokens per calibration chunk.
    #[arg(long, default_value_t = 256)]
    pub ctx: usize,
    /// The output's weight type: f16 (the default for a GGUF, whose norms
    /// stay F32) or f32; a checkpoint keeps its own type by default and may
    /// also be written as bf16.
    #[arg(long, value_enum)]
    pub dtype: Option<Dtype>,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The linear layers of a block, by GGUF name part.
pub const LINEAR: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// Prunes a block's seven linear layers; `norms` are the squared input
/// norms (Wanda), `None` for magnitude.
fn prune_block(b: &mut Block, cfg: &LlamaConfig, norms: Option<&InputNorms>, sparsity: f64) {
    let root = |v: &Vec<f32>| v.iter().map(|x| x.sqrt()).collect::<Vec<f32>>();
    let n = norms.map(|n| (root(&n.qkv), root(&n.o), root(&n.gate_up), root(&n.down)));
    let (e, q_dim) = (cfg.n_embd, cfg.n_head * cfg.head_dim);
    let ff = b.down.len() / e;
    prune_rows(&mut b.wq, e, n.as_ref().map(|n| n.0.as_slice()), sparsity);
    prune_rows(&mut b.wk, e, n.as_ref().map(|n| n.0.as_slice()), sparsity);
    prune_rows(&mut b.wv, e, n.as_ref().map(|n| n.0.as_slice()), sparsity);
    prune_rows(&mut b.wo, q_dim, n.as_ref().map(|n| n.1.as_slice()), sparsity);
    prune_rows(&mut b.gate, e, n.as_ref().map(|n| n.2.as_slice()), sparsity);
    prune_rows(&mut b.up, e, n.as_ref().map(|n| n.2.as_slice()), sparsity);
    prune_rows(&mut b.down, ff, n.as_ref().map(|n| n.3.as_slice()), sparsity);
}

/// Runs `sprig prune`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.sparsity) {
        bail!("--sparsity {}: it must be at least 0 and below 1", args.sparsity);
    }
    let calib_text = match (args.method, &args.calib) {
        (Method::Wanda, None) => bail!("--method wanda needs --calib TEXT (calibration text)"),
        (Method::Wanda, Some(p)) => Some(std::fs::read_to_string(p).with_context(|| format!("cannot read {} as UTF-8 text", p.display()))?),
        (Method::Magnitude, _) => None,
    };
    let record = PruningRecord {
        method: format!("{:?}", args.method).to_lowercase(),
        sparsity: args.sparsity,
        calibration: args.calib.as_ref().filter(|_| args.method == Method::Wanda).map(|calib| {
            let name = calib.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            format!("{name}: {} chunks of {} tokens", args.chunks, args.ctx)
        }),
    };
    let started = Instant::now();
    let checkpoint = args.input.is_dir();
    let mut model: Box<dyn BlockStore> = if checkpoint {
        Box::new(HfModel::open(&args.input, &args.output, args.dtype, args.force, &record)?)
    } else {
        check_output(&args.input, &args.output, args.force)?;
        let dtype = match args.dtype.unwrap_or(Dtype::F16) {
            Dtype::F16 => GgmlDType::F16,
            Dtype::F32 => GgmlDType::F32,
            Dtype::Bf16 => bail!("--dtype bf16 is for a Hugging Face checkpoint; a GGUF output is f16 or f32"),
        };
        Box::new(GgufModel::open(&args.input, &args.output, dtype, record)?)
    };
    let cfg = model.config().clone();
    eprintln!("opened {} in {:.1} s", args.input.display(), started.elapsed().as_secs_f64());

    let mut runner = match &calib_text {
        Some(text) => {
            let ids = super::text_ids(model.tokenizer(), text)?;
            let need = args.chunks * args.ctx;
            if args.chunks == 0 || args.ctx < 2 || ids.len() < need {
                bail!("the calibration text has {} tokens: --chunks {} × --ctx {} = {need} are needed", ids.len(), args.chunks, args.ctx);
            }
            let chunks: Vec<Vec<u32>> = ids[..need].chunks(args.ctx).map(<[u32]>::to_vec).collect();
            Some(Runner::new(&cfg, &model.embedding()?, &chunks, args.ctx)?)
        }
        None => None,
    };
    for l in 0..cfg.n_layer {
        let block_started = Instant::now();
        let mut block = model.take_block(l)?;
        match runner.as_mut() {
            Some(runner) => {
                let inputs = runner.x.clone();
                let mut norms = InputNorms::default();
                runner.block(&block, Some(&mut norms))?;
                prune_block(&mut block, &cfg, Some(&norms), args.sparsity);
                runner.x = inputs;
                runner.block(&block, None)?;
            }
            None => prune_block(&mut block, &cfg, None, args.sparsity),
        }
        model.put_block(l, block)?;
        eprintln!("block {}/{} pruned ({:.1} s)", l + 1, cfg.n_layer, block_started.elapsed().as_secs_f64());
    }
    model.finish()?;

    let per_row: Vec<String> = [cfg.n_embd, cfg.n_head * cfg.head_dim, cfg.n_ff]
        .iter()
        .map(|&cols| format!("{} of {cols}", pruned_per_row(cols, args.sparsity)))
        .collect();
    println!(
        "pruned {} linear layers ({:?}, {:.0} %: {} weights per row), wrote {} in {:.1} s",
        LINEAR.len() * cfg.n_layer,
        args.method,
        args.sparsity * 100.0,
        per_row.join(", "),
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    if checkpoint {
        println!("next: sprig convert --input {} --output OUT_DIR --quant q4_k_m", args.output.display());
    } else {
        println!("next: sprig requant {} OUT.gguf --quant q4_k_m", args.output.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::gguf_model::read_dense;

    const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf");

    /// The f32 forward pass that weighs Wanda's inputs computes the model the
    /// engine computes: the same next token, nearly the same logits.
    #[test]
    fn the_calibration_forward_pass_is_the_engines_model() {
        let mut dense = read_dense(std::path::Path::new(MODEL)).expect("run scripts/fetch-models");
        let ids = dense.tokenizer.encode("The capital of France is Paris, and the capital of Italy is").unwrap();
        let embedding = dense.tensors["token_embd.weight"].1.clone();
        let mut runner = Runner::new(&dense.cfg, &embedding, std::slice::from_ref(&ids), ids.len()).unwrap();
        for l in 0..dense.cfg.n_layer {
            let block = dense.take_block(l).unwrap();
            runner.block(&block, None).unwrap();
        }
        let output = dense.tensors.get("output.weight").map_or(&embedding, |t| &t.1);
        let ours = runner.logits(&dense.tensors["output_norm.weight"].1, output).unwrap();
        let vocab = ours.len() / ids.len();
        let last = &ours[(ids.len() - 1) * vocab..];

        let mut file = super::super::open_gguf(std::path::Path::new(MODEL)).unwrap();
        let mut model = sprig_engine::Model::load(&mut file).unwrap();
        let engine = model.forward(&ids).unwrap();
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(argmax(last), argmax(&engine));
        let dot: f64 = last.iter().zip(&engine).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (norm(last) * norm(&engine));
        assert!(cosine > 0.995, "cosine {cosine}");
    }
}

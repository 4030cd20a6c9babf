//! `sprig prune --input MODEL.gguf --method wanda|magnitude --sparsity 0.3
//! --calib TEXT --output OUT.gguf`: prunes every linear layer of a GGUF
//! model's blocks (attention q, k, v, output; feed-forward gate, up, down),
//! each output row losing exactly `round(sparsity · in)` weights; the
//! embeddings, the norms and the output matrix stay dense, as in the Wanda
//! paper. The model is dequantized to f32 and written as an F16 (or F32)
//! GGUF with its metadata, tokenizer and tensor order, plus the
//! `sprig.pruning.*` keys; `sprig requant` then quantizes it, keeping the
//! zeros or not.
//!
//! - **magnitude**: each row keeps its largest |W_ij|;
//! - **wanda** (Sun et al., 2023): each row keeps its largest |W_ij| · ‖X_j‖₂,
//!   with ‖X_j‖₂ the norm of input feature j over the calibration text's
//!   tokens, block by block: a block's inputs come from the blocks before it
//!   already pruned, its own layers are weighed on the block's unpruned
//!   pass, then pruned, and the block runs again to give the next one its
//!   inputs (as the paper's code does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use sprig_engine::model::LlamaConfig;
use sprig_engine::Tokenizer;

use super::requant::{check_output, output_metadata, write};
use crate::convert::recipe::Recipe;
use crate::prune::forward::{Block, InputNorms, Runner};
use crate::prune::select::{prune_rows, pruned_per_row};

/// How weights are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// |W_ij| · ‖X_j‖₂ on calibration text.
    Wanda,
    /// |W_ij|.
    Magnitude,
}

/// The output's weight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// 16-bit floats.
    F16,
    /// 32-bit floats.
    F32,
}

/// Arguments of `sprig prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model to prune (any type; dequantized to f32).
    #[arg(long)]
    pub input: PathBuf,
    /// The GGUF file to write.
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
    /// The output's weight type (norms stay F32).
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: Dtype,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The linear layers of a block, by GGUF name part.
pub const LINEAR: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

fn take(tensors: &mut HashMap<String, (Vec<usize>, Vec<f32>)>, name: &str) -> anyhow::Result<Vec<f32>> {
    tensors.remove(name).map(|(_, v)| v).with_context(|| format!("the model has no tensor {name}"))
}

fn block_of(tensors: &mut HashMap<String, (Vec<usize>, Vec<f32>)>, l: usize) -> anyhow::Result<Block> {
    let mut t = |k: &str| take(tensors, &format!("blk.{l}.{k}.weight"));
    Ok(Block {
        attn_norm: t("attn_norm")?,
        wq: t("attn_q")?,
        wk: t("attn_k")?,
        wv: t("attn_v")?,
        wo: t("attn_output")?,
        ffn_norm: t("ffn_norm")?,
        gate: t("ffn_gate")?,
        up: t("ffn_up")?,
        down: t("ffn_down")?,
    })
}

fn give_back(tensors: &mut HashMap<String, (Vec<usize>, Vec<f32>)>, shapes: &HashMap<String, Vec<usize>>, l: usize, b: Block) {
    let parts = [
        ("attn_norm", b.attn_norm),
        ("attn_q", b.wq),
        ("attn_k", b.wk),
        ("attn_v", b.wv),
        ("attn_output", b.wo),
        ("ffn_norm", b.ffn_norm),
        ("ffn_gate", b.gate),
        ("ffn_up", b.up),
        ("ffn_down", b.down),
    ];
    for (k, v) in parts {
        let name = format!("blk.{l}.{k}.weight");
        tensors.insert(name.clone(), (shapes[&name].clone(), v));
    }
}

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

/// A GGUF model read whole and dequantized to f32.
pub struct Dense {
    /// Its configuration.
    pub cfg: LlamaConfig,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its metadata.
    pub metadata: HashMap<String, Value>,
    /// Its tensors in file order: data offset, name, shape.
    pub order: Vec<(u64, String, Vec<usize>)>,
    /// Every tensor: shape and values (row-major).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Reads the model at `path` (any shard names a split one), dequantized.
///
/// # Errors
/// Not a readable Llama-architecture GGUF.
pub fn read_dense(path: &std::path::Path) -> anyhow::Result<Dense> {
    let mut file = super::open_gguf(path)?;
    let (cfg, tokenizer, metadata) = {
        let meta = file.metadata();
        let cfg = LlamaConfig::from_metadata(&meta).with_context(|| format!("{} is not a model sprig can prune", path.display()))?;
        (cfg, Tokenizer::from_gguf(&meta)?, meta.0.clone())
    };
    let mut order: Vec<(u64, String, Vec<usize>)> =
        file.tensors().into_iter().map(|(name, info)| (info.offset, name.to_string(), info.shape.dims().to_vec())).collect();
    order.sort();
    let mut tensors = HashMap::new();
    for (_, name, shape) in &order {
        let t = file.tensor(name, &Device::Cpu)?;
        let v = t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>().with_context(|| format!("cannot dequantize {name}"))?;
        tensors.insert(name.clone(), (shape.clone(), v));
    }
    Ok(Dense { cfg, tokenizer, metadata, order, tensors })
}

/// Runs `sprig prune`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.sparsity) {
        bail!("--sparsity {}: it must be at least 0 and below 1", args.sparsity);
    }
    check_output(&args.input, &args.output, args.force)?;
    let calib_text = match (args.method, &args.calib) {
        (Method::Wanda, None) => bail!("--method wanda needs --calib TEXT (calibration text)"),
        (Method::Wanda, Some(p)) => Some(std::fs::read_to_string(p).with_context(|| format!("cannot read {} as UTF-8 text", p.display()))?),
        (Method::Magnitude, _) => None,
    };
    let started = Instant::now();
    let Dense { cfg, tokenizer, metadata: raw_meta, order, mut tensors } = read_dense(&args.input)?;
    let shapes: HashMap<String, Vec<usize>> = tensors.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect();
    eprintln!("read {} ({} tensors) in {:.1} s", args.input.display(), order.len(), started.elapsed().as_secs_f64());

    let mut runner = match &calib_text {
        Some(text) => {
            let ids = super::text_ids(&tokenizer, text)?;
            let need = args.chunks * args.ctx;
            if args.chunks == 0 || args.ctx < 2 || ids.len() < need {
                bail!("the calibration text has {} tokens: --chunks {} × --ctx {} = {need} are needed", ids.len(), args.chunks, args.ctx);
            }
            let chunks: Vec<Vec<u32>> = ids[..need].chunks(args.ctx).map(<[u32]>::to_vec).collect();
            let embedding = &tensors.get("token_embd.weight").context("the model has no token_embd.weight")?.1;
            Some(Runner::new(&cfg, embedding, &chunks, args.ctx)?)
        }
        None => None,
    };
    for l in 0..cfg.n_layer {
        let block_started = Instant::now();
        let mut block = block_of(&mut tensors, l)?;
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
        give_back(&mut tensors, &shapes, l, block);
        eprintln!("block {}/{} pruned ({:.1} s)", l + 1, cfg.n_layer, block_started.elapsed().as_secs_f64());
    }

    // The output: every tensor in its order, linear layers and other matrices
    // as --dtype, vectors as F32.
    let dtype = match args.dtype {
        Dtype::F16 => GgmlDType::F16,
        Dtype::F32 => GgmlDType::F32,
    };
    let mut out_tensors = Vec::with_capacity(order.len());
    for (_, name, shape) in &order {
        let (_, values) = &tensors[name];
        let t = Tensor::from_slice(values, shape.as_slice(), &Device::Cpu)?;
        let q = QTensor::quantize(&t, if shape.len() >= 2 { dtype } else { GgmlDType::F32 })?;
        out_tensors.push((name.clone(), q));
    }
    // The input's metadata (requant's rules: no split keys, the file type of
    // --dtype), an earlier pruning's keys replaced by this one's.
    let mut metadata: Vec<(String, Value)> =
        output_metadata(&raw_meta, Recipe::Uniform(dtype)).into_iter().filter(|(k, _)| !k.starts_with("sprig.pruning.")).collect();
    if !metadata.iter().any(|(k, _)| k == "general.file_type") {
        metadata.push(("general.file_type".into(), Value::U32(Recipe::Uniform(dtype).file_type())));
    }
    metadata.push(("sprig.pruning.method".into(), Value::String(format!("{:?}", args.method).to_lowercase())));
    metadata.push(("sprig.pruning.sparsity".into(), Value::F32(args.sparsity as f32)));
    if let Some(calib) = &args.calib.as_ref().filter(|_| args.method == Method::Wanda) {
        let name = calib.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        metadata
            .push(("sprig.pruning.calibration".into(), Value::String(format!("{name}: {} chunks of {} tokens", args.chunks, args.ctx))));
    }
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    write(&args.output, &metadata, &out_tensors)?;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf");

    /// The f32 forward pass that weighs Wanda's inputs computes the model the
    /// engine computes: the same next token, nearly the same logits.
    #[test]
    fn the_calibration_forward_pass_is_the_engines_model() {
        let Dense { cfg, tokenizer, mut tensors, .. } = read_dense(std::path::Path::new(MODEL)).expect("run scripts/fetch-models");
        let ids = tokenizer.encode("The capital of France is Paris, and the capital of Italy is").unwrap();
        let embedding = tensors["token_embd.weight"].1.clone();
        let mut runner = Runner::new(&cfg, &embedding, std::slice::from_ref(&ids), ids.len()).unwrap();
        for l in 0..cfg.n_layer {
            let block = block_of(&mut tensors, l).unwrap();
            runner.block(&block, None).unwrap();
        }
        let output = tensors.get("output.weight").map_or(&embedding, |t| &t.1);
        let ours = runner.logits(&tensors["output_norm.weight"].1, output).unwrap();
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

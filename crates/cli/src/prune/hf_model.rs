//! A Hugging Face checkpoint pruned block by block, into a checkpoint of the
//! same layout (`sprig convert`'s input): the same safetensors files with the
//! same tensors in the same order, the index, `config.json` and the
//! tokenizer files. Weights are read through the checkpoint's mmap one block
//! at a time and written in place in preallocated files, so memory stays
//! near one block (f32) plus the embedding, whatever the model's size.
//!
//! The query and key rows are read in GGUF's order (each head's rotary pairs
//! interleaved, as `sprig convert` permutes them and the engine's RoPE takes
//! them), so the calibration pass is the converted model's; they are written
//! back in Hugging Face's order. Pruning keeps whole rows' choices, so the
//! order does not change which weights go.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::quantized::GgmlDType;
use sprig_engine::gguf::Metadata;
use sprig_engine::model::LlamaConfig;
use sprig_engine::Tokenizer;

use super::forward::Block;
use super::{BlockStore, PruningRecord, BLOCK_PARTS};
use crate::commands::convert::prepare_output;
use crate::commands::synth::{safetensors_header, Dtype};
use crate::convert::checkpoint::{Checkpoint, SrcType, TensorRef};
use crate::convert::mapping::{plan, source_row, TensorPlan};
use crate::convert::metadata::{build, read_tokenizer, Provenance};
use crate::convert::recipe::Recipe;

/// The files besides the weights that the output takes from the input, when
/// present (the tokenizer and the configuration `sprig convert` reads).
const COPIED: [&str; 6] =
    ["config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/// Where a tensor goes in the output: its file and the byte offset of its data.
#[derive(Debug, Clone, Copy)]
struct Slot {
    file: usize,
    offset: u64,
}

/// A checkpoint being pruned into the directory `output` (written as
/// `output.part`, renamed at the end).
pub struct HfModel {
    ck: Checkpoint,
    cfg: LlamaConfig,
    tokenizer: Tokenizer,
    /// Every tensor of the model, by GGUF name.
    plan: HashMap<String, TensorPlan>,
    dtype: Dtype,
    files: Vec<File>,
    slots: HashMap<String, Slot>,
    /// Tensors already written.
    written: std::collections::HashSet<String>,
    part: PathBuf,
    output: PathBuf,
    scratch: Vec<u16>,
}

/// The type the input stores its embedding in (the output's default).
fn stored_type(t: &TensorRef) -> Dtype {
    match t.dtype {
        SrcType::F16 => Dtype::F16,
        SrcType::Bf16 => Dtype::Bf16,
        SrcType::F32 => Dtype::F32,
    }
}

impl HfModel {
    /// Opens and checks the checkpoint in `input` and prepares the output
    /// directory: every file created at its final size, headers written,
    /// with `record` in each file's `__metadata__`. `dtype` is the output's
    /// type (default: the input's embedding's).
    ///
    /// # Errors
    /// A checkpoint `sprig convert` would refuse; an output that is the
    /// input, or that exists and is not empty without `force`.
    pub fn open(input: &Path, output: &Path, dtype: Option<Dtype>, force: bool, record: &PruningRecord) -> anyhow::Result<Self> {
        let ck = Checkpoint::open(input).with_context(|| format!("cannot prune {}", input.display()))?;
        let tok = read_tokenizer(input)?;
        if tok.model.pieces.len() != ck.config.vocab_size {
            bail!("tokenizer.model has {} tokens, config.json says vocab_size {}", tok.model.pieces.len(), ck.config.vocab_size);
        }
        let mut plan_by_name = HashMap::new();
        for p in plan(&ck.config) {
            ck.expect(&p.hf, &p.shape)?;
            plan_by_name.insert(p.gguf.clone(), p);
        }
        // The engine's view of the model: the metadata `sprig convert` writes.
        let prov = Provenance { source: String::new(), pruning_method: String::new(), sparsity: 0.0, keep_zeros: true };
        let meta: HashMap<_, _> = build(&ck.config, &tok, "pruning", Recipe::Uniform(GgmlDType::F32), &prov).into_iter().collect();
        let cfg = LlamaConfig::from_metadata(&Metadata(&meta)).context("the checkpoint is not a model sprig can prune")?;
        let tokenizer = Tokenizer::from_gguf(&Metadata(&meta))?;
        let embedding = &plan_by_name["token_embd.weight"].hf;
        let dtype = dtype.unwrap_or_else(|| ck.tensor(embedding).map_or(Dtype::F16, stored_type));

        let same = input.canonicalize().ok().zip(output.canonicalize().ok()).is_some_and(|(a, b)| a == b);
        if same {
            bail!("--output {} is the input checkpoint: choose another directory", output.display());
        }
        let part = prepare_output(output, force)?;
        let mut extra = HashMap::from([
            ("sprig.pruning.method".to_string(), record.method.clone()),
            ("sprig.pruning.sparsity".to_string(), record.sparsity.to_string()),
        ]);
        if let Some(c) = &record.calibration {
            extra.insert("sprig.pruning.calibration".into(), c.clone());
        }
        let (files, slots) = create_files(&ck, &part, dtype, &extra)?;
        Ok(Self {
            ck,
            cfg,
            tokenizer,
            plan: plan_by_name,
            dtype,
            files,
            slots,
            written: Default::default(),
            part,
            output: output.to_path_buf(),
            scratch: Vec::new(),
        })
    }

    /// The tensor planned as `gguf`, in GGUF row order, f32.
    fn read(&self, gguf: &str) -> anyhow::Result<Vec<f32>> {
        let p = self.plan.get(gguf).with_context(|| format!("the model has no tensor {gguf}"))?;
        Ok(self.read_rows(self.ck.expect(&p.hf, &p.shape)?, p.permute_heads))
    }

    /// Every row of `t` as f32, in GGUF order when `permute_heads` says so;
    /// its pages released afterwards.
    fn read_rows(&self, t: &TensorRef, permute_heads: Option<usize>) -> Vec<f32> {
        let mut out = Vec::with_capacity(t.rows() * t.cols());
        for r in 0..t.rows() {
            let from = permute_heads.map_or(r, |heads| source_row(r, t.rows(), heads));
            self.ck.read_row(t, from, &mut out);
        }
        self.ck.release(t);
        out
    }

    /// Writes `values` (rows in GGUF order) as the checkpoint's tensor `hf`,
    /// rows back in Hugging Face order when `permute_heads` says so.
    fn write(&mut self, hf: &str, shape: &[usize], permute_heads: Option<usize>, values: &[f32]) -> anyhow::Result<()> {
        let slot = *self.slots.get(hf).with_context(|| format!("{hf} has no place in the output"))?;
        let cols = shape.last().copied().unwrap_or(1);
        let rows = values.len() / cols.max(1);
        let ordered: std::borrow::Cow<'_, [f32]> = match permute_heads {
            Some(heads) => {
                let mut out = vec![0.0f32; values.len()];
                for (r, row) in values.chunks_exact(cols).enumerate() {
                    let to = source_row(r, rows, heads);
                    out[to * cols..(to + 1) * cols].copy_from_slice(row);
                }
                out.into()
            }
            None => values.into(),
        };
        let mut bytes = vec![0u8; ordered.len() * self.dtype.size()];
        self.dtype.encode(&ordered, &mut bytes, &mut self.scratch);
        let path = self.part.join(&self.ck.file_names[slot.file]);
        let file = &mut self.files[slot.file];
        file.seek(SeekFrom::Start(slot.offset))
            .and_then(|_| file.write_all(&bytes))
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.written.insert(hf.to_string());
        Ok(())
    }

    /// Writes the tensor planned as `gguf` (or, when unplanned, the
    /// checkpoint's tensor `hf` as stored).
    fn copy(&mut self, hf: &str) -> anyhow::Result<()> {
        let t = self.ck.tensor(hf).cloned().with_context(|| format!("no tensor {hf}"))?;
        let permute_heads = self.plan.values().find(|p| p.hf == hf).and_then(|p| p.permute_heads);
        let values = self.read_rows(&t, permute_heads);
        self.write(hf, &t.shape, permute_heads, &values)
    }
}

/// Creates every output file at its final size with its header: the input's
/// files, names and tensor order, each tensor stored as `dtype`.
fn create_files(
    ck: &Checkpoint,
    part: &Path,
    dtype: Dtype,
    extra: &HashMap<String, String>,
) -> anyhow::Result<(Vec<File>, HashMap<String, Slot>)> {
    let mut files = Vec::with_capacity(ck.file_names.len());
    let mut slots = HashMap::new();
    for (i, name) in ck.file_names.iter().enumerate() {
        let mut tensors: Vec<(&str, &TensorRef)> = ck.tensors().filter(|(_, t)| t.file == i).collect();
        tensors.sort_by_key(|(_, t)| t.start);
        let layout: Vec<(&str, &[usize])> = tensors.iter().map(|(n, t)| (*n, t.shape.as_slice())).collect();
        let header = safetensors_header(&layout, dtype, extra.clone())?;
        let mut offset = header.len() as u64;
        for (n, t) in &tensors {
            slots.insert((*n).to_string(), Slot { file: i, offset });
            offset += (t.shape.iter().product::<usize>() * dtype.size()) as u64;
        }
        let path = part.join(name);
        let mut file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(&header).and_then(|()| file.set_len(offset)).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(file);
    }
    Ok((files, slots))
}

/// `model.safetensors.index.json` for the output: the input's map, the
/// total size in `dtype`.
fn index_json(ck: &Checkpoint, dtype: Dtype) -> anyhow::Result<String> {
    let total_size: u64 = ck.tensors().map(|(_, t)| (t.shape.iter().product::<usize>() * dtype.size()) as u64).sum();
    let weight_map: BTreeMap<&str, &str> = ck.tensors().map(|(n, t)| (n, ck.file_names[t.file].as_str())).collect();
    let index = serde_json::json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
    Ok(serde_json::to_string_pretty(&index)? + "\n")
}

impl BlockStore for HfModel {
    fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn embedding(&self) -> anyhow::Result<Vec<f32>> {
        self.read("token_embd.weight")
    }

    fn take_block(&mut self, l: usize) -> anyhow::Result<Block> {
        let parts = BLOCK_PARTS.iter().map(|k| self.read(&format!("blk.{l}.{k}.weight"))).collect::<anyhow::Result<Vec<_>>>()?;
        Block::from_parts(parts)
    }

    fn put_block(&mut self, l: usize, block: Block) -> anyhow::Result<()> {
        for (k, values) in BLOCK_PARTS.iter().zip(block.into_parts()) {
            let p = self.plan.get(&format!("blk.{l}.{k}.weight")).cloned().with_context(|| format!("the model has no blk.{l}.{k}"))?;
            self.write(&p.hf, &p.shape, p.permute_heads, &values)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        // Everything not in a block: embedding, final norm, output, and any
        // tensor the model does not use, as stored.
        let rest: Vec<String> = self.ck.tensors().map(|(n, _)| n.to_string()).filter(|n| !self.written.contains(n)).collect();
        for hf in rest {
            self.copy(&hf)?;
        }
        for (file, name) in self.files.iter().zip(&self.ck.file_names) {
            file.sync_all().with_context(|| format!("cannot write {name}"))?;
        }
        if self.ck.is_indexed() {
            std::fs::write(self.part.join("model.safetensors.index.json"), index_json(&self.ck, self.dtype)?)?;
        }
        for name in COPIED {
            let from = self.ck.dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, self.part.join(name)).with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        set_torch_dtype(&self.part.join("config.json"), self.dtype)?;
        if self.output.exists() {
            std::fs::remove_dir_all(&self.output).with_context(|| format!("cannot replace {}", self.output.display()))?;
        }
        std::fs::rename(&self.part, &self.output).with_context(|| format!("cannot move {} into place", self.part.display()))?;
        Ok(())
    }
}

/// Sets `torch_dtype` in the copied `config.json` to the stored type, when
/// it says another.
fn set_torch_dtype(path: &Path, dtype: Dtype) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if json.get("torch_dtype").and_then(serde_json::Value::as_str) == Some(dtype.torch_name()) {
        return Ok(());
    }
    json["torch_dtype"] = dtype.torch_name().into();
    std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n").with_context(|| format!("cannot write {}", path.display()))
}

//! A GGUF model pruned in memory: read whole and dequantized to f32, its
//! blocks taken and given back, then written as one F16 or F32 GGUF file
//! with the input's metadata, tokenizer and tensor order, plus the
//! `sprig.pruning.*` keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use sprig_engine::model::LlamaConfig;
use sprig_engine::Tokenizer;

use super::forward::Block;
use super::{BlockStore, PruningRecord, BLOCK_PARTS};
use crate::commands::requant::{output_metadata, write};
use crate::convert::recipe::Recipe;

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
pub fn read_dense(path: &Path) -> anyhow::Result<Dense> {
    let mut file = crate::commands::open_gguf(path)?;
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

impl Dense {
    /// Takes the tensor `name` out.
    ///
    /// # Errors
    /// The model has no such tensor.
    pub fn take(&mut self, name: &str) -> anyhow::Result<Vec<f32>> {
        self.tensors.get_mut(name).map(|(_, v)| std::mem::take(v)).with_context(|| format!("the model has no tensor {name}"))
    }

    /// Takes block `l` out.
    ///
    /// # Errors
    /// A tensor of the block is missing.
    pub fn take_block(&mut self, l: usize) -> anyhow::Result<Block> {
        let parts = BLOCK_PARTS.iter().map(|k| self.take(&format!("blk.{l}.{k}.weight"))).collect::<anyhow::Result<Vec<_>>>()?;
        Block::from_parts(parts)
    }

    /// Puts block `l` back.
    pub fn put_block(&mut self, l: usize, block: Block) {
        for (k, v) in BLOCK_PARTS.iter().zip(block.into_parts()) {
            if let Some(slot) = self.tensors.get_mut(&format!("blk.{l}.{k}.weight")) {
                slot.1 = v;
            }
        }
    }
}

/// A GGUF model being pruned into the GGUF file `output`.
pub struct GgufModel {
    dense: Dense,
    output: PathBuf,
    dtype: GgmlDType,
    record: PruningRecord,
}

impl GgufModel {
    /// Reads `input` whole; the output will be written as `dtype` (matrices;
    /// vectors stay F32) with `record`'s keys.
    ///
    /// # Errors
    /// Not a readable Llama-architecture GGUF.
    pub fn open(input: &Path, output: &Path, dtype: GgmlDType, record: PruningRecord) -> anyhow::Result<Self> {
        Ok(Self { dense: read_dense(input)?, output: output.to_path_buf(), dtype, record })
    }
}

impl BlockStore for GgufModel {
    fn config(&self) -> &LlamaConfig {
        &self.dense.cfg
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.dense.tokenizer
    }

    fn embedding(&self) -> anyhow::Result<Vec<f32>> {
        Ok(self.dense.tensors.get("token_embd.weight").context("the model has no token_embd.weight")?.1.clone())
    }

    fn take_block(&mut self, l: usize) -> anyhow::Result<Block> {
        self.dense.take_block(l)
    }

    fn put_block(&mut self, l: usize, block: Block) -> anyhow::Result<()> {
        self.dense.put_block(l, block);
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        let Self { dense, output, dtype, record } = *self;
        // Every tensor in its order, matrices as `dtype`, vectors as F32.
        let mut out_tensors = Vec::with_capacity(dense.order.len());
        for (_, name, shape) in &dense.order {
            let (_, values) = &dense.tensors[name];
            let t = Tensor::from_slice(values, shape.as_slice(), &Device::Cpu)?;
            let q = QTensor::quantize(&t, if shape.len() >= 2 { dtype } else { GgmlDType::F32 })?;
            out_tensors.push((name.clone(), q));
        }
        // The input's metadata (requant's rules: no split keys, the file type
        // of `dtype`), an earlier pruning's keys replaced by this one's.
        let recipe = Recipe::Uniform(dtype);
        let mut metadata: Vec<(String, Value)> =
            output_metadata(&dense.metadata, recipe).into_iter().filter(|(k, _)| !k.starts_with("sprig.pruning.")).collect();
        if !metadata.iter().any(|(k, _)| k == "general.file_type") {
            metadata.push(("general.file_type".into(), Value::U32(recipe.file_type())));
        }
        metadata.push(("sprig.pruning.method".into(), Value::String(record.method)));
        metadata.push(("sprig.pruning.sparsity".into(), Value::F32(record.sparsity as f32)));
        if let Some(calibration) = record.calibration {
            metadata.push(("sprig.pruning.calibration".into(), Value::String(calibration)));
        }
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
        write(&output, &metadata, &out_tensors)?;
        Ok(())
    }
}

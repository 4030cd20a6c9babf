//! A Hugging Face checkpoint on disk: `config.json`, safetensors shards
//! (`model.safetensors`, or `model-0000N-of-0000M.safetensors` with
//! `model.safetensors.index.json`), read through mmap. Everything is checked
//! when opening (files, index, headers, dtypes), before anything is written.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

/// What is wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A JSON file does not have the expected shape.
    #[error("{path} is not valid: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file's header is malformed.
    #[error("{path} is not a valid safetensors file: {message}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The index names a tensor its file does not hold.
    #[error("the index puts {name} in {file}, which does not hold it")]
    NotInFile {
        /// The tensor.
        name: String,
        /// The file.
        file: String,
    },
    /// A tensor the model needs is absent.
    #[error("the checkpoint has no tensor {0}")]
    MissingTensor(String),
    /// A tensor has the wrong shape for the config.
    #[error("{name} has shape {actual:?}, but config.json implies {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// Shape from the config.
        expected: Vec<usize>,
        /// Shape in the file.
        actual: Vec<usize>,
    },
    /// A tensor's dtype is not one Sprig converts.
    #[error("{name} is {dtype:?}; Sprig converts F16, BF16 and F32 tensors")]
    Dtype {
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: Dtype,
    },
    /// The config describes something Sprig does not convert.
    #[error("config.json: {0}")]
    Config(String),
}

/// The fields of `config.json` the conversion uses (Llama / Mistral).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HfConfig {
    /// e.g. `["MistralForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `mistral`, `llama`.
    #[serde(default)]
    pub model_type: String,
    /// Where the weights came from, if recorded.
    #[serde(default, rename = "_name_or_path")]
    pub name_or_path: Option<String>,
    /// Residual width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Context length.
    pub max_position_embeddings: usize,
    /// RMS norm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Sliding attention window, if any.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Whether the output matrix is the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

impl HfConfig {
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// RoPE base (10 000 when absent, as in Llama).
    pub fn rope_base(&self) -> f64 {
        self.rope_theta.unwrap_or(10_000.0)
    }

    fn check(&self) -> Result<(), CheckpointError> {
        let bad = |m: String| Err(CheckpointError::Config(m));
        let arch_ok = self.architectures.iter().any(|a| a == "MistralForCausalLM" || a == "LlamaForCausalLM")
            || matches!(self.model_type.as_str(), "mistral" | "llama");
        if !arch_ok {
            return bad(format!("architecture {:?} / model_type {:?} is not Llama or Mistral", self.architectures, self.model_type));
        }
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.vocab_size == 0 {
            return bad("hidden_size, num_attention_heads, num_hidden_layers and vocab_size must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) || !self.head_dim().is_multiple_of(2) {
            return bad(format!("hidden_size {} is not an even head width times {} heads", self.hidden_size, self.num_attention_heads));
        }
        if self.kv_heads() == 0 || !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return bad(format!("{} attention heads cannot share {} key/value heads", self.num_attention_heads, self.kv_heads()));
        }
        Ok(())
    }
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcType {
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// f32.
    F32,
}

impl SrcType {
    fn bytes(self) -> usize {
        match self {
            Self::F16 | Self::Bf16 => 2,
            Self::F32 => 4,
        }
    }
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// Index of its file.
    pub file: usize,
    /// Element type.
    pub dtype: SrcType,
    /// Shape (torch order: rows first).
    pub shape: Vec<usize>,
    /// Byte offset of its data in the file.
    pub start: usize,
}

impl TensorRef {
    /// Values per row (the last dimension; 1-D tensors are one row).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.shape.iter().rev().skip(1).product()
    }
}

/// An opened, checked checkpoint.
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: HfConfig,
    /// Its safetensors files' names, in the order [`TensorRef::file`] counts.
    pub file_names: Vec<String>,
    /// The `__metadata__` of its files, merged (`format`, and e.g. the
    /// `sprig.pruning.*` keys `sprig prune` writes).
    pub metadata: BTreeMap<String, String>,
    files: Vec<Mmap>,
    tensors: BTreeMap<String, TensorRef>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("dir", &self.dir).field("tensors", &self.tensors.len()).finish()
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.into(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Json { path: path.into(), message: e.to_string() })
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Opens the checkpoint in `dir`: config, index, every shard's header.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file or tensor at fault.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config: HfConfig = read_json(&dir.join("config.json"))?;
        config.check()?;
        let index_path = dir.join("model.safetensors.index.json");
        let weight_map: BTreeMap<String, String> =
            if index_path.exists() { read_json::<Index>(&index_path)?.weight_map } else { BTreeMap::new() };
        let mut names: Vec<String> = weight_map.values().cloned().collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            names.push("model.safetensors".into());
        }
        let mut files = Vec::with_capacity(names.len());
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            if name.contains(['/', '\\']) {
                return Err(CheckpointError::Json { path: index_path, message: format!("shard name {name:?} is not a file name") });
            }
            let path = dir.join(name);
            let file = File::open(&path).map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
            // SAFETY: the map is read-only; a checkpoint changed while converting
            // is outside what this tool promises (as for any reader of the file).
            let map = unsafe { Mmap::map(&file) }.map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
            let header = |message: String| CheckpointError::Header { path: path.clone(), message };
            let (n, meta) = SafeTensors::read_metadata(&map).map_err(|e| header(e.to_string()))?;
            let base = 8 + n;
            metadata.extend(meta.metadata().clone().unwrap_or_default());
            for (tname, info) in meta.tensors() {
                let dtype = match info.dtype {
                    Dtype::F16 => SrcType::F16,
                    Dtype::BF16 => SrcType::Bf16,
                    Dtype::F32 => SrcType::F32,
                    other => return Err(CheckpointError::Dtype { name: tname, dtype: other }),
                };
                let (a, b) = info.data_offsets;
                let count: usize = info.shape.iter().product();
                if b - a != count * dtype.bytes() || base + b > map.len() {
                    return Err(header(format!("{tname}: its data offsets do not fit its shape or the file")));
                }
                tensors.insert(tname, TensorRef { file: i, dtype, shape: info.shape.clone(), start: base + a });
            }
            files.push(map);
        }
        for (tname, fname) in &weight_map {
            let at = names.iter().position(|n| n == fname);
            if at.is_none() || tensors.get(tname).map(|t| t.file) != at {
                return Err(CheckpointError::NotInFile { name: tname.clone(), file: fname.clone() });
            }
        }
        Ok(Self { dir: dir.to_path_buf(), config, file_names: names, metadata, files, tensors })
    }

    /// Every tensor, by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorRef)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the checkpoint has `model.safetensors.index.json` (several files).
    pub fn is_indexed(&self) -> bool {
        self.dir.join("model.safetensors.index.json").exists()
    }

    /// The tensor `name`, if the checkpoint has it.
    pub fn tensor(&self, name: &str) -> Option<&TensorRef> {
        self.tensors.get(name)
    }

    /// The tensor `name`, checked to have `shape`.
    ///
    /// # Errors
    /// [`CheckpointError::MissingTensor`], [`CheckpointError::Shape`].
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&TensorRef, CheckpointError> {
        let t = self.tensor(name).ok_or_else(|| CheckpointError::MissingTensor(name.into()))?;
        if t.shape != shape {
            return Err(CheckpointError::Shape { name: name.into(), expected: shape.to_vec(), actual: t.shape.clone() });
        }
        Ok(t)
    }

    /// Appends row `row` of `t` to `out`, as f32.
    pub fn read_row(&self, t: &TensorRef, row: usize, out: &mut Vec<f32>) {
        let cols = t.cols();
        let size = t.dtype.bytes();
        let start = t.start + row * cols * size;
        let bytes = &self.files[t.file][start..start + cols * size];
        match t.dtype {
            SrcType::F16 => out.extend(bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
            SrcType::Bf16 => out.extend(bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
            SrcType::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
    }

    /// Lets the kernel drop `t`'s pages from memory once it is converted, so
    /// the process's resident size stays near one tensor whatever the model.
    pub fn release(&self, t: &TensorRef) {
        let len = t.rows() * t.cols() * t.dtype.bytes();
        let page = 4096;
        let start = t.start / page * page;
        let len = (t.start + len).saturating_sub(start);
        // SAFETY: a read-only private file mapping: after MADV_DONTNEED the
        // pages are read again from the file on the next access.
        let _ = unsafe { self.files[t.file].unchecked_advise_range(UncheckedAdvice::DontNeed, start, len) };
    }
}

//! A summary of a GGUF file, from its header alone.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::{Content, TensorInfo};

use super::meta::Metadata;
use super::GgufError;

/// What a GGUF file holds, read from its header alone.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// `general.name`, or the architecture when the file has no name.
    pub name: String,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: String,
    /// `{arch}.context_length`, when present.
    pub context_length: Option<u64>,
    /// `{arch}.block_count` (number of layers), when present.
    pub block_count: Option<u64>,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Total number of weights over all tensors.
    pub parameter_count: u64,
    /// Bytes of tensor data over all tensors.
    pub tensor_bytes: u64,
    /// How many tensors use each ggml type, by type name (e.g. `Q4_1`).
    pub tensor_types: BTreeMap<String, usize>,
}

impl ModelInfo {
    /// Reads the header of a single GGUF file and summarises it.
    ///
    /// # Errors
    /// [`GgufError::Header`] when the source is not a readable GGUF file; as
    /// [`ModelInfo::from_parts`] for the metadata.
    pub fn read<R: Read + Seek>(reader: &mut R) -> Result<Self, GgufError> {
        super::bounds::check_header(reader)?;
        let content = Content::read(reader).map_err(|source| GgufError::Header { source })?;
        Self::from_parts(Metadata(&content.metadata), content.tensor_infos.values())
    }

    /// Summarises a model from its metadata and the header entries of all its tensors.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] / [`GgufError::BadKey`] when `general.architecture`
    /// is absent or not a string, or a size key is not an integer.
    pub fn from_parts<'a>(meta: Metadata<'_>, tensors: impl IntoIterator<Item = &'a TensorInfo>) -> Result<Self, GgufError> {
        let architecture = meta.string("general.architecture")?.to_string();
        let name = meta.opt_string("general.name")?.unwrap_or(&architecture).to_string();
        let context_length = meta.opt_u64(&format!("{architecture}.context_length"))?;
        let block_count = meta.opt_u64(&format!("{architecture}.block_count"))?;
        let mut tensor_types = BTreeMap::new();
        let mut parameter_count = 0u64;
        let mut tensor_bytes = 0u64;
        let mut tensor_count = 0;
        for info in tensors {
            tensor_count += 1;
            let elems = info.shape.elem_count() as u64;
            parameter_count += elems;
            let dtype = info.ggml_dtype;
            tensor_bytes += elems / dtype.block_size() as u64 * dtype.type_size() as u64;
            *tensor_types.entry(format!("{dtype:?}")).or_insert(0) += 1;
        }
        Ok(Self { name, architecture, context_length, block_count, tensor_count, parameter_count, tensor_bytes, tensor_types })
    }
}

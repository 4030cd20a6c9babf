//! A GGUF model in one file or in gguf-split shards, read tensor by tensor.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::QTensor;
use candle_core::Device;

use super::{GgufError, Metadata, ModelInfo};

struct Shard<R> {
    content: Content,
    reader: R,
}

/// An open GGUF model: the headers of its shards, and readers for the tensor
/// data, which is read one tensor at a time on request (never the whole file).
pub struct GgufFile<R> {
    shards: Vec<Shard<R>>,
    /// Tensor name -> index of the shard holding it.
    index: HashMap<String, usize>,
}

impl<R> std::fmt::Debug for GgufFile<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile").field("shards", &self.shards.len()).field("tensors", &self.index.len()).finish()
    }
}

fn split_key(content: &Content, key: &str) -> Result<Option<u64>, GgufError> {
    Metadata(&content.metadata).opt_u64(key)
}

impl<R: Read + Seek> GgufFile<R> {
    /// Reads the header of a single-file GGUF model.
    ///
    /// # Errors
    /// [`GgufError::Header`] for an unreadable header; [`GgufError::Split`] when
    /// the file is one shard of several (use [`GgufFile::open_split`]).
    pub fn open(reader: R) -> Result<Self, GgufError> {
        Self::open_split(vec![reader])
    }

    /// Reads the headers of all shards of a gguf-split model, in any order.
    ///
    /// # Errors
    /// [`GgufError::Header`] for an unreadable header; [`GgufError::Split`] when
    /// shards are missing, repeated, from different splits, or share a tensor.
    pub fn open_split(readers: Vec<R>) -> Result<Self, GgufError> {
        if readers.is_empty() {
            return Err(GgufError::Split("no shard given".into()));
        }
        let given = readers.len();
        let mut shards = Vec::with_capacity(given);
        for mut reader in readers {
            super::bounds::check_header(&mut reader)?;
            let content = Content::read(&mut reader).map_err(|source| GgufError::Header { source })?;
            shards.push(Shard { content, reader });
        }
        let mut numbered = Vec::with_capacity(given);
        for shard in shards {
            let no = split_key(&shard.content, "split.no")?.unwrap_or(0);
            let count = split_key(&shard.content, "split.count")?.unwrap_or(1);
            if count as usize != given {
                return Err(GgufError::Split(format!("shard {} says the model has {count} shards, {given} were given", no + 1)));
            }
            numbered.push((no, shard));
        }
        numbered.sort_by_key(|(no, _)| *no);
        for (i, (no, _)) in numbered.iter().enumerate() {
            if *no as usize != i {
                return Err(GgufError::Split(format!("shard number {} is missing or repeated", i + 1)));
            }
        }
        let shards: Vec<Shard<R>> = numbered.into_iter().map(|(_, s)| s).collect();
        let mut index = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.content.tensor_infos.keys() {
                if index.insert(name.clone(), i).is_some() {
                    return Err(GgufError::Split(format!("tensor `{name}` is in more than one shard")));
                }
            }
        }
        if let Some(total) = split_key(&shards[0].content, "split.tensors.count")? {
            if total as usize != index.len() {
                return Err(GgufError::Split(format!("the first shard announces {total} tensors, the shards hold {}", index.len())));
            }
        }
        Ok(Self { shards, index })
    }

    /// Reads one tensor's data onto `device`.
    ///
    /// # Errors
    /// [`GgufError::MissingTensor`]; [`GgufError::Tensor`] when its bytes cannot
    /// be read (truncated file, I/O error, bad size for its type).
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor, GgufError> {
        let &shard = self.index.get(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        let shard = &mut self.shards[shard];
        shard.content.tensor(&mut shard.reader, name, device).map_err(|source| GgufError::Tensor { name: name.into(), source })
    }

    /// Reads `buf.len()` raw bytes of tensor `name`'s data (GGUF block layout),
    /// starting `offset` bytes into that tensor: how a worker holding a slice of
    /// a model reads only its rows or columns.
    ///
    /// # Errors
    /// [`GgufError::MissingTensor`]; [`GgufError::Io`] when the range passes the
    /// tensor's end or the bytes cannot be read (truncated file, I/O error).
    pub fn read_tensor_bytes(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        let &shard = self.index.get(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        let shard = &mut self.shards[shard];
        let info = shard.content.tensor_infos.get(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        let size = tensor_size(info);
        let len = buf.len();
        let what = || format!("{len} bytes at offset {offset} of tensor `{name}`");
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > size) {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("the tensor holds {size} bytes"));
            return Err(GgufError::Io { what: what(), source });
        }
        let at = shard.content.tensor_data_offset + info.offset + offset;
        shard.reader.seek(std::io::SeekFrom::Start(at)).map_err(|source| GgufError::Io { what: what(), source })?;
        shard.reader.read_exact(buf).map_err(|source| GgufError::Io { what: what(), source })
    }
}

/// Bytes of a tensor's data in its GGUF type.
pub fn tensor_size(info: &TensorInfo) -> u64 {
    info.shape.elem_count() as u64 / info.ggml_dtype.block_size() as u64 * info.ggml_dtype.type_size() as u64
}

impl<R> GgufFile<R> {
    /// The model's metadata (from the first shard, which holds all of it).
    pub fn metadata(&self) -> Metadata<'_> {
        Metadata(&self.shards[0].content.metadata)
    }

    /// The header entry of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).and_then(|&i| self.shards[i].content.tensor_infos.get(name))
    }

    /// All tensors: name and header entry, sorted by name.
    pub fn tensors(&self) -> Vec<(&str, &TensorInfo)> {
        let mut all: Vec<_> = self.shards.iter().flat_map(|s| s.content.tensor_infos.iter().map(|(n, t)| (n.as_str(), t))).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// A summary of the whole model.
    ///
    /// # Errors
    /// As [`ModelInfo::from_parts`].
    pub fn info(&self) -> Result<ModelInfo, GgufError> {
        ModelInfo::from_parts(self.metadata(), self.tensors().into_iter().map(|(_, t)| t))
    }
}

/// The paths of all shards of a gguf-split model given any one of them
/// (`name-00002-of-00003.gguf` → the three names), or just `path` when its name
/// does not follow the gguf-split pattern.
pub fn split_paths(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return vec![path.into()] };
    let Some(stem) = name.strip_suffix(".gguf") else { return vec![path.into()] };
    // stem = PREFIX-NNNNN-of-MMMMM
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    if let [count, "of", no, prefix] = parts[..] {
        if no.len() == 5 && count.len() == 5 && no.parse::<u32>().is_ok() {
            if let Ok(count) = count.parse::<u32>() {
                if count > 0 {
                    return (1..=count).map(|i| path.with_file_name(format!("{prefix}-{i:05}-of-{count:05}.gguf"))).collect();
                }
            }
        }
    }
    vec![path.into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_expand() {
        let all = split_paths(Path::new("/m/sprig-q4-00002-of-00003.gguf"));
        assert_eq!(
            all,
            vec![
                PathBuf::from("/m/sprig-q4-00001-of-00003.gguf"),
                PathBuf::from("/m/sprig-q4-00002-of-00003.gguf"),
                PathBuf::from("/m/sprig-q4-00003-of-00003.gguf"),
            ]
        );
        assert_eq!(split_paths(Path::new("a.gguf")), vec![PathBuf::from("a.gguf")]);
        assert_eq!(split_paths(Path::new("a-1-of-2.gguf")), vec![PathBuf::from("a-1-of-2.gguf")]);
    }
}

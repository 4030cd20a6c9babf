//! Writing a model as gguf-split shards, the way llama.cpp's `gguf-split` does:
//! files named `<prefix>-00001-of-00003.gguf`, each carrying `split.no` (u16,
//! 0-based), `split.count` (u16) and `split.tensors.count` (i32); the first
//! shard also carries all other metadata. Tensors keep their order and are
//! packed greedily so that each shard's tensor data stays within a budget.
//!
//! Only one shard's tensors are in memory at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use super::{GgufError, GgufFile};

/// Metadata key: the shard's number, 0-based (u16).
pub const KEY_SPLIT_NO: &str = "split.no";
/// Metadata key: the number of shards (u16).
pub const KEY_SPLIT_COUNT: &str = "split.count";
/// Metadata key: the number of tensors in all shards together (i32).
pub const KEY_SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// The alignment of tensor data that candle's writer uses (GGUF's default).
const ALIGNMENT: u64 = 32;

/// Errors of writing gguf-split shards.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The tensors of a shard could not be produced (e.g. quantizing failed).
    #[error("cannot produce a shard's tensors: {0}")]
    Tensors(String),
    /// The input model could not be read.
    #[error(transparent)]
    Read(#[from] GgufError),
    /// The shard name prefix is empty or names a path.
    #[error("invalid shard prefix `{0}`: it must be a non-empty file name without `/` or `\\`")]
    BadPrefix(String),
    /// The per-shard budget is zero.
    #[error("the maximum shard size must be at least one byte")]
    ZeroMaxBytes,
    /// The model has no tensors to split.
    #[error("the model has no tensors")]
    NoTensors,
    /// More shards or tensors than the gguf-split keys can count.
    #[error("{what} ({count}) exceeds what gguf-split can record ({max})")]
    TooMany {
        /// What overflowed.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The largest number the key can hold.
        max: usize,
    },
    /// A shard could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The shard being written.
        path: PathBuf,
        /// What failed (candle's writer or the file system).
        #[source]
        source: candle_core::Error,
    },
    /// A file system operation on a shard failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `rename`...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One shard written by [`write_split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenShard {
    /// Where it was written.
    pub path: PathBuf,
    /// Its number, 0-based.
    pub no: usize,
    /// How many shards the model has.
    pub count: usize,
    /// How many tensors it holds.
    pub tensors: usize,
    /// The size of its tensor data, padding included (at most the budget,
    /// unless it holds a single larger tensor).
    pub data_bytes: u64,
    /// The size of the file.
    pub file_bytes: u64,
}

/// The file name of shard `no` (0-based) of `count`: `<prefix>-00001-of-00003.gguf`.
pub fn shard_file_name(prefix: &str, no: usize, count: usize) -> String {
    format!("{prefix}-{:05}-of-{count:05}.gguf", no + 1)
}

/// Packs items of the given sizes, in order, into consecutive groups whose
/// total is at most `max_bytes`; an item larger than `max_bytes` gets a group of
/// its own. Returns the index ranges of the groups (none for no items).
pub fn pack_greedy(sizes: &[u64], max_bytes: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut total) = (0usize, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && total.saturating_add(size) > max_bytes {
            groups.push(start..i);
            (start, total) = (i, 0);
        }
        total = total.saturating_add(size);
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

/// The number of bytes a tensor's data takes in a GGUF file, padding included.
fn padded_size(info: &gguf_file::TensorInfo) -> u64 {
    data_size(info.ggml_dtype, info.shape.elem_count())
}

/// The bytes `elements` values of `dtype` take in a GGUF file (padding to the
/// alignment included): what a shard budget counts.
pub fn data_size(dtype: GgmlDType, elements: usize) -> u64 {
    let bytes = elements as u64 / dtype.block_size() as u64 * dtype.type_size() as u64;
    bytes.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// The tensor names in file order (shards by `split.no`, then by data offset),
/// read from the headers; the readers are rewound afterwards.
fn file_order<R: Read + Seek>(readers: &mut [R]) -> Result<Vec<String>, GgufError> {
    let mut shards = Vec::with_capacity(readers.len());
    for reader in readers.iter_mut() {
        let start = reader.stream_position().map_err(|source| GgufError::Io { what: "a shard's position".into(), source })?;
        super::bounds::check_header(reader)?;
        reader.seek(std::io::SeekFrom::Start(start)).map_err(|source| GgufError::Io { what: "a shard's header".into(), source })?;
        let content = Content::read(reader).map_err(|source| GgufError::Header { source })?;
        reader.seek(std::io::SeekFrom::Start(start)).map_err(|source| GgufError::Io { what: "a shard's header again".into(), source })?;
        let no = super::Metadata(&content.metadata).opt_u64(KEY_SPLIT_NO)?.unwrap_or(0);
        let mut names: Vec<(u64, String)> = content.tensor_infos.into_iter().map(|(n, t)| (t.offset, n)).collect();
        names.sort();
        shards.push((no, names));
    }
    shards.sort_by_key(|(no, _)| *no);
    Ok(shards.into_iter().flat_map(|(_, names)| names.into_iter().map(|(_, n)| n)).collect())
}

/// The metadata of the first shard: all of the model's keys except the
/// `split.*` ones, sorted so the output does not depend on hash order, with
/// `general.alignment` set to the alignment candle writes.
fn first_shard_metadata(meta: &HashMap<String, Value>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = meta
        .iter()
        .filter(|(k, _)| !k.starts_with("split."))
        .map(|(k, v)| {
            let v = if k == "general.alignment" { Value::U32(ALIGNMENT as u32) } else { v.clone() };
            (k.clone(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes the model read from `readers` (one GGUF file, or all shards of a
/// gguf-split model in any order) into `dir` as gguf-split shards named
/// `<prefix>-00001-of-0000N.gguf`, each holding at most `max_bytes` of tensor
/// data (at least one tensor). Tensors keep their order; only one shard's
/// tensors are in memory at a time. Each shard is written to a `.part` file
/// and renamed when complete. `on_shard` is called after each shard.
///
/// Existing files with the shards' names are replaced; other files in `dir`
/// are left alone.
///
/// # Errors
/// [`SplitError::Read`] when the input cannot be read; [`SplitError::BadPrefix`],
/// [`SplitError::ZeroMaxBytes`], [`SplitError::NoTensors`],
/// [`SplitError::TooMany`] for arguments or models that cannot be split;
/// [`SplitError::Write`] or [`SplitError::Io`] naming the shard that failed.
pub fn write_split<R: Read + Seek>(
    mut readers: Vec<R>,
    dir: &Path,
    prefix: &str,
    max_bytes: u64,
    on_shard: &mut dyn FnMut(&WrittenShard),
) -> Result<Vec<WrittenShard>, SplitError> {
    check_args(prefix, max_bytes)?;
    let order = file_order(&mut readers)?;
    let mut model = GgufFile::open_split(readers)?;
    if order.is_empty() {
        return Err(SplitError::NoTensors);
    }
    let sizes: Vec<u64> = order
        .iter()
        .map(|n| model.tensor_info(n).map(padded_size).ok_or_else(|| GgufError::MissingTensor { name: n.clone() }))
        .collect::<Result<_, _>>()?;
    let all_meta = first_shard_metadata(model.metadata().0);
    write_shards(
        dir,
        prefix,
        &all_meta,
        &order,
        &sizes,
        max_bytes,
        &mut |names| names.iter().map(|n| model.tensor(n, &Device::Cpu).map_err(SplitError::from)).collect(),
        on_shard,
    )
}

/// Produces the tensors of one shard, given their names.
pub type TensorsOf<'a> = dyn FnMut(&[String]) -> Result<Vec<QTensor>, SplitError> + 'a;

/// Writes tensors as gguf-split shards: `names` (in order, with their
/// [`data_size`]s) are packed greedily into shards of at most `max_bytes`;
/// for each shard `tensors` is asked for that shard's tensors (so only one
/// shard is in memory at a time), and the shard is written with `metadata`
/// (first shard only) plus the `split.*` keys, to a `.part` file renamed when
/// complete. `on_shard` is called after each shard.
///
/// # Errors
/// [`SplitError::BadPrefix`], [`SplitError::ZeroMaxBytes`],
/// [`SplitError::NoTensors`], [`SplitError::TooMany`] for arguments that
/// cannot be split; whatever `tensors` returns; [`SplitError::Write`] or
/// [`SplitError::Io`] naming the shard that failed.
#[allow(clippy::too_many_arguments)]
pub fn write_shards(
    dir: &Path,
    prefix: &str,
    metadata: &[(String, Value)],
    names: &[String],
    sizes: &[u64],
    max_bytes: u64,
    tensors: &mut TensorsOf<'_>,
    on_shard: &mut dyn FnMut(&WrittenShard),
) -> Result<Vec<WrittenShard>, SplitError> {
    check_args(prefix, max_bytes)?;
    if names.is_empty() {
        return Err(SplitError::NoTensors);
    }
    let groups = pack_greedy(sizes, max_bytes);
    let count = groups.len();
    let count_u16 = u16::try_from(count).map_err(|_| SplitError::TooMany { what: "shards", count, max: u16::MAX as usize })?;
    let tensors_i32 =
        i32::try_from(names.len()).map_err(|_| SplitError::TooMany { what: "tensors", count: names.len(), max: i32::MAX as usize })?;
    let mut written = Vec::with_capacity(count);
    for (no, group) in groups.into_iter().enumerate() {
        let mut meta: Vec<(String, Value)> = if no == 0 { metadata.to_vec() } else { Vec::new() };
        // `no < count <= u16::MAX`, checked above.
        meta.push((KEY_SPLIT_NO.into(), Value::U16(no as u16)));
        meta.push((KEY_SPLIT_COUNT.into(), Value::U16(count_u16)));
        meta.push((KEY_SPLIT_TENSORS_COUNT.into(), Value::I32(tensors_i32)));
        let group_names = &names[group.clone()];
        let group_tensors = tensors(group_names)?;

        let path = dir.join(shard_file_name(prefix, no, count));
        let part = dir.join(format!("{}.part", shard_file_name(prefix, no, count)));
        write_shard(&part, &meta, group_names, &group_tensors)?;
        drop(group_tensors);
        std::fs::rename(&part, &path).map_err(|source| SplitError::Io { action: "rename into place", path: part.clone(), source })?;
        let file_bytes = std::fs::metadata(&path).map_err(|source| SplitError::Io { action: "stat", path: path.clone(), source })?.len();
        let shard = WrittenShard { path, no, count, tensors: group_names.len(), data_bytes: sizes[group].iter().sum(), file_bytes };
        on_shard(&shard);
        written.push(shard);
    }
    Ok(written)
}

fn check_args(prefix: &str, max_bytes: u64) -> Result<(), SplitError> {
    if prefix.is_empty() || prefix.contains(['/', '\\']) || prefix == "." || prefix == ".." {
        return Err(SplitError::BadPrefix(prefix.into()));
    }
    if max_bytes == 0 {
        return Err(SplitError::ZeroMaxBytes);
    }
    Ok(())
}

fn write_shard(path: &Path, meta: &[(String, Value)], names: &[String], tensors: &[QTensor]) -> Result<(), SplitError> {
    let file = File::create(path).map_err(|source| SplitError::Io { action: "create", path: path.into(), source })?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = names.iter().map(String::as_str).zip(tensors).collect();
    let result = gguf_file::write(&mut out, &meta_refs, &tensor_refs)
        .and_then(|()| out.flush().map_err(candle_core::Error::from))
        .and_then(|()| out.get_ref().sync_all().map_err(candle_core::Error::from));
    if let Err(source) = result {
        drop(out);
        let _ = std::fs::remove_file(path);
        return Err(SplitError::Write { path: path.into(), source });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::Tensor;

    use super::*;

    #[test]
    fn greedy_packing_keeps_order_and_budget() {
        assert_eq!(pack_greedy(&[], 10), Vec::<Range<usize>>::new());
        assert_eq!(pack_greedy(&[4, 4, 4, 4], 8), vec![0..2, 2..4]);
        assert_eq!(pack_greedy(&[4, 5, 4, 4], 8), vec![0..1, 1..2, 2..4]);
        // A tensor larger than the budget gets a shard of its own.
        assert_eq!(pack_greedy(&[2, 20, 2], 8), vec![0..1, 1..2, 2..3]);
        assert_eq!(pack_greedy(&[3, 3], 100), vec![0..2]);
    }

    #[test]
    fn names_follow_gguf_split() {
        assert_eq!(shard_file_name("m", 0, 3), "m-00001-of-00003.gguf");
        assert_eq!(shard_file_name("m.Q4", 11, 12), "m.Q4-00012-of-00012.gguf");
    }

    fn small_model() -> Vec<u8> {
        let dev = Device::Cpu;
        let t = |n: usize, v: f32| QTensor::quantize(&Tensor::full(v, (n, 32), &dev).unwrap(), GgmlDType::Q8_0).unwrap();
        // Written in this order; the names sort differently.
        let tensors = [("z", t(4, 1.0)), ("a", t(8, 2.0)), ("m", t(2, 3.0)), ("b", t(4, 4.0))];
        let name = Value::String("tiny".into());
        let align = Value::U32(32);
        let meta = [("general.name", &name), ("general.alignment", &align)];
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &meta, &refs).unwrap();
        out.into_inner()
    }

    #[test]
    fn shards_read_back_in_order_with_the_split_keys() {
        let dir = std::env::temp_dir().join(format!("sprig-split-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Q8_0 rows of 32 are 34 bytes: 136, 272, 68, 136 bytes -> padded 160, 288, 96, 160.
        let shards = write_split(vec![Cursor::new(small_model())], &dir, "tiny", 300, &mut |_| {}).unwrap();
        let sizes: Vec<_> = shards.iter().map(|s| (s.tensors, s.data_bytes)).collect();
        assert_eq!(sizes, vec![(1, 160), (1, 288), (2, 256)]);
        let mut readers: Vec<_> = shards.iter().rev().map(|s| File::open(&s.path).unwrap()).collect();
        assert_eq!(file_order(&mut readers).unwrap(), ["z", "a", "m", "b"]);
        for (i, reader) in readers.iter_mut().enumerate() {
            let content = Content::read(reader).unwrap();
            assert!(matches!(content.metadata[KEY_SPLIT_NO], Value::U16(n) if usize::from(n) == 2 - i));
            assert!(matches!(content.metadata[KEY_SPLIT_COUNT], Value::U16(3)));
            assert!(matches!(content.metadata[KEY_SPLIT_TENSORS_COUNT], Value::I32(4)));
            assert_eq!(content.metadata.contains_key("general.name"), i == 2);
            reader.rewind().unwrap();
        }
        let mut model = GgufFile::open_split(readers).unwrap();
        assert_eq!(model.metadata().string("general.name").unwrap(), "tiny");
        let m = model.tensor("m", &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        let m = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(m.len() == 64 && m.iter().all(|v| (v - 3.0).abs() < 1e-3), "{m:?}");
        for s in &shards {
            std::fs::remove_file(&s.path).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn bad_arguments_are_refused() {
        let dir = std::env::temp_dir();
        let err = write_split(vec![Cursor::new(small_model())], &dir, "a/b", 100, &mut |_| {}).unwrap_err();
        assert!(matches!(err, SplitError::BadPrefix(_)), "{err}");
        let err = write_split(vec![Cursor::new(small_model())], &dir, "x", 0, &mut |_| {}).unwrap_err();
        assert!(matches!(err, SplitError::ZeroMaxBytes), "{err}");
    }
}

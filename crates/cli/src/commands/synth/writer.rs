//! Sharded safetensors, written as Hugging Face's `save_pretrained` writes
//! them, streamed: a file's header, then its tensors generated block by block
//! while a second thread writes the previous block.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use anyhow::Context;
use safetensors::tensor::{Metadata, TensorInfo};

use super::shape::TensorSpec;
use super::values::{fill_rows, Dtype, TensorValues};
use super::SynthError;

/// The size of a generated block: rows are computed and written this many
/// bytes at a time (at most three blocks are alive).
const BLOCK_BYTES: usize = 4 << 20;

/// One safetensors file of the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// `model-00001-of-00003.safetensors`.
    pub file_name: String,
    /// Indices of its tensors, in the order they are stored (by name, as
    /// the safetensors library orders tensors of one dtype).
    pub tensors: Vec<usize>,
}

/// Splits `specs`, in order, into `shards` files balanced by bytes: a tensor
/// goes to the shard its middle byte falls in, no shard is left empty.
///
/// # Errors
/// [`SynthError::Shards`] when `shards` is 0 or more than the tensors.
pub fn plan_shards(specs: &[TensorSpec], shards: usize) -> Result<Vec<ShardPlan>, SynthError> {
    if shards == 0 || shards > specs.len() {
        return Err(SynthError::Shards { shards, tensors: specs.len() });
    }
    let sizes: Vec<u128> = specs.iter().map(|t| t.len() as u128).collect();
    let total: u128 = sizes.iter().sum();
    let mut groups = vec![Vec::new(); shards];
    let (mut shard, mut start) = (0, 0u128);
    for (i, size) in sizes.iter().enumerate() {
        let ideal = ((start + size / 2) * shards as u128 / total.max(1)) as usize;
        let left_after = specs.len() - i;
        let shards_after = shards - 1 - shard;
        if !groups[shard].is_empty() && shard + 1 < shards && (ideal > shard || left_after == shards_after) {
            shard += 1;
        }
        groups[shard].push(i);
        start += size;
    }
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(k, mut tensors)| {
            tensors.sort_by(|&a, &b| specs[a].name.cmp(&specs[b].name));
            ShardPlan { file_name: format!("model-{:05}-of-{shards:05}.safetensors", k + 1), tensors }
        })
        .collect())
}

/// A shard's header as the safetensors library writes it: the little-endian
/// length, then the JSON (`__metadata__` `{"format": "pt"}` as torch's
/// `save_file` gives, then each tensor's dtype, shape and offsets in storage
/// order), padded with spaces to a multiple of 8 bytes.
///
/// # Errors
/// When the library refuses the layout (never for a plan from [`plan_shards`]).
pub fn header(specs: &[TensorSpec], shard: &ShardPlan, dtype: Dtype) -> anyhow::Result<Vec<u8>> {
    let tensors: Vec<(&str, &[usize])> = shard.tensors.iter().map(|&i| (specs[i].name.as_str(), specs[i].shape.as_slice())).collect();
    safetensors_header(&tensors, dtype, HashMap::new())
}

/// The header of a safetensors file holding `tensors` (name, shape), stored
/// one after another in this order as `dtype`: the little-endian length,
/// then the JSON (`__metadata__`: `{"format": "pt"}` and `extra`, then each
/// tensor's dtype, shape and offsets), padded with spaces to a multiple of 8
/// bytes, as the safetensors library writes it.
///
/// # Errors
/// When the library refuses the layout.
pub fn safetensors_header(tensors: &[(&str, &[usize])], dtype: Dtype, extra: HashMap<String, String>) -> anyhow::Result<Vec<u8>> {
    let mut offset = 0;
    let infos = tensors
        .iter()
        .map(|(name, shape)| {
            let bytes = shape.iter().product::<usize>() * dtype.size();
            let info = TensorInfo { dtype: dtype.safetensors(), shape: shape.to_vec(), data_offsets: (offset, offset + bytes) };
            offset += bytes;
            ((*name).to_string(), info)
        })
        .collect();
    let mut metadata = extra;
    metadata.insert("format".to_string(), "pt".to_string());
    let metadata = Metadata::new(Some(metadata), infos).context("invalid safetensors layout")?;
    let mut json = serde_json::to_string(&metadata).context("cannot serialize the safetensors header")?.into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    Ok(out)
}

/// `model.safetensors.index.json`, as `save_pretrained` writes it.
#[derive(Debug, serde::Serialize)]
struct Index<'a> {
    metadata: IndexMetadata,
    weight_map: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, serde::Serialize)]
struct IndexMetadata {
    total_size: u64,
}

/// The index: `metadata.total_size` (the bytes of all tensors, headers
/// excluded) and `weight_map`, each tensor's name to its file; keys sorted,
/// two-space indent, a final newline.
///
/// # Errors
/// Never in practice (serialization of strings and numbers).
pub fn index_json(specs: &[TensorSpec], shards: &[ShardPlan], dtype: Dtype) -> anyhow::Result<String> {
    let total_size = specs.iter().map(|t| (t.len() * dtype.size()) as u64).sum();
    let weight_map = shards.iter().flat_map(|s| s.tensors.iter().map(|&i| (specs[i].name.as_str(), s.file_name.as_str()))).collect();
    let index = Index { metadata: IndexMetadata { total_size }, weight_map };
    Ok(serde_json::to_string_pretty(&index).context("cannot serialize the index")? + "\n")
}

/// What a shard writer reports as it goes.
pub trait Progress {
    /// `bytes` more were generated, inside tensor `name`.
    fn advance(&mut self, bytes: u64, name: &str);
}

/// The settings of the values.
#[derive(Debug, Clone, Copy)]
pub struct Values {
    /// The run's seed.
    pub seed: u64,
    /// The fraction of each linear row that is pruned.
    pub sparsity: f64,
    /// The stored type.
    pub dtype: Dtype,
    /// Threads that compute rows.
    pub threads: usize,
}

/// Writes one shard to `path`: its header, then its tensors, computed a
/// block at a time while a second thread writes the previous block; synced
/// to disk before returning.
///
/// # Errors
/// When the file cannot be created, written or synced (with its path).
pub fn write_shard(
    path: &Path,
    specs: &[TensorSpec],
    shard: &ShardPlan,
    values: Values,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let header = header(specs, shard, values.dtype)?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let writer = s.spawn(move || write_blocks(file, &full_rx, &empty_tx));
        let mut sent = full_tx.send(header).is_ok();
        'tensors: for &i in &shard.tensors {
            let tensor = TensorValues::new(&specs[i], values.seed, values.sparsity);
            for (first, rows) in blocks(&specs[i], values.dtype) {
                // A reused buffer keeps its old bytes: every one is overwritten.
                let mut buf = empty_rx.try_recv().unwrap_or_default();
                buf.resize(rows * tensor.cols() * values.dtype.size(), 0);
                fill_rows(&tensor, first, values.dtype, &mut buf, values.threads);
                let bytes = buf.len() as u64;
                sent = sent && full_tx.send(buf).is_ok();
                if !sent {
                    break 'tensors;
                }
                progress.advance(bytes, &specs[i].name);
            }
        }
        drop(full_tx);
        let written = writer.join().map_err(|_| anyhow::anyhow!("the writer thread of {} panicked", path.display()))?;
        written.with_context(|| format!("cannot write {}", path.display()))
    })
}

/// The blocks of rows of a tensor: `(first row, number of rows)`, each about
/// [`BLOCK_BYTES`] (at least one row).
fn blocks(spec: &TensorSpec, dtype: Dtype) -> impl Iterator<Item = (usize, usize)> {
    let rows = spec.rows();
    let per_block = (BLOCK_BYTES / (spec.cols() * dtype.size())).max(1);
    (0..rows).step_by(per_block).map(move |first| (first, per_block.min(rows - first)))
}

/// The writer thread: writes every block it receives, hands the buffer back
/// for reuse, then syncs the file.
fn write_blocks(mut file: File, full: &mpsc::Receiver<Vec<u8>>, empty: &mpsc::Sender<Vec<u8>>) -> std::io::Result<()> {
    for buf in full {
        file.write_all(&buf)?;
        // The generator may be done; then the buffer is simply dropped.
        let _ = empty.send(buf);
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::synth::shape::{Shape, ShapeName};

    #[test]
    fn shards_are_in_order_balanced_and_never_empty() {
        let specs = Shape::new(ShapeName::Mistral7b, 32_000).tensors();
        let plan = plan_shards(&specs, 3).unwrap();
        assert_eq!(plan[0].file_name, "model-00001-of-00003.safetensors");
        let bytes: Vec<u64> = plan.iter().map(|s| s.tensors.iter().map(|&i| specs[i].len() as u64 * 2).sum()).collect();
        let total: u64 = bytes.iter().sum();
        assert!(bytes.iter().all(|&b| b.abs_diff(total / 3) < 300_000_000), "{bytes:?}");
        // In order: every tensor of shard k precedes every tensor of shard k + 1.
        for pair in plan.windows(2) {
            assert!(pair[0].tensors.iter().max() < pair[1].tensors.iter().min());
        }
        for n in 1..=specs.len() {
            let plan = plan_shards(&specs, n).unwrap();
            assert!(plan.iter().all(|s| !s.tensors.is_empty()), "{n}");
            assert_eq!(plan.iter().map(|s| s.tensors.len()).sum::<usize>(), specs.len());
        }
        assert!(plan_shards(&specs, 0).is_err() && plan_shards(&specs, 292).is_err());
    }

    #[test]
    fn tiny_shards_hold_embeddings_layers_and_head_apart() {
        let specs = Shape::new(ShapeName::Tiny, 32_000).tensors();
        let plan = plan_shards(&specs, 3).unwrap();
        let names = |k: usize| plan[k].tensors.iter().map(|&i| specs[i].name.as_str()).collect::<Vec<_>>();
        assert_eq!(names(0), ["model.embed_tokens.weight"]);
        assert_eq!(names(2), ["lm_head.weight"]);
    }

    #[test]
    fn the_header_is_padded_to_eight_bytes_with_spaces() {
        let specs = Shape::new(ShapeName::Tiny, 32_000).tensors();
        let plan = plan_shards(&specs, 1).unwrap();
        let h = header(&specs, &plan[0], Dtype::F16).unwrap();
        let n = u64::from_le_bytes(h[..8].try_into().unwrap()) as usize;
        assert_eq!((n % 8, h.len()), (0, n + 8));
        let json = std::str::from_utf8(&h[8..]).unwrap();
        assert!(
            json.starts_with(
                r#"{"__metadata__":{"format":"pt"},"lm_head.weight":{"dtype":"F16","shape":[32000,256],"data_offsets":[0,16384000]}"#
            ),
            "{json}"
        );
    }
}

//! `sprig requant IN.gguf OUT.gguf --quant q4_0`: re-quantizes a GGUF model
//! the way llama-quantize does, keeping its metadata, tokenizer and tensor
//! order, with the quantizer choices of `sprig convert`: pruned zeros kept
//! (the default) or `--plain`, every type, and the `q4_k_m` mix.
//!
//! With one type, every 2-D tensor whose rows are a whole number of its
//! blocks is dequantized and quantized again to it (one tensor at a time);
//! the others (1-D norms, rows that do not fit) keep their type and bytes.
//! With `q4_k_m`, each matrix gets the type `sprig convert` gives it (Q6_K for
//! the output matrix and some attn_v / ffn_down, Q4_K for the rest, Q8_0 or
//! F16 where the rows do not fit), read from its GGUF name. `general.file_type`
//! follows the recipe when the file has it.
//!
//! candle's GGUF writer takes every tensor at once, so the output is held in
//! memory before it is written (about the output file's size).

// An error ends the command: the size of `RequantError` (candle's errors are
// large) costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use sprig_engine::gguf::split::data_size;
use sprig_engine::gguf::{split_paths, GgufError, Metadata};
use sprig_engine::quant::{self, QuantError, QuantMode};
use sprig_engine::GgufFile;

use crate::convert::mapping::{Role, TensorPlan};
use crate::convert::recipe::{type_name, Recipe};

/// Arguments of `sprig requant`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model to re-quantize (one file, or any shard of a gguf-split model).
    pub input: PathBuf,
    /// The GGUF file to write (one file).
    pub output: PathBuf,
    /// The new type of the 2-D tensors whose rows fit its blocks (f32, f16,
    /// q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, q3_k, q2_k), or q4_k_m.
    #[arg(long, value_parser = parse_recipe)]
    pub quant: Recipe,
    /// Use candle's plain quantizer (pruned zeros may not stay zero); by
    /// default every weight that is 0 stays exactly 0.
    #[arg(long)]
    pub plain: bool,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

fn parse_recipe(s: &str) -> Result<Recipe, String> {
    s.parse()
}

/// Errors of `sprig requant`, each naming the file or tensor that failed.
#[derive(Debug, thiserror::Error)]
pub enum RequantError {
    /// A file could not be opened, created, renamed...
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input is not a readable GGUF model.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The input (or the shard that failed).
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: GgufError,
    },
    /// A tensor could not be dequantized.
    #[error("cannot dequantize tensor `{name}` ({dtype}) of {}: {source}", path.display())]
    Dequantize {
        /// The input.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its type.
        dtype: String,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// A tensor could not be quantized to the new type.
    #[error("cannot quantize tensor `{name}` of {} to {dtype}: {source}", path.display())]
    Quantize {
        /// The input.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The new type.
        dtype: String,
        /// What failed (a non-finite weight, candle...).
        #[source]
        source: QuantError,
    },
    /// The output names the input.
    #[error("the output {} is the input; write to another file", path.display())]
    SameFile {
        /// The path given.
        path: PathBuf,
    },
    /// The output exists and `--force` was not given.
    #[error("{} exists; pass --force to replace it", path.display())]
    Exists {
        /// The output.
        path: PathBuf,
    },
    /// candle's writer failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What failed.
        #[source]
        source: candle_core::Error,
    },
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorChange {
    /// Its GGUF name.
    pub name: String,
    /// Its type in the input.
    pub from: GgmlDType,
    /// Its type in the output.
    pub to: GgmlDType,
    /// Its data bytes in the input and in the output (padding included).
    pub bytes: (u64, u64),
}

/// Whether a tensor of `shape` and type `from` is re-quantized to `to`: a
/// 2-D tensor of another type whose rows are a whole number of `to`'s blocks.
pub fn requantizes(shape: &[usize], from: GgmlDType, to: GgmlDType) -> bool {
    matches!(shape, [_, cols] if cols % to.block_size() == 0) && from != to
}

/// A GGUF tensor's role, from its name (`token_embd.weight`,
/// `blk.3.attn_v.weight`, `output.weight`, `*_norm.weight`), as `sprig
/// convert`'s recipes read it.
pub fn plan_of(name: &str, shape: &[usize]) -> TensorPlan {
    let layer = name.strip_prefix("blk.").and_then(|rest| rest.split('.').next()).and_then(|n| n.parse().ok());
    let role = match name {
        "token_embd.weight" => Role::Embedding,
        "output.weight" => Role::Output,
        _ if shape.len() < 2 || name.ends_with("_norm.weight") => Role::Norm,
        _ => Role::Linear,
    };
    TensorPlan { hf: String::new(), gguf: name.to_string(), shape: shape.to_vec(), role, layer, permute_heads: None }
}

/// The type `recipe` gives the tensor `name` of `shape` and type `from` in a
/// model of `layers` blocks, when it changes: one type changes every 2-D
/// tensor whose rows fit it; `q4_k_m` gives each matrix its type.
pub fn target(recipe: Recipe, name: &str, shape: &[usize], from: GgmlDType, layers: usize) -> Option<GgmlDType> {
    match recipe {
        Recipe::Uniform(to) => requantizes(shape, from, to).then_some(to),
        Recipe::Q4KM if shape.len() == 2 => Some(recipe.dtype(&plan_of(name, shape), layers)).filter(|to| *to != from),
        Recipe::Q4KM => None,
    }
}

/// Opens every shard of the model `input` names, with its header; sorted by
/// shard number, readers rewound.
fn open_shards(input: &Path) -> Result<Vec<(Content, BufReader<File>)>, RequantError> {
    let mut shards = Vec::new();
    for path in split_paths(input) {
        let read = |source| RequantError::Read { path: path.clone(), source };
        let file = File::open(&path).map_err(|source| RequantError::Io { action: "open", path: path.clone(), source })?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        sprig_engine::gguf::bounds::check_header(&mut reader).map_err(read)?;
        let content = Content::read(&mut reader).map_err(|source| read(GgufError::Header { source }))?;
        reader.rewind().map_err(|source| read(GgufError::Io { what: "the header again".into(), source }))?;
        let no = Metadata(&content.metadata).opt_u64("split.no").map_err(read)?.unwrap_or(0);
        shards.push((no, content, reader));
    }
    shards.sort_by_key(|(no, ..)| *no);
    Ok(shards.into_iter().map(|(_, content, reader)| (content, reader)).collect())
}

/// The model's number of blocks: `{arch}.block_count`, or 0 when absent
/// (then no layer gets `q4_k_m`'s extra bits but by its name).
fn block_count(meta: &std::collections::HashMap<String, Value>) -> usize {
    let arch = match meta.get("general.architecture") {
        Some(Value::String(a)) => a.clone(),
        _ => return 0,
    };
    Metadata(meta).opt_u64(&format!("{arch}.block_count")).ok().flatten().map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// The output's metadata: the input's without the `split.*` keys, sorted by
/// key, with `general.alignment` at the alignment candle writes and
/// `general.file_type` (when present, in its own integer type) set to `to`'s.
pub(crate) fn output_metadata(meta: &std::collections::HashMap<String, Value>, to: Recipe) -> Vec<(String, Value)> {
    let file_type = to.file_type();
    let mut out: Vec<(String, Value)> = meta
        .iter()
        .filter(|(k, _)| !k.starts_with("split."))
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("general.alignment", _) => Value::U32(gguf_file::DEFAULT_ALIGNMENT as u32),
                ("general.file_type", Value::I32(_)) => Value::I32(file_type as i32),
                ("general.file_type", Value::U64(_)) => Value::U64(u64::from(file_type)),
                ("general.file_type", Value::I64(_)) => Value::I64(i64::from(file_type)),
                ("general.file_type", _) => Value::U32(file_type),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Re-quantizes `tensor` (named `name`, read from `path`) to `to`.
fn requantize(path: &Path, name: &str, tensor: &QTensor, to: GgmlDType, mode: QuantMode) -> Result<QTensor, RequantError> {
    let dequantize = |source| RequantError::Dequantize { path: path.into(), name: name.into(), dtype: type_name(tensor.dtype()), source };
    let values = tensor.dequantize(&Device::Cpu).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(dequantize)?;
    quant::quantize(&values, tensor.shape().dims(), to, mode).map_err(|source| RequantError::Quantize {
        path: path.into(),
        name: name.into(),
        dtype: type_name(to),
        source,
    })
}

/// Writes `tensors` with `metadata` to `output`, through a `.part` file
/// renamed when complete.
pub(crate) fn write(output: &Path, metadata: &[(String, Value)], tensors: &[(String, QTensor)]) -> Result<(), RequantError> {
    let mut part = output.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = File::create(&part).map_err(|source| RequantError::Io { action: "create", path: part.clone(), source })?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let written = gguf_file::write(&mut out, &meta, &refs)
        .and_then(|()| out.flush().map_err(candle_core::Error::from))
        .and_then(|()| out.get_ref().sync_all().map_err(candle_core::Error::from));
    drop(out);
    if let Err(source) = written {
        let _ = std::fs::remove_file(&part);
        return Err(RequantError::Write { path: part, source });
    }
    std::fs::rename(&part, output).map_err(|source| RequantError::Io { action: "rename into place", path: part, source })
}

/// Refuses an output that is the input, or that exists without `force`.
pub(crate) fn check_output(input: &Path, output: &Path, force: bool) -> Result<(), RequantError> {
    if !output.exists() {
        return Ok(());
    }
    let same = |a: &Path| a.canonicalize().ok().zip(output.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if split_paths(input).iter().any(|p| same(p)) {
        return Err(RequantError::SameFile { path: output.into() });
    }
    if !force {
        return Err(RequantError::Exists { path: output.into() });
    }
    Ok(())
}

/// Re-quantizes the model `input` with `recipe` (zeros kept or not, as
/// `mode` says) into the single file `output`; `on_tensor` is told about each
/// tensor as it is done, in file order.
///
/// # Errors
/// [`RequantError`], naming the file or tensor that failed; nothing is left
/// at `output` then.
pub fn requant(
    input: &Path,
    output: &Path,
    recipe: Recipe,
    mode: QuantMode,
    force: bool,
    on_tensor: &mut dyn FnMut(&TensorChange),
) -> Result<Vec<TensorChange>, RequantError> {
    check_output(input, output, force)?;
    let shards = open_shards(input)?;
    let metadata = match shards.first() {
        Some((content, _)) => output_metadata(&content.metadata, recipe),
        None => Vec::new(),
    };
    let layers = match shards.first() {
        Some((content, _)) => block_count(&content.metadata),
        None => 0,
    };
    let mut order = Vec::new();
    for (content, _) in &shards {
        let mut names: Vec<(u64, &String)> = content.tensor_infos.iter().map(|(n, t)| (t.offset, n)).collect();
        names.sort();
        order.extend(names.into_iter().map(|(_, n)| n.clone()));
    }
    let mut model = GgufFile::open_split(shards.into_iter().map(|(_, reader)| reader).collect())
        .map_err(|source| RequantError::Read { path: input.into(), source })?;
    let mut tensors = Vec::with_capacity(order.len());
    let mut changes = Vec::with_capacity(order.len());
    for name in order {
        let tensor = model.tensor(&name, &Device::Cpu).map_err(|source| RequantError::Read { path: input.into(), source })?;
        let from = tensor.dtype();
        let elements = tensor.shape().elem_count();
        let tensor = match target(recipe, &name, tensor.shape().dims(), from, layers) {
            Some(to) => requantize(input, &name, &tensor, to, mode)?,
            None => tensor,
        };
        let change = TensorChange {
            name: name.clone(),
            from,
            to: tensor.dtype(),
            bytes: (data_size(from, elements), data_size(tensor.dtype(), elements)),
        };
        on_tensor(&change);
        changes.push(change);
        tensors.push((name, tensor));
    }
    write(output, &metadata, &tensors)?;
    Ok(changes)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Runs `sprig requant`: the table of tensors on stdout as they are done,
/// then the totals.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut first = true;
    let mode = if args.plain { QuantMode::Plain } else { QuantMode::KeepZeros };
    let changes = requant(&args.input, &args.output, args.quant, mode, args.force, &mut |c| {
        if std::mem::take(&mut first) {
            println!("{:<40} {:<6}    new", "tensor", "old");
        }
        let (from, to) = (type_name(c.from), type_name(c.to));
        let to = if c.from == c.to { format!("{to:<6}  (kept)") } else { to };
        println!("{:<40} {from:<6} -> {to}", c.name);
    })?;
    let requantized = changes.iter().filter(|c| c.from != c.to).count();
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.from == c.to) {
        *kept.entry(type_name(c.from)).or_default() += 1;
    }
    let kept = kept.iter().map(|(t, n)| format!("{t} ×{n}")).collect::<Vec<_>>().join(", ");
    let (before, after) = changes.iter().fold((0, 0), |(b, a), c| (b + c.bytes.0, a + c.bytes.1));
    println!(
        "\n{requantized} of {} tensors re-quantized to {}{}; kept: {}",
        changes.len(),
        args.quant.name(),
        if args.plain { " (plain)" } else { "" },
        if kept.is_empty() { "none".into() } else { kept }
    );
    println!("tensor data: {} -> {}", mib(before), mib(after));
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({size} bytes)", args.output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2d_tensors_whose_rows_fit_change() {
        assert!(requantizes(&[1536, 576], GgmlDType::Q4_1, GgmlDType::Q4_0));
        assert!(!requantizes(&[576], GgmlDType::F32, GgmlDType::Q4_0));
        assert!(!requantizes(&[1536, 576], GgmlDType::Q4_1, GgmlDType::Q4K));
        assert!(requantizes(&[576, 1536], GgmlDType::Q4_1, GgmlDType::Q4K));
        assert!(!requantizes(&[576, 1536], GgmlDType::Q4_0, GgmlDType::Q4_0));
        assert!(!requantizes(&[2, 4, 32], GgmlDType::F32, GgmlDType::Q8_0));
    }

    #[test]
    fn file_types_follow_llama_cpp() {
        let ft = |s: &str| s.parse::<Recipe>().unwrap().file_type();
        assert_eq!((ft("q4_0"), ft("q4_1"), ft("q5_0"), ft("q5_1"), ft("q8_0"), ft("q6_k"), ft("q4_k_m")), (2, 3, 8, 9, 7, 18, 15));
    }

    #[test]
    fn q4_k_m_reads_each_tensors_role_from_its_name() {
        let r = Recipe::Q4KM;
        let t = |name: &str, shape: &[usize]| target(r, name, shape, GgmlDType::F16, 32);
        assert_eq!(t("blk.0.attn_v.weight", &[1024, 4096]), Some(GgmlDType::Q6K));
        assert_eq!(t("blk.5.attn_v.weight", &[1024, 4096]), Some(GgmlDType::Q4K));
        assert_eq!(t("blk.31.ffn_down.weight", &[4096, 14336]), Some(GgmlDType::Q6K));
        assert_eq!(t("blk.5.ffn_up.weight", &[14336, 4096]), Some(GgmlDType::Q4K));
        assert_eq!(t("output.weight", &[32000, 4096]), Some(GgmlDType::Q6K));
        assert_eq!(t("blk.5.ffn_up.weight", &[1536, 576]), Some(GgmlDType::Q8_0), "rows of 576 do not fit Q4_K's 256");
        assert_eq!(t("blk.0.attn_norm.weight", &[4096]), None);
        assert_eq!(plan_of("token_embd.weight", &[32000, 4096]).role, Role::Embedding);
        assert_eq!(plan_of("blk.12.attn_q.weight", &[4096, 4096]).layer, Some(12));
        // One type: only 2-D tensors whose rows fit, of another type.
        assert_eq!(target(Recipe::Uniform(GgmlDType::Q4_0), "output.weight", &[10, 64], GgmlDType::Q8_0, 2), Some(GgmlDType::Q4_0));
        assert_eq!(target(Recipe::Uniform(GgmlDType::Q4_0), "x", &[64], GgmlDType::F32, 2), None);
    }

    #[test]
    fn metadata_keeps_keys_and_updates_the_file_type() {
        let meta: std::collections::HashMap<String, Value> = [
            ("general.file_type".to_string(), Value::U32(3)),
            ("general.name".to_string(), Value::String("m".into())),
            ("split.no".to_string(), Value::U16(0)),
        ]
        .into();
        let out = output_metadata(&meta, Recipe::Uniform(GgmlDType::Q4_0));
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["general.file_type", "general.name"]);
        assert!(matches!(out[0].1, Value::U32(2)));
    }
}

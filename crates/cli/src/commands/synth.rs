//! `sprig synth --shape tiny|mistral-7b --output HF_DIR`: a synthetic Hugging
//! Face checkpoint with the layout of mistralai/Mistral-7B-Instruct-v0.2 after
//! Wanda pruning: sharded safetensors and their index, `config.json`,
//! `generation_config.json`, the tokenizer files. For tests and for
//! benchmarking the converter on full-size models; its output is noise.
//!
//! Every linear layer of the blocks (q, k, v, o, gate, up, down) has exactly
//! `round(sparsity × in_features)` zeros in each output row, those with the
//! smallest `|W_ij| · ||X_j||` for seeded per-column activation norms; the
//! embeddings, the output head and the norms have no zeros at all.
//!
//! The weights are generated as they are written, a few MB at a time: the
//! 14.5 GB of `mistral-7b` never live in memory.

mod hf_files;
mod shape;
mod values;
mod writer;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sprig_engine::sentencepiece::SentencePieceModel;

pub use shape::{Shape, ShapeName};
pub use values::Dtype;
pub use writer::safetensors_header;

/// Arguments of `sprig synth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model's shape.
    #[arg(long, value_enum)]
    pub shape: ShapeName,
    /// The fraction of each linear row set to zero, Wanda-style.
    #[arg(long, default_value_t = 0.3, value_parser = parse_sparsity)]
    pub sparsity: f64,
    /// The SentencePiece `tokenizer.model` copied into the checkpoint; its
    /// vocabulary size is the model's.
    #[arg(long, default_value = "models/tokenizer.model.v1")]
    pub tokenizer: PathBuf,
    /// The checkpoint directory to create (written as `HF_DIR.part`, then renamed).
    #[arg(long, value_name = "HF_DIR")]
    pub output: PathBuf,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The stored type of every tensor.
    #[arg(long, value_enum, default_value_t = Dtype::F16)]
    pub dtype: Dtype,
    /// The number of safetensors files.
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// Replace the output directory if it is not empty.
    #[arg(long)]
    pub force: bool,
}

/// Why `sprig synth` refuses to run.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The output directory holds files and `--force` was not given.
    #[error("{0} is not empty: pass --force to replace it")]
    NotEmpty(PathBuf),
    /// `--force` on a directory with subdirectories, which no checkpoint has.
    #[error("{0} has subdirectories, so it is not a checkpoint: refusing to replace it")]
    NotACheckpoint(PathBuf),
    /// The output exists and is a file.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The output path has no final name (`/`, `..`).
    #[error("{0} does not name a new directory")]
    NoName(PathBuf),
    /// More shards than tensors, or none.
    #[error("cannot split {tensors} tensors into {shards} shards")]
    Shards {
        /// `--shards`.
        shards: usize,
        /// The number of tensors.
        tensors: usize,
    },
}

/// Parses `--sparsity`: a fraction in `[0, 1)`.
fn parse_sparsity(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..1.0).contains(&s) => Ok(s),
        _ => Err(format!("invalid sparsity `{text}`: expected a fraction in [0, 1), e.g. 0.3")),
    }
}

/// Runs `sprig synth`.
///
/// # Errors
/// When the tokenizer cannot be read, the output directory is refused, or a
/// file cannot be written (the partial `HF_DIR.part` is then removed).
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = web_time::Instant::now();
    let tokenizer = fs::read(&args.tokenizer).with_context(|| format!("cannot read {}", args.tokenizer.display()))?;
    let vocab = SentencePieceModel::parse(&tokenizer).with_context(|| format!("cannot read {}", args.tokenizer.display()))?.pieces.len();
    let shape = Shape::new(args.shape, vocab);
    let specs = shape.tensors();
    let plan = writer::plan_shards(&specs, args.shards)?;
    let total: u64 = specs.iter().map(|t| (t.len() * args.dtype.size()) as u64).sum();
    let part = begin_output(&args.output, args.force)?;
    eprintln!(
        "synth: {} layers, hidden {}, intermediate {}, {} heads ({} key/value), vocabulary {vocab}: {} parameters, {} in {} {:?} shards, {:.0} % of each linear row pruned",
        shape.layers,
        shape.hidden,
        shape.intermediate,
        shape.heads,
        shape.kv_heads,
        specs.iter().map(|t| t.len() as u64).sum::<u64>(),
        gigabytes(total),
        plan.len(),
        args.dtype.safetensors(),
        args.sparsity * 100.0,
    );
    let written = write_checkpoint(&part, args, &shape, &tokenizer, &plan, total);
    if written.is_err() {
        let _ = fs::remove_dir_all(&part);
    }
    written?;
    finish_output(&part, &args.output)?;
    eprintln!("synth: wrote {} ({}) in {:.1} s", args.output.display(), gigabytes(total), started.elapsed().as_secs_f64());
    Ok(())
}

/// Writes every file of the checkpoint into `dir`.
fn write_checkpoint(
    dir: &Path,
    args: &Args,
    shape: &Shape,
    tokenizer: &[u8],
    plan: &[writer::ShardPlan],
    total: u64,
) -> anyhow::Result<()> {
    let specs = shape.tensors();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let values = writer::Values { seed: args.seed, sparsity: args.sparsity, dtype: args.dtype, threads };
    let mut progress = Report::new(total);
    for shard in plan {
        writer::write_shard(&dir.join(&shard.file_name), &specs, shard, values, &mut progress)?;
        eprintln!("synth: {} done", shard.file_name);
    }
    let files = [
        ("model.safetensors.index.json", writer::index_json(&specs, plan, args.dtype)?.into_bytes()),
        ("config.json", hf_files::config_json(shape, args.dtype).into_bytes()),
        ("generation_config.json", hf_files::generation_config_json().into_bytes()),
        ("tokenizer_config.json", hf_files::tokenizer_config_json().into_bytes()),
        ("special_tokens_map.json", hf_files::special_tokens_map_json().into_bytes()),
        ("tokenizer.model", tokenizer.to_vec()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Checks the output directory and creates the empty `HF_DIR.part` to write
/// into (removing one an interrupted run left).
///
/// # Errors
/// [`SynthError`] when the output is refused; I/O errors with the path.
fn begin_output(output: &Path, force: bool) -> anyhow::Result<PathBuf> {
    let name = output.file_name().ok_or_else(|| SynthError::NoName(output.to_path_buf()))?;
    if output.exists() {
        check_replaceable(output, force)?;
    }
    let mut part_name = name.to_os_string();
    part_name.push(".part");
    let part = output.with_file_name(part_name);
    if part.exists() {
        fs::remove_dir_all(&part).with_context(|| format!("cannot remove the unfinished {}", part.display()))?;
    }
    fs::create_dir_all(&part).with_context(|| format!("cannot create {}", part.display()))?;
    Ok(part)
}

/// An existing output may be replaced if it is an empty directory, or, with
/// `--force`, a directory of files only (as a checkpoint is).
fn check_replaceable(output: &Path, force: bool) -> anyhow::Result<()> {
    if !output.is_dir() {
        return Err(SynthError::NotADirectory(output.to_path_buf()).into());
    }
    let read = |e| anyhow::Error::new(e).context(format!("cannot list {}", output.display()));
    let entries = fs::read_dir(output).map_err(read)?.collect::<Result<Vec<_>, _>>().map_err(read)?;
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(SynthError::NotEmpty(output.to_path_buf()).into());
    }
    if entries.iter().any(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        return Err(SynthError::NotACheckpoint(output.to_path_buf()).into());
    }
    Ok(())
}

/// Replaces `output` (absent, empty, or forced) by the finished `part`.
fn finish_output(part: &Path, output: &Path) -> anyhow::Result<()> {
    if output.exists() {
        fs::remove_dir_all(output).with_context(|| format!("cannot replace {}", output.display()))?;
    }
    fs::rename(part, output).with_context(|| format!("cannot rename {} to {}", part.display(), output.display()))
}

/// `14.48 GB`, or `8.3 MB` below a gigabyte.
fn gigabytes(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Progress on stderr: a line every few seconds with the bytes written, the
/// speed and the time left.
#[derive(Debug)]
struct Report {
    total: u64,
    done: u64,
    started: web_time::Instant,
    last: web_time::Instant,
}

impl Report {
    /// Seconds between two lines.
    const EVERY: f64 = 5.0;

    fn new(total: u64) -> Self {
        let now = web_time::Instant::now();
        Self { total, done: 0, started: now, last: now }
    }
}

impl writer::Progress for Report {
    fn advance(&mut self, bytes: u64, name: &str) {
        self.done += bytes;
        if self.last.elapsed().as_secs_f64() < Self::EVERY {
            return;
        }
        self.last = web_time::Instant::now();
        let seconds = self.started.elapsed().as_secs_f64();
        let speed = self.done as f64 / seconds;
        eprintln!(
            "synth: {} / {} ({:.0} %), {:.0} MB/s, about {:.0} s left ({name})",
            gigabytes(self.done),
            gigabytes(self.total),
            100.0 * self.done as f64 / self.total as f64,
            speed / 1e6,
            (self.total - self.done) as f64 / speed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sparsity;

    #[test]
    fn sparsity_is_a_fraction_below_one() {
        assert_eq!(parse_sparsity("0.3"), Ok(0.3));
        assert_eq!(parse_sparsity("0"), Ok(0.0));
        for bad in ["1", "1.5", "-0.1", "x", "NaN"] {
            assert!(parse_sparsity(bad).unwrap_err().contains(&format!("`{bad}`")), "{bad}");
        }
    }
}

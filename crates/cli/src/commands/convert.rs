//! `sprig convert`: a pruned Hugging Face checkpoint (safetensors, f16/bf16/
//! f32) to quantized gguf-split shards and their `manifest.json`, keeping the
//! pruned zeros exact. Everything is read and checked before anything is
//! written; tensors are read through mmap and quantized in row blocks, several
//! at a time (rayon), so memory stays near one shard of output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use rayon::prelude::*;
use sprig_engine::gguf::split::{data_size, write_shards, SplitError};
use sprig_engine::quant::QuantMode;

use crate::convert::checkpoint::{Checkpoint, TensorRef};
use crate::convert::mapping::{plan, Role, TensorPlan};
use crate::convert::metadata::{build, read_tokenizer, Provenance};
use crate::convert::quantize::{convert, TensorStats};
use crate::convert::recipe::{type_name, Recipe};

/// Arguments of `sprig convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.model).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the shards and manifest.json (must be absent or empty unless --force).
    #[arg(long)]
    pub output: PathBuf,
    /// Quantization (f32, f16, q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, q3_k, q2_k, q4_k_m;
    /// q4_1, q5_0 and q5_1 only with --plain: their per-block minimum cannot keep zeros exactly).
    #[arg(long, default_value = "q4_k_m", value_parser = parse_recipe)]
    pub quant: Recipe,
    /// Maximum tensor data per shard.
    #[arg(long, default_value = "512MB", value_parser = super::parse_size)]
    pub shard_size: u64,
    /// The model's display name (default: from the checkpoint and the quantization).
    #[arg(long)]
    pub name: Option<String>,
    /// The pruning method to record in the provenance keys (default: the
    /// `sprig.pruning.method` that `sprig prune` records in the checkpoint,
    /// else `wanda`).
    #[arg(long)]
    pub pruning: Option<String>,
    /// Use candle's plain quantizer (pruned zeros may not stay zero).
    #[arg(long)]
    pub plain: bool,
    /// Skip the comparison with plain quantization (faster).
    #[arg(long)]
    pub no_compare: bool,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Replace a non-empty output directory.
    #[arg(long)]
    pub force: bool,
}

fn parse_recipe(s: &str) -> Result<Recipe, String> {
    s.parse()
}

/// One tensor to convert, with its source and type.
struct Job<'a> {
    plan: TensorPlan,
    src: &'a TensorRef,
    dtype: candle_core::quantized::GgmlDType,
}

pub(crate) fn prepare_output(output: &Path, force: bool) -> anyhow::Result<PathBuf> {
    if output.exists() {
        let empty = std::fs::read_dir(output).with_context(|| format!("cannot read {}", output.display()))?.next().is_none();
        if !empty && !force {
            bail!("{} is not empty; pass --force to replace it", output.display());
        }
    }
    let part = output.with_extension("part");
    if part.exists() {
        std::fs::remove_dir_all(&part).with_context(|| format!("cannot remove {}", part.display()))?;
    }
    std::fs::create_dir_all(&part).with_context(|| format!("cannot create {}", part.display()))?;
    Ok(part)
}

/// Zero fraction of each tensor, before quantizing.
fn measure_zeros(ck: &Checkpoint, jobs: &[Job<'_>]) -> Vec<(usize, usize)> {
    jobs.par_iter()
        .map(|j| {
            let mut row = Vec::with_capacity(j.src.cols());
            let mut zeros = 0;
            for r in 0..j.src.rows() {
                row.clear();
                ck.read_row(j.src, r, &mut row);
                zeros += row.iter().filter(|v| **v == 0.0).count();
            }
            ck.release(j.src);
            (zeros, j.src.rows() * j.src.cols())
        })
        .collect()
}

/// A one-line progress bar on stderr, updated as tensors finish (from any thread).
struct Progress {
    tensors: usize,
    values: usize,
    done_tensors: AtomicUsize,
    done_values: AtomicUsize,
    started: Instant,
}

impl Progress {
    fn new(tensors: usize, values: usize) -> Self {
        Self { tensors, values, done_tensors: AtomicUsize::new(0), done_values: AtomicUsize::new(0), started: Instant::now() }
    }

    fn tensor_done(&self, values: usize, name: &str) {
        let n = self.done_tensors.fetch_add(1, Ordering::Relaxed) + 1;
        let v = self.done_values.fetch_add(values, Ordering::Relaxed) + values;
        let frac = v as f64 / self.values.max(1) as f64;
        let filled = (frac * 30.0).round() as usize;
        let secs = self.started.elapsed().as_secs_f64();
        let eta = if frac > 0.0 { secs / frac - secs } else { 0.0 };
        eprint!(
            "\r[{}{}] {:>3.0} % · {n}/{} tensors · {secs:.0} s, about {eta:.0} s left · {name:<28}",
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30)),
            frac * 100.0,
            self.tensors
        );
    }

    fn note(&self, line: &str) {
        eprint!("\r\x1b[K{line}\n");
    }
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        a as f64 / b as f64 * 100.0
    }
}

fn print_report(stats: &[TensorStats]) {
    eprintln!(
        "\n{:<28} {:>6} {:>14} {:>8} {:>10} {:>11} {:>11} {:>7}",
        "tensor", "type", "values", "zeros", "kept", "rmse", "plain rmse", "ratio"
    );
    for s in stats {
        let plain = s.rmse_plain();
        eprintln!(
            "{:<28} {:>6} {:>14} {:>7.2}% {:>9.2}% {:>11.3e} {:>11} {:>7}",
            s.name,
            type_name(s.dtype),
            s.values,
            pct(s.zeros, s.values),
            pct(s.zeros_kept, s.zeros),
            s.rmse(),
            plain.map_or("-".into(), |p| format!("{p:.3e}")),
            plain.filter(|p| *p > 0.0).map_or("-".into(), |p| format!("{:.3}", s.rmse() / p)),
        );
    }
    let zeros: usize = stats.iter().map(|s| s.zeros).sum();
    let kept: usize = stats.iter().map(|s| s.zeros_kept).sum();
    let nonzeros: usize = stats.iter().map(TensorStats::nonzeros).sum();
    let err: f64 = stats.iter().map(|s| s.sq_err).sum();
    let bytes: usize = stats.iter().map(|s| s.bytes).sum();
    eprintln!(
        "\ntotal: {} tensors, {:.3} GB; zeros kept {kept} of {zeros} ({:.4} %); rmse on non-zeros {:.4e}",
        stats.len(),
        bytes as f64 / 1e9,
        pct(kept, zeros),
        (err / nonzeros.max(1) as f64).sqrt()
    );
    if stats.iter().all(|s| s.sq_err_plain.is_some()) {
        let plain: f64 = stats.iter().filter_map(|s| s.sq_err_plain).sum();
        eprintln!(
            "plain quantization of the same tensors: rmse on non-zeros {:.4e} (ratio {:.4})",
            (plain / nonzeros.max(1) as f64).sqrt(),
            (err / plain.max(f64::MIN_POSITIVE)).sqrt()
        );
    }
    let mut types: Vec<(String, usize)> = Vec::new();
    for s in stats {
        let t = type_name(s.dtype);
        match types.iter_mut().find(|(n, _)| *n == t) {
            Some((_, c)) => *c += 1,
            None => types.push((t, 1)),
        }
    }
    eprintln!("types: {}", types.iter().map(|(t, c)| format!("{c} × {t}")).collect::<Vec<_>>().join(", "));
}

fn stats_json(stats: &[TensorStats], prov: &Provenance) -> serde_json::Value {
    serde_json::json!({
        "source": prov.source,
        "pruning": { "method": prov.pruning_method, "sparsity": prov.sparsity },
        "keep_zeros": prov.keep_zeros,
        "tensors": stats.iter().map(|s| serde_json::json!({
            "name": s.name, "type": type_name(s.dtype), "values": s.values, "zeros": s.zeros,
            "zeros_kept": s.zeros_kept, "rmse": s.rmse(), "rmse_plain": s.rmse_plain(), "bytes": s.bytes,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `sprig convert`.
// The shard callback returns the engine's `SplitError` (large, as candle's
// errors are); it is made once per shard, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set the thread count")?;
    }
    // Read and check everything first: nothing is written for a bad input.
    let ck = Checkpoint::open(&args.input).with_context(|| format!("cannot convert {}", args.input.display()))?;
    let cfg = ck.config.clone();
    let tok = read_tokenizer(&args.input)?;
    if tok.model.pieces.len() != cfg.vocab_size {
        bail!("tokenizer.model has {} tokens, config.json says vocab_size {}", tok.model.pieces.len(), cfg.vocab_size);
    }
    let mut jobs = Vec::new();
    for p in plan(&cfg) {
        let src = ck.expect(&p.hf, &p.shape)?;
        let dtype = args.quant.dtype(&p, cfg.num_hidden_layers);
        jobs.push(Job { plan: p, src, dtype });
    }
    let part = prepare_output(&args.output, args.force)?;

    eprintln!("measuring zeros of {} tensors…", jobs.len());
    let zeros = measure_zeros(&ck, &jobs);
    eprintln!("\n{:<28} {:>14} {:>8}", "tensor", "values", "zeros");
    for (j, (z, n)) in jobs.iter().zip(&zeros) {
        eprintln!("{:<28} {:>14} {:>7.2}%", j.plan.gguf, n, pct(*z, *n));
    }
    let (pz, pn) = jobs.iter().zip(&zeros).filter(|(j, _)| j.plan.role == Role::Linear).fold((0, 0), |(a, b), (_, (z, n))| (a + z, b + n));
    let source = cfg.name_or_path.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        args.input
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "checkpoint".into())
    });
    let pruning = args.pruning.clone().or_else(|| ck.metadata.get("sprig.pruning.method").cloned()).unwrap_or_else(|| "wanda".into());
    let prov = Provenance {
        source: source.clone(),
        pruning_method: pruning.clone(),
        sparsity: pz as f64 / pn.max(1) as f64,
        keep_zeros: !args.plain,
    };
    eprintln!("pruned linear weights: {:.2} % zeros", prov.sparsity * 100.0);

    let name =
        args.name.clone().unwrap_or_else(|| format!("{} ({} {:.0} %, {})", source, pruning, prov.sparsity * 100.0, args.quant.name()));
    let prefix = format!(
        "{}-{}",
        args.input
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into()),
        args.quant.name().to_lowercase()
    )
    .replace([' ', '/', '\\'], "-");
    let meta = build(&cfg, &tok, &name, args.quant, &prov);
    let names: Vec<String> = jobs.iter().map(|j| j.plan.gguf.clone()).collect();
    let sizes: Vec<u64> = jobs.iter().map(|j| data_size(j.dtype, j.src.rows() * j.src.cols())).collect();
    let mode = if args.plain { QuantMode::Plain } else { QuantMode::KeepZeros };
    let mut stats: Vec<TensorStats> = Vec::with_capacity(jobs.len());
    let progress = Progress::new(jobs.len(), jobs.iter().map(|j| j.src.rows() * j.src.cols()).sum());
    let written = write_shards(
        &part,
        &prefix,
        &meta,
        &names,
        &sizes,
        args.shard_size,
        &mut |group| {
            let chosen: Vec<&Job<'_>> = group.iter().filter_map(|n| jobs.iter().find(|j| j.plan.gguf == *n)).collect();
            let results: Vec<_> = chosen
                .par_iter()
                .map(|j| {
                    let converted = convert(&ck, &j.plan, j.src, j.dtype, mode, !args.no_compare);
                    progress.tensor_done(j.src.rows() * j.src.cols(), &j.plan.gguf);
                    converted
                })
                .collect::<Result<_, _>>()
                .map_err(|e| SplitError::Tensors(e.to_string()))?;
            let mut tensors = Vec::with_capacity(results.len());
            for (q, s) in results {
                tensors.push(q);
                stats.push(s);
            }
            Ok(tensors)
        },
        &mut |shard| progress.note(&format!("wrote {} ({} tensors, {} bytes)", shard.path.display(), shard.tensors, shard.file_bytes)),
    )?;
    eprintln!();
    let first = written.first().map(|w| w.path.clone()).context("no shard was written")?;
    let manifest = super::manifest::build(&first, Some(name))?;
    std::fs::write(part.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    std::fs::write(part.join("conversion.json"), serde_json::to_string_pretty(&stats_json(&stats, &prov))? + "\n")?;
    if args.output.exists() {
        std::fs::remove_dir_all(&args.output).with_context(|| format!("cannot replace {}", args.output.display()))?;
    }
    std::fs::rename(&part, &args.output).with_context(|| format!("cannot move {} into place", part.display()))?;
    print_report(&stats);
    eprintln!(
        "wrote {} ({} shard(s), {} bytes, manifest.json) in {:.1} s{}",
        args.output.display(),
        manifest.shards.len(),
        manifest.total_size,
        started.elapsed().as_secs_f64(),
        peak_rss().map_or(String::new(), |kb| format!(", peak RSS {:.0} MB", kb as f64 / 1024.0))
    );
    let out = args.output.display();
    eprintln!("next: sprig verify {out}, then sprig publish {out} --base-url URL --catalog www/models.json (docs/deploy.md)");
    Ok(())
}

/// The process's peak resident set in KiB (Linux: `VmHWM`), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

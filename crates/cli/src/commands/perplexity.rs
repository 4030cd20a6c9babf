//! `sprig perplexity --model FILE --text FILE`: a model's perplexity on a
//! text, computed as llama.cpp's `llama-perplexity` computes it, and with
//! `--kl-base` its KL divergence from a base model's saved distributions
//! (`--save-logits`), as `llama-perplexity --kl-divergence` reports it.
//!
//! The text is tokenized once (with BOS when the model adds one), cut into
//! non-overlapping chunks of `--ctx` tokens, and each chunk runs from an
//! empty cache, its first token replaced by BOS (when the model adds one).
//! Only the second half of each chunk is scored: the logits at positions
//! `ctx/2 ..= ctx − 2` against the tokens that follow them, so every scored
//! token has at least half a context before it. Perplexity is exp(mean
//! negative log-likelihood), ± the perplexity times the standard error of
//! that mean.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::json;
use sprig_engine::{Model, Tokenizer};

use crate::quality::logits_file::{Layout, LogitsReader, LogitsWriter};
use crate::quality::score::{divergence, log_softmax, top_margin, Divergence, Perplexity};

/// Arguments of `sprig perplexity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// The text to score (UTF-8).
    #[arg(long)]
    pub text: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks (default: every whole chunk of the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Print the figures as JSON on stdout (progress stays on stderr), with
    /// every scored position's top-1 token and its margin over the second
    /// (in logits), in order (`positions`).
    #[arg(long)]
    pub json: bool,
    /// Save this model's distributions at every scored position, as the base
    /// for `--kl-base` (about 2 bytes × vocabulary per scored token).
    #[arg(long, value_name = "FILE")]
    pub save_logits: Option<PathBuf>,
    /// Compare with the base distributions saved in FILE (same text, --ctx
    /// and vocabulary): KL divergence and top-token agreement.
    #[arg(long, value_name = "FILE")]
    pub kl_base: Option<PathBuf>,
}

/// The fractions of the sorted KL divergences reported, with their names.
const PERCENTILES: [(&str, f64); 11] = [
    ("max", 1.0),
    ("99.9%", 0.999),
    ("99%", 0.99),
    ("95%", 0.95),
    ("90%", 0.90),
    ("median", 0.5),
    ("10%", 0.10),
    ("5%", 0.05),
    ("1%", 0.01),
    ("0.1%", 0.001),
    ("min", 0.0),
];

/// Runs `sprig perplexity`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.text).with_context(|| format!("cannot read {} as UTF-8 text", args.text.display()))?;
    let mut file = super::open_gguf(&args.model)?;
    let tokenizer = Tokenizer::from_gguf(&file.metadata()).with_context(|| format!("{}: no usable tokenizer", args.model.display()))?;
    let mut model = Model::load(&mut file).with_context(|| format!("cannot load {}", args.model.display()))?;
    let ctx = args.ctx;
    let trained = model.config().context_length;
    if !(4..=trained).contains(&ctx) {
        bail!("--ctx {ctx}: it must be from 4 to the model's context, {trained}");
    }
    let started = Instant::now();
    let tokens = super::text_ids(&tokenizer, &text)?;
    eprintln!("tokenized {} in {:.1} s: {} tokens", args.text.display(), started.elapsed().as_secs_f64(), tokens.len());
    if tokens.len() < 2 * ctx {
        bail!("{} has {} tokens: at least 2 × --ctx = {} are needed", args.text.display(), tokens.len(), 2 * ctx);
    }
    let chunks = args.chunks.unwrap_or(usize::MAX).min(tokens.len() / ctx);
    if chunks == 0 {
        bail!("--chunks 0: nothing to score");
    }
    let vocab = model.vocab();
    let layout = Layout {
        vocab: u32::try_from(vocab).context("vocabulary too large")?,
        ctx: u32::try_from(ctx).context("--ctx too large")?,
        tokens: tokens[..chunks * ctx].to_vec(),
    };
    let mut save = args.save_logits.as_deref().map(|p| LogitsWriter::create(p, &layout)).transpose()?;
    let mut base = match &args.kl_base {
        Some(path) => {
            let reader = LogitsReader::open(path)?;
            reader.check(&layout)?;
            Some(reader)
        }
        None => None,
    };
    let bos = tokenizer.bos().filter(|_| tokenizer.add_bos());
    let first = ctx / 2;
    eprintln!("scoring {chunks} chunks of {ctx} tokens ({} tokens each), vocabulary {vocab}", ctx - 1 - first);

    let (mut ppl, mut base_ppl, mut kl) = (Perplexity::default(), Perplexity::default(), Divergence::default());
    let mut running = Vec::with_capacity(chunks);
    let mut base_lp = vec![0.0f32; vocab];
    let mut positions = Positions::default();
    for chunk in 0..chunks {
        let chunk_started = Instant::now();
        let mut input = tokens[chunk * ctx..(chunk + 1) * ctx].to_vec();
        if let Some(bos) = bos {
            input[0] = bos;
        }
        model.truncate_cache(0);
        // The first half fills the cache; the second half, in one batch,
        // gives the logits of every scored position (first ..= ctx − 2).
        model.forward(&input[..first]).with_context(|| format!("chunk {}", chunk + 1))?;
        let mut all = model.forward_all(&input[first..ctx - 1]).with_context(|| format!("chunk {}", chunk + 1))?;
        for (logits, &target) in all.chunks_exact_mut(vocab).zip(&input[first + 1..]) {
            log_softmax(logits);
            ppl.add(logits, target);
            if args.json {
                let (top, margin) = top_margin(logits);
                positions.top1.push(top);
                positions.margin.push(margin);
            }
            if let Some(w) = save.as_mut() {
                w.write(logits)?;
            }
            if let Some(r) = base.as_mut() {
                r.next(&mut base_lp)?;
                base_ppl.add(&base_lp, target);
                kl.add(divergence(&base_lp, logits));
            }
        }
        running.push(ppl.value());
        eprintln!(
            "[{}/{chunks}] PPL = {:.4} +/- {:.5}{} ({:.1} s)",
            chunk + 1,
            ppl.value(),
            ppl.error(),
            if base.is_some() { format!(", mean KLD = {:.6}", kl.mean().0) } else { String::new() },
            chunk_started.elapsed().as_secs_f64()
        );
    }
    if let Some(w) = save {
        w.finish()?;
    }
    report(args, &ppl, &running, base.is_some().then_some((&base_ppl, &kl)), &positions)
}

/// Every scored position's top-1 token and its margin over the second, in order.
#[derive(Debug, Default)]
struct Positions {
    top1: Vec<usize>,
    margin: Vec<f32>,
}

fn report(
    args: &Args,
    ppl: &Perplexity,
    running: &[f64],
    kl: Option<(&Perplexity, &Divergence)>,
    positions: &Positions,
) -> anyhow::Result<()> {
    let kl_json = kl.map(|(base, kl)| {
        let (mean, err) = kl.mean();
        let (same, same_err) = kl.same_top();
        let pct = kl.percentiles(&PERCENTILES.map(|(_, f)| f));
        json!({
            "base_ppl": base.value(),
            "ln_ppl_ratio": (ppl.value() / base.value()).ln(),
            "kld_mean": mean,
            "kld_err": err,
            "kld_percentiles": PERCENTILES.iter().zip(&pct).map(|((name, _), v)| (name.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "same_top": same,
            "same_top_err": same_err,
        })
    });
    if args.json {
        let out = json!({
            "model": args.model.display().to_string(),
            "text": args.text.display().to_string(),
            "ctx": args.ctx,
            "chunks": running.len(),
            "tokens_scored": ppl.count(),
            "ppl": ppl.value(),
            "ppl_err": ppl.error(),
            "running_ppl": running,
            "kl": kl_json,
            "positions": { "top1": positions.top1, "margin": positions.margin },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("Final estimate: PPL = {:.4} +/- {:.5} ({} tokens scored in {} chunks)", ppl.value(), ppl.error(), ppl.count(), running.len());
    if let Some((base, kl)) = kl {
        let (mean, err) = kl.mean();
        let (same, same_err) = kl.same_top();
        println!("Mean PPL(Q): {:.6}", ppl.value());
        println!("Mean PPL(base): {:.6}", base.value());
        println!("ln(PPL(Q)/PPL(base)): {:.6}", (ppl.value() / base.value()).ln());
        println!("Mean KLD: {mean:.6} ± {err:.6}");
        for ((name, _), v) in PERCENTILES.iter().zip(kl.percentiles(&PERCENTILES.map(|(_, f)| f))) {
            println!("{name:>7} KLD: {v:.6}");
        }
        println!("Same top p: {:.3} ± {:.3} %", 100.0 * same, 100.0 * same_err);
    }
    Ok(())
}

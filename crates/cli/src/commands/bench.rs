//! `sprig bench --model FILE`: prefill and decode speed on a fixed prompt,
//! greedy, repeated; prints one line per run and the median.

use std::path::PathBuf;

use sprig_engine::SamplingParams;

/// Arguments of `sprig bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt length in tokens (a fixed text is repeated to reach it).
    #[arg(long, default_value_t = 38)]
    pub prompt_tokens: usize,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Number of runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills, and the farmer counts his sheep one by one before night falls on the quiet valley. ";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `sprig bench`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = web_time::Instant::now();
    let mut session = super::load_session(&args.model)?;
    let load_s = started.elapsed().as_secs_f64();
    let t = session.tokenizer();
    let mut prompt: Vec<u32> = t.bos().into_iter().collect();
    while prompt.len() < args.prompt_tokens {
        prompt.extend(t.encode(TEXT)?);
    }
    prompt.truncate(args.prompt_tokens.max(1));
    println!("model: {}  load: {load_s:.2} s  threads: {}", args.model.display(), rayon_threads());
    let (mut pre, mut dec) = (Vec::new(), Vec::new());
    for run in 1..=args.runs.max(1) {
        session.reset();
        let params = SamplingParams { max_tokens: args.gen_tokens, ..SamplingParams::greedy(args.gen_tokens) };
        let (ids, s) = session.generate(&prompt, params, &mut |_| {})?;
        println!(
            "run {run}: prefill {} tok in {:.0} ms = {:.1} tok/s; decode {} tok in {:.0} ms = {:.1} tok/s ({:?})",
            s.prefilled_tokens, s.prefill_ms, s.prefill_tok_s, ids.len(), s.decode_ms, s.decode_tok_s, s.stop
        );
        pre.push(s.prefill_tok_s);
        dec.push(s.decode_tok_s);
    }
    println!("median: prefill {:.1} tok/s, decode {:.1} tok/s", median(pre), median(dec));
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()))
}

//! `sprig bench --model FILE`: prefill and decode speed on a fixed prompt,
//! greedy, repeated; prints one line per run and the median. The browser runs
//! the same benchmark (`scripts/bench`).

use std::path::PathBuf;

use sprig_engine::bench;

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

/// Runs `sprig bench`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = web_time::Instant::now();
    let mut session = super::load_session(&args.model)?;
    let threads =
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()));
    println!("native: {}  load {:.2} s  threads {threads}", args.model.display(), started.elapsed().as_secs_f64());
    let runs = bench::run(&mut session, args.prompt_tokens, args.gen_tokens, args.runs, &mut |i, r| {
        println!("{}", bench::describe(i, r));
    })?;
    println!("native {}", bench::summary(&runs));
    Ok(())
}

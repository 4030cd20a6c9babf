//! `sprig generate --model FILE --prompt TEXT`: streams generated text to
//! stdout and the turn's figures to stderr.

use std::io::Write;
use std::path::PathBuf;

use sprig_engine::{ChatMessage, Role, SamplingParams};

/// Arguments of `sprig generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt (the user's message with `--chat`).
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user message in the model's chat format.
    #[arg(long)]
    pub chat: bool,
    /// A system prompt (with `--chat`).
    #[arg(long)]
    pub system: Option<String>,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = SamplingParams::default().temperature)]
    pub temperature: f64,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = SamplingParams::default().top_p)]
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = SamplingParams::default().top_k)]
    pub top_k: usize,
    /// Repeat penalty (1 = off).
    #[arg(long, default_value_t = SamplingParams::default().repeat_penalty)]
    pub repeat_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = SamplingParams::default().seed)]
    pub seed: u64,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = SamplingParams::default().max_tokens)]
    pub max_tokens: usize,
    /// Print the generated ids as JSON on stdout instead of text.
    #[arg(long)]
    pub ids: bool,
}

/// Runs `sprig generate`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut session = super::load_session(&args.model)?;
    let prompt = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::new(Role::System, s.clone()));
        }
        messages.push(ChatMessage::new(Role::User, args.prompt.clone()));
        session.chat_prompt(&messages)?
    } else {
        super::text_ids(session.tokenizer(), &args.prompt)?
    };
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        max_tokens: args.max_tokens,
        ..SamplingParams::default()
    };
    let mut out = std::io::stdout().lock();
    let print_text = !args.ids;
    let (ids, stats) = session.generate(&prompt, params, &mut |text| {
        if print_text {
            // A closed stdout ends the output, not the program.
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    })?;
    if args.ids {
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    } else {
        writeln!(out)?;
    }
    eprintln!(
        "[{:?}] prompt {} tokens ({} run) at {:.1} tok/s; generated {} tokens at {:.1} tok/s",
        stats.stop, stats.prompt_tokens, stats.prefilled_tokens, stats.prefill_tok_s, stats.generated_tokens, stats.decode_tok_s
    );
    Ok(())
}

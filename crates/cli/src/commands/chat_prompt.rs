//! `sprig chat-prompt --model FILE --messages FILE.json`: the token ids of a
//! conversation rendered with the model's chat format, as JSON.

use std::path::PathBuf;

use anyhow::Context;
use sprig_engine::{ChatFormat, ChatMessage, Tokenizer};

/// Which chat format to use.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Mistral's v1 format for Mistral-style models, the GGUF's template otherwise.
    Auto,
    /// The GGUF's own `tokenizer.chat_template`.
    Template,
    /// Mistral's v1 instruct format, as `mistral-common` produces it.
    MistralV1,
}

/// Arguments of `sprig chat-prompt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// A JSON file: `[{"role": "user", "content": "..."}, ...]`.
    #[arg(long)]
    pub messages: PathBuf,
    /// The chat format.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Do not end with the assistant's cue.
    #[arg(long)]
    pub no_generation_prompt: bool,
}

/// Reads a conversation from a JSON file.
pub fn read_messages(path: &std::path::Path) -> anyhow::Result<Vec<ChatMessage>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a list of {{role, content}} messages", path.display()))
}

/// The chat format `format` picks for a model.
pub fn choose(format: Format, template: Option<&str>, tokenizer: &Tokenizer) -> anyhow::Result<ChatFormat> {
    Ok(match format {
        Format::Auto => ChatFormat::detect(template, tokenizer),
        Format::MistralV1 => ChatFormat::MistralV1,
        Format::Template => ChatFormat::Template(template.context("the model has no tokenizer.chat_template")?.to_string()),
    })
}

/// Runs `sprig chat-prompt`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let file = super::open_gguf(&args.model)?;
    let meta = file.metadata();
    let tokenizer = Tokenizer::from_gguf(&meta)?;
    let format = choose(args.format, meta.opt_string("tokenizer.chat_template")?, &tokenizer)?;
    let messages = read_messages(&args.messages)?;
    let ids = format.encode(&tokenizer, &messages, !args.no_generation_prompt)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

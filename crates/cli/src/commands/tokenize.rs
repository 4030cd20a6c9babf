//! `sprig tokenize --model FILE TEXT`: the token ids of a text, as JSON.

use std::path::PathBuf;

use sprig_engine::Tokenizer;

/// Arguments of `sprig tokenize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model whose tokenizer to use.
    #[arg(long)]
    pub model: PathBuf,
    /// Turn the strings of control tokens (`</s>`, `<|im_start|>`...) into their ids.
    #[arg(long)]
    pub special: bool,
    /// The text.
    pub text: String,
}

/// Runs `sprig tokenize`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let file = super::open_gguf(&args.model)?;
    let tokenizer = Tokenizer::from_gguf(&file.metadata())?;
    let ids = if args.special { tokenizer.encode_with_special(&args.text)? } else { tokenizer.encode(&args.text)? };
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

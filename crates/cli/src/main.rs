//! `sprig`: the native command line of Sprig.

use clap::{Parser, Subcommand};

mod commands;
mod convert;
mod prune;
mod quality;

/// Sprig's native tools: inspect, tokenize, run, split, re-quantize and synthesize GGUF models.
#[derive(Debug, Parser)]
#[command(name = "sprig", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a GGUF file's metadata, tensor types and size (header only).
    Inspect(commands::inspect::Args),
    /// Print the token ids of a text as JSON.
    Tokenize(commands::tokenize::Args),
    /// Print the token ids of a conversation in the model's chat format as JSON.
    ChatPrompt(commands::chat_prompt::Args),
    /// Generate text, streamed to stdout; figures on stderr.
    Generate(commands::generate::Args),
    /// Measure prefill and decode speed.
    Bench(commands::bench::Args),
    /// Write the shard manifest (sizes, SHA-256) of an existing GGUF model.
    Manifest(commands::manifest::Args),
    /// Write a GGUF model as gguf-split shards and their manifest.
    Split(commands::split::Args),
    /// Re-quantize a GGUF model's 2-D tensors to another type, keeping its metadata.
    Requant(commands::requant::Args),
    /// Write a synthetic Mistral-shaped GGUF of about a given size (for benchmarks).
    SynthGguf(commands::synth_gguf::Args),
    /// Write a synthetic Wanda-pruned Mistral-7B-Instruct-v0.2-shaped Hugging Face checkpoint (safetensors shards).
    Synth(commands::synth::Args),
    /// Convert a pruned Hugging Face checkpoint to quantized GGUF shards, keeping the pruned zeros.
    Convert(commands::convert::Args),
    /// Check a converted model: manifest hashes, shard sizes, GGUF structure and tensor shapes.
    Verify(commands::verify::Args),
    /// Measure perplexity on a text as llama.cpp does; save or compare next-token distributions (KL divergence).
    Perplexity(commands::perplexity::Args),
    /// Prune every linear layer of a GGUF model or a Hugging Face checkpoint (Wanda or magnitude).
    Prune(commands::prune::Args),
    /// Add or update a converted model in a deployment's catalog (models.json).
    Publish(commands::publish::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Tokenize(args) => commands::tokenize::run(&args),
        Command::ChatPrompt(args) => commands::chat_prompt::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Manifest(args) => commands::manifest::run(&args),
        Command::Split(args) => commands::split::run(&args),
        Command::Requant(args) => commands::requant::run(&args),
        Command::SynthGguf(args) => commands::synth_gguf::run(&args),
        Command::Synth(args) => commands::synth::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Verify(args) => commands::verify::run(&args),
        Command::Perplexity(args) => commands::perplexity::run(&args),
        Command::Prune(args) => commands::prune::run(&args),
        Command::Publish(args) => commands::publish::run(&args),
    }
}

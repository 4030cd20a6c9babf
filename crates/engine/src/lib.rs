//! `sprig-engine`: runs llama-family quantized GGUF models on Sprig's own
//! quantized kernels ([`kernels`]); candle reads and writes GGUF, quantizes
//! and samples.
//!
//! The engine knows nothing of browsers: it reads models from any byte source
//! ([`gguf`]), runs the quantized forward pass with a KV cache ([`model`]) on
//! [`kernels`] (wasm relaxed SIMD or `simd128`, portable loops natively, all
//! bit-identical),
//! tokenizes from GGUF metadata ([`tokenizer`]), builds chat prompts ([`chat`]),
//! samples ([`sample`]) and streams text ([`stream`]) through a step API
//! ([`session`]). [`quant`] quantizes f32 weights to GGUF types, optionally
//! keeping the exact zeros of pruned weights. It compiles for native targets and for
//! `wasm32-unknown-unknown` with `+simd128`.
//!
//! A chat turn, from a GGUF file to streamed text:
//!
//! ```no_run
//! use sprig_engine::{ChatMessage, GgufFile, Role, SamplingParams, Session};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::fs::File::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let mut gguf = GgufFile::open(std::io::BufReader::new(file))?;
//! let mut session = Session::load(&mut gguf)?;
//! let prompt = session.chat_prompt(&[ChatMessage::new(Role::User, "What is the capital of France?")])?;
//! let (ids, stats) = session.generate(&prompt, SamplingParams::greedy(32), &mut |text| print!("{text}"))?;
//! println!("\n{} tokens at {:.1} tok/s", ids.len(), stats.decode_tok_s);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "bench")]
pub mod bandwidth;
pub mod bench;
pub mod chat;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod sample;
pub mod self_test;
pub mod sentencepiece;
pub mod session;
pub mod stream;
pub mod synthetic;
pub mod tokenizer;

pub use chat::{ChatFormat, ChatMessage, Role};
pub use gguf::{GgufError, GgufFile, ModelInfo};
pub use model::{LlamaConfig, Model, ModelError};
pub use sample::SamplingParams;
pub use session::{Session, SessionError, Step, StopReason, TurnStats};
pub use tokenizer::Tokenizer;

/// Version of this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether this build uses wasm SIMD (`+simd128`) kernels.
pub const SIMD128: bool = cfg!(target_feature = "simd128");

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

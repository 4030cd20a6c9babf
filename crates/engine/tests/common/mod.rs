//! Shared helpers of the engine's integration tests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_engine::GgufFile;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file fetched by `scripts/fetch-models`.
pub fn model_file(name: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-models", p.display());
    p
}

/// The demo model, SmolLM2-135M-Instruct Q4_1.
pub fn demo_model() -> PathBuf {
    model_file("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Mistral's tokenizer as GGUF metadata.
pub fn mistral_tokenizer_metadata() -> Vec<(String, Value)> {
    let bytes = std::fs::read(model_file("tokenizer.model.v1")).unwrap();
    SentencePieceModel::parse(&bytes).unwrap().gguf_metadata()
}

/// A tiny Mistral-shaped GGUF with the real Mistral tokenizer, in memory.
pub fn tiny_mistral_bytes(spec: &SyntheticSpec) -> Vec<u8> {
    write_gguf(spec, &mistral_tokenizer_metadata()).unwrap()
}

/// Opens GGUF bytes.
pub fn open(bytes: Vec<u8>) -> GgufFile<Cursor<Vec<u8>>> {
    GgufFile::open(Cursor::new(bytes)).unwrap()
}

/// A committed fixture, parsed.
pub fn fixture(name: &str) -> serde_json::Value {
    let p = root().join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

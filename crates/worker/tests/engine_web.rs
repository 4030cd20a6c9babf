//! The engine in headless Chromium: loads the real demo model (fetched over
//! HTTP from the test server that `scripts/test` starts on the models/ folder)
//! inside a dedicated worker, through the chunked byte source, and checks that
//! greedy generation gives the same ids as the native engine
//! (tests/fixtures/smollm2_greedy.json, which the native tests also check),
//! and that every position's logits for one chunk of the held-out quality
//! text are the native engine's bit for bit (tests/fixtures/smollm2_chunk_logits.json).
//! `scripts/test` runs it in both worker builds: simd128, and relaxed SIMD.
#![cfg(target_arch = "wasm32")]

mod common;

use sprig_engine::gguf::SourceReader;
use sprig_engine::{GgufFile, SamplingParams, Session};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const FIXTURE: &str = include_str!("../../../tests/fixtures/smollm2_greedy.json");
const CHUNK_LOGITS: &str = include_str!("../../../tests/fixtures/smollm2_chunk_logits.json");

#[wasm_bindgen_test]
async fn greedy_generation_matches_native() {
    let build = if cfg!(feature = "relaxed-simd") { "relaxed-simd" } else { "simd128" };
    assert_eq!(sprig_engine::kernels::BUILD, build);
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(fixture["prompt_ids"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(fixture["ids"].clone()).unwrap();

    let store = common::fetch_chunks(common::model_url()).await;
    let mut file = GgufFile::open(SourceReader::new(store)).unwrap();
    let mut session = Session::load(&mut file).unwrap();
    let mut text = String::new();
    let (ids, stats) = session.generate(&prompt, SamplingParams::greedy(want.len()), &mut |t| text.push_str(t)).unwrap();
    web_sys::console::log_1(
        &format!("wasm ({build}): prefill {:.1} tok/s, decode {:.1} tok/s, text {text:?}", stats.prefill_tok_s, stats.decode_tok_s).into(),
    );
    assert_eq!(ids, want, "wasm text {text:?}");
}

/// What `sprig perplexity` computes for a chunk (every position's logits),
/// computed in the browser: the same bytes as natively, so every quality
/// figure measured natively (docs/quality.md) holds in the browser.
#[wasm_bindgen_test]
async fn a_chunks_logits_equal_native_bit_for_bit() {
    use sha2::{Digest, Sha256};
    let fixture: serde_json::Value = serde_json::from_str(CHUNK_LOGITS).unwrap();
    let ids: Vec<u32> = serde_json::from_value(fixture["ids"].clone()).unwrap();
    let want_argmax: Vec<usize> = serde_json::from_value(fixture["argmax"].clone()).unwrap();

    let store = common::fetch_chunks(common::model_url()).await;
    let mut file = GgufFile::open(SourceReader::new(store)).unwrap();
    let mut model = sprig_engine::Model::load(&mut file).unwrap();
    let logits = model.forward_all(&ids).unwrap();
    let vocab = logits.len() / ids.len();
    let argmax: Vec<usize> =
        logits.chunks(vocab).map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)).collect();
    assert_eq!(argmax, want_argmax, "each position's top token");
    let mut hash = Sha256::new();
    for x in &logits {
        hash.update(x.to_le_bytes());
    }
    let sha256: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha256, fixture["logits_sha256"].as_str().unwrap(), "the logits' bytes ({})", sprig_engine::kernels::BUILD);
}

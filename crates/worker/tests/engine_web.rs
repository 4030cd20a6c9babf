//! The engine in headless Chromium: loads the real demo model (fetched over
//! HTTP from the test server that `scripts/test` starts on the models/ folder)
//! inside a dedicated worker, through the chunked byte source, and checks that
//! greedy generation gives the same ids as the native engine
//! (tests/fixtures/smollm2_greedy.json, which the native tests also check).
//! `scripts/test` runs it in both worker builds: simd128, and relaxed SIMD.
#![cfg(target_arch = "wasm32")]

mod common;

use sprig_engine::gguf::SourceReader;
use sprig_engine::{GgufFile, SamplingParams, Session};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const FIXTURE: &str = include_str!("../../../tests/fixtures/smollm2_greedy.json");

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

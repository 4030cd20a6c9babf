//! The engine in headless Chromium: loads the real demo model (fetched over
//! HTTP from the test server that `scripts/test` starts on the models/ folder)
//! inside a dedicated worker, through the chunked byte source, and checks that
//! greedy generation gives the same ids as the native engine
//! (tests/fixtures/smollm2_greedy.json, which the native tests also check).
#![cfg(target_arch = "wasm32")]

use candle_core::Device;
use js_sys::Uint8Array;
use sprig_engine::gguf::{ChunkedBytes, SourceReader};
use sprig_engine::{GgufFile, SamplingParams, Session};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const FIXTURE: &str = include_str!("../../../tests/fixtures/smollm2_greedy.json");
const CHUNK: usize = 4 << 20;

async fn fetch_chunks(url: &str) -> ChunkedBytes {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let resp: web_sys::Response = JsFuture::from(scope.fetch_with_str(url)).await.expect("fetch failed").unchecked_into();
    assert!(resp.ok(), "GET {url}: HTTP {}", resp.status());
    let buf = JsFuture::from(resp.array_buffer().expect("no body")).await.expect("body read failed");
    let bytes = Uint8Array::new(&buf);
    let len = bytes.length() as usize;
    let mut store = ChunkedBytes::new(len as u64, CHUNK);
    for (i, start) in (0..len).step_by(CHUNK).enumerate() {
        let end = (start + CHUNK).min(len);
        store.put(i, bytes.subarray(start as u32, end as u32).to_vec()).expect("chunk");
    }
    store
}

#[wasm_bindgen_test]
async fn greedy_generation_matches_native() {
    let url = option_env!("SPRIG_TEST_MODEL_URL")
        .expect("SPRIG_TEST_MODEL_URL must name the demo model's URL at build time (scripts/test sets it)");
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(fixture["prompt_ids"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(fixture["ids"].clone()).unwrap();

    let store = fetch_chunks(url).await;
    let mut file = GgufFile::open(SourceReader::new(store)).unwrap();
    let mut session = Session::load(&mut file, &Device::Cpu).unwrap();
    let mut text = String::new();
    let (ids, stats) = session.generate(&prompt, SamplingParams::greedy(want.len()), &mut |t| text.push_str(t)).unwrap();
    web_sys::console::log_1(
        &format!(
            "wasm: prefill {:.1} tok/s, decode {:.1} tok/s, text {text:?}",
            stats.prefill_tok_s, stats.decode_tok_s
        )
        .into(),
    );
    assert_eq!(ids, want, "wasm text {text:?}");
}

//! Shared by the wasm tests and the benchmark: the demo model, fetched over
//! HTTP into the chunked byte source the worker uses.

use js_sys::Uint8Array;
use sprig_engine::gguf::ChunkedBytes;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

const CHUNK: usize = 4 << 20;

/// The URL of the demo model, given at build time by scripts/test or scripts/bench.
pub fn model_url() -> &'static str {
    match option_env!("SPRIG_TEST_MODEL_URL") {
        Some(url) => url,
        None => panic!("SPRIG_TEST_MODEL_URL must name the demo model's URL at build time (scripts/test sets it)"),
    }
}

/// Fetches `url` into 4 MiB chunks.
pub async fn fetch_chunks(url: &str) -> ChunkedBytes {
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

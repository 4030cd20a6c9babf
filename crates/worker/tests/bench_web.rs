//! Not a test: the `sprig bench` benchmark inside a dedicated worker in headless
//! Chromium, run by `scripts/bench` (never by `scripts/test`). Prints its
//! figures; asserts nothing about them.
#![cfg(target_arch = "wasm32")]

use candle_core::Device;
use js_sys::Uint8Array;
use sprig_engine::bench;
use sprig_engine::gguf::{ChunkedBytes, SourceReader};
use sprig_engine::{GgufFile, Session};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn bench_demo_model() {
    let url = option_env!("SPRIG_TEST_MODEL_URL").expect("SPRIG_TEST_MODEL_URL (scripts/bench sets it)");
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let resp: web_sys::Response = JsFuture::from(scope.fetch_with_str(url)).await.unwrap().unchecked_into();
    let bytes = Uint8Array::new(&JsFuture::from(resp.array_buffer().unwrap()).await.unwrap());
    let len = bytes.length() as usize;
    let chunk = 4 << 20;
    let mut store = ChunkedBytes::new(len as u64, chunk);
    for (i, start) in (0..len).step_by(chunk).enumerate() {
        store.put(i, bytes.subarray(start as u32, (start + chunk).min(len) as u32).to_vec()).unwrap();
    }
    let mut session = Session::load(&mut GgufFile::open(SourceReader::new(store)).unwrap(), &Device::Cpu).unwrap();
    let runs = bench::run(&mut session, 38, 64, 3, &mut |i, r| {
        web_sys::console::log_1(&format!("wasm {}", bench::describe(i, r)).into());
    })
    .unwrap();
    web_sys::console::log_1(&format!("wasm {}", bench::summary(&runs)).into());
}

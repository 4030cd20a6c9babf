//! Not a test: the `sprig bench` benchmark inside a dedicated worker in headless
//! Chromium, run by `scripts/bench` (never by `scripts/test`). Prints its
//! figures; asserts nothing about them.
#![cfg(target_arch = "wasm32")]

mod common;

use sprig_engine::bench;
use sprig_engine::gguf::SourceReader;
use sprig_engine::{GgufFile, Session};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn bench_demo_model() {
    let store = common::fetch_chunks(common::model_url()).await;
    let mut session = Session::load(&mut GgufFile::open(SourceReader::new(store)).unwrap()).unwrap();
    let runs = bench::run(&mut session, 38, 64, 3, &mut |i, r| {
        web_sys::console::log_1(&format!("wasm {}", bench::describe(i, r)).into());
    })
    .unwrap();
    web_sys::console::log_1(&format!("wasm {}", bench::summary(&runs)).into());
}

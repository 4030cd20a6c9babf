//! wasm-bindgen tests run inside a real dedicated Web Worker in headless Chromium:
//! the protocol codec through JS values, and the engine's candle backend in wasm.
#![cfg(target_arch = "wasm32")]

use sprig_protocol::codec::{decode, encode, CodecError};
use sprig_protocol::{Request, PROTOCOL_VERSION};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
fn runs_in_a_dedicated_worker_scope() {
    let global = js_sys::global();
    assert!(global.is_instance_of::<web_sys::DedicatedWorkerGlobalScope>());
}

#[wasm_bindgen_test]
fn request_round_trips_through_a_js_value() {
    let value = encode(Request::Hello { nonce: 9 }).unwrap();
    let v = js_sys::Reflect::get(&value, &"v".into()).unwrap();
    assert_eq!(v.as_f64(), Some(f64::from(PROTOCOL_VERSION)));
    assert_eq!(decode::<Request>(value).unwrap(), Request::Hello { nonce: 9 });
}

#[wasm_bindgen_test]
fn garbage_is_a_decode_error() {
    let err = decode::<Request>(JsValue::from_str("rm -rf /")).unwrap_err();
    assert!(matches!(err, CodecError::Decode(_)), "{err:?}");
}

#[wasm_bindgen_test]
fn another_version_is_refused() {
    let value = js_sys::JSON::parse(r#"{"v":999,"body":{"type":"stop"}}"#).unwrap();
    let err = decode::<Request>(value).unwrap_err();
    assert!(matches!(err, CodecError::Protocol(_)), "{err:?}");
}

#[wasm_bindgen_test]
fn hello_runs_the_engine_in_wasm_with_simd() {
    let info = sprig_worker::worker_info().unwrap();
    assert_eq!(info.self_test, "[[19, 22], [43, 50]]");
    assert!(info.simd128, "the worker must be built with +simd128");
}

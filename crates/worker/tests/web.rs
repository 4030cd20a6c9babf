//! wasm-bindgen tests run inside a real dedicated Web Worker in headless Chromium:
//! the protocol codec through JS values, the workers' messages to each other, and
//! the engine's self-test (a product by its quantized kernels) in wasm.
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

mod peer_messages {
    use sprig_protocol::ModelSource;
    use sprig_worker::peer_message::{PeerMessage, PeerMessageError};
    use wasm_bindgen::JsValue;
    use wasm_bindgen_test::*;

    fn json(text: &str) -> JsValue {
        js_sys::JSON::parse(text).unwrap()
    }

    #[wasm_bindgen_test]
    fn each_message_round_trips() {
        let channel = web_sys::MessageChannel::new().unwrap();
        let init = PeerMessage::Init {
            rank: 2,
            count: 3,
            source: ModelSource::Manifest { url: "https://s.example/m.json".into() },
            files: Vec::new(),
            ports: vec![Some(channel.port1()), None, Some(channel.port2())],
        };
        let (value, transfer) = init.encode();
        assert!(PeerMessage::is_init(&value));
        assert_eq!(transfer.length(), 2, "the ports are transferred");
        match PeerMessage::decode(&value).unwrap() {
            PeerMessage::Init { rank: 2, count: 3, source, files, ports } => {
                assert_eq!(source, ModelSource::Manifest { url: "https://s.example/m.json".into() });
                assert!(files.is_empty());
                assert_eq!(ports.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, true]);
            }
            other => panic!("{other:?}"),
        }
        let run = PeerMessage::decode(&PeerMessage::Run { pos: 7, tokens: vec![1, 2, 3] }.encode().0).unwrap();
        assert!(matches!(run, PeerMessage::Run { pos: 7, ref tokens } if tokens == &[1, 2, 3]), "{run:?}");
        let loaded = PeerMessage::decode(&PeerMessage::Loaded { memory: 1 << 31, positions: 1 << 40 }.encode().0).unwrap();
        assert!(matches!(loaded, PeerMessage::Loaded { memory: 2_147_483_648, positions: 1_099_511_627_776 }), "{loaded:?}");
        let data = js_sys::Float32Array::from([0.5f32, -1.0].as_slice());
        let (value, transfer) = PeerMessage::Block { data }.encode();
        assert_eq!(transfer.length(), 1, "the block's buffer is transferred");
        match PeerMessage::decode(&value).unwrap() {
            PeerMessage::Block { data } => assert_eq!(data.to_vec(), [0.5, -1.0]),
            other => panic!("{other:?}"),
        }
        let error = PeerMessage::decode(&PeerMessage::Error { message: "no".into() }.encode().0).unwrap();
        assert!(matches!(error, PeerMessage::Error { ref message } if message == "no"));
    }

    #[wasm_bindgen_test]
    fn a_missing_or_wrong_field_is_an_error_never_a_default() {
        let field = |kind, field| Err(PeerMessageError::Field { kind, field });
        let decode = |text: &str| PeerMessage::decode(&json(text)).map(|m| format!("{m:?}"));
        assert_eq!(decode(r#"{"kind":"run","tokens":null}"#), field("run", "pos"));
        assert_eq!(decode(r#"{"kind":"run","pos":-1}"#), field("run", "pos"));
        assert_eq!(decode(r#"{"kind":"run","pos":1.5}"#), field("run", "pos"));
        assert_eq!(decode(r#"{"kind":"run","pos":3,"tokens":[1,2]}"#), field("run", "tokens"));
        assert_eq!(decode(r#"{"kind":"loaded","memory":5}"#), field("loaded", "positions"));
        assert_eq!(decode(r#"{"kind":"loaded","memory":"5","positions":1}"#), field("loaded", "memory"));
        assert_eq!(decode(r#"{"kind":"block","data":[1,2]}"#), field("block", "data"));
        assert_eq!(decode(r#"{"kind":"error"}"#), field("error", "message"));
        assert_eq!(decode(r#"{"kind":"init","rank":1,"count":2,"source":"{}","files":[],"ports":[]}"#), field("init", "source"));
        assert_eq!(
            decode(r#"{"kind":"init","rank":1,"count":2,"source":"{\"type\":\"url\",\"url\":\"u\"}","files":[],"ports":[1]}"#),
            field("init", "ports")
        );
        assert_eq!(decode(r#"{"kind":"dance"}"#), Err(PeerMessageError::Kind("dance".into())));
        assert_eq!(decode(r#"{"pos":1}"#), Err(PeerMessageError::Kind(String::new())));
        assert_eq!(decode("42"), Err(PeerMessageError::Kind(String::new())));
    }
}

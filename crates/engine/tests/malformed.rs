//! Bad model files give clear errors naming what is wrong, and never a panic.

mod common;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::Device;
use sprig_engine::synthetic::SyntheticSpec;
use sprig_engine::{GgufError, GgufFile, ModelError, Session, SessionError};

fn tiny() -> Vec<u8> {
    common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral())
}

fn load(bytes: Vec<u8>) -> Result<Session, String> {
    let mut file = GgufFile::open(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    Session::load(&mut file).map_err(|e| e.to_string())
}

/// Rewrites a GGUF file with its metadata changed by `edit`.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let mut cur = Cursor::new(bytes.to_vec());
    let content = Content::read(&mut cur).unwrap();
    let mut meta: Vec<(String, Value)> = content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    edit(&mut meta);
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, _)> = names.iter().map(|n| ((*n).clone(), content.tensor(&mut cur, n, &Device::Cpu).unwrap())).collect();
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, _)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta_refs, &tensor_refs).unwrap();
    out.into_inner()
}

#[test]
fn the_synthetic_file_itself_loads() {
    load(tiny()).unwrap();
}

#[test]
fn truncation_anywhere_is_an_error_not_a_panic() {
    let bytes = tiny();
    let n = bytes.len();
    let mut cuts: Vec<usize> = (0..64).map(|i| i * n / 64).collect();
    cuts.extend([4, 8, 23, n - 1]);
    for cut in cuts {
        let r = catch_unwind(AssertUnwindSafe(|| load(bytes[..cut].to_vec())));
        match r {
            Ok(Err(msg)) => assert!(!msg.is_empty()),
            Ok(Ok(_)) => panic!("a file cut at {cut} of {n} loaded"),
            Err(_) => panic!("a file cut at {cut} of {n} panicked"),
        }
    }
}

#[test]
fn a_cut_in_the_tensor_data_names_the_tensor() {
    let bytes = tiny();
    let err = load(bytes[..bytes.len() - 100].to_vec()).unwrap_err();
    assert!(err.contains("output.weight"), "{err}");
}

#[test]
fn flipped_header_bytes_never_panic() {
    let bytes = tiny();
    let header_end = {
        let mut c = Cursor::new(bytes.clone());
        Content::read(&mut c).unwrap().tensor_data_offset as usize
    };
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pos = (x as usize) % header_end;
        let mut bad = bytes.clone();
        bad[pos] ^= 1 << ((x >> 32) % 8);
        let r = catch_unwind(AssertUnwindSafe(|| load(bad)));
        assert!(r.is_ok(), "flipping a bit at byte {pos} panicked");
    }
}

#[test]
fn wrong_magic_and_unknown_tensor_type() {
    let mut bytes = tiny();
    bytes[0] = b'X';
    let err = load(bytes).unwrap_err();
    assert!(err.contains("GGUF header"), "{err}");

    let mut bytes = tiny();
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * n_dims;
    bytes[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    let err = load(bytes).unwrap_err();
    assert!(err.contains("99") || err.to_lowercase().contains("dtype"), "{err}");
}

#[test]
fn shape_disagreeing_with_metadata_names_tensor_and_shapes() {
    let bytes = rewrite(&tiny(), |m| {
        for (k, v) in m.iter_mut() {
            if k == "llama.feed_forward_length" {
                *v = Value::U32(96);
            }
        }
    });
    let mut file = GgufFile::open(Cursor::new(bytes)).unwrap();
    match Session::load(&mut file).unwrap_err() {
        SessionError::Model(e) => match *e {
            ModelError::Gguf(GgufError::Shape { name, expected, actual }) => {
                // The down projection is checked first: its block size sets
                // how the hidden units may be split across workers.
                assert_eq!(name, "blk.0.ffn_down.weight");
                assert_eq!(expected, vec![64, 96]);
                assert_eq!(actual, vec![64, 128]);
            }
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_tokenizer_and_model_keys_are_named() {
    let bytes = rewrite(&tiny(), |m| m.retain(|(k, _)| k != "tokenizer.ggml.model"));
    let err = load(bytes).unwrap_err();
    assert!(err.contains("`tokenizer.ggml.model` is missing"), "{err}");

    let bytes = rewrite(&tiny(), |m| m.retain(|(k, _)| k != "llama.attention.head_count"));
    let err = load(bytes).unwrap_err();
    assert!(err.contains("`llama.attention.head_count` is missing"), "{err}");

    let bytes = rewrite(&tiny(), |m| {
        for (k, v) in m.iter_mut() {
            if k == "general.architecture" {
                *v = Value::String("mamba".into());
            }
        }
    });
    let err = load(bytes).unwrap_err();
    assert!(err.contains("`mamba` is not supported"), "{err}");
}

#[test]
fn a_missing_tensor_is_named() {
    let mut cur = Cursor::new(tiny());
    let content = Content::read(&mut cur).unwrap();
    let meta: Vec<(&str, &Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(String, _)> = content
        .tensor_infos
        .keys()
        .filter(|n| *n != "blk.1.attn_v.weight")
        .map(|n| (n.clone(), content.tensor(&mut cur, n, &Device::Cpu).unwrap()))
        .collect();
    let refs: Vec<(&str, _)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta, &refs).unwrap();
    let err = load(out.into_inner()).unwrap_err();
    assert!(err.contains("`blk.1.attn_v.weight` is missing"), "{err}");
}

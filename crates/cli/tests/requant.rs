//! `sprig requant` on the demo model, through the real binary: the new
//! types, the unchanged metadata and tensor order, weights close to the
//! input's, and greedy generation from the result.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::Device;
use sprig_engine::GgufFile;

use common::{greedy_chat, model_file, sprig, TempDir, MODEL};

fn header(path: &str) -> Content {
    Content::read(&mut BufReader::new(File::open(path).unwrap())).unwrap()
}

/// Tensor names in file order (by data offset).
fn order(content: &Content) -> Vec<String> {
    let mut names: Vec<_> = content.tensor_infos.iter().map(|(n, t)| (t.offset, n.clone())).collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

/// The metadata as text (`Value` has no `PartialEq`).
fn metadata(content: &Content) -> BTreeMap<String, String> {
    content.metadata.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect()
}

fn open(path: &str) -> GgufFile<BufReader<File>> {
    GgufFile::open(BufReader::new(File::open(path).unwrap())).unwrap()
}

fn values(model: &mut GgufFile<BufReader<File>>, name: &str) -> Vec<f32> {
    let t = model.tensor(name, &Device::Cpu).unwrap();
    t.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn requant_demo_model_to_q4_0_keeps_metadata_and_generates() {
    let dir = TempDir::new("requant");
    let out = dir.path("smollm2-q4_0.gguf");
    let (ok, table, err) = sprig(&["requant", model_file(MODEL), &out, "--quant", "q4_0"]);
    assert!(ok, "{err}");
    assert!(table.contains("211 of 272 tensors re-quantized to Q4_0; kept: F32 ×61"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("token_embd.weight") && l.contains("Q8_0   -> Q4_0")), "{table}");

    // Types: every 2-D tensor whose rows fit Q4_0's blocks of 32 is Q4_0; the
    // others (the F32 norms) keep their type. Same names, shapes and order.
    let (before, after) = (header(MODEL), header(&out));
    assert_eq!(order(&after), order(&before));
    for (name, t) in &after.tensor_infos {
        let old = &before.tensor_infos[name];
        assert_eq!(t.shape.dims(), old.shape.dims(), "{name}");
        let fits = matches!(t.shape.dims(), [_, cols] if cols % 32 == 0);
        let expected = if fits { GgmlDType::Q4_0 } else { old.ggml_dtype };
        assert_eq!(t.ggml_dtype, expected, "{name} ({:?})", t.shape.dims());
    }
    assert!(after.tensor_infos.values().filter(|t| t.ggml_dtype == GgmlDType::Q4_0).count() == 211);

    // Metadata: the input's, tokenizer included, but for the file type (Q4_0 is 2).
    let (mut a, mut b) = (metadata(&after), metadata(&before));
    assert!(matches!(before.metadata["general.file_type"], Value::U32(3)));
    assert!(matches!(after.metadata["general.file_type"], Value::U32(2)));
    a.remove("general.file_type");
    b.remove("general.file_type");
    assert_eq!(a, b);

    // Weights: 1-D tensors bit for bit, matrices within Q4_0's error.
    let (mut old, mut new) = (open(MODEL), open(&out));
    for (name, t) in &before.tensor_infos {
        let (x, y) = (values(&mut old, name), values(&mut new, name));
        if t.shape.dims().len() == 1 {
            assert!(x == y, "{name} changed");
            continue;
        }
        let err = x.iter().zip(&y).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
        let norm = x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>();
        let rel = (err / norm).sqrt();
        assert!(rel < 0.15, "{name}: relative RMS error {rel:.3}");
    }

    // The engine loads it and answers greedily.
    let (ok, text, err) = greedy_chat(&out, "What is the capital of France?", 16, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("generated") && !text.trim().is_empty(), "{text}\n{err}");
    assert!(text.contains("Paris"), "the Q4_0 model's greedy answer: {text}");
}

#[test]
fn requant_refuses_to_replace_a_file_or_its_input() {
    let dir = TempDir::new("requant-refuse");
    let out = dir.path("exists.gguf");
    std::fs::write(&out, b"keep me").unwrap();
    let (ok, _, err) = sprig(&["requant", model_file(MODEL), &out, "--quant", "q8_0"]);
    assert!(!ok && err.contains("exists; pass --force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let (ok, _, err) = sprig(&["requant", MODEL, MODEL, "--quant", "q8_0", "--force"]);
    assert!(!ok && err.contains("is the input"), "{err}");
}

#[test]
fn requant_names_a_missing_or_damaged_input() {
    let dir = TempDir::new("requant-bad");
    let missing = dir.path("missing.gguf");
    let (ok, _, err) = sprig(&["requant", &missing, &dir.path("out.gguf"), "--quant", "q4_0"]);
    assert!(!ok && err.contains("cannot open") && err.contains("missing.gguf"), "{err}");
    // A file cut in the middle of its tensor data.
    let cut = dir.path("cut.gguf");
    let bytes = std::fs::read(model_file(MODEL)).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = sprig(&["requant", &cut, &dir.path("out.gguf"), "--quant", "q4_0"]);
    assert!(!ok && err.contains("cut.gguf") && err.contains("tensor"), "{err}");
    assert!(!Path::new(&dir.path("out.gguf")).exists());
    let (ok, _, err) = sprig(&["requant", MODEL, &dir.path("out.gguf"), "--quant", "q9_9"]);
    assert!(!ok && err.contains("q9_9"), "{err}");
}

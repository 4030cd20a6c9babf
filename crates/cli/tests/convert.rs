//! `sprig convert` and `sprig verify` end to end, on a synthetic Wanda-pruned
//! Mistral-shaped Hugging Face checkpoint made by `sprig synth` with Mistral's
//! real `tokenizer.model`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;
use sprig_engine::{GgufFile, Model, Tokenizer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

use common::sprig_merged as sprig;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sprig-convert-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The synthetic tiny checkpoint, made once per test run.
fn tiny() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("hf-tiny");
        let tok = root().join("models/tokenizer.model.v1");
        assert!(tok.exists(), "run scripts/fetch-models");
        let (ok, out) = sprig(&[
            "synth",
            "--shape",
            "tiny",
            "--sparsity",
            "0.3",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--output",
            dir.to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        dir
    })
}

/// Converts `input` into a fresh directory named after `tag` (tests run in parallel).
fn convert(tag: &str, quant: &str, input: &Path, extra: &[&str]) -> PathBuf {
    let out = scratch(&format!("out-{tag}-{quant}"));
    let mut args =
        vec!["convert", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--quant", quant, "--shard-size", "6MB"];
    args.extend_from_slice(extra);
    let (ok, text) = sprig(&args);
    assert!(ok, "convert --quant {quant} failed:\n{text}");
    out
}

fn shards(dir: &Path) -> Vec<PathBuf> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["shards"].as_array().unwrap().iter().map(|s| dir.join(s["url"].as_str().unwrap())).collect()
}

fn open(dir: &Path) -> GgufFile<std::io::BufReader<std::fs::File>> {
    let readers = shards(dir).into_iter().map(|p| std::io::BufReader::new(std::fs::File::open(p).unwrap())).collect();
    GgufFile::open_split(readers).unwrap()
}

fn safetensor_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect();
    v.sort();
    v
}

#[test]
fn f16_conversion_gives_the_logits_of_candle_transformers_mistral_on_the_safetensors() {
    let out = convert("logits", "f16", tiny(), &[]);
    let tokens: Vec<u32> = vec![1, 733, 16289, 28793, 22557, 28725, 910, 460, 368, 28804, 733, 28748, 16289, 28793];
    let mut file = open(&out);
    let mut model = Model::load(&mut file).unwrap();
    let ours = model.forward(&tokens).unwrap();

    let cfg: candle_transformers::models::mistral::Config =
        serde_json::from_slice(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap();
    // SAFETY: the test's own files, not modified while mapped.
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&safetensor_paths(tiny()), DType::F32, &Device::Cpu).unwrap() };
    let mut reference = candle_transformers::models::mistral::Model::new(&cfg, vb).unwrap();
    let input = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let theirs = reference.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();

    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 2e-3 * scale.max(1.0), "max |difference| {worst} for logits up to {scale}");
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    assert_eq!(argmax(&ours), argmax(&theirs));
}

/// Every zero of the checkpoint's linear weights (rows permuted as the
/// converter permutes q/k) is exactly 0 in the converted model.
fn assert_zeros_kept(out: &Path, dtype_expected: GgmlDType) {
    let mut file = open(out);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap();
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let mut checked = 0;
    for path in safetensor_paths(tiny()) {
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            let Some(rest) = name.strip_prefix("model.layers.") else { continue };
            let (layer, kind) = rest.split_once('.').unwrap();
            let (gguf, heads) = match kind {
                "self_attn.q_proj.weight" => ("attn_q", Some(heads)),
                "self_attn.k_proj.weight" => ("attn_k", Some(kv)),
                "self_attn.v_proj.weight" => ("attn_v", None),
                "self_attn.o_proj.weight" => ("attn_output", None),
                "mlp.gate_proj.weight" => ("ffn_gate", None),
                "mlp.up_proj.weight" => ("ffn_up", None),
                "mlp.down_proj.weight" => ("ffn_down", None),
                _ => continue,
            };
            let (rows, cols) = (view.shape()[0], view.shape()[1]);
            let src: Vec<f32> = view.data().chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
            let q = file.tensor(&format!("blk.{layer}.{gguf}.weight"), &Device::Cpu).unwrap();
            assert_eq!(q.dtype(), dtype_expected, "{name}");
            let got = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut zeros = 0;
            for r in 0..rows {
                let from = heads.map_or(r, |h| {
                    let dim = rows / h;
                    let (head, w) = (r / dim, r % dim);
                    head * dim + (w % 2) * (dim / 2) + w / 2
                });
                for c in 0..cols {
                    if src[from * cols + c] == 0.0 {
                        zeros += 1;
                        assert_eq!(got[r * cols + c], 0.0, "{name}: pruned weight ({from}, {c}) is not 0 after {dtype_expected:?}");
                    }
                }
            }
            assert_eq!(zeros, rows * ((cols as f64 * 0.3).round() as usize), "{name}: 30 % zeros per row in the checkpoint");
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * cfg["num_hidden_layers"].as_u64().unwrap() as usize);
}

#[test]
fn every_quant_type_converts_verifies_loads_generates_and_keeps_every_pruned_zero() {
    let cases = [
        ("q8_0", GgmlDType::Q8_0),
        ("q6_k", GgmlDType::Q6K),
        ("q5_k", GgmlDType::Q5K),
        ("q4_k", GgmlDType::Q4K),
        ("q4_0", GgmlDType::Q4_0),
        ("q3_k", GgmlDType::Q3K),
        ("q2_k", GgmlDType::Q2K),
    ];
    for (quant, dtype) in cases {
        let out = convert("types", quant, tiny(), &[]);
        let (ok, text) = sprig(&["verify", out.to_str().unwrap()]);
        assert!(ok && text.starts_with("ok: "), "verify {quant}: {text}");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("conversion.json")).unwrap()).unwrap();
        for t in report["tensors"].as_array().unwrap() {
            assert_eq!(t["zeros_kept"], t["zeros"], "{quant}: {t}");
        }
        let sparsity = report["pruning"]["sparsity"].as_f64().unwrap();
        assert!((sparsity - 0.3).abs() < 0.01, "{sparsity}");
        assert_zeros_kept(&out, dtype);
        let first = shards(&out)[0].clone();
        let (ok, text) = sprig(&[
            "generate",
            "--model",
            first.to_str().unwrap(),
            "--prompt",
            "Hello",
            "--chat",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
        ]);
        assert!(ok, "generate with {quant}: {text}");
        assert!(text.contains("generated 4 tokens") || text.contains("[Eos]"), "{quant}: {text}");
    }
}

#[test]
fn requant_keeps_pruned_zeros_by_default_like_convert_and_mixes_q4_k_m() {
    // The pruned checkpoint as an F16 GGUF: its zeros are the pruned weights.
    let f16 = convert("requant", "f16", tiny(), &[]);
    let input = shards(&f16).remove(0);
    let source = common::dequantized(input.to_str().unwrap());
    let zeros = |name: &str| source[name].2.iter().filter(|v| **v == 0.0).count();
    assert!(zeros("blk.0.ffn_up.weight") > 0);
    let requant = |quant: &str, extra: &[&str]| {
        let out = scratch(&format!("requant-{quant}{}.gguf", extra.len()));
        let mut args = vec!["requant", input.to_str().unwrap(), out.to_str().unwrap(), "--quant", quant];
        args.extend_from_slice(extra);
        let (ok, text) = sprig(&args);
        assert!(ok, "{text}");
        common::dequantized(out.to_str().unwrap())
    };
    let zeros_lost = |values: &std::collections::BTreeMap<String, (GgmlDType, Vec<usize>, Vec<f32>)>| -> usize {
        values
            .iter()
            .filter(|(n, _)| n.starts_with("blk.") && !n.ends_with("_norm.weight"))
            .map(|(n, (_, _, v))| source[n].2.iter().zip(v).filter(|(s, q)| **s == 0.0 && **q != 0.0).count())
            .sum()
    };
    // Q4_K (a per-block minimum): zeros kept by default, not by candle's plain quantizer.
    let kept = requant("q4_k", &[]);
    assert_eq!(kept["blk.0.ffn_up.weight"].0, GgmlDType::Q4K);
    assert_eq!(zeros_lost(&kept), 0);
    let plain = requant("q4_k", &["--plain"]);
    assert!(zeros_lost(&plain) > 0, "plain Q4_K moves some pruned zeros");
    // The Q4_K_M mix, read from the GGUF names, as convert gives it; zeros kept.
    let mix = requant("q4_k_m", &[]);
    assert_eq!(mix["output.weight"].0, GgmlDType::Q6K);
    assert_eq!(mix["blk.1.attn_v.weight"].0, GgmlDType::Q6K);
    assert_eq!(mix["blk.0.attn_v.weight"].0, GgmlDType::Q4K);
    assert_eq!(mix["blk.0.attn_norm.weight"].0, GgmlDType::F32);
    assert_eq!(zeros_lost(&mix), 0);
    // A type whose blocks cannot hold 0 exactly asks for --plain.
    let out = scratch("requant-q4_1.gguf");
    let (ok, text) = sprig(&["requant", input.to_str().unwrap(), out.to_str().unwrap(), "--quant", "q4_1"]);
    assert!(!ok && text.contains("quantize it plainly"), "{text}");
}

#[test]
fn q4_k_m_mixes_types_like_llama_cpp_and_records_provenance() {
    let out = convert("mix", "q4_k_m", tiny(), &["--name", "Tiny Wanda"]);
    let file = open(&out);
    let types: std::collections::HashMap<String, GgmlDType> =
        file.tensors().into_iter().map(|(n, t)| (n.to_string(), t.ggml_dtype)).collect();
    assert_eq!(types["output.weight"], GgmlDType::Q6K);
    // llama.cpp's use_more_bits with 2 layers: the last one (i >= 7n/8) only.
    assert_eq!(types["blk.1.attn_v.weight"], GgmlDType::Q6K);
    assert_eq!(types["blk.1.ffn_down.weight"], GgmlDType::Q6K);
    assert_eq!(types["blk.0.attn_v.weight"], GgmlDType::Q4K);
    assert_eq!(types["blk.0.ffn_down.weight"], GgmlDType::Q4K);
    assert_eq!(types["blk.1.ffn_up.weight"], GgmlDType::Q4K);
    assert_eq!(types["blk.0.attn_norm.weight"], GgmlDType::F32);
    let meta = file.metadata();
    assert_eq!(meta.string("general.name").unwrap(), "Tiny Wanda");
    assert_eq!(meta.string("sprig.pruning.method").unwrap(), "wanda");
    assert!(meta.string("tokenizer.chat_template").unwrap().contains("[INST]"));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], "Tiny Wanda");
    assert!(manifest["shards"].as_array().unwrap().len() >= 2, "split into shards of at most 6 MB");

    // verify notices a damaged shard, naming it.
    let (ok, text) = sprig(&["verify", out.to_str().unwrap()]);
    assert!(ok, "{text}");
    let last = shards(&out).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&last, bytes).unwrap();
    let (ok, text) = sprig(&["verify", out.to_str().unwrap()]);
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(!ok && text.contains(name) && text.contains("sha256"), "{text}");
}

#[test]
fn tokenizer_metadata_from_tokenizer_model_tokenizes_like_sentencepiece() {
    let out = convert("tokenizer", "q8_0", tiny(), &["--no-compare"]);
    let t = Tokenizer::from_gguf(&open(&out).metadata()).unwrap();
    let fx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/mistral_tokenize.json")).unwrap()).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(t.encode(case["text"].as_str().unwrap()).unwrap(), want, "{}", case["text"]);
    }
}

#[test]
fn the_gguf_python_package_reads_the_same_tensor_table() {
    let out = convert("python", "q4_k_m", tiny(), &["--no-compare"]);
    let script = r#"
import json, sys
from gguf import GGUFReader
rows = []
for path in sys.argv[1:]:
    for t in GGUFReader(path).tensors:
        rows.append([t.name, [int(d) for d in t.shape], t.tensor_type.name])
print(json.dumps(rows))
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    for s in shards(&out) {
        cmd.arg(s);
    }
    let res = cmd.output().expect("python3 runs (scripts/setup installs the gguf package)");
    assert!(res.status.success(), "python gguf: {}", String::from_utf8_lossy(&res.stderr));
    let theirs: Vec<(String, Vec<usize>, String)> = serde_json::from_slice(&res.stdout).unwrap();
    let file = open(&out);
    let mut ours: Vec<(String, Vec<usize>, String)> = file
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            // GGUF lists dimensions innermost first; candle outermost first.
            let dims = t.shape.dims().iter().rev().copied().collect();
            (n.to_string(), dims, format!("{:?}", t.ggml_dtype).replace("K", "_K").to_uppercase())
        })
        .collect();
    let mut theirs = theirs;
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
}

/// Copies the tiny checkpoint to damage it.
fn damaged(name: &str, damage: impl FnOnce(&Path)) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(tiny()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    damage(&dir);
    dir
}

#[test]
fn bad_checkpoints_fail_with_a_clear_message_before_writing_anything() {
    type Damage = Box<dyn FnOnce(&Path)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "missing-shard",
            Box::new(|d: &Path| std::fs::remove_file(d.join("model-00002-of-00003.safetensors")).unwrap()),
            "model-00002-of-00003.safetensors",
        ),
        (
            "bad-index",
            Box::new(|d: &Path| std::fs::write(d.join("model.safetensors.index.json"), "{ not json").unwrap()),
            "model.safetensors.index.json",
        ),
        (
            "wrong-dtype",
            Box::new(|d: &Path| {
                let p = d.join("model-00001-of-00003.safetensors");
                let mut bytes = std::fs::read(&p).unwrap();
                let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap().replacen("\"F16\"", "\"I16\"", 1);
                bytes[8..8 + n].copy_from_slice(header.as_bytes());
                std::fs::write(&p, bytes).unwrap();
            }),
            "I16",
        ),
        (
            "wrong-shape",
            Box::new(|d: &Path| {
                let p = d.join("config.json");
                let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                let ff = cfg["intermediate_size"].as_u64().unwrap();
                cfg["intermediate_size"] = (ff / 2).into();
                std::fs::write(&p, cfg.to_string()).unwrap();
            }),
            "has shape",
        ),
        (
            "truncated",
            Box::new(|d: &Path| {
                let p = d.join("model-00003-of-00003.safetensors");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
            }),
            "model-00003-of-00003.safetensors",
        ),
        ("no-tokenizer", Box::new(|d: &Path| std::fs::remove_file(d.join("tokenizer.model")).unwrap()), "tokenizer.model"),
    ];
    for (name, damage, expect) in cases {
        let input = damaged(name, damage);
        let out = scratch(&format!("bad-out-{name}"));
        let (ok, text) = sprig(&["convert", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--quant", "q8_0"]);
        assert!(!ok, "{name}: converted anyway");
        assert!(text.contains(expect), "{name}: the message should name {expect:?}:\n{text}");
        assert!(!out.exists() && !out.with_extension("part").exists(), "{name}: something was written");
    }
}

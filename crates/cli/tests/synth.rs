//! `sprig synth` through the real binary: tiny synthetic Mistral checkpoints
//! read back independently with the `safetensors` crate (the reference
//! implementation), `serde_json` and `minijinja`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, View};
use serde_json::Value;

const TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tokenizer.model.v1");
const SPARSITY: f64 = 0.3;

/// Runs `sprig` (with Mistral's tokenizer at hand): whether it succeeded, and its stderr.
fn sprig(args: &[&str]) -> (bool, String) {
    common::model_file(TOKENIZER);
    let (ok, _, err) = common::sprig(args);
    (ok, err)
}

/// Runs `sprig synth --shape tiny` into `out` with `extra` arguments; panics on failure.
fn synth(out: &Path, extra: &[&str]) {
    let mut args = vec!["synth", "--shape", "tiny", "--tokenizer", TOKENIZER, "--output", out.to_str().unwrap()];
    args.extend(extra);
    let (ok, err) = sprig(&args);
    assert!(ok, "{err}");
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sprig-cli-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

const LINEAR: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Name -> shape of every tensor of the tiny shape (hidden 256, intermediate
/// 512, 2 layers, 4 heads of 64, 2 key/value heads, vocabulary 32000).
fn tiny_tensors() -> BTreeMap<String, Vec<usize>> {
    let mut t = BTreeMap::new();
    t.insert("model.embed_tokens.weight".to_string(), vec![32_000, 256]);
    t.insert("lm_head.weight".to_string(), vec![32_000, 256]);
    t.insert("model.norm.weight".to_string(), vec![256]);
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![256, 256]),
            ("self_attn.k_proj", vec![128, 256]),
            ("self_attn.v_proj", vec![128, 256]),
            ("self_attn.o_proj", vec![256, 256]),
            ("mlp.gate_proj", vec![512, 256]),
            ("mlp.up_proj", vec![512, 256]),
            ("mlp.down_proj", vec![256, 512]),
            ("input_layernorm", vec![256]),
            ("post_attention_layernorm", vec![256]),
        ] {
            t.insert(format!("{p}.{name}.weight"), shape);
        }
    }
    t
}

/// The number of +0.0 values in each row; panics on a -0.0.
fn zeros_per_row(data: &[u8], cols: usize, dtype: Dtype) -> Vec<usize> {
    let size = dtype.bitsize() / 8;
    data.chunks(cols * size)
        .map(|row| {
            row.chunks(size)
                .filter(|v| {
                    let negative_zero = v[..size - 1].iter().all(|&b| b == 0) && v[size - 1] == 0x80;
                    assert!(!negative_zero, "a -0.0");
                    v.iter().all(|&b| b == 0)
                })
                .count()
        })
        .collect()
}

/// Checks every shard of the checkpoint in `dir` against its index and the
/// tiny shape; returns the values of the embeddings and of the final norm.
fn check_shards(dir: &Path, dtype: Dtype, shards: usize) -> (Vec<u8>, Vec<u8>) {
    let index = json(&dir.join("model.safetensors.index.json"));
    let weight_map = index["weight_map"].as_object().unwrap();
    let expected = tiny_tensors();
    assert_eq!(weight_map.keys().cloned().collect::<BTreeSet<_>>(), expected.keys().cloned().collect());
    let (mut total, mut seen, mut embed, mut norm) = (0, BTreeSet::new(), Vec::new(), Vec::new());
    for no in 1..=shards {
        let file = format!("model-{no:05}-of-{shards:05}.safetensors");
        let bytes = fs::read(dir.join(&file)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!st.is_empty(), "{file} holds no tensor");
        for (name, view) in st.tensors() {
            assert_eq!(weight_map[&name], file.as_str(), "{name}");
            assert_eq!((view.dtype(), view.shape()), (dtype, expected[&name].as_slice()), "{name}");
            let cols = view.shape()[view.shape().len() - 1];
            let zeros = zeros_per_row(view.data(), cols, dtype);
            let want =
                if LINEAR.iter().any(|l| name.ends_with(&format!("{l}.weight"))) { (SPARSITY * cols as f64).round() as usize } else { 0 };
            assert!(zeros.iter().all(|&z| z == want), "{name}: zeros per row {zeros:?}, expected {want}");
            match name.as_str() {
                "model.embed_tokens.weight" => embed = view.data().to_vec(),
                "model.norm.weight" => norm = view.data().to_vec(),
                _ => {}
            }
            total += view.data_len();
            assert!(seen.insert(name));
        }
        // Byte for byte what the reference implementation writes for these
        // tensors and metadata: header layout, order, padding.
        let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");
        let again = safetensors::serialize(st.tensors(), metadata.metadata().clone()).unwrap();
        assert!(again == bytes, "{file} is not what safetensors::serialize writes");
    }
    assert_eq!(seen.len(), expected.len());
    assert_eq!(index["metadata"]["total_size"], total);
    (embed, norm)
}

fn mean_and_std(values: &[f32]) -> (f32, f32) {
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / values.len() as f32;
    (mean, var.sqrt())
}

fn f16s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
}

#[test]
fn tiny_checkpoint_has_the_hf_layout_and_exact_sparsity() {
    let tmp = TempDir::new("synth-layout");
    let out = tmp.0.join("hf");
    synth(&out, &["--seed", "7"]);
    assert_eq!(
        file_names(&out),
        [
            "config.json",
            "generation_config.json",
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
            "model.safetensors.index.json",
            "special_tokens_map.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ]
    );
    assert_eq!(file_names(&tmp.0), ["hf"], "no .part left behind");
    let (embed, norm) = check_shards(&out, Dtype::F16, 3);
    let (mean, std) = mean_and_std(&f16s(&embed));
    assert!(mean.abs() < 0.001 && (std - 0.02).abs() < 0.001, "embeddings: mean {mean}, std {std}");
    let (mean, std) = mean_and_std(&f16s(&norm));
    assert!((mean - 1.0).abs() < 0.05 && std > 0.0 && std < 0.2, "norm: mean {mean}, std {std}");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let tmp = TempDir::new("synth-seed");
    let (a, b, c) = (tmp.0.join("a"), tmp.0.join("b"), tmp.0.join("c"));
    let args = ["--dtype", "bf16", "--shards", "2", "--seed", "3"];
    synth(&a, &args);
    synth(&b, &args);
    synth(&c, &["--dtype", "bf16", "--shards", "2", "--seed", "4"]);
    check_shards(&a, Dtype::BF16, 2);
    assert_eq!(json(&a.join("config.json"))["torch_dtype"], "bfloat16");
    for name in file_names(&a) {
        assert!(fs::read(a.join(&name)).unwrap() == fs::read(b.join(&name)).unwrap(), "{name} differs for the same seed");
    }
    let shard = "model-00001-of-00002.safetensors";
    assert!(fs::read(a.join(shard)).unwrap() != fs::read(c.join(shard)).unwrap(), "another seed, the same weights");
}

#[test]
fn f32_checkpoints_keep_the_contract() {
    let tmp = TempDir::new("synth-f32");
    let out = tmp.0.join("hf");
    synth(&out, &["--dtype", "f32", "--shards", "1"]);
    check_shards(&out, Dtype::F32, 1);
    assert_eq!(json(&out.join("config.json"))["torch_dtype"], "float32");
}

/// Renders Hugging Face's chat template as `transformers` does (with its
/// `raise_exception`).
fn render(template: &str, messages: Value) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
    });
    env.add_template("chat", template)?;
    env.get_template("chat")?.render(minijinja::context! { messages, bos_token => "<s>", eos_token => "</s>" })
}

#[test]
fn config_and_tokenizer_files_are_mistral_instruct_v0_2s() {
    let tmp = TempDir::new("synth-config");
    let out = tmp.0.join("hf");
    synth(&out, &[]);
    let config = json(&out.join("config.json"));
    assert_eq!(config["architectures"], serde_json::json!(["MistralForCausalLM"]));
    for (key, value) in [
        ("model_type", serde_json::json!("mistral")),
        ("hidden_act", "silu".into()),
        ("hidden_size", 256.into()),
        ("intermediate_size", 512.into()),
        ("num_hidden_layers", 2.into()),
        ("num_attention_heads", 4.into()),
        ("num_key_value_heads", 2.into()),
        ("max_position_embeddings", 512.into()),
        ("vocab_size", 32_000.into()),
        ("bos_token_id", 1.into()),
        ("eos_token_id", 2.into()),
        ("rms_norm_eps", 1e-5.into()),
        ("rope_theta", 1e6.into()),
        ("sliding_window", Value::Null),
        ("tie_word_embeddings", false.into()),
        ("torch_dtype", "float16".into()),
    ] {
        assert_eq!(config[key], value, "{key}");
    }
    // Python's spelling, as transformers writes it.
    assert!(fs::read_to_string(out.join("config.json")).unwrap().contains("\"rms_norm_eps\": 1e-05,"));
    let generation = json(&out.join("generation_config.json"));
    assert_eq!((generation["bos_token_id"].as_u64(), generation["eos_token_id"].as_u64()), (Some(1), Some(2)));
    assert!(fs::read(out.join("tokenizer.model")).unwrap() == fs::read(TOKENIZER).unwrap());

    let tok = json(&out.join("tokenizer_config.json"));
    assert_eq!((&tok["add_bos_token"], &tok["add_eos_token"]), (&Value::Bool(true), &Value::Bool(false)));
    assert_eq!(
        (tok["bos_token"].as_str(), tok["eos_token"].as_str(), tok["unk_token"].as_str()),
        (Some("<s>"), Some("</s>"), Some("<unk>"))
    );
    assert!(tok["model_max_length"].is_number());
    let template = tok["chat_template"].as_str().unwrap();
    let chat = serde_json::json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]);
    assert_eq!(render(template, chat).unwrap(), "<s>[INST] hi [/INST]hello</s>[INST] again [/INST]");
    let err = render(template, serde_json::json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])).unwrap_err();
    assert!(err.to_string().contains("Conversation roles must alternate user/assistant"), "{err}");

    let special = json(&out.join("special_tokens_map.json"));
    assert_eq!(special["bos_token"]["content"], "<s>");
    assert_eq!(special["eos_token"]["content"], "</s>");
    assert_eq!(special["unk_token"]["content"], "<unk>");
}

#[test]
fn a_non_empty_output_dir_is_refused_unless_forced() {
    let tmp = TempDir::new("synth-refuse");
    let out = tmp.0.join("hf");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), "mine").unwrap();
    let args = ["synth", "--shape", "tiny", "--tokenizer", TOKENIZER, "--output", out.to_str().unwrap()];
    let (ok, err) = sprig(&args);
    assert!(!ok);
    assert!(err.contains(out.to_str().unwrap()) && err.contains("--force"), "{err}");
    assert_eq!(file_names(&out), ["keep.txt"]);
    assert_eq!(file_names(&tmp.0), ["hf"], "no .part left behind");

    synth(&out, &["--force"]);
    assert!(!out.join("keep.txt").exists() && out.join("config.json").exists());

    // An empty directory is fine; a directory with subdirectories is never replaced.
    let empty = tmp.0.join("empty");
    fs::create_dir(&empty).unwrap();
    synth(&empty, &[]);
    let nested = tmp.0.join("nested");
    fs::create_dir_all(nested.join("sub")).unwrap();
    let (ok, err) = sprig(&["synth", "--shape", "tiny", "--tokenizer", TOKENIZER, "--output", nested.to_str().unwrap(), "--force"]);
    assert!(!ok && err.contains("subdirectories"), "{err}");
    assert!(nested.join("sub").exists());
}

#[test]
fn bad_arguments_are_refused_with_the_value() {
    let tmp = TempDir::new("synth-args");
    let out = tmp.0.join("hf");
    let out = out.to_str().unwrap();
    let base = ["synth", "--shape", "tiny", "--tokenizer", TOKENIZER, "--output", out];
    let run = |extra: &[&str]| sprig(&[&base[..], extra].concat());
    let (ok, err) = run(&["--sparsity", "1.5"]);
    assert!(!ok && err.contains("`1.5`"), "{err}");
    let (ok, err) = run(&["--shards", "22"]);
    assert!(!ok && err.contains("cannot split 21 tensors into 22 shards"), "{err}");
    let (ok, err) = sprig(&["synth", "--shape", "tiny", "--tokenizer", "/nonexistent/tokenizer.model", "--output", out]);
    assert!(!ok && err.contains("/nonexistent/tokenizer.model"), "{err}");
    assert_eq!(file_names(&tmp.0), Vec::<String>::new(), "nothing written");
}

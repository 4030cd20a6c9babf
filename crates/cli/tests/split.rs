//! `sprig split` on the demo model and `sprig synth-gguf`, through the real
//! binary: the shards, their manifest, reading them back, and generating.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;
use sha2::{Digest, Sha256};
use sprig_engine::GgufFile;

use common::{greedy_chat, model_file, sprig, TempDir, MODEL};

const TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tokenizer.model.v1");
const PREFIX: &str = "SmolLM2-135M-Instruct.Q4_1";

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sprig_protocol::hex(&Sha256::digest(&bytes))
}

fn open_all(paths: &[PathBuf]) -> GgufFile<BufReader<File>> {
    GgufFile::open_split(paths.iter().map(|p| BufReader::new(File::open(p).unwrap())).collect()).unwrap()
}

/// Name -> (type, shape) of every tensor.
fn table<R>(model: &GgufFile<R>) -> Vec<(String, String, Vec<usize>)> {
    model.tensors().into_iter().map(|(n, t)| (n.to_string(), format!("{:?}", t.ggml_dtype), t.shape.dims().to_vec())).collect()
}

/// The metadata without the `split.*` keys, values as text (`Value` has no `PartialEq`).
fn metadata<R>(model: &GgufFile<R>) -> BTreeMap<String, String> {
    model.metadata().0.iter().filter(|(k, _)| !k.starts_with("split.")).map(|(k, v)| (k.clone(), format!("{v:?}"))).collect()
}

fn greedy_ids(model: &str) -> String {
    let (ok, out, err) = greedy_chat(model, "What is the capital of France?", 16, &["--ids"]);
    assert!(ok, "{err}");
    out.trim().to_string()
}

#[test]
fn split_demo_model_reads_back_and_generates_the_same_tokens() {
    let dir = TempDir::new("split");
    let out = dir.path("shards");
    let (ok, _, err) = sprig(&["split", model_file(MODEL), "--max-size", "30MB", "--output", &out, "--name", "SmolLM2 demo"]);
    assert!(ok, "{err}");

    // The manifest: relative URLs, sizes and hashes of the files beside it.
    let json = std::fs::read_to_string(dir.0.join("shards").join(format!("{PREFIX}.manifest.json"))).unwrap();
    let manifest = sprig_protocol::Manifest::parse(&json).unwrap();
    assert_eq!(manifest.name, "SmolLM2 demo");
    let count = manifest.shards.len();
    assert!(count >= 3, "{count} shards");
    let mut paths = Vec::new();
    for (i, shard) in manifest.shards.iter().enumerate() {
        assert_eq!(shard.url, format!("{PREFIX}-{:05}-of-{count:05}.gguf", i + 1));
        let path = dir.0.join("shards").join(&shard.url);
        assert_eq!(shard.size, std::fs::metadata(&path).unwrap().len(), "{}", shard.url);
        assert_eq!(shard.sha256, sha256(&path), "{}", shard.url);
        paths.push(path);
    }
    assert_eq!(manifest.total_size, manifest.shards.iter().map(|s| s.size).sum::<u64>());
    assert_eq!(std::fs::read_dir(dir.0.join("shards")).unwrap().count(), count + 1, "only the shards and the manifest");

    // Each shard: the split keys with llama.cpp's types, at most 30 MB of tensor data.
    for (i, path) in paths.iter().enumerate() {
        let content = Content::read(&mut BufReader::new(File::open(path).unwrap())).unwrap();
        assert!(matches!(content.metadata["split.no"], Value::U16(n) if usize::from(n) == i));
        assert!(matches!(content.metadata["split.count"], Value::U16(n) if usize::from(n) == count));
        assert!(matches!(content.metadata["split.tensors.count"], Value::I32(272)));
        assert_eq!(content.metadata.contains_key("general.architecture"), i == 0);
        let data: u64 = content
            .tensor_infos
            .values()
            .map(|t| (t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size()).div_ceil(32) as u64 * 32)
            .sum();
        // A tensor larger than the budget (the 30.08 MB embeddings) has a shard of its own.
        assert!(data <= 30_000_000 || content.tensor_infos.len() == 1, "shard {i} holds {data} bytes of tensors");
    }

    // Read back in shuffled order: same tensor table, metadata and tensor bytes.
    let mut shuffled = paths.clone();
    shuffled.rotate_left(1);
    shuffled.swap(0, 1);
    let mut split = open_all(&shuffled);
    let mut whole = open_all(&[PathBuf::from(MODEL)]);
    assert_eq!(split.shard_count(), count);
    assert_eq!(table(&split), table(&whole));
    assert_eq!(metadata(&split), metadata(&whole));
    let names: Vec<String> = whole.tensors().into_iter().map(|(n, _)| n.to_string()).collect();
    for name in &names {
        let a = whole.tensor(name, &Device::Cpu).unwrap();
        let b = split.tensor(name, &Device::Cpu).unwrap();
        assert!(a.data().unwrap() == b.data().unwrap(), "tensor {name} differs");
    }

    // Greedy generation from any shard's name loads them all and agrees.
    let last = paths.last().unwrap().to_str().unwrap();
    assert_eq!(greedy_ids(last), greedy_ids(MODEL));
}

#[test]
fn split_refuses_a_non_empty_output_without_force() {
    let dir = TempDir::new("split-force");
    let other = dir.path("notes.txt");
    std::fs::write(&other, "keep me").unwrap();
    let out = dir.0.to_str().unwrap();
    let (ok, _, err) = sprig(&["split", model_file(MODEL), "--max-size", "60MB", "--output", out]);
    assert!(!ok);
    assert!(err.contains("is not empty; use --force"), "{err}");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1, "nothing written");

    // A stale shard of the same prefix is replaced, other files are kept.
    let stale = dir.path(&format!("{PREFIX}-00001-of-00007.gguf"));
    std::fs::write(&stale, "old").unwrap();
    let (ok, _, err) = sprig(&["split", MODEL, "--max-size", "60MB", "--output", out, "--force"]);
    assert!(ok, "{err}");
    assert!(!Path::new(&stale).exists());
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
    assert!(Path::new(&dir.path(&format!("{PREFIX}-00002-of-00002.gguf"))).exists());
}

#[test]
fn a_bad_size_is_a_clear_error() {
    let dir = TempDir::new("split-bad-size");
    let (ok, _, err) = sprig(&["split", MODEL, "--max-size", "40XB", "--output", &dir.path("out")]);
    assert!(!ok);
    assert!(err.contains("invalid size `40XB`") && err.contains("40MB or 512MiB"), "{err}");
    assert!(!Path::new(&dir.path("out")).exists());
}

#[test]
fn a_tiny_synthetic_model_loads_and_generates() {
    let dir = TempDir::new("synth");
    let file = dir.path("tiny.gguf");
    let (ok, _, err) = sprig(&["synth-gguf", "--size", "8MB", "--output", &file, "--dtype", "q8_0", "--tokenizer", model_file(TOKENIZER)]);
    assert!(ok, "{err}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!((7_600_000..=8_400_000).contains(&size), "{size} bytes");

    let (ok, out, err) = sprig(&["inspect", "--json", &file]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["architecture"], "llama");
    let model = open_all(&[PathBuf::from(&file)]);
    let meta = model.metadata();
    assert_eq!(meta.u64("llama.attention.head_count").unwrap(), 4 * meta.u64("llama.attention.head_count_kv").unwrap());
    assert_eq!(meta.opt_f64("llama.rope.freq_base").unwrap(), Some(1e6));
    assert_eq!(meta.u64("llama.vocab_size").unwrap(), 32_000);

    let (ok, out, err) = sprig(&["generate", "--model", &file, "--prompt", "Hello", "--temperature", "0", "--max-tokens", "4", "--ids"]);
    assert!(ok, "{err}");
    let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
}

//! `sprig prune` on the demo model, through the real binary: exactly
//! `round(sparsity · in)` zeros in every row of every linear layer, the rest
//! dense, the metadata kept, and the pruned model still talks.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;

use candle_core::quantized::GgmlDType;
use sprig_engine::GgufFile;

use common::{dequantized, greedy_chat, model_file, sprig, TempDir, MODEL};

/// Every tensor's type, shape and values, as `dequantized` reads them.
type Tensors = std::collections::BTreeMap<String, (GgmlDType, Vec<usize>, Vec<f32>)>;

const CALIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/quality/persuasion.txt");
const LINEAR: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

fn zeros(v: &[f32]) -> usize {
    v.iter().filter(|x| **x == 0.0).count()
}

/// Checks the pruned model at `path` against the input: returns its linear layers.
fn check_pruned(path: &str, input: &Tensors) -> HashMap<String, Vec<f32>> {
    let out = dequantized(path);
    assert_eq!(out.len(), input.len(), "the same tensors");
    let mut linear = HashMap::new();
    for (name, (dtype, shape, values)) in &out {
        assert_eq!(shape, &input[name].1, "{name}");
        let is_linear = LINEAR.iter().any(|k| name.ends_with(&format!(".{k}.weight")));
        if shape.len() == 1 {
            assert_eq!(*dtype, GgmlDType::F32, "{name}: vectors stay F32");
            continue;
        }
        assert_eq!(*dtype, GgmlDType::F16, "{name}");
        if is_linear {
            let cols = shape[1];
            let k = (0.3 * cols as f64).round() as usize;
            for (r, row) in values.chunks(cols).enumerate() {
                assert_eq!(zeros(row), k, "{name} row {r}: exactly round(0.3 × {cols}) zeros");
            }
            linear.insert(name.clone(), values.clone());
        } else {
            // The embedding (and an output matrix) stay dense.
            assert_eq!(zeros(values), zeros(&input[name].2), "{name} is not pruned");
        }
    }
    assert_eq!(linear.len(), 7 * 30, "every linear layer of the 30 blocks");
    linear
}

#[test]
fn magnitude_and_wanda_prune_exactly_and_the_model_still_talks() {
    let model = model_file(MODEL);
    let input = dequantized(model);
    let dir = TempDir::new("prune");

    let magnitude = dir.path("magnitude.gguf");
    let (ok, out, err) = sprig(&["prune", "--input", model, "--method", "magnitude", "--sparsity", "0.3", "--output", &magnitude]);
    assert!(ok, "{err}");
    assert!(out.contains("pruned 210 linear layers") && out.contains("173 of 576"), "{out}");
    let by_magnitude = check_pruned(&magnitude, &input);

    let wanda = dir.path("wanda.gguf");
    let args = ["prune", "--input", model, "--method", "wanda", "--calib", CALIB, "--chunks", "2", "--ctx", "64", "--output", &wanda];
    let (ok, _, err) = sprig(&args);
    assert!(ok, "{err}");
    assert_eq!(err.matches("pruned (").count(), 30, "progress per block: {err}");
    let by_wanda = check_pruned(&wanda, &input);
    // Weighing by the inputs chooses other weights than magnitude alone.
    let differ = by_wanda.iter().filter(|(n, v)| by_magnitude[*n].iter().zip(v.iter()).any(|(a, b)| (*a == 0.0) != (*b == 0.0))).count();
    assert!(differ > 150, "only {differ} of 210 layers differ from magnitude pruning");

    // Metadata kept, provenance added; the pruned model loads and answers.
    let file = GgufFile::open(BufReader::new(File::open(&wanda).unwrap())).unwrap();
    let meta = file.metadata();
    assert_eq!(meta.string("sprig.pruning.method").unwrap(), "wanda");
    assert!(meta.string("tokenizer.chat_template").unwrap().contains("im_start"));
    let (ok, text, err) = greedy_chat(&wanda, "What is the capital of France?", 8, &[]);
    assert!(ok && !text.trim().is_empty(), "{err}");

    // Refusals: wanda without calibration text, a sparsity out of range, an existing output.
    let (ok, _, err) = sprig(&["prune", "--input", model, "--method", "wanda", "--output", &dir.path("x.gguf")]);
    assert!(!ok && err.contains("needs --calib"), "{err}");
    let (ok, _, err) = sprig(&["prune", "--input", model, "--method", "magnitude", "--sparsity", "1.5", "--output", &dir.path("x.gguf")]);
    assert!(!ok && err.contains("below 1"), "{err}");
    let (ok, _, err) = sprig(&["prune", "--input", model, "--method", "magnitude", "--output", &magnitude]);
    assert!(!ok && err.contains("--force"), "{err}");
}

/// A checkpoint's tensors by name: shape and values as f32.
type Checkpoint = std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of a Hugging Face checkpoint directory, with each file's `__metadata__`.
fn checkpoint_tensors(dir: &std::path::Path) -> (Checkpoint, Vec<HashMap<String, String>>) {
    let mut tensors = std::collections::BTreeMap::new();
    let mut metadata = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        metadata.push(meta.metadata().clone().unwrap_or_default());
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                safetensors::Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                other => panic!("{name}: unexpected {other:?}"),
            };
            tensors.insert(name, (view.shape().to_vec(), values));
        }
    }
    (tensors, metadata)
}

/// A Hugging Face checkpoint pruned by `sprig prune` is a checkpoint of the same
/// layout, which `sprig convert` takes; and the Wanda it computes is the GGUF
/// path's: pruning the checkpoint and then converting it to F32 gives, tensor
/// for tensor and bit for bit, what converting it to F32 and then pruning the
/// GGUF gives (so the query and key rows, permuted for the calibration pass, are
/// written back in Hugging Face's order).
#[test]
fn a_checkpoint_prunes_into_the_checkpoint_convert_takes_as_the_gguf_path_prunes() {
    let dir = TempDir::new("prune-hf");
    let tokenizer = format!("{}/../../models/tokenizer.model.v1", env!("CARGO_MANIFEST_DIR"));
    let hf = dir.path("hf");
    let (ok, _, err) = sprig(&["synth", "--shape", "tiny", "--sparsity", "0", "--tokenizer", model_file(&tokenizer), "--output", &hf]);
    assert!(ok, "{err}");
    let (input, _) = checkpoint_tensors(std::path::Path::new(&hf));
    let calib = ["--calib", CALIB, "--chunks", "2", "--ctx", "64"];

    // Wanda on the checkpoint, written as f32.
    let pruned = dir.path("hf-wanda");
    let mut args = vec!["prune", "--input", &hf, "--method", "wanda", "--output", &pruned, "--dtype", "f32"];
    args.extend(calib);
    let (ok, out, err) = sprig(&args);
    assert!(ok, "{err}");
    assert!(out.contains("pruned 14 linear layers") && out.contains("sprig convert --input"), "{out}");
    let (tensors, metadata) = checkpoint_tensors(std::path::Path::new(&pruned));
    assert_eq!(tensors.keys().collect::<Vec<_>>(), input.keys().collect::<Vec<_>>(), "the same tensors");
    assert_eq!(metadata.len(), 3, "the same three files");
    assert!(metadata.iter().all(|m| m.get("sprig.pruning.method").map(String::as_str) == Some("wanda")), "{metadata:?}");
    let projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    for (name, (shape, values)) in &tensors {
        assert_eq!(shape, &input[name].0, "{name}");
        if projections.iter().any(|p| name.ends_with(&format!("{p}.weight"))) {
            let cols = shape[1];
            let k = (0.3 * cols as f64).round() as usize;
            for (r, row) in values.chunks(cols).enumerate() {
                assert_eq!(zeros(row), k, "{name} row {r}");
                // What is left is the input's, in the input's place.
                let kept = row.iter().zip(&input[name].1[r * cols..(r + 1) * cols]).all(|(a, b)| *a == 0.0 || a == b);
                assert!(kept, "{name} row {r} moved or changed weights");
            }
        } else {
            assert_eq!(values, &input[name].1, "{name} is copied as it was");
        }
    }
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{pruned}/config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "float32");
    assert_eq!(std::fs::read(format!("{pruned}/tokenizer.model")).unwrap(), std::fs::read(format!("{hf}/tokenizer.model")).unwrap());
    assert!(std::path::Path::new(&format!("{pruned}/model.safetensors.index.json")).exists());

    // The GGUF path: convert to F32, then prune the GGUF.
    let converted = dir.path("converted");
    let (ok, _, err) = sprig(&["convert", "--input", &hf, "--output", &converted, "--quant", "f32", "--no-compare"]);
    assert!(ok, "{err}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{converted}/manifest.json")).unwrap()).unwrap();
    let first_shard = format!("{converted}/{}", manifest["shards"][0]["url"].as_str().unwrap());
    let gguf = dir.path("wanda.gguf");
    let mut args = vec!["prune", "--input", &first_shard, "--method", "wanda", "--output", &gguf, "--dtype", "f32"];
    args.extend(calib);
    let (ok, _, err) = sprig(&args);
    assert!(ok, "{err}");

    // The pruned checkpoint, converted: the same model; its provenance says wanda.
    let converted_pruned = dir.path("converted-pruned");
    let (ok, _, err) = sprig(&["convert", "--input", &pruned, "--output", &converted_pruned, "--quant", "f32", "--no-compare"]);
    assert!(ok, "{err}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{converted_pruned}/manifest.json")).unwrap()).unwrap();
    let ours = dequantized(&format!("{converted_pruned}/{}", manifest["shards"][0]["url"].as_str().unwrap()));
    let theirs = dequantized(&gguf);
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (name, (_, shape, values)) in &ours {
        assert_eq!(shape, &theirs[name].1, "{name}");
        let same = values.iter().zip(&theirs[name].2).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name}: the checkpoint path and the GGUF path pruned differently");
    }
    let conversion: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{converted_pruned}/conversion.json")).unwrap()).unwrap();
    assert_eq!(conversion["pruning"]["method"], "wanda", "{conversion}");

    // Magnitude keeps the checkpoint's own type (config.json unchanged); an
    // output that is the input is refused before anything is written.
    let magnitude = dir.path("hf-magnitude");
    let (ok, _, err) = sprig(&["prune", "--input", &hf, "--method", "magnitude", "--output", &magnitude]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(format!("{magnitude}/config.json")).unwrap(), std::fs::read(format!("{hf}/config.json")).unwrap());
    let (tensors, metadata) = checkpoint_tensors(std::path::Path::new(&magnitude));
    assert_eq!(metadata[0].get("sprig.pruning.method").map(String::as_str), Some("magnitude"));
    let q = &tensors["model.layers.1.self_attn.q_proj.weight"];
    assert_eq!(zeros(&q.1), q.0[0] * 77, "round(0.3 × 256) = 77 zeros per row");
    let (ok, _, err) = sprig(&["prune", "--input", &hf, "--method", "magnitude", "--output", &hf, "--force"]);
    assert!(!ok && err.contains("is the input"), "{err}");
    assert!(std::path::Path::new(&format!("{hf}/config.json")).exists(), "the input is untouched");
}

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

//! `sprig perplexity` against llama.cpp's `llama-perplexity` on the demo
//! model (the reference was computed once by
//! `tests/fixtures/quality/make_reference.sh` and committed), and its KL
//! divergence files.

mod common;

use common::{model_file, sprig, TempDir, MODEL};

const TEXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/quality/pride_and_prejudice.txt");
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/quality/llama_cpp_reference.json");
const TOP1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/quality/llama_cpp_top1.json");

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn sha256(path: &str) -> String {
    use sha2::{Digest, Sha256};
    sprig_protocol::hex(&Sha256::digest(std::fs::read(path).unwrap()))
}

/// Perplexity within 1 % of llama.cpp's, and, teacher-forced on the same
/// chunks, the same top-1 token at ≥ 99 % of the positions where llama.cpp's
/// top-2 margin exceeds 0.5 logit (tests/fixtures/quality/llama_cpp_top1.json,
/// made by make_top1_reference.sh).
#[test]
fn perplexity_and_top_tokens_are_llama_cpps() {
    let model = model_file(MODEL);
    let reference = json(&std::fs::read_to_string(REFERENCE).unwrap());
    assert_eq!(sha256(model), reference["model_sha256"].as_str().unwrap(), "the reference was computed on another model file");
    assert_eq!(sha256(TEXT), reference["text_sha256"].as_str().unwrap(), "the reference was computed on another text");
    // llama.cpp's running estimate after 6 chunks of 256 tokens (its "[6]" value).
    const CHUNKS: usize = 6;
    let run = reference["runs"].as_array().unwrap().iter().find(|r| r["ctx"] == 256).expect("a run at --ctx 256");
    let expected = run["per_chunk"][CHUNKS - 1].as_f64().unwrap();

    let (ok, out, err) =
        sprig(&["perplexity", "--model", model, "--text", TEXT, "--ctx", "256", "--chunks", &CHUNKS.to_string(), "--json"]);
    assert!(ok, "{err}");
    let ours = json(&out);
    let ppl = ours["ppl"].as_f64().unwrap();
    assert_eq!(ours["tokens_scored"], CHUNKS * (256 - 1 - 128));
    assert!((ppl / expected - 1.0).abs() < 0.01, "sprig {ppl:.4} against llama.cpp {expected:.4}");
    // Progress per chunk on stderr.
    assert_eq!(err.matches("] PPL = ").count(), CHUNKS, "{err}");

    let top1 = json(&std::fs::read_to_string(TOP1).unwrap());
    assert_eq!((top1["ctx"].as_u64(), top1["chunks"].as_u64()), (Some(256), Some(CHUNKS as u64)));
    let theirs: Vec<(u64, f64)> = top1["top1"]
        .as_array()
        .unwrap()
        .iter()
        .zip(top1["margin"].as_array().unwrap())
        .map(|(t, m)| (t.as_u64().unwrap(), m.as_f64().unwrap()))
        .collect();
    let ours: Vec<(u64, f64)> = ours["positions"]["top1"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ours["positions"]["margin"].as_array().unwrap())
        .map(|(t, m)| (t.as_u64().unwrap(), m.as_f64().unwrap()))
        .collect();
    assert_eq!(ours.len(), theirs.len(), "the same scored positions");
    let clear: Vec<usize> = (0..theirs.len()).filter(|&i| theirs[i].1 > 0.5).collect();
    let agree = clear.iter().filter(|&&i| ours[i].0 == theirs[i].0).count();
    let share = agree as f64 / clear.len() as f64;
    let everywhere = (0..theirs.len()).filter(|&i| ours[i].0 == theirs[i].0).count();
    eprintln!(
        "top-1 agrees at {agree} of {} positions with a margin above 0.5 ({:.2} %), {everywhere} of {} in all",
        clear.len(),
        share * 100.0,
        theirs.len()
    );
    assert!(clear.len() > theirs.len() / 2, "most positions have a clear top token");
    assert!(share >= 0.99, "top-1 agrees at only {agree} of {} clear positions", clear.len());
}

#[test]
fn kl_divergence_from_saved_distributions() {
    let model = model_file(MODEL);
    let dir = TempDir::new("kl");
    let base = dir.path("base.kld");
    let args = |extra: &[&str]| {
        let mut a = vec!["perplexity", "--model", model, "--text", TEXT, "--ctx", "64", "--chunks", "3", "--json"];
        a.extend(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        sprig(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, out, err) = run(&["--save-logits", &base]);
    assert!(ok, "{err}");
    let saved = json(&out);
    // 3 chunks × 31 positions × (8 + 2 × 49,152 bytes), after the header and tokens.
    assert_eq!(std::fs::metadata(&base).unwrap().len(), 24 + 4 * 3 * 64 + 3 * 31 * (8 + 2 * 49_152));

    // The same model against itself: no divergence, the same top token, the same perplexity.
    let (ok, out, err) = run(&["--kl-base", &base]);
    assert!(ok, "{err}");
    let kl = &json(&out)["kl"];
    assert!(kl["kld_mean"].as_f64().unwrap() < 1e-4, "{kl}");
    assert_eq!(kl["same_top"].as_f64(), Some(1.0));
    assert!((kl["base_ppl"].as_f64().unwrap() / saved["ppl"].as_f64().unwrap() - 1.0).abs() < 1e-3, "{kl}");

    // Another context or a damaged file is refused, saying why.
    let (ok, _, err) = sprig(&["perplexity", "--model", model, "--text", TEXT, "--ctx", "32", "--chunks", "3", "--kl-base", &base]);
    assert!(!ok && err.contains("context 64") && err.contains("context 32"), "{err}");
    let bytes = std::fs::read(&base).unwrap();
    std::fs::write(&base, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, _, err) = run(&["--kl-base", &base]);
    assert!(!ok && err.contains("its header implies"), "{err}");
    // A text too short for two chunks.
    let short = dir.path("short.txt");
    std::fs::write(&short, "Too short to score.").unwrap();
    let (ok, _, err) = sprig(&["perplexity", "--model", model, "--text", &short, "--ctx", "64"]);
    assert!(!ok && err.contains("at least 2 × --ctx = 128"), "{err}");
}

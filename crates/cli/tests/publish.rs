//! `sprig publish` through the real binary: a converted model and a single
//! GGUF file join a deployment's catalog (`models.json`), as the app reads it.

mod common;

use common::{model_file, sprig, TempDir, MODEL};
use sprig_protocol::catalog::Catalog;

fn catalog(path: &str) -> Catalog {
    Catalog::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn converted_models_and_gguf_files_join_the_catalog() {
    let dir = TempDir::new("publish");
    let tokenizer = format!("{}/../../models/tokenizer.model.v1", env!("CARGO_MANIFEST_DIR"));
    let (hf, out, models) = (dir.path("hf"), dir.path("mistral-tiny"), dir.path("models.json"));
    let (ok, _, err) = sprig(&["synth", "--shape", "tiny", "--tokenizer", model_file(&tokenizer), "--output", &hf]);
    assert!(ok, "{err}");
    let (ok, _, err) = sprig(&["convert", "--input", &hf, "--output", &out, "--quant", "q4_k_m", "--no-compare"]);
    assert!(ok, "{err}");
    assert!(err.contains("next: sprig verify") && err.contains("sprig publish"), "convert says what comes next: {err}");

    // A converted model with no licence of its own needs --license.
    let (ok, _, err) = sprig(&["publish", &out, "--base-url", "models/mistral-tiny", "--catalog", &models]);
    assert!(!ok && err.contains("--license"), "{err}");
    assert!(!std::path::Path::new(&models).exists(), "nothing written");

    let (ok, text, err) = sprig(&["publish", &out, "--base-url", "models/mistral-tiny/", "--catalog", &models, "--license", "apache-2.0"]);
    assert!(ok, "{err}");
    assert!(text.contains("added \"mistral-tiny\"") && text.contains("upload"), "{text}");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{out}/manifest.json")).unwrap()).unwrap();
    let c = catalog(&models);
    assert!(!c.allow_custom_urls, "a new catalog allows no custom URLs");
    let m = c.find("mistral-tiny").expect("the entry");
    assert_eq!(m.url, "models/mistral-tiny/manifest.json");
    assert_eq!(Some(m.size), manifest["total_size"].as_u64());
    assert_eq!(m.sha256, None, "a manifest carries its own hashes");
    assert_eq!(m.license, "apache-2.0");
    assert_eq!(m.label, manifest["name"].as_str().unwrap(), "the label is the model's name");
    let p = m.provenance.as_ref().expect("provenance from the sprig.* keys");
    assert_eq!(p.pruning.as_deref(), Some("wanda 30 %"));
    assert_eq!(p.quantization.as_deref(), Some("Q4_K_M, pruned zeros kept"));
    assert!(p.source.is_some());

    // One GGUF file: its SHA-256; an absolute base URL; then an update in place.
    let demo = model_file(MODEL);
    let args = ["publish", demo, "--base-url", "https://hub.example/org/repo/resolve/main", "--catalog", &models, "--id", "demo"];
    let (ok, _, err) = sprig(&args);
    assert!(ok, "{err}");
    let c = catalog(&models);
    let d = c.find("demo").unwrap();
    assert_eq!(d.url, "https://hub.example/org/repo/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf");
    use sha2::{Digest, Sha256};
    assert_eq!(d.sha256.as_deref(), Some(sprig_protocol::hex(&Sha256::digest(std::fs::read(demo).unwrap())).as_str()));
    assert_eq!(d.license, "apache-2.0", "SmolLM2 records its licence");
    let (ok, text, err) = sprig(&[
        "publish",
        &out,
        "--base-url",
        "cdn/tiny",
        "--catalog",
        &models,
        "--license",
        "mit",
        "--workers",
        "2",
        "--allow-custom-urls",
        "true",
    ]);
    assert!(ok && text.contains("updated"), "{err}");
    let c = catalog(&models);
    assert_eq!(c.models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["mistral-tiny", "demo"], "updated in its place");
    assert_eq!(c.find("mistral-tiny").unwrap().url, "cdn/tiny/manifest.json");
    assert_eq!(c.find("mistral-tiny").unwrap().defaults.as_ref().and_then(|d| d.workers), Some(2));
    assert!(c.allow_custom_urls);

    // A damaged catalog is refused, and left as it was.
    std::fs::write(&models, "{\"version\": 1, \"models\": [").unwrap();
    let (ok, _, err) = sprig(&["publish", &out, "--base-url", "x", "--catalog", &models, "--license", "mit"]);
    assert!(!ok && err.contains("not a valid catalog"), "{err}");
    assert_eq!(std::fs::read_to_string(&models).unwrap(), "{\"version\": 1, \"models\": [");
}

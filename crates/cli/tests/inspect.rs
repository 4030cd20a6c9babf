//! Runs the real `sprig` binary on the demo model.

use std::process::Command;

#[test]
fn inspect_prints_the_demo_model_as_json() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_sprig")).args(["inspect", "--json", model]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["architecture"], "llama");
    assert_eq!(json["block_count"], 30);
}

#[test]
fn inspect_of_a_missing_file_fails_with_its_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_sprig")).args(["inspect", "/nonexistent/x.gguf"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/x.gguf"), "{err}");
}

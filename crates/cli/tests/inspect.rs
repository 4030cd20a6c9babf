//! Runs the real `sprig` binary on the demo model.

mod common;

use common::{greedy_chat, sprig, MODEL};

#[test]
fn inspect_prints_the_demo_model_as_json() {
    let (ok, out, err) = sprig(&["inspect", "--json", MODEL]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["architecture"], "llama");
    assert_eq!(json["block_count"], 30);
}

#[test]
fn inspect_of_a_missing_file_fails_with_its_name() {
    let (ok, _, err) = sprig(&["inspect", "/nonexistent/x.gguf"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/x.gguf"), "{err}");
}

#[test]
fn tokenize_keeps_control_strings_as_text_unless_special() {
    let (ok, plain, err) = sprig(&["tokenize", "--model", MODEL, "<|im_start|>hi"]);
    assert!(ok, "{err}");
    let plain: Vec<u32> = serde_json::from_str(&plain).unwrap();
    assert!(!plain.contains(&1) && plain.len() > 2, "{plain:?}");
    let (_, special, _) = sprig(&["tokenize", "--model", MODEL, "--special", "<|im_start|>hi"]);
    let special: Vec<u32> = serde_json::from_str(&special).unwrap();
    assert_eq!(special[0], 1);
}

#[test]
fn chat_prompt_and_generate_agree_with_the_fixture() {
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/smollm2_greedy.json")).unwrap(),
    )
    .unwrap();
    let messages = std::env::temp_dir().join(format!("sprig-cli-test-{}.json", std::process::id()));
    std::fs::write(&messages, fx["messages"].to_string()).unwrap();
    let (ok, ids, err) = sprig(&["chat-prompt", "--model", MODEL, "--messages", messages.to_str().unwrap()]);
    std::fs::remove_file(&messages).ok();
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&ids).unwrap(), fx["prompt_ids"]);
    let q = fx["messages"][0]["content"].as_str().unwrap();
    let (ok, out, err) = greedy_chat(MODEL, q, 24, &["--ids"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap(), fx["ids"]);
    assert!(err.contains("tok/s"), "figures on stderr: {err}");
}

#[test]
fn a_bad_messages_file_is_a_clear_error() {
    let bad = std::env::temp_dir().join(format!("sprig-cli-bad-{}.json", std::process::id()));
    std::fs::write(&bad, r#"[{"role": "wizard", "content": "x"}]"#).unwrap();
    let (ok, _, err) = sprig(&["chat-prompt", "--model", MODEL, "--messages", bad.to_str().unwrap()]);
    std::fs::remove_file(&bad).ok();
    assert!(!ok);
    assert!(err.contains("is not a list of {role, content} messages"), "{err}");
}

#[test]
fn manifest_lists_the_demo_model_with_its_hash() {
    let out = std::env::temp_dir().join(format!("sprig-manifest-{}.json", std::process::id()));
    let (ok, _, err) = sprig(&["manifest", MODEL, "--name", "SmolLM2 demo", "--output", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let json = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).ok();
    let m = sprig_protocol::Manifest::parse(&json).unwrap();
    assert_eq!(m.name, "SmolLM2 demo");
    assert_eq!(m.total_size, 98_362_432);
    assert_eq!(m.shards[0].url, "SmolLM2-135M-Instruct.Q4_1.gguf");
    // The hash scripts/fetch-models checks, computed independently by sha256sum.
    assert_eq!(m.shards[0].sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
}

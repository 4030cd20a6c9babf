//! Hostile input the engine reads from a model file, natively and (run by
//! `scripts/test` with `--target wasm32-unknown-unknown`) in headless
//! Chromium, where allocation and panics behave differently: each gives a
//! clear error, and the same engine then works normally.

use sprig_engine::chat::{ChatError, ChatFormat, ChatMessage, TEMPLATE_FUEL};
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_engine::{GgufFile, Tokenizer};
use sprig_engine::Role;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// Mistral's tokenizer (fetched by `scripts/fetch-models`), built in so that
/// the wasm build needs no file system.
const MISTRAL_TOKENIZER: &[u8] = include_bytes!("../../../models/tokenizer.model.v1");

fn tokenizer() -> Tokenizer {
    let meta = SentencePieceModel::parse(MISTRAL_TOKENIZER).unwrap().gguf_metadata();
    let bytes = write_gguf(&SyntheticSpec::tiny_mistral(), &meta).unwrap();
    let file = GgufFile::open(std::io::Cursor::new(bytes)).unwrap();
    Tokenizer::from_gguf(&file.metadata()).unwrap()
}

fn render(t: &Tokenizer, template: &str) -> Result<Vec<u32>, ChatError> {
    ChatFormat::Template(template.into()).encode(t, &[ChatMessage::new(Role::User, "hi")], true)
}

#[test]
fn a_template_that_loops_too_long_stops_at_its_step_budget() {
    let t = tokenizer();
    // 10^10 iterations: a hang without a budget.
    let err = render(&t, "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("budget of {TEMPLATE_FUEL} steps")), "{msg}");
    // A recursive macro is stopped too (by the budget or minijinja's depth limit).
    let err = render(&t, "{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
    assert!(matches!(err, ChatError::Template(_)), "{err}");
    // The same tokenizer then renders a real template.
    let ids = render(&t, "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}").unwrap();
    assert_eq!(t.decode(&ids, true).unwrap(), "[INST] hi [/INST]");
}

#[test]
fn a_template_output_is_capped() {
    let t = tokenizer();
    // 5 MB of output in few steps.
    let err = render(&t, "{% for i in range(50000) %}{{ 'x' * 100 }}{% endfor %}").unwrap_err();
    assert!(err.to_string().contains("output passed 1048576 bytes"), "{err}");
}

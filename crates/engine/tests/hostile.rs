//! Hostile input the engine reads from a model file, natively and (run by
//! `scripts/test` with `--target wasm32-unknown-unknown`) in headless
//! Chromium, where allocation and panics behave differently: each gives a
//! clear error, and the same engine then works normally.

use sprig_engine::chat::{ChatError, ChatFormat, ChatMessage, TEMPLATE_FUEL};
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_engine::Role;
use sprig_engine::{GgufFile, Tokenizer};

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

/// A GGUF header written by hand (candle's writer refuses some of these).
#[derive(Default)]
struct Header {
    out: Vec<u8>,
}

impl Header {
    /// Magic, version 3 and the two counts.
    fn new(tensors: u64, keys: u64) -> Self {
        let mut h = Self::default();
        h.out.extend_from_slice(b"GGUF");
        h.u32(3).u64(tensors).u64(keys);
        h
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
        self
    }
    /// A `u32` metadata value.
    fn key_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    /// A tensor entry.
    fn tensor(&mut self, name: &str, dims: &[u64], dtype: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(dtype).u64(offset)
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = self.out.clone();
        b.resize(b.len().next_multiple_of(32) + 64, 0);
        b
    }
}

fn open_err(bytes: Vec<u8>) -> String {
    match GgufFile::open(std::io::Cursor::new(bytes)) {
        Ok(_) => panic!("a hostile header opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_gguf_headers_are_refused_before_anything_is_allocated_for_them() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Divides by zero in candle's reader.
        (Header::new(0, 1).key_u32("general.alignment", 0).bytes(), "general.alignment is 0"),
        (Header::new(0, 1).key_u32("general.alignment", 48).bytes(), "general.alignment is 48"),
        // A 2 GiB tensor in a header of a few hundred bytes.
        (
            Header::new(1, 0).tensor("blk.0.ffn_up.weight", &[32768, 65536], 0, 0).bytes(),
            "tensor `blk.0.ffn_up.weight` needs bytes 0 to 8589934592",
        ),
        (Header::new(1, 0).tensor("t", &[u64::MAX, 2], 0, 0).bytes(), "tensor `t` has more than"),
        (Header::new(1, 0).tensor("t", &[], 0, 0).bytes(), "tensor `t` has 0 dimensions"),
        (Header::new(1, 0).tensor("t", &[4, 0], 0, 0).bytes(), "tensor `t` has a dimension of 0"),
        (Header::new(1, 0).tensor("t", &[31], 2, 0).bytes(), "not whole blocks of 32"),
        (Header::new(1, 0).tensor("t", &[32], 99, 0).bytes(), "unknown tensor type 99"),
        (Header::new(1, 0).tensor("t", &[8], 0, u64::MAX - 31).bytes(), "tensor `t` needs bytes"),
        // Lengths that would be allocated as stated.
        (Header::new(0, 1).str("general.name").u32(8).u64(1 << 40).bytes(), "general.name is a string of 1099511627776 bytes"),
        (
            Header::new(0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1 << 40).bytes(),
            "tokenizer.ggml.tokens is an array of 1099511627776 values",
        ),
        (Header::new(0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).u64(100_000).bytes(), "past the end of the file"),
        (Header::new(u64::MAX, 0).bytes(), "tensor_count is 18446744073709551615"),
        (Header::new(0, u64::MAX).bytes(), "metadata_kv_count is 18446744073709551615"),
        (Header::new(0, 1).u64(1 << 50).bytes(), "metadata key 0 is a string of 1125899906842624 bytes"),
    ];
    for (bytes, want) in cases {
        let err = open_err(bytes);
        assert!(err.contains(want), "{err:?} should say {want:?}");
    }
}

#[test]
fn an_absurd_context_length_is_refused_and_a_long_one_capped() {
    let meta = SentencePieceModel::parse(MISTRAL_TOKENIZER).unwrap().gguf_metadata();
    let with_context = |n: usize| {
        let spec = SyntheticSpec { context_length: n, ..SyntheticSpec::tiny_mistral() };
        GgufFile::open(std::io::Cursor::new(write_gguf(&spec, &meta).unwrap())).unwrap()
    };
    let err = sprig_engine::Session::load(&mut with_context(u32::MAX as usize)).unwrap_err().to_string();
    assert!(err.contains("context_length") && err.contains("4294967295"), "{err}");
    let session = sprig_engine::Session::load(&mut with_context(1 << 20)).unwrap();
    assert_eq!(session.model().config().context_length, sprig_engine::model::MAX_CONTEXT);
}

#[test]
fn after_hostile_files_the_same_engine_loads_a_model_and_generates() {
    let _ = open_err(Header::new(0, 1).key_u32("general.alignment", 0).bytes());
    let meta = SentencePieceModel::parse(MISTRAL_TOKENIZER).unwrap().gguf_metadata();
    let bytes = write_gguf(&SyntheticSpec::tiny_mistral(), &meta).unwrap();
    let mut file = GgufFile::open(std::io::Cursor::new(bytes)).unwrap();
    let mut session = sprig_engine::Session::load(&mut file).unwrap();
    let (ids, _) = session.generate(&[1, 1000, 2000], sprig_engine::SamplingParams::greedy(4), &mut |_| {}).unwrap();
    assert_eq!(ids.len(), 4);
}

#[test]
fn a_conversation_longer_than_the_memory_allows_drops_its_oldest_turns_and_runs() {
    let meta = SentencePieceModel::parse(MISTRAL_TOKENIZER).unwrap().gguf_metadata();
    let bytes = write_gguf(&SyntheticSpec::tiny_mistral(), &meta).unwrap();
    let mut session = sprig_engine::Session::load(&mut GgufFile::open(std::io::Cursor::new(bytes)).unwrap()).unwrap();
    // What a worker whose memory holds 96 positions is given.
    session.limit_context(96);
    assert_eq!(session.context(), 96);
    let long = "word ".repeat(20);
    let mut messages = Vec::new();
    for i in 0..6 {
        messages.push(ChatMessage::new(Role::User, format!("question {i}: {long}")));
        messages.push(ChatMessage::new(Role::Assistant, long.clone()));
    }
    messages.push(ChatMessage::new(Role::User, "the last question".to_string()));
    let (ids, dropped) = session.fit_chat_prompt(&messages, 16).unwrap();
    assert!(dropped > 0, "the oldest turns were left out");
    assert!(ids.len() <= 96 - 16, "{} prompt tokens", ids.len());
    // A reply longer than the room left stops when the limit is reached.
    let (out, stats) = session.generate(&ids, sprig_engine::SamplingParams::greedy(500), &mut |_| {}).unwrap();
    assert!(session.cached().len() <= 96, "{} positions cached", session.cached().len());
    // (The last token is sampled from the last cached position, not cached.)
    assert_eq!(ids.len() + out.len(), 97, "{} + {}", ids.len(), out.len());
    assert_eq!(stats.stop, sprig_engine::StopReason::ContextFull);
}

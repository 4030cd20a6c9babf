//! A conversation longer than the memory left can hold, in headless Chromium:
//! the worker's wasm memory is filled (as a big model's weights fill it) until
//! only a little more than [`MEMORY_MARGIN`] is left below 4 GiB, the usable
//! context is fitted to what is left ([`Host::fit_context`], as the worker
//! does after every load), and a chat longer than that goes on: its oldest
//! turns drop out, each reply ends normally, and the memory stays inside the
//! margin. `scripts/test` runs it as its own test binary (its memory stays
//! full until the page closes).
#![cfg(target_arch = "wasm32")]

use std::io::Cursor;

use sprig_engine::model::Partition;
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_protocol::{Event, GenerationSettings, Message, ReplyStats, Role};
use sprig_worker::host::{memory_bytes, MEMORY_MARGIN, RESERVED_CONTEXT, WASM_MEMORY_BYTES};
use sprig_worker::Host;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// Mistral's tokenizer (fetched by `scripts/fetch-models`).
const MISTRAL_TOKENIZER: &[u8] = include_bytes!("../../../models/tokenizer.model.v1");

/// Bytes left free beyond [`MEMORY_MARGIN`] once the memory is filled.
const LEFT: u64 = 1 << 20;

fn message(role: Role, text: String) -> Message {
    Message { role, content: text }
}

/// About `words` tokens of text, different for each `turn`.
fn long_text(turn: usize, words: usize) -> String {
    const WORDS: [&str; 8] = ["river", "stone", "garden", "lamp", "window", "cloud", "bread", "letter"];
    (0..words).map(|i| WORDS[(i * 7 + turn) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

/// Runs one reply to its end: its `Started` prompt size and dropped turns, and its stats.
fn reply(host: &mut Host, turn: u64, messages: &[Message], settings: &GenerationSettings) -> (usize, usize, ReplyStats, String) {
    let (prompt, dropped) = match host.start(turn, messages, settings) {
        Event::Started { prompt_tokens, dropped_messages, .. } => (prompt_tokens, dropped_messages),
        other => panic!("the reply did not start: {other:?}"),
    };
    let mut text = String::new();
    for _ in 0..=settings.max_tokens + 1 {
        for event in host.step() {
            match event {
                Event::Token { text: t, .. } => text.push_str(&t),
                Event::Done { stats, .. } => return (prompt, dropped, stats, text),
                other => panic!("the reply failed: {other:?}"),
            }
        }
    }
    panic!("the reply did not end after {} steps", settings.max_tokens + 2)
}

#[wasm_bindgen_test]
fn a_chat_longer_than_the_memory_headroom_drops_its_oldest_turns_and_goes_on() {
    // A Mistral-shaped model with a long context and a small cache per position.
    let spec = SyntheticSpec { context_length: 16_384, ..SyntheticSpec::tiny_mistral() };
    let meta = SentencePieceModel::parse(MISTRAL_TOKENIZER).unwrap().gguf_metadata();
    let bytes = write_gguf(&spec, &meta).unwrap();
    let size = bytes.len() as u64;
    let mut host = Host::new();
    let model = host.load(vec![Cursor::new(bytes)], size, Partition::WHOLE, &mut |_| {}).unwrap();
    assert_eq!(model.context_length, 16_384);

    // Fill the memory as a model of nearly 4 GiB would, leaving LEFT bytes
    // beyond the margin: room for about 2,048 more positions (512 bytes each).
    // (In tensors of at most 256 MiB: one wasm32 allocation stays under 2 GiB.)
    let mut weights: Vec<Vec<u8>> = Vec::new();
    loop {
        let fill = (WASM_MEMORY_BYTES - memory_bytes()).saturating_sub(MEMORY_MARGIN + LEFT).min(256 << 20);
        if fill < 64 << 10 {
            break;
        }
        let mut tensor: Vec<u8> = Vec::new();
        tensor.try_reserve_exact(usize::try_from(fill).unwrap()).expect("the memory grows to nearly 4 GiB");
        weights.push(tensor);
    }
    let filled = memory_bytes();
    assert!(filled >= WASM_MEMORY_BYTES - MEMORY_MARGIN - 2 * LEFT, "memory {filled}");

    let context = host.fit_context(filled, &[]).expect("a model is loaded");
    assert!((RESERVED_CONTEXT + 1_000..RESERVED_CONTEXT + 3_000).contains(&context), "usable context {context}");

    // Ten long exchanges, about 8,000 tokens: more than the memory holds.
    let settings = GenerationSettings { temperature: 0.0, max_tokens: 24, ..GenerationSettings::default() };
    let mut messages = Vec::new();
    for turn in 0..10 {
        messages.push(message(Role::User, format!("Question {turn}: {}", long_text(turn, 400))));
        messages.push(message(Role::Assistant, long_text(turn + 1, 400)));
    }
    messages.push(message(Role::User, "And the last question?".into()));
    let (first, dropped, stats, answer) = reply(&mut host, 1, &messages, &settings);
    assert!(dropped > 0, "the oldest turns drop out");
    assert!(first + settings.max_tokens <= context, "{first} prompt tokens in a context of {context}");
    assert_eq!(stats.dropped_messages, dropped);
    assert!(stats.generated_tokens > 0);

    // The chat goes on: the answer and another long question.
    messages.push(message(Role::Assistant, answer));
    messages.push(message(Role::User, format!("One more: {}", long_text(11, 600))));
    let (prompt, dropped_again, stats, _) = reply(&mut host, 2, &messages, &settings);
    assert!(dropped_again >= dropped, "{dropped_again} dropped after {dropped}");
    assert!(prompt + settings.max_tokens <= context);
    assert!(stats.generated_tokens > 0);

    // Everything the chat needed beyond the fitted cache came out of the margin.
    let grown = memory_bytes() - filled;
    assert!(grown < MEMORY_MARGIN, "the memory grew by {grown} bytes during the chat");
    web_sys::console::log_1(
        &format!(
            "memory {filled} bytes after filling, usable context {context}, prompts {first} and {prompt} tokens \
             ({dropped} then {dropped_again} messages dropped), {grown} bytes grown while chatting",
        )
        .into(),
    );
    drop(weights);
}

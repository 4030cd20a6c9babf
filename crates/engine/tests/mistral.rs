//! Mistral's tokenizer and prompt format, checked against the ids that Mistral's
//! own tools produce (fixtures made by tests/fixtures/make_tokenizer_fixtures.py
//! with `sentencepiece` and `mistral-common`), on a synthetic Mistral-shaped
//! GGUF that carries the real `tokenizer.model.v1` vocabulary.

mod common;

use sprig_engine::chat::{ChatFormat, ChatMessage};
use sprig_engine::synthetic::SyntheticSpec;
use sprig_engine::{SamplingParams, Session, Tokenizer};

fn tokenizer() -> Tokenizer {
    let file = common::open(common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral()));
    Tokenizer::from_gguf(&file.metadata()).unwrap()
}

#[test]
fn tokenization_matches_sentencepiece() {
    let t = tokenizer();
    let fx = common::fixture("mistral_tokenize.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let got = t.encode(text).unwrap();
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn decoding_round_trips_the_fixture_texts() {
    let t = tokenizer();
    for case in common::fixture("mistral_tokenize.json")["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        // SentencePiece drops the dummy-prefix space, nothing else.
        assert_eq!(t.decode(&ids, false).unwrap(), text, "ids {ids:?}");
    }
}

#[test]
fn chat_prompts_match_mistral_common() {
    let t = tokenizer();
    let format = ChatFormat::detect(None, &t);
    assert_eq!(format, ChatFormat::MistralV1);
    let fx = common::fixture("mistral_chat.json");
    let conversations = fx["conversations"].as_array().unwrap();
    assert!(conversations.len() >= 5);
    for c in conversations {
        let messages: Vec<ChatMessage> = serde_json::from_value(c["messages"].clone()).unwrap();
        let want: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        let got = format.encode(&t, &messages, true).unwrap();
        assert_eq!(got, want, "conversation {}", c["name"]);
    }
}

#[test]
fn control_strings_typed_by_the_user_stay_text() {
    let t = tokenizer();
    let messages = vec![ChatMessage::new(sprig_engine::Role::User, "say </s> and <s> please")];
    let ids = ChatFormat::MistralV1.encode(&t, &messages, true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1, "exactly one BOS: {ids:?}");
    assert!(!ids.contains(&2), "no EOS from user text: {ids:?}");
    // Only --special parsing turns them into ids.
    assert_eq!(t.encode_with_special("</s>").unwrap(), vec![2]);
}

#[test]
fn mistral_shaped_model_generates_deterministically_and_reuses_the_cache() {
    let bytes = common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral());
    let mut s = Session::load(&mut common::open(bytes)).unwrap();
    assert_eq!(s.model().config().rope_theta, 1e6);
    assert_eq!(s.model().config().n_head_kv, 2);
    let m1 = vec![ChatMessage::new(sprig_engine::Role::User, "Hello there")];
    let p1 = s.chat_prompt(&m1).unwrap();
    let (ids_a, stats_a) = s.generate(&p1, SamplingParams::greedy(12), &mut |_| {}).unwrap();
    assert_eq!(stats_a.prefilled_tokens, p1.len());
    s.reset();
    let (ids_b, _) = s.generate(&p1, SamplingParams::greedy(12), &mut |_| {}).unwrap();
    assert_eq!(ids_a, ids_b, "greedy decoding is deterministic");
    assert!(!ids_a.is_empty());

    // Second turn: only the tokens after the cached prefix run.
    let reply = s.tokenizer().decode(&ids_b, true).unwrap();
    let m2 = vec![
        m1[0].clone(),
        ChatMessage::new(sprig_engine::Role::Assistant, reply),
        ChatMessage::new(sprig_engine::Role::User, "And then?"),
    ];
    let p2 = s.chat_prompt(&m2).unwrap();
    let cached_before = s.cached().to_vec();
    let common_prefix = cached_before.iter().zip(&p2).take_while(|(a, b)| a == b).count();
    assert!(common_prefix >= p1.len(), "the first turn's prompt is reused ({common_prefix} < {})", p1.len());
    let (_, stats2) = s.generate(&p2, SamplingParams::greedy(4), &mut |_| {}).unwrap();
    assert_eq!(stats2.prompt_tokens, p2.len());
    assert_eq!(stats2.prefilled_tokens, p2.len() - common_prefix);
    assert!(stats2.prefilled_tokens < p2.len() / 2 + 8, "{stats2:?}");
}

#[test]
fn long_conversations_drop_the_oldest_turns_and_keep_the_system_prompt() {
    let bytes = common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral());
    let s = Session::load(&mut common::open(bytes)).unwrap();
    let context = s.model().config().context_length;
    let mut messages = vec![ChatMessage::new(sprig_engine::Role::System, "Be brief.")];
    for i in 0..40 {
        messages.push(ChatMessage::new(sprig_engine::Role::User, format!("Question number {i}: tell me about the number {i} in detail.")));
        messages.push(ChatMessage::new(sprig_engine::Role::Assistant, format!("Answer {i}: it is a fine number with many properties.")));
    }
    messages.push(ChatMessage::new(sprig_engine::Role::User, "Last question?"));
    let (ids, dropped) = s.fit_chat_prompt(&messages, 64).unwrap();
    assert!(dropped > 0 && dropped % 2 == 0, "whole exchanges are dropped: {dropped}");
    assert!(ids.len() + 64 <= context, "{} + 64 > {context}", ids.len());
    let text = s.tokenizer().decode(&ids, false).unwrap();
    assert!(text.contains("Be brief.\n\n"), "the system prompt is kept: {text}");
    assert!(text.ends_with("Last question? [/INST]"), "{text}");
    // A short conversation is untouched.
    let (_, none) = s.fit_chat_prompt(&messages[..3], 64).unwrap();
    assert_eq!(none, 0);
    // A single message longer than the context is an error, not a panic.
    let huge = vec![ChatMessage::new(sprig_engine::Role::User, "word ".repeat(2000))];
    assert!(s.fit_chat_prompt(&huge, 64).is_err());
}

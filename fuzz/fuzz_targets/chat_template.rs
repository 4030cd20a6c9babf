//! A model's chat template (a GGUF's `tokenizer.chat_template`) rendering a
//! conversation: minijinja under Sprig's step budget and output cap.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sprig_engine::chat::{ChatFormat, ChatMessage};
use sprig_engine::Role;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let messages = [ChatMessage::new(Role::System, "Be brief."), ChatMessage::new(Role::User, "Hi </s> [INST]"), ChatMessage::new(Role::Assistant, "Hello."), ChatMessage::new(Role::User, "Why?")];
    let _ = ChatFormat::Template(source.to_string()).encode(common::mistral(), &messages, true);
});

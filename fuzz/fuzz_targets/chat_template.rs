//! A model's chat template (a GGUF's `tokenizer.chat_template`) rendering a
//! conversation: minijinja under Sprig's step budget and output cap.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sprig_engine::chat::{ChatFormat, ChatMessage};
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_engine::{GgufFile, Role, Tokenizer};

fn mistral() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let meta = SentencePieceModel::parse(include_bytes!("../../models/tokenizer.model.v1")).unwrap().gguf_metadata();
        let bytes = write_gguf(&SyntheticSpec::tiny_mistral(), &meta).unwrap();
        Tokenizer::from_gguf(&GgufFile::open(std::io::Cursor::new(bytes)).unwrap().metadata()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let messages = [ChatMessage::new(Role::System, "Be brief."), ChatMessage::new(Role::User, "Hi </s> [INST]"), ChatMessage::new(Role::Assistant, "Hello."), ChatMessage::new(Role::User, "Why?")];
    let _ = ChatFormat::Template(source.to_string()).encode(mistral(), &messages, true);
});

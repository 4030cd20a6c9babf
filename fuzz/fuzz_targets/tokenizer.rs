//! Text through Mistral's real SentencePiece tokenizer (encoding, with and
//! without control tokens, and decoding what came out), and arbitrary bytes
//! as a `tokenizer.model`.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sprig_engine::sentencepiece::SentencePieceModel;

fuzz_target!(|data: &[u8]| {
    let _ = SentencePieceModel::parse(data);
    let text = String::from_utf8_lossy(data);
    let t = common::mistral();
    for ids in [t.encode(&text), t.encode_with_special(&text)].into_iter().flatten() {
        let _ = t.decode(&ids, false);
        let _ = t.decode(&ids, true);
    }
});

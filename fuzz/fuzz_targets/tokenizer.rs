//! Text through Mistral's real SentencePiece tokenizer (encoding, with and
//! without control tokens, and decoding what came out), and arbitrary bytes
//! as a `tokenizer.model`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_engine::{GgufFile, Tokenizer};

fn mistral() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let meta = SentencePieceModel::parse(include_bytes!("../../models/tokenizer.model.v1")).unwrap().gguf_metadata();
        let bytes = write_gguf(&SyntheticSpec::tiny_mistral(), &meta).unwrap();
        Tokenizer::from_gguf(&GgufFile::open(std::io::Cursor::new(bytes)).unwrap().metadata()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = SentencePieceModel::parse(data);
    let text = String::from_utf8_lossy(data);
    let t = mistral();
    for ids in [t.encode(&text), t.encode_with_special(&text)].into_iter().flatten() {
        let _ = t.decode(&ids, false);
        let _ = t.decode(&ids, true);
    }
});

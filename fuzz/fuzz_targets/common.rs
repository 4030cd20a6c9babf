//! What the fuzz targets share.

use std::sync::OnceLock;

use sprig_engine::sentencepiece::SentencePieceModel;
use sprig_engine::synthetic::{write_gguf, SyntheticSpec};
use sprig_engine::{GgufFile, Tokenizer};

/// Mistral's real tokenizer (`models/tokenizer.model.v1`, fetched by
/// `scripts/fetch-models`), built once per process.
pub fn mistral() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let meta = SentencePieceModel::parse(include_bytes!("../../models/tokenizer.model.v1")).unwrap().gguf_metadata();
        let bytes = write_gguf(&SyntheticSpec::tiny_mistral(), &meta).unwrap();
        Tokenizer::from_gguf(&GgufFile::open(std::io::Cursor::new(bytes)).unwrap().metadata()).unwrap()
    })
}

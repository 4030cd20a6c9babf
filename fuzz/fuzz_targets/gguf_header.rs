//! A GGUF file's header and metadata: the bounded header check, candle's
//! reader behind it, the model's summary, hyper-parameters and tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprig_engine::{GgufFile, LlamaConfig, Tokenizer};

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = GgufFile::open(std::io::Cursor::new(data)) {
        let meta = file.metadata();
        let _ = file.info();
        let _ = LlamaConfig::from_metadata(&meta);
        let _ = Tokenizer::from_gguf(&meta);
    }
});

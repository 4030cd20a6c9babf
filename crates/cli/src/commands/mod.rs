//! One module per subcommand, and what they share: opening a model file.

pub mod bench;
pub mod chat_prompt;
pub mod generate;
pub mod inspect;
pub mod manifest;
pub mod tokenize;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use sprig_engine::gguf::split_paths;
use sprig_engine::GgufFile;

/// Opens a GGUF model: one file, or all shards of a gguf-split model when
/// `path` names one of them.
pub fn open_gguf(path: &Path) -> anyhow::Result<GgufFile<BufReader<File>>> {
    let readers = split_paths(path)
        .into_iter()
        .map(|p| File::open(&p).map(BufReader::new).with_context(|| format!("cannot open {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    GgufFile::open_split(readers).with_context(|| format!("cannot read {}", path.display()))
}

/// Loads a chat session from a GGUF model on the CPU.
pub fn load_session(path: &Path) -> anyhow::Result<sprig_engine::Session> {
    let mut file = open_gguf(path)?;
    sprig_engine::Session::load(&mut file, &candle_core::Device::Cpu).with_context(|| format!("cannot load {}", path.display()))
}

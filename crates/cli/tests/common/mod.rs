//! Helpers shared by the CLI's integration tests that run the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The demo model, fetched by `scripts/fetch-models`.
pub const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf");

/// Runs `sprig` with `args`: whether it succeeded, its stdout and its stderr.
pub fn sprig(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sprig")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs `sprig` with `args`: whether it succeeded, and its stdout and stderr
/// together (for messages that may go to either).
pub fn sprig_merged(args: &[&str]) -> (bool, String) {
    let (ok, out, err) = sprig(args);
    (ok, out + &err)
}

/// Asks `model` `question` as a chat, greedily with no repeat penalty, for
/// `max_tokens` tokens (`extra`: more arguments, e.g. `--ids`): as [`sprig`].
pub fn greedy_chat(model: &str, question: &str, max_tokens: usize, extra: &[&str]) -> (bool, String, String) {
    let max_tokens = max_tokens.to_string();
    let mut args = vec!["generate", "--model", model, "--prompt", question, "--chat", "--temperature", "0", "--repeat-penalty", "1"];
    args.extend(["--max-tokens", &max_tokens]);
    args.extend(extra);
    sprig(&args)
}

/// Every tensor of the GGUF model at `path` (any shard names a split
/// model): its type, shape and values, dequantized.
pub fn dequantized(path: &str) -> std::collections::BTreeMap<String, (candle_core::quantized::GgmlDType, Vec<usize>, Vec<f32>)> {
    use candle_core::Device;
    let readers = sprig_engine::gguf::split_paths(Path::new(path))
        .into_iter()
        .map(|p| std::io::BufReader::new(std::fs::File::open(p).unwrap()))
        .collect();
    let mut file = sprig_engine::GgufFile::open_split(readers).unwrap();
    let names: Vec<String> = file.tensors().into_iter().map(|(n, _)| n.to_string()).collect();
    names
        .into_iter()
        .map(|n| {
            let t = file.tensor(&n, &Device::Cpu).unwrap();
            let v = t.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n, (t.dtype(), t.shape().dims().to_vec(), v))
        })
        .collect()
}

/// `path`, checked to exist.
pub fn model_file(path: &str) -> &str {
    assert!(Path::new(path).exists(), "{path} is missing: run scripts/fetch-models");
    path
}

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// An empty `sprig-cli-<name>-<pid>`.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sprig-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

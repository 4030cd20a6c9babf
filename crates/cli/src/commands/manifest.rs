//! `sprig manifest FILE`: writes the shard manifest of an existing GGUF model
//! (one file, or all shards of a gguf-split model): names, sizes, SHA-256.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use sprig_engine::gguf::split_paths;
use sprig_protocol::manifest::{Manifest, Shard};

/// Arguments of `sprig manifest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF file (any shard of a gguf-split model).
    pub file: PathBuf,
    /// The model's display name (default: the GGUF's `general.name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Where to write the manifest (default: `<first shard stem>.manifest.json` beside it).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The SHA-256 of a file, as lowercase hex, read in 1 MiB blocks.
///
/// # Errors
/// I/O errors, naming the file.
pub fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = sprig_protocol::hex(&hasher.finalize());
    Ok((hex, size))
}

/// Builds the manifest of the model `file` belongs to, with shard URLs relative
/// to the manifest (file names).
///
/// # Errors
/// Unreadable files; a file that is not a GGUF model.
pub fn build(file: &Path, name: Option<String>) -> anyhow::Result<Manifest> {
    let model = super::open_gguf(file)?;
    let name = match name {
        Some(n) => n,
        None => model.info()?.name,
    };
    let mut shards = Vec::new();
    for path in split_paths(file) {
        let (sha256, size) = sha256_file(&path)?;
        let url = path.file_name().and_then(|n| n.to_str()).context("a shard's file name is not UTF-8")?.to_string();
        shards.push(Shard { url, size, sha256 });
    }
    let total_size = shards.iter().map(|s| s.size).sum();
    let manifest = Manifest { name, format: "gguf".into(), total_size, shards };
    manifest.check()?;
    Ok(manifest)
}

/// Runs `sprig manifest`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let manifest = build(&args.file, args.name.clone())?;
    let first = split_paths(&args.file).into_iter().next().unwrap_or_else(|| args.file.clone());
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = first.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        first.with_file_name(format!("{stem}.manifest.json"))
    });
    let json = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(&output, json + "\n").with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!("wrote {} ({} shard(s), {} bytes)", output.display(), manifest.shards.len(), manifest.total_size);
    Ok(())
}

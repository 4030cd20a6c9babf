//! `sprig split INPUT --max-size 40MB --output DIR`: writes a GGUF model as
//! gguf-split shards (llama.cpp's convention) and their manifest into `DIR`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sprig_engine::gguf::{split_paths, write_split};

/// Arguments of `sprig split`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF model (one file, or any shard of a gguf-split model).
    pub input: PathBuf,
    /// Most tensor data per shard: bytes, or a number with a unit (40MB, 512MiB,
    /// 1GB). A tensor larger than this gets a shard of its own.
    #[arg(long, value_parser = super::parse_size)]
    pub max_size: u64,
    /// The directory to write the shards and `<prefix>.manifest.json` into
    /// (created if missing; must be empty unless `--force`).
    #[arg(long)]
    pub output: PathBuf,
    /// The model's display name in the manifest (default: the GGUF's `general.name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The shards' file name prefix (default: the input's name without `.gguf`
    /// and without its own `-00001-of-0000N` suffix).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Write into a directory that is not empty, replacing the shards and
    /// manifest of the same prefix.
    #[arg(long)]
    pub force: bool,
}

/// The default shard prefix of `input`: its file name without `.gguf` and
/// without a gguf-split `-NNNNN-of-MMMMM` suffix.
fn default_prefix(input: &Path) -> anyhow::Result<String> {
    let name = input.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} has no UTF-8 file name", input.display()))?;
    let stem = name.strip_suffix(".gguf").unwrap_or(name);
    let stem = if split_paths(input).len() > 1 { &stem[..stem.len() - "-00001-of-00001".len()] } else { stem };
    Ok(stem.to_string())
}

/// Whether `name` is one of the files `sprig split` writes for `prefix`
/// (a shard, a shard being written, the manifest).
fn is_output_of(name: &str, prefix: &str) -> bool {
    let name = name.strip_suffix(".part").unwrap_or(name);
    if name == format!("{prefix}.manifest.json") {
        return true;
    }
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else { return false };
    let Some(numbers) = rest.strip_suffix(".gguf") else { return false };
    let b = numbers.as_bytes();
    b.len() == 14 && &numbers[5..9] == "-of-" && b[..5].iter().chain(&b[9..]).all(u8::is_ascii_digit)
}

/// Checks the output directory (creating it if missing) and, with `--force`,
/// removes a previous split of the same prefix from it.
fn prepare_output(args: &Args, prefix: &str, inputs: &[PathBuf]) -> anyhow::Result<()> {
    let dir = &args.output;
    if !dir.exists() {
        return std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()));
    }
    if !dir.is_dir() {
        bail!("the output {} is not a directory", dir.display());
    }
    let canonical_dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    for input in inputs {
        let name = input.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let parent = input.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf));
        if parent.as_deref() == Some(canonical_dir.as_path()) && is_output_of(name, prefix) {
            bail!("the input {} would be replaced by the output; choose another --output or --prefix", input.display());
        }
    }
    let entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !args.force {
        bail!("the output directory {} is not empty; use --force to write into it anyway", dir.display());
    }
    for entry in entries {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| is_output_of(n, prefix)) {
            let path = entry.path();
            std::fs::remove_file(&path).with_context(|| format!("cannot remove the old {}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs `sprig split`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None => default_prefix(&args.input)?,
    };
    let inputs = split_paths(&args.input);
    let readers = inputs
        .iter()
        .map(|p| File::open(p).map(BufReader::new).with_context(|| format!("cannot open {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    prepare_output(args, &prefix, &inputs)?;
    let shards = write_split(readers, &args.output, &prefix, args.max_size, &mut |s| {
        eprintln!("wrote {} ({} tensors, {} bytes)", s.path.display(), s.tensors, s.file_bytes);
    })
    .with_context(|| format!("cannot split {}", args.input.display()))?;
    let first = &shards.first().context("no shard was written")?.path;
    let manifest = super::manifest::build(first, args.name.clone())?;
    let path = args.output.join(format!("{prefix}.manifest.json"));
    let part = args.output.join(format!("{prefix}.manifest.json.part"));
    let json = serde_json::to_string_pretty(&manifest)? + "\n";
    std::fs::write(&part, json).with_context(|| format!("cannot write {}", part.display()))?;
    std::fs::rename(&part, &path).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {} ({} shards, {} bytes)", path.display(), manifest.shards.len(), manifest.total_size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_drop_gguf_and_the_split_suffix() {
        assert_eq!(default_prefix(Path::new("models/a.Q4_1.gguf")).unwrap(), "a.Q4_1");
        assert_eq!(default_prefix(Path::new("m/a-b-00002-of-00003.gguf")).unwrap(), "a-b");
        assert_eq!(default_prefix(Path::new("a.bin")).unwrap(), "a.bin");
    }

    #[test]
    fn outputs_of_a_prefix_are_recognised() {
        assert!(is_output_of("m-00001-of-00003.gguf", "m"));
        assert!(is_output_of("m-00001-of-00003.gguf.part", "m"));
        assert!(is_output_of("m.manifest.json", "m"));
        assert!(is_output_of("m.manifest.json.part", "m"));
        assert!(!is_output_of("m.gguf", "m"));
        assert!(!is_output_of("m-x-00001-of-00003.gguf", "m"));
        assert!(!is_output_of("mm-00001-of-00003.gguf", "m"));
        assert!(!is_output_of("m-0001-of-00003.gguf", "m"));
    }
}

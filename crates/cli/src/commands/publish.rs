//! `sprig publish OUT --base-url URL [--catalog models.json]`: adds (or
//! updates) a model in a deployment's catalog, `models.json`, which the app
//! reads at run time beside `index.html`. `OUT` is what `sprig convert`
//! wrote (a directory with `manifest.json` and its shards) or one GGUF file;
//! `--base-url` is where it will be uploaded (absolute, or relative to the
//! catalog). The entry takes its size from the manifest (or the file), its
//! SHA-256 for one GGUF file, its label and provenance (source, pruning,
//! quantization) from the model's `general.*` and `sprig.*` keys. The catalog
//! is checked as the app checks it and replaced atomically.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use sprig_protocol::catalog::{Catalog, CatalogModel, ModelDefaults, Provenance, CATALOG_VERSION};
use sprig_protocol::manifest::Manifest;

/// Arguments of `sprig publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What `sprig convert` wrote (a directory with manifest.json), or one GGUF file.
    pub model: PathBuf,
    /// Where the model's files will be served from: an http(s) URL, or a
    /// path relative to the catalog (e.g. `models/mistral`).
    #[arg(long)]
    pub base_url: String,
    /// The catalog to update (created when absent).
    #[arg(long, default_value = "models.json")]
    pub catalog: PathBuf,
    /// The entry's id (default: from the model's directory or file name).
    #[arg(long)]
    pub id: Option<String>,
    /// What the picker shows (default: the model's `general.name`).
    #[arg(long)]
    pub label: Option<String>,
    /// The model's licence (default: its `general.license`; required when it has none).
    #[arg(long)]
    pub license: Option<String>,
    /// A sentence about the model.
    #[arg(long)]
    pub description: Option<String>,
    /// The system prompt the model starts with.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Workers to split the model across (0: chosen from its size).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The most context positions a conversation uses.
    #[arg(long)]
    pub context: Option<usize>,
    /// Whether users may load models from URLs of their own (a new catalog: no).
    #[arg(long)]
    pub allow_custom_urls: Option<bool>,
}

/// The model's files as published: the URL the catalog names, its size, and
/// its SHA-256 for one GGUF file; the GGUF that holds its metadata.
struct Published {
    file_name: String,
    size: u64,
    sha256: Option<String>,
    first_gguf: PathBuf,
}

fn published(model: &Path) -> anyhow::Result<Published> {
    if model.is_dir() {
        let path = model.join("manifest.json");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}: is it what sprig convert wrote?", path.display()))?;
        let manifest = Manifest::parse(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
        let first = manifest.shards.first().context("the manifest lists no shard")?;
        for shard in &manifest.shards {
            let file = model.join(&shard.url);
            let len = std::fs::metadata(&file).with_context(|| format!("the manifest names {}, which is missing", file.display()))?.len();
            if len != shard.size {
                bail!("{} has {len} bytes, the manifest says {}", file.display(), shard.size);
            }
        }
        return Ok(Published {
            file_name: "manifest.json".into(),
            size: manifest.total_size,
            sha256: None,
            first_gguf: model.join(&first.url),
        });
    }
    let mut file = std::fs::File::open(model).with_context(|| format!("cannot open {}", model.display()))?;
    let mut hash = Sha256::new();
    let size = std::io::copy(&mut file, &mut hash).with_context(|| format!("cannot read {}", model.display()))?;
    let file_name = model.file_name().context("the model path has no file name")?.to_string_lossy().into_owned();
    Ok(Published { file_name, size, sha256: Some(sprig_protocol::hex(&hash.finalize())), first_gguf: model.to_path_buf() })
}

/// A catalog id from a file or directory name: lowercase, other characters as `-`.
fn id_from(name: &str) -> String {
    let id: String = name
        .trim_end_matches(".gguf")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c.to_ascii_lowercase() } else { '-' })
        .collect();
    id.chars().take(64).collect()
}

/// The catalog's URL for `file` under `base`.
fn join(base: &str, file: &str) -> String {
    format!("{}/{file}", base.trim_end_matches('/'))
}

/// The label, licence and provenance the model's keys give.
fn described(gguf: &Path) -> anyhow::Result<(Option<String>, Option<String>, Provenance)> {
    let file = super::open_gguf(gguf)?;
    let meta = file.metadata();
    let text = |k: &str| meta.opt_string(k).ok().flatten().map(str::to_string);
    let pruning = text("sprig.pruning.method").map(|m| match meta.opt_f64("sprig.pruning.sparsity").ok().flatten() {
        Some(s) => format!("{m} {:.0} %", s * 100.0),
        None => m,
    });
    let quantization = text("sprig.quantization.recipe").map(|r| match meta.opt_bool("sprig.quantization.keep_zeros").ok().flatten() {
        Some(true) => format!("{r}, pruned zeros kept"),
        Some(false) => format!("{r}, plain"),
        None => r,
    });
    let provenance = Provenance { source: text("sprig.source"), pruning, quantization };
    Ok((text("general.name"), text("general.license"), provenance))
}

fn read_catalog(path: &Path) -> anyhow::Result<Option<Catalog>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Catalog::parse(&text).with_context(|| format!("{} is not a valid catalog", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Runs `sprig publish`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let files = published(&args.model)?;
    let (name, license, provenance) = described(&files.first_gguf)?;
    let canonical = args.model.canonicalize().with_context(|| format!("cannot resolve {}", args.model.display()))?;
    let stem = canonical.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let id = args.id.clone().unwrap_or_else(|| id_from(&stem));
    let license = args
        .license
        .clone()
        .or(license)
        .context("the model records no licence: pass --license (e.g. apache-2.0 for Mistral-7B-Instruct-v0.2)")?;
    let defaults = ModelDefaults {
        system_prompt: args.system_prompt.clone(),
        context: args.context,
        workers: args.workers,
        ..ModelDefaults::default()
    };
    let entry = CatalogModel {
        id: id.clone(),
        label: args.label.clone().or(name).unwrap_or_else(|| stem.clone()),
        url: join(&args.base_url, &files.file_name),
        size: files.size,
        sha256: files.sha256,
        license,
        description: args.description.clone(),
        defaults: (defaults != ModelDefaults::default()).then_some(defaults),
        provenance: (provenance != Provenance::default()).then_some(provenance),
    };
    entry.check().map_err(|(field, reason)| anyhow::anyhow!("the entry's {field} {reason}"))?;

    let existing = read_catalog(&args.catalog)?;
    let created = existing.is_none();
    let mut catalog = existing.unwrap_or(Catalog { version: CATALOG_VERSION, allow_custom_urls: false, models: Vec::new() });
    if let Some(allow) = args.allow_custom_urls {
        catalog.allow_custom_urls = allow;
    }
    let replaced = catalog.find(&id).is_some();
    catalog.upsert(entry.clone());
    catalog.check().with_context(|| format!("the updated {} would not be valid", args.catalog.display()))?;
    let json = serde_json::to_string_pretty(&catalog)? + "\n";
    let part = args.catalog.with_extension("json.part");
    std::fs::write(&part, json).with_context(|| format!("cannot write {}", part.display()))?;
    std::fs::rename(&part, &args.catalog).with_context(|| format!("cannot replace {}", args.catalog.display()))?;

    println!(
        "{} {:?} in {}{}: {} ({} bytes)",
        if replaced { "updated" } else { "added" },
        id,
        args.catalog.display(),
        if created { " (new catalog, custom URLs not allowed)" } else { "" },
        entry.url,
        entry.size
    );
    let what = if args.model.is_dir() { format!("every file of {}", args.model.display()) } else { args.model.display().to_string() };
    println!(
        "next: upload {what} to {} (with CORS and Range, docs/deploy.md), and serve {} beside index.html",
        args.base_url,
        args.catalog.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_urls_from_names() {
        assert_eq!(id_from("Mistral-7B Wanda30-q4_k_m"), "mistral-7b-wanda30-q4_k_m");
        assert_eq!(id_from("SmolLM2-135M.Q4_1.gguf"), "smollm2-135m.q4_1");
        assert_eq!(join("https://hf.co/org/repo/resolve/main/", "manifest.json"), "https://hf.co/org/repo/resolve/main/manifest.json");
        assert_eq!(join("models/mistral", "manifest.json"), "models/mistral/manifest.json");
    }
}

//! The deployment's model catalog, `models.json`: the models a Sprig site
//! offers, read by the app at run time (beside `index.html`) and written by
//! `sprig publish`. Parsed, checked and serialized here, so the reader and
//! the writer agree.
//!
//! ```json
//! { "version": 1, "allow_custom_urls": true,
//!   "models": [ { "id": "demo", "label": "SmolLM2 135M Instruct · Q4_1 (demo)",
//!     "url": "models/SmolLM2-135M-Instruct.Q4_1.manifest.json", "size": 98362432,
//!     "sha256": null, "license": "Apache-2.0", "description": "…",
//!     "defaults": { "temperature": 0.7, "max_tokens": 512 },
//!     "provenance": { "source": "…", "pruning": "…", "quantization": "…" } } ] }
//! ```
//!
//! A model's `url` is a shard manifest (a path ending in `.json`, which
//! carries its own hashes: no `sha256` then) or one GGUF file (its `sha256`
//! required), relative to the catalog's own URL or absolute (http or https).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::{ModelSource, MAX_MODEL_BYTES};

/// The catalog format this build reads and writes.
pub const CATALOG_VERSION: u32 = 1;

/// The longest catalog text read, in bytes.
pub const MAX_CATALOG_BYTES: usize = 1 << 20;

/// The most models a catalog may list.
pub const MAX_CATALOG_MODELS: usize = 256;

/// The longest model id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// The longest label or licence, in bytes.
const MAX_LABEL_BYTES: usize = 256;

/// The longest URL, description or provenance field, in bytes.
const MAX_TEXT_BYTES: usize = 4096;

/// A deployment's catalog of models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The format's version: [`CATALOG_VERSION`].
    pub version: u32,
    /// Whether users may load models from URLs of their own (and the
    /// widget's `data-model` may be a URL rather than a catalog id).
    pub allow_custom_urls: bool,
    /// The models offered, in the order the picker lists them.
    pub models: Vec<CatalogModel>,
}

/// One model of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    /// Stable id (`[a-z0-9._-]`, unique in the catalog): what the widget's
    /// `data-model` names.
    pub id: String,
    /// What the user reads.
    pub label: String,
    /// A shard manifest (`.json`) or one GGUF file, relative to the
    /// catalog's URL or absolute.
    pub url: String,
    /// Download size in bytes.
    pub size: u64,
    /// The GGUF file's SHA-256 (64 lowercase hex digits); required for one
    /// GGUF file, absent for a manifest (which carries its shards' hashes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The model's licence (an SPDX id or a name).
    pub license: String,
    /// A sentence about the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Settings the model starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ModelDefaults>,
    /// Where the weights come from and what was done to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// A model's starting settings, each optional, each inside the range the
/// app's settings accept ([`crate::limits`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDefaults {
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// The longest reply, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// The most context positions a conversation uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<usize>,
    /// Workers to split the model across (0: chosen from its size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

/// Where a model's weights come from, as `sprig publish` reads it from the
/// GGUF's `sprig.*` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The checkpoint converted (e.g. a Hugging Face repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How it was pruned (e.g. `wanda 30 %`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruning: Option<String>,
    /// How it was quantized (e.g. `q4_k_m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

/// What is wrong with a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The text is longer than [`MAX_CATALOG_BYTES`].
    #[error("models.json is {0} bytes long; Sprig reads catalogs of at most {MAX_CATALOG_BYTES} bytes")]
    TooLong(usize),
    /// The JSON does not have the catalog's shape.
    #[error("models.json is not valid JSON of the catalog's shape: {0}")]
    Json(String),
    /// A version this build does not read.
    #[error("models.json has version {0}; this Sprig reads version {CATALOG_VERSION}")]
    Version(u32),
    /// More models than [`MAX_CATALOG_MODELS`].
    #[error("models.json lists {0} models; Sprig takes at most {MAX_CATALOG_MODELS}")]
    TooManyModels(usize),
    /// A model's field is wrong.
    #[error("models.json, model {index} (`{id}`): {field}: {reason}")]
    Model {
        /// Position of the model, from 1.
        index: usize,
        /// Its id, as written (cut to [`MAX_ID_BYTES`]).
        id: String,
        /// The field, e.g. `url` or `defaults.temperature`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Just the version, read before the rest: a catalog of another version is
/// refused as such, not for fields this build does not know.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// Whether `id` is a catalog id: 1 to [`MAX_ID_BYTES`] bytes of `a-z`,
/// `0-9`, `.`, `_` and `-`.
pub fn is_model_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
}

impl Catalog {
    /// Parses and checks a catalog.
    ///
    /// # Errors
    /// [`CatalogError`] saying what is wrong (and where).
    pub fn parse(json: &str) -> Result<Self, CatalogError> {
        if json.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLong(json.len()));
        }
        let VersionOnly { version } = serde_json::from_str(json).map_err(|e| CatalogError::Json(e.to_string()))?;
        if version != CATALOG_VERSION {
            return Err(CatalogError::Version(version));
        }
        let catalog: Self = serde_json::from_str(json).map_err(|e| CatalogError::Json(e.to_string()))?;
        catalog.check()?;
        Ok(catalog)
    }

    /// Checks every rule: the version, at most [`MAX_CATALOG_MODELS`]
    /// models with unique ids, and each model's fields
    /// ([`CatalogModel::check`]).
    ///
    /// # Errors
    /// [`CatalogError`] naming the model and the field.
    pub fn check(&self) -> Result<(), CatalogError> {
        if self.version != CATALOG_VERSION {
            return Err(CatalogError::Version(self.version));
        }
        if self.models.len() > MAX_CATALOG_MODELS {
            return Err(CatalogError::TooManyModels(self.models.len()));
        }
        let mut ids = HashSet::with_capacity(self.models.len());
        for (i, model) in self.models.iter().enumerate() {
            model.check().map_err(|(field, reason)| model.error(i, field, reason))?;
            if !ids.insert(model.id.as_str()) {
                return Err(model.error(i, "id", "an earlier model has the same id".into()));
            }
        }
        Ok(())
    }

    /// The model with this id.
    pub fn find(&self, id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Adds `model`, or replaces the one with its id (keeping its place).
    pub fn upsert(&mut self, model: CatalogModel) {
        match self.models.iter_mut().find(|m| m.id == model.id) {
            Some(old) => *old = model,
            None => self.models.push(model),
        }
    }
}

/// A field and what is wrong with it.
type FieldError = (&'static str, String);

impl CatalogModel {
    fn error(&self, index: usize, field: &'static str, reason: String) -> CatalogError {
        let id = self.id.char_indices().take_while(|(i, _)| *i < MAX_ID_BYTES).map(|(_, c)| c).collect();
        CatalogError::Model { index: index + 1, id, field, reason }
    }

    /// Whether the URL names a shard manifest (else one GGUF file).
    pub fn is_manifest(&self) -> bool {
        matches!(ModelSource::for_url(&self.url), ModelSource::Manifest { .. })
    }

    /// Checks the model's own fields: id, label, licence, URL (http, https
    /// or relative), size (1 byte to [`MAX_MODEL_BYTES`]), the SHA-256 a
    /// single GGUF needs (and a manifest must not have), text lengths, and
    /// the defaults against [`crate::limits`].
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !is_model_id(&self.id) {
            return Err(("id", format!("must be 1 to {MAX_ID_BYTES} characters of a-z, 0-9, '.', '_' and '-'")));
        }
        text("label", &self.label, MAX_LABEL_BYTES, true)?;
        text("license", &self.license, MAX_LABEL_BYTES, true)?;
        text("url", &self.url, MAX_TEXT_BYTES, true)?;
        check_url(&self.url).map_err(|reason| ("url", reason))?;
        if self.size == 0 || self.size > MAX_MODEL_BYTES {
            return Err(("size", format!("{} bytes is not between 1 and {MAX_MODEL_BYTES} (64 GiB)", self.size)));
        }
        match (&self.sha256, self.is_manifest()) {
            (Some(_), true) => return Err(("sha256", "a manifest carries its shards' hashes: leave sha256 out (or null)".into())),
            (None, false) => return Err(("sha256", "a single GGUF file needs its sha256".into())),
            (Some(h), false) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
                return Err(("sha256", "is not 64 lowercase hex digits".into()))
            }
            _ => {}
        }
        if let Some(d) = &self.description {
            text("description", d, MAX_TEXT_BYTES, false)?;
        }
        if let Some(p) = &self.provenance {
            for (field, value) in
                [("provenance.source", &p.source), ("provenance.pruning", &p.pruning), ("provenance.quantization", &p.quantization)]
            {
                if let Some(v) = value {
                    text(field, v, MAX_TEXT_BYTES, false)?;
                }
            }
        }
        if let Some(d) = &self.defaults {
            d.check()?;
        }
        Ok(())
    }
}

impl ModelDefaults {
    /// Checks each default set against the range the app's settings accept
    /// ([`crate::limits`]).
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        fn within<T: PartialOrd + std::fmt::Display>(
            field: &'static str,
            value: Option<T>,
            range: std::ops::RangeInclusive<T>,
        ) -> Result<(), FieldError> {
            match value {
                Some(v) if !range.contains(&v) => Err((field, format!("{v} is not between {} and {}", range.start(), range.end()))),
                _ => Ok(()),
            }
        }
        if let Some(p) = &self.system_prompt {
            text("defaults.system_prompt", p, limits::MAX_SYSTEM_PROMPT_BYTES, false)?;
        }
        within("defaults.temperature", self.temperature, limits::TEMPERATURE)?;
        within("defaults.top_p", self.top_p, limits::TOP_P)?;
        within("defaults.top_k", self.top_k, limits::TOP_K)?;
        within("defaults.max_tokens", self.max_tokens, limits::MAX_TOKENS)?;
        within("defaults.context", self.context, limits::CONTEXT)?;
        within("defaults.workers", self.workers, limits::WORKERS)
    }
}

/// Checks a text field's length (and that it is not blank, when `required`).
fn text(field: &'static str, value: &str, max: usize, required: bool) -> Result<(), FieldError> {
    if required && value.trim().is_empty() {
        return Err((field, "is empty".into()));
    }
    if value.len() > max {
        return Err((field, format!("is {} bytes long; at most {max} are accepted", value.len())));
    }
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
        return Err((field, "contains control characters".into()));
    }
    Ok(())
}

/// A model URL is relative (to the catalog) or http(s): never `file:`,
/// `data:`, `blob:`, `javascript:` or any other scheme.
fn check_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    if url.starts_with("//") {
        return Err("a scheme-relative URL (//host/…) is not accepted: write https://host/… or a relative path".into());
    }
    // A scheme is letters, digits, '+', '-', '.' before the first ':', and
    // before any '/', '?' or '#' (otherwise the ':' is in a relative path).
    let head = url.split(['/', '?', '#']).next().unwrap_or_default();
    match head.split_once(':') {
        Some((scheme, _)) if !scheme.is_empty() => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "http" || scheme == "https" {
                Ok(())
            } else {
                Err(format!("the scheme `{scheme}:` is not accepted: only http, https or a relative URL"))
            }
        }
        Some(_) => Err("starts with ':'".into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "b179a3ba3c9b3f5a1f7f4fae6e5b5e5c0c0a9a1d1c2b3a4f5e6d7c8b9a0f1e2d";

    const GOOD: &str = r#"{
      "version": 1,
      "allow_custom_urls": true,
      "models": [
        { "id": "demo", "label": "SmolLM2 135M Instruct · Q4_1 (demo)",
          "url": "models/SmolLM2-135M-Instruct.Q4_1.manifest.json", "size": 98362432,
          "sha256": null, "license": "Apache-2.0", "description": "A small model to try Sprig with.",
          "defaults": { "system_prompt": "Be brief.", "temperature": 0.7, "top_p": 0.9, "top_k": 40,
                        "max_tokens": 512, "context": 4096, "workers": 1 },
          "provenance": { "source": "HuggingFaceTB/SmolLM2-135M-Instruct", "pruning": "none", "quantization": "q4_1" } },
        { "id": "one-file.v2", "label": "One file", "url": "https://cdn.example/m.gguf", "size": 10,
          "sha256": "b179a3ba3c9b3f5a1f7f4fae6e5b5e5c0c0a9a1d1c2b3a4f5e6d7c8b9a0f1e2d", "license": "MIT" }
      ]
    }"#;

    fn good() -> Catalog {
        Catalog::parse(GOOD).unwrap()
    }

    fn gguf(id: &str) -> CatalogModel {
        CatalogModel {
            id: id.into(),
            label: "M".into(),
            url: "m.gguf".into(),
            size: 1,
            sha256: Some(HASH.into()),
            license: "MIT".into(),
            description: None,
            defaults: None,
            provenance: None,
        }
    }

    /// The error for `good()` with its first model changed by `change`.
    fn error_with(change: impl FnOnce(&mut CatalogModel)) -> String {
        let mut c = good();
        change(&mut c.models[0]);
        c.check().unwrap_err().to_string()
    }

    #[test]
    fn a_good_catalog_parses() {
        let c = good();
        assert_eq!(c.models.len(), 2);
        assert!(c.allow_custom_urls);
        let demo = c.find("demo").unwrap();
        assert!(demo.is_manifest());
        assert_eq!(demo.sha256, None);
        assert_eq!(demo.defaults.as_ref().and_then(|d| d.context), Some(4096));
        assert!(!c.find("one-file.v2").unwrap().is_manifest());
        // Absent and null optional fields are alike.
        let c = Catalog::parse(r#"{"version":1,"allow_custom_urls":false,"models":[]}"#).unwrap();
        assert!(c.models.is_empty() && !c.allow_custom_urls);
    }

    #[test]
    fn it_round_trips_through_json() {
        let c = good();
        let json = serde_json::to_string_pretty(&c).unwrap();
        assert_eq!(Catalog::parse(&json).unwrap(), c);
        // Absent optional fields stay absent.
        let json = serde_json::to_string(&Catalog { version: 1, allow_custom_urls: false, models: vec![gguf("a")] }).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"version":1,"allow_custom_urls":false,"models":[{{"id":"a","label":"M","url":"m.gguf","size":1,"sha256":"{HASH}","license":"MIT"}}]}}"#
            )
        );
    }

    #[test]
    fn upsert_replaces_in_place_or_appends() {
        let mut c = good();
        c.upsert(CatalogModel { label: "New".into(), ..gguf("demo") });
        assert_eq!((c.models.len(), c.models[0].label.as_str()), (2, "New"));
        c.upsert(gguf("third"));
        assert_eq!(c.models.len(), 3);
        c.check().unwrap();
    }

    #[test]
    fn only_version_1_is_read() {
        let v2 = r#"{"version":2,"allow_custom_urls":true,"models":[],"mirrors":["x"]}"#;
        assert_eq!(Catalog::parse(v2), Err(CatalogError::Version(2)));
        assert!(Catalog::parse(v2).unwrap_err().to_string().contains("version 2"));
        let mut c = good();
        c.version = 0;
        assert_eq!(c.check(), Err(CatalogError::Version(0)));
        assert!(matches!(Catalog::parse(r#"{"allow_custom_urls":true,"models":[]}"#), Err(CatalogError::Json(_))));
    }

    #[test]
    fn sizes_are_bounded_before_anything_is_allocated() {
        let long = format!("{GOOD}{}", " ".repeat(MAX_CATALOG_BYTES));
        assert_eq!(Catalog::parse(&long), Err(CatalogError::TooLong(long.len())));
        let models: Vec<String> = (0..=MAX_CATALOG_MODELS)
            .map(|i| format!(r#"{{"id":"m{i}","label":"M","url":"m{i}.json","size":1,"license":"MIT"}}"#))
            .collect();
        let json = format!(r#"{{"version":1,"allow_custom_urls":true,"models":[{}]}}"#, models.join(","));
        assert_eq!(Catalog::parse(&json), Err(CatalogError::TooManyModels(MAX_CATALOG_MODELS + 1)));
        let json = format!(r#"{{"version":1,"allow_custom_urls":true,"models":[{}]}}"#, models[..MAX_CATALOG_MODELS].join(","));
        assert_eq!(Catalog::parse(&json).unwrap().models.len(), MAX_CATALOG_MODELS);
        assert!(error_with(|m| m.label = "x".repeat(257)).contains("model 1 (`demo`): label: is 257 bytes long"));
        assert!(error_with(|m| m.url = format!("{}.json", "x".repeat(4096))).contains("url: is 4101 bytes long"));
        assert!(error_with(|m| m.description = Some("x".repeat(5000))).contains("description: is 5000 bytes"));
        let prompt = ModelDefaults { system_prompt: Some("x".repeat(limits::MAX_SYSTEM_PROMPT_BYTES + 1)), ..Default::default() };
        assert!(error_with(|m| m.defaults = Some(prompt)).contains("defaults.system_prompt: is 16385 bytes"));
        let provenance = Provenance { source: Some("x".repeat(5000)), ..Default::default() };
        assert!(error_with(|m| m.provenance = Some(provenance)).contains("provenance.source"));
    }

    #[test]
    fn ids_are_unique_and_plain() {
        for bad in ["", "Demo", "a b", "a/b", "ü", &"a".repeat(65)] {
            let err = error_with(|m| m.id = bad.to_string());
            assert!(err.contains(": id: must be"), "{bad}: {err}");
        }
        for ok in ["demo", "mistral-7b.q4_k_m", "0"] {
            assert!(is_model_id(ok), "{ok}");
        }
        let err = error_with(|m| m.id = "one-file.v2".into());
        assert_eq!(err, "models.json, model 2 (`one-file.v2`): id: an earlier model has the same id");
        // A hostile id is cut in the message.
        let err = error_with(|m| m.id = "x".repeat(10_000));
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn required_text_is_not_blank() {
        assert!(error_with(|m| m.label = " ".into()).contains("label: is empty"));
        assert!(error_with(|m| m.license = String::new()).contains("license: is empty"));
        assert!(error_with(|m| m.url = String::new()).contains("url: is empty"));
        assert!(error_with(|m| m.label = "a\u{7}b".into()).contains("control characters"));
        let missing = GOOD.replace(r#""license": "MIT""#, r#""licence": "MIT""#);
        assert!(Catalog::parse(&missing).unwrap_err().to_string().contains("licence"), "an unknown field is refused by name");
    }

    #[test]
    fn sizes_are_positive_and_storable() {
        assert!(error_with(|m| m.size = 0).contains("size: 0 bytes is not between 1"));
        assert!(error_with(|m| m.size = MAX_MODEL_BYTES + 1).contains("size:"));
        assert!(Catalog::parse(&GOOD.replace("98362432", "-1")).is_err());
    }

    #[test]
    fn urls_are_http_https_or_relative() {
        for ok in ["m.json", "./m.json", "../x/m.json", "https://cdn.example/m.json", "HTTP://a/m.json", "a/b:c.json", "m.json?v=1"] {
            let mut c = good();
            c.models[0].url = ok.into();
            assert_eq!(c.check(), Ok(()), "{ok}");
        }
        for (bad, want) in [
            ("file:///etc/m.json", "scheme `file:`"),
            ("javascript:alert(1)//.json", "scheme `javascript:`"),
            ("data:application/json,{}", "scheme `data:`"),
            ("blob:https://a/x.json", "scheme `blob:`"),
            ("//evil.example/m.json", "scheme-relative"),
            ("m .json", "spaces"),
            (":m.json", "starts with ':'"),
        ] {
            let err = error_with(|m| m.url = bad.into());
            assert!(err.contains(": url: ") && err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn a_single_gguf_needs_its_hash_and_a_manifest_has_none() {
        let mut c = good();
        c.models[1].sha256 = None;
        assert!(c.check().unwrap_err().to_string().contains("model 2 (`one-file.v2`): sha256: a single GGUF file needs"));
        for bad in ["B179", &HASH.to_uppercase(), &format!("{HASH}0")] {
            let mut c = good();
            c.models[1].sha256 = Some(bad.to_string());
            assert!(c.check().unwrap_err().to_string().contains("sha256: is not 64 lowercase hex"), "{bad}");
        }
        assert!(error_with(|m| m.sha256 = Some(HASH.into())).contains("sha256: a manifest carries"));
    }

    #[test]
    fn defaults_lie_in_the_settings_ranges() {
        let cases: [(ModelDefaults, &str); 10] = [
            (ModelDefaults { temperature: Some(2.5), ..Default::default() }, "defaults.temperature: 2.5 is not between 0 and 2"),
            (ModelDefaults { temperature: Some(-0.1), ..Default::default() }, "defaults.temperature"),
            (ModelDefaults { top_p: Some(1.5), ..Default::default() }, "defaults.top_p"),
            (ModelDefaults { top_k: Some(1001), ..Default::default() }, "defaults.top_k: 1001 is not between 0 and 1000"),
            (ModelDefaults { max_tokens: Some(0), ..Default::default() }, "defaults.max_tokens: 0"),
            (ModelDefaults { max_tokens: Some(4097), ..Default::default() }, "defaults.max_tokens: 4097"),
            (ModelDefaults { context: Some(100), ..Default::default() }, "defaults.context: 100 is not between 256 and 131072"),
            (ModelDefaults { context: Some(200_000), ..Default::default() }, "defaults.context"),
            (ModelDefaults { workers: Some(17), ..Default::default() }, "defaults.workers: 17"),
            (ModelDefaults { system_prompt: Some("a\u{0}".into()), ..Default::default() }, "defaults.system_prompt"),
        ];
        for (defaults, want) in cases {
            let err = error_with(|m| m.defaults = Some(defaults));
            assert!(err.contains(want), "{err} should mention {want}");
        }
        // The ends of each range are accepted; no defaults at all is fine.
        let edges = ModelDefaults {
            system_prompt: Some(String::new()),
            temperature: Some(0.0),
            top_p: Some(1.0),
            top_k: Some(0),
            max_tokens: Some(4096),
            context: Some(131_072),
            workers: Some(0),
        };
        let mut c = good();
        c.models[0].defaults = Some(edges);
        c.models[1].defaults = None;
        assert_eq!(c.check(), Ok(()));
        let unknown = GOOD.replace(r#""top_k": 40"#, r#""topk": 40"#);
        assert!(Catalog::parse(&unknown).unwrap_err().to_string().contains("topk"));
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in ["", "{", "[]", "null", r#"{"version":"1"}"#, r#"{"version":1,"allow_custom_urls":"yes","models":[]}"#] {
            assert!(matches!(Catalog::parse(bad), Err(CatalogError::Json(_))), "{bad}");
        }
    }
}

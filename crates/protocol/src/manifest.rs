//! The shard manifest: what a sharded model is made of, for the browser to
//! fetch and verify. Written by `sprig manifest` (and later `sprig convert`).
//!
//! ```json
//! { "name": "SmolLM2 135M", "format": "gguf", "total_size": 98362432,
//!   "shards": [ { "url": "model.gguf", "size": 98362432, "sha256": "b179…" } ] }
//! ```
//! Shard URLs are relative to the manifest's own URL (or absolute).

use serde::{Deserialize, Serialize};

/// A sharded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model's name, for display.
    pub name: String,
    /// The file format of the shards; only `gguf`.
    pub format: String,
    /// Sum of the shard sizes, in bytes.
    pub total_size: u64,
    /// The shards, in order (gguf-split numbering).
    pub shards: Vec<Shard>,
}

/// One file of a sharded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Where it is, relative to the manifest or absolute.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// What is wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The JSON does not have the manifest's shape.
    #[error("the manifest is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// The format is not one Sprig loads.
    #[error("the manifest's format is `{0}`, Sprig loads `gguf`")]
    Format(String),
    /// There are no shards.
    #[error("the manifest lists no shards")]
    Empty,
    /// A shard entry is malformed.
    #[error("shard {index} of the manifest: {reason}")]
    Shard {
        /// Position of the shard, from 1.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The total disagrees with the shards.
    #[error("the manifest's total_size {total} is not the sum of its shards, {sum}")]
    Total {
        /// The announced total.
        total: u64,
        /// The sum of the shard sizes.
        sum: u64,
    },
}

impl Manifest {
    /// Parses and checks a manifest.
    ///
    /// # Errors
    /// [`ManifestError`] saying what is wrong.
    pub fn parse(json: &str) -> Result<Self, ManifestError> {
        let m: Self = serde_json::from_str(json).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks the fields: format, shards present, sizes, hashes, total.
    ///
    /// # Errors
    /// [`ManifestError`] saying what is wrong.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.format != "gguf" {
            return Err(ManifestError::Format(self.format.clone()));
        }
        if self.shards.is_empty() {
            return Err(ManifestError::Empty);
        }
        let mut sum = 0u64;
        for (i, s) in self.shards.iter().enumerate() {
            let bad = |reason: &str| ManifestError::Shard { index: i + 1, reason: reason.into() };
            if s.url.trim().is_empty() {
                return Err(bad("the url is empty"));
            }
            if s.size == 0 {
                return Err(bad("the size is 0"));
            }
            if s.sha256.len() != 64 || !s.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(bad("sha256 is not 64 lowercase hex digits"));
            }
            sum = sum.checked_add(s.size).ok_or_else(|| bad("the sizes overflow"))?;
        }
        if sum != self.total_size {
            return Err(ManifestError::Total { total: self.total_size, sum });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"name":"m","format":"gguf","total_size":30,"shards":[
        {"url":"a.gguf","size":10,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
        {"url":"b.gguf","size":20,"sha256":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"}]}"#;

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.shards.len(), 2);
        assert_eq!(m.total_size, 30);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (GOOD.replace("\"gguf\"", "\"onnx\""), "format is `onnx`"),
            (GOOD.replace("\"total_size\":30", "\"total_size\":31"), "not the sum"),
            (GOOD.replace("\"size\":10", "\"size\":0"), "shard 1"),
            (GOOD.replace("ffff", "FFFF"), "shard 2"),
            ("{\"name\":1}".to_string(), "not valid JSON"),
            (r#"{"name":"m","format":"gguf","total_size":0,"shards":[]}"#.to_string(), "no shards"),
        ];
        for (json, want) in cases {
            let err = Manifest::parse(&json).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}

//! The shard manifest: what a sharded model is made of, for the browser to
//! fetch and verify. Written by `sprig manifest` (and later `sprig convert`).
//!
//! ```json
//! { "name": "SmolLM2 135M", "format": "gguf", "total_size": 98362432,
//!   "shards": [ { "url": "model.gguf", "size": 98362432, "sha256": "b179…" } ] }
//! ```
//! Shard URLs are relative to the manifest's own URL (or absolute).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// The longest manifest text Sprig reads, in bytes: a manifest of
/// [`MAX_SHARDS`] shards with long URLs stays far below it.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// The most shards a manifest may list.
pub const MAX_SHARDS: usize = 1024;

/// The largest model Sprig stores, in bytes (one file or all shards): what
/// 16 workers of 4 GiB wasm memory each could hold. Larger sizes (a
/// hostile manifest's 2^53, a server's `Content-Range` total) are refused
/// before anything is allocated or created for them.
pub const MAX_MODEL_BYTES: u64 = 64 << 30;

/// The longest shard URL or model name accepted, in bytes.
const MAX_FIELD_BYTES: usize = 4096;

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

/// A digest as lowercase hex digits: how manifests and the store write a
/// shard's SHA-256.
pub fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    digest.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]).map(char::from).collect()
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
    /// The manifest text is longer than [`MAX_MANIFEST_BYTES`].
    #[error("the manifest is {0} bytes long; Sprig reads manifests of at most {MAX_MANIFEST_BYTES} bytes")]
    TooLong(usize),
    /// More shards than [`MAX_SHARDS`].
    #[error("the manifest lists {0} shards; Sprig takes at most {MAX_SHARDS}")]
    TooManyShards(usize),
    /// The name is longer than Sprig accepts.
    #[error("the manifest's name is {0} bytes long; at most 4096 are accepted")]
    Name(usize),
    /// The model is larger than [`MAX_MODEL_BYTES`].
    #[error("the manifest's total_size is {0} bytes; Sprig stores models of at most {MAX_MODEL_BYTES} bytes (64 GiB)")]
    TooLarge(u64),
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
        if json.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLong(json.len()));
        }
        let m: Self = serde_json::from_str(json).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks the fields: format, name, shards present and at most
    /// [`MAX_SHARDS`], each shard's URL, size (at most [`MAX_MODEL_BYTES`])
    /// and hash (no two alike), the total (the sum, at most
    /// [`MAX_MODEL_BYTES`]).
    ///
    /// # Errors
    /// [`ManifestError`] saying what is wrong.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.format != "gguf" {
            return Err(ManifestError::Format(self.format.clone()));
        }
        if self.name.len() > MAX_FIELD_BYTES {
            return Err(ManifestError::Name(self.name.len()));
        }
        if self.shards.is_empty() {
            return Err(ManifestError::Empty);
        }
        if self.shards.len() > MAX_SHARDS {
            return Err(ManifestError::TooManyShards(self.shards.len()));
        }
        if self.total_size > MAX_MODEL_BYTES {
            return Err(ManifestError::TooLarge(self.total_size));
        }
        let mut sum = 0u64;
        let mut hashes = HashSet::with_capacity(self.shards.len());
        for (i, s) in self.shards.iter().enumerate() {
            let bad = |reason: String| ManifestError::Shard { index: i + 1, reason };
            if s.url.trim().is_empty() {
                return Err(bad("the url is empty".into()));
            }
            if s.url.len() > MAX_FIELD_BYTES {
                return Err(bad(format!("the url is {} bytes long; at most {MAX_FIELD_BYTES} are accepted", s.url.len())));
            }
            if s.size == 0 {
                return Err(bad("the size is 0".into()));
            }
            if s.size > MAX_MODEL_BYTES {
                return Err(bad(format!("the size {} is larger than the {MAX_MODEL_BYTES} bytes Sprig stores", s.size)));
            }
            if s.sha256.len() != 64 || !s.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(bad("sha256 is not 64 lowercase hex digits".into()));
            }
            if !hashes.insert(s.sha256.as_str()) {
                return Err(bad(format!("sha256 {} is also an earlier shard's: every shard must be a different file", s.sha256)));
            }
            sum = sum.checked_add(s.size).ok_or_else(|| bad("the sizes overflow".into()))?;
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

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    const GOOD: &str = r#"{"name":"m","format":"gguf","total_size":30,"shards":[
        {"url":"a.gguf","size":10,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
        {"url":"b.gguf","size":20,"sha256":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"}]}"#;

    /// `n` shards of one byte each, with different hashes.
    fn many_shards(n: usize) -> String {
        (0..n).map(|i| format!(r#"{{"url":"s{i}","size":1,"sha256":"{i:064x}"}}"#)).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn the_limits_themselves_are_accepted() {
        let json = format!(r#"{{"name":"m","format":"gguf","total_size":{MAX_SHARDS},"shards":[{}]}}"#, many_shards(MAX_SHARDS));
        assert_eq!(Manifest::parse(&json).unwrap().shards.len(), MAX_SHARDS);
        let big = GOOD
            .replace("\"size\":10", &format!("\"size\":{}", MAX_MODEL_BYTES - 20))
            .replace("\"total_size\":30", &format!("\"total_size\":{MAX_MODEL_BYTES}"));
        assert_eq!(Manifest::parse(&big).unwrap().total_size, MAX_MODEL_BYTES);
    }

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
            // A shard claiming 2^53 bytes (the manifest that once bricked the store).
            (
                GOOD.replace("\"size\":10", "\"size\":9007199254740992").replace("\"total_size\":30", "\"total_size\":9007199254741012"),
                "total_size is 9007199254741012",
            ),
            (GOOD.replace("\"size\":10", "\"size\":9007199254740992"), "shard 1 of the manifest: the size 9007199254740992"),
            (GOOD.replace("ffff", "0000"), "shard 2 of the manifest: sha256 0000"),
            (GOOD.replace("a.gguf", &"x".repeat(5000)), "shard 1 of the manifest: the url is 5000 bytes"),
            (format!(r#"{{"name":"m","format":"gguf","total_size":1025,"shards":[{}]}}"#, many_shards(1025)), "1025 shards"),
            (format!("{GOOD}{}", " ".repeat(MAX_MANIFEST_BYTES)), "at most 1048576 bytes"),
        ];
        for (json, want) in cases {
            let err = Manifest::parse(&json).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}

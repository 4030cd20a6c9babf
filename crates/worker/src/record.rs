//! What the model store records about a model (`meta.json`) and the names it
//! derives from it: plain data, checked before anything is sized from it,
//! and testable natively (the store itself is OPFS, in the browser only).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sprig_protocol::{ModelSource, MAX_MODEL_BYTES, MAX_SHARDS};

/// What the store records about a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// Display name.
    pub name: String,
    /// Where it comes from (absolute URL).
    pub source: ModelSource,
    /// Sum of the shard sizes.
    pub total_size: u64,
    /// The shards, in order.
    pub shards: Vec<ShardMeta>,
    /// A plain URL's ETag when first fetched, to notice a changed file on resume.
    pub etag: Option<String>,
    /// A manifest's text, to load it offline.
    pub manifest: Option<String>,
}

impl StoreMeta {
    /// Checks what a record claims before anything is sized from it: one
    /// to [`MAX_SHARDS`] shards, each with a plain file key and a size of 1
    /// to [`MAX_MODEL_BYTES`] bytes, adding up to `total_size`.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn check(&self) -> Result<(), String> {
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return Err(format!("lists {} shards (1 to {MAX_SHARDS} are possible)", self.shards.len()));
        }
        let mut sum = 0u64;
        for (i, s) in self.shards.iter().enumerate() {
            if s.key.is_empty() || s.key.len() > 64 || !s.key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("gives shard {} the key {:?}, not a plain file name", i + 1, s.key));
            }
            if s.size == 0 || s.size > MAX_MODEL_BYTES {
                return Err(format!("gives shard {} a size of {} bytes (1 to {MAX_MODEL_BYTES} are possible)", i + 1, s.size));
            }
            sum = sum.saturating_add(s.size);
        }
        if sum != self.total_size {
            return Err(format!("gives total_size {}, but its shards add up to {sum}", self.total_size));
        }
        Ok(())
    }
}

/// One stored shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// File name stem in the model's directory.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Expected SHA-256, when a manifest gives it.
    pub sha256: Option<String>,
}

// The store (OPFS, in the browser only) names its files with these.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl ShardMeta {
    pub(crate) fn data(&self) -> String {
        format!("{}.data", self.key)
    }
    pub(crate) fn chunks(&self) -> String {
        format!("{}.chunks", self.key)
    }
    pub(crate) fn ok(&self) -> String {
        format!("{}.ok", self.key)
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sprig_protocol::hex(&Sha256::digest(bytes))
}

/// The store key of a model source: a hash of its kind and absolute URL.
pub fn model_id(source: &ModelSource) -> String {
    let (kind, url) = match source {
        ModelSource::Manifest { url } => ("m", url.as_str()),
        ModelSource::Url { url } => ("u", url.as_str()),
        ModelSource::File { name, .. } => ("f", name.as_str()),
    };
    format!("{kind}{}", &sha256_hex(url.as_bytes())[..20])
}

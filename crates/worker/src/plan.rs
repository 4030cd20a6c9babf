//! The pure decisions of bringing a model into the store, testable natively:
//! the record and shard URLs a manifest gives, the record of a plain GGUF URL,
//! whether an answer comes from the version of the file a download began
//! with, how much is left to download and whether the site's quota holds it,
//! and whether a failed download leaves an entry behind. `acquire.rs` carries
//! them out against OPFS and the network.

use sprig_protocol::{ErrorKind, Manifest, ManifestError, ModelSource, MAX_MODEL_BYTES};

use crate::failure::Failure;
use crate::record::{ShardMeta, StoreMeta};

/// Why a model cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The manifest does not parse or breaks a cap.
    #[error("{url}: {source}")]
    Manifest {
        /// The manifest's URL.
        url: String,
        /// What is wrong with it.
        source: ManifestError,
    },
    /// A shard's URL does not resolve against the manifest's.
    #[error("{url}: not a valid URL: {message}")]
    ShardUrl {
        /// The shard's URL as written.
        url: String,
        /// Why it does not resolve.
        message: String,
    },
    /// The server states a size Sprig does not store.
    #[error("{url}: the server gives the file's size (Content-Range total or Content-Length) as {size} bytes; Sprig stores models of 1 to {MAX_MODEL_BYTES} bytes (64 GiB)")]
    Size {
        /// The file's URL.
        url: String,
        /// The size it states.
        size: u64,
    },
    /// The site's storage cannot hold what is left to download.
    #[error("not enough storage for {name}: it needs {} more, but the browser lets this site store only {} more ({} of {} used). Delete a model in the Models panel or free disk space, then try again", gb(*need), gb(quota.saturating_sub(*usage)), gb(*usage), gb(*quota))]
    Quota {
        /// The model's name.
        name: String,
        /// Bytes left to download.
        need: u64,
        /// Bytes the site stores.
        usage: u64,
        /// Bytes it may store.
        quota: u64,
    },
}

impl Failure for PlanError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Manifest { .. } | Self::ShardUrl { .. } | Self::Size { .. } => ErrorKind::BadModel,
            Self::Quota { .. } => ErrorKind::Storage,
        }
    }
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// The record of a manifest model and each shard's absolute URL, resolved
/// against the manifest's `url` by `resolve(url, base)`.
///
/// # Errors
/// [`PlanError::Manifest`] or [`PlanError::ShardUrl`].
pub fn manifest_record(
    url: &str,
    json: &str,
    resolve: impl Fn(&str, &str) -> Result<String, String>,
) -> Result<(StoreMeta, Vec<String>), PlanError> {
    let manifest = Manifest::parse(json).map_err(|source| PlanError::Manifest { url: url.to_string(), source })?;
    let mut urls = Vec::with_capacity(manifest.shards.len());
    let mut shards = Vec::with_capacity(manifest.shards.len());
    for s in &manifest.shards {
        urls.push(resolve(&s.url, url).map_err(|message| PlanError::ShardUrl { url: s.url.clone(), message })?);
        shards.push(ShardMeta { key: s.sha256.clone(), size: s.size, sha256: Some(s.sha256.clone()) });
    }
    let meta = StoreMeta {
        name: manifest.name,
        source: ModelSource::Manifest { url: url.to_string() },
        total_size: manifest.total_size,
        shards,
        etag: None,
        manifest: Some(json.to_string()),
    };
    Ok((meta, urls))
}

/// The record of a plain GGUF URL of `size` bytes with this `etag`, named
/// after the URL's last path segment.
///
/// # Errors
/// [`PlanError::Size`] for an empty file or one over [`MAX_MODEL_BYTES`].
pub fn url_record(url: &str, size: u64, etag: Option<String>) -> Result<StoreMeta, PlanError> {
    if size == 0 || size > MAX_MODEL_BYTES {
        return Err(PlanError::Size { url: url.to_string(), size });
    }
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(path).to_string();
    let shard = ShardMeta { key: "file".into(), size, sha256: None };
    Ok(StoreMeta { name, source: ModelSource::Url { url: url.to_string() }, total_size: size, shards: vec![shard], etag, manifest: None })
}

/// Whether a partial copy recorded as `old` is of another file than `new`
/// (another size or ETag), and must be discarded rather than resumed.
pub fn replaced(old: &StoreMeta, new: &StoreMeta) -> bool {
    old.total_size != new.total_size || old.etag != new.etag
}

/// How many times a plain URL's download starts over by itself when the
/// file changes on the server mid-download (a new ETag, as when a model
/// hub's repository gets a new commit); a file that changes again is an
/// error.
pub const RESTARTS_ON_CHANGE: u32 = 1;

/// What a range answer's ETag says of the file's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The version the download began with.
    Same,
    /// Another version: the file changed on the server.
    Other,
    /// Cannot tell: an ETag is absent (or hidden by CORS) on one side.
    Unknown,
}

/// Compares the ETag a download began with (`want`) and an answer's
/// (`got`) by RFC 9110's weak comparison: the same opaque tag, weak or not,
/// is the same version (a strong tag is still needed for `If-Range`, see
/// [`if_range`]).
pub fn version(want: Option<&str>, got: Option<&str>) -> Version {
    let opaque = |tag: &str| tag.trim().strip_prefix("W/").unwrap_or(tag.trim()).to_string();
    match (want, got) {
        (Some(want), Some(got)) if opaque(want) == opaque(got) => Version::Same,
        (Some(_), Some(_)) => Version::Other,
        _ => Version::Unknown,
    }
}

/// The ETag to send as `If-Range`: only a strong one may be (RFC 9110).
pub fn if_range(etag: Option<&str>) -> Option<&str> {
    etag.filter(|tag| !tag.trim_start().starts_with("W/"))
}

/// Bytes left to download: each missing shard's size less what of it is
/// stored (`stored` pairs them).
pub fn bytes_needed<'a>(stored: impl IntoIterator<Item = (&'a ShardMeta, u64)>) -> u64 {
    stored.into_iter().map(|(shard, have)| shard.size.saturating_sub(have)).sum()
}

/// Refuses a download of `need` more bytes when the site's storage
/// (`usage` of `quota`, when the browser says) cannot hold it.
///
/// # Errors
/// [`PlanError::Quota`], naming the model and the figures.
pub fn check_quota(name: &str, need: u64, estimate: Option<(u64, u64)>) -> Result<(), PlanError> {
    match estimate {
        Some((usage, quota)) if need > quota.saturating_sub(usage) => Err(PlanError::Quota { name: name.to_string(), need, usage, quota }),
        _ => Ok(()),
    }
}

/// Whether a failed or stopped download's entry is deleted: when the user
/// asked to discard it, or when nothing of it is stored (`stored_bytes`,
/// `None` when the entry cannot be described), so the store never lists
/// empty entries.
pub fn delete_after_failure(discard: bool, stored_bytes: Option<u64>) -> bool {
    discard || stored_bytes.is_none_or(|b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(url: &str, base: &str) -> Result<String, String> {
        if url.contains("://") {
            return Ok(url.to_string());
        }
        if url.contains(' ') {
            return Err("a space".into());
        }
        Ok(format!("{}/{url}", base.rsplit_once('/').map_or(base, |(dir, _)| dir)))
    }

    fn manifest(shards: &[(&str, u64, char)]) -> String {
        let total: u64 = shards.iter().map(|s| s.1).sum();
        let list: Vec<String> = shards
            .iter()
            .map(|(url, size, hash)| format!(r#"{{"url":"{url}","size":{size},"sha256":"{}"}}"#, hash.to_string().repeat(64)))
            .collect();
        format!(r#"{{"name":"M","format":"gguf","total_size":{total},"shards":[{}]}}"#, list.join(","))
    }

    #[test]
    fn a_manifest_gives_its_record_and_absolute_shard_urls() {
        let json = manifest(&[("m-00001.gguf", 10, 'a'), ("https://cdn.example/m-00002.gguf", 5, 'b')]);
        let (meta, urls) = manifest_record("https://s.example/models/m.json", &json, join).unwrap();
        assert_eq!(urls, ["https://s.example/models/m-00001.gguf", "https://cdn.example/m-00002.gguf"]);
        assert_eq!((meta.name.as_str(), meta.total_size, meta.shards.len()), ("M", 15, 2));
        assert_eq!(meta.shards[1], ShardMeta { key: "b".repeat(64), size: 5, sha256: Some("b".repeat(64)) });
        assert_eq!(meta.source, ModelSource::Manifest { url: "https://s.example/models/m.json".into() });
        assert_eq!(meta.manifest.as_deref(), Some(json.as_str()));
        assert_eq!(meta.check(), Ok(()));
    }

    #[test]
    fn bad_manifests_and_shard_urls_are_bad_models() {
        let err = manifest_record("https://s.example/m.json", "{", join).unwrap_err();
        assert!(matches!(err, PlanError::Manifest { .. }) && err.kind() == ErrorKind::BadModel, "{err}");
        assert!(err.to_string().starts_with("https://s.example/m.json: "), "{err}");
        let err = manifest_record("https://s.example/m.json", &manifest(&[("a b.gguf", 1, 'a')]), join).unwrap_err();
        assert_eq!(err, PlanError::ShardUrl { url: "a b.gguf".into(), message: "a space".into() });
    }

    #[test]
    fn a_plain_url_is_named_after_its_file_and_capped() {
        let meta = url_record("https://h.example/dir/model.Q4.gguf?download=1#x", 7, Some("\"v1\"".into())).unwrap();
        assert_eq!((meta.name.as_str(), meta.total_size, meta.etag.as_deref()), ("model.Q4.gguf", 7, Some("\"v1\"")));
        assert_eq!(meta.shards, [ShardMeta { key: "file".into(), size: 7, sha256: None }]);
        assert_eq!(url_record("https://h.example/", 1, None).unwrap().name, "https://h.example/");
        for size in [0, MAX_MODEL_BYTES + 1, 1 << 53] {
            let err = url_record("https://h.example/m.gguf", size, None).unwrap_err();
            assert_eq!((err.kind(), err.clone()), (ErrorKind::BadModel, PlanError::Size { url: "https://h.example/m.gguf".into(), size }));
        }
    }

    #[test]
    fn another_size_or_etag_is_another_file() {
        let old = url_record("https://h.example/m.gguf", 7, Some("\"v1\"".into())).unwrap();
        assert!(!replaced(&old, &old.clone()));
        assert!(replaced(&old, &url_record("https://h.example/m.gguf", 8, Some("\"v1\"".into())).unwrap()));
        assert!(replaced(&old, &url_record("https://h.example/m.gguf", 7, Some("\"v2\"".into())).unwrap()));
        assert!(replaced(&old, &url_record("https://h.example/m.gguf", 7, None).unwrap()));
    }

    #[test]
    fn etags_compare_weakly_and_only_strong_ones_go_in_if_range() {
        let v = |want: Option<&str>, got: Option<&str>| version(want, got);
        assert_eq!(v(Some("\"a1\""), Some("\"a1\"")), Version::Same);
        assert_eq!(v(Some("W/\"a1\""), Some("\"a1\"")), Version::Same, "weak comparison");
        assert_eq!(v(Some("\"a1\""), Some("W/\"a1\"")), Version::Same);
        assert_eq!(v(Some("W/\"a1\""), Some("W/\"a2\"")), Version::Other, "a weak tag still tells versions apart");
        assert_eq!(v(Some("\"a1\""), Some("\"a2\"")), Version::Other);
        assert_eq!(v(Some("\"a1\""), None), Version::Unknown, "a hidden ETag");
        assert_eq!(v(None, Some("\"a1\"")), Version::Unknown);
        assert_eq!(if_range(Some("\"a1\"")), Some("\"a1\""));
        assert_eq!(if_range(Some("W/\"a1\"")), None);
        assert_eq!(if_range(None), None);
    }

    #[test]
    fn the_quota_must_hold_what_is_left_to_download() {
        let shard = |size| ShardMeta { key: "k".into(), size, sha256: None };
        let (a, b) = (shard(1_000), shard(3_000_000_000));
        let need = bytes_needed([(&a, 400), (&b, 0)]);
        assert_eq!(need, 3_000_000_600);
        assert_eq!(bytes_needed([(&a, 5_000)]), 0, "more stored than the size never underflows");
        assert_eq!(check_quota("M", need, Some((1_000_000_000, 5_000_000_000))), Ok(()));
        assert_eq!(check_quota("M", need, None), Ok(()), "no estimate: the download runs, and a full disk is its error");
        let err = check_quota("M", need, Some((3_000_000_000, 5_000_000_000))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        assert_eq!(
            err.to_string(),
            "not enough storage for M: it needs 3.00 GB more, but the browser lets this site store only 2.00 GB more \
             (3.00 GB of 5.00 GB used). Delete a model in the Models panel or free disk space, then try again"
        );
        // Usage past the quota leaves no room, without underflow.
        assert!(check_quota("M", 1, Some((6, 5))).is_err());
    }

    #[test]
    fn a_failed_download_leaves_no_empty_entry() {
        assert!(delete_after_failure(true, Some(10)), "asked to discard");
        assert!(delete_after_failure(false, Some(0)), "nothing stored");
        assert!(delete_after_failure(false, None), "cannot be described");
        assert!(!delete_after_failure(false, Some(10)), "a paused download is kept to resume");
    }
}

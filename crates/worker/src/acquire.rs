//! Acquiring a model: bringing a manifest or plain-URL model into the store
//! (resuming what is there, with no network at all when it is complete) and
//! opening its shards for the GGUF reader. The decisions are `plan.rs`'s;
//! this carries them out against OPFS and the network.

use std::io::BufReader;

use sprig_engine::gguf::SourceReader;
use sprig_protocol::{ErrorKind, ModelSource, MAX_MANIFEST_BYTES};

use crate::chunk_map::{ChunkMap, TooLarge};
use crate::download::{self, Control, DownloadError};
use crate::failure::Failure;
use crate::fetch::{self, FetchError, RangeReply};
use crate::js;
use crate::model_store::{model_id, ModelDir, ModelStore, ShardState, StoreMeta};
use crate::opfs::{StoreError, SyncFile};
use crate::plan::{self, PlanError};

/// A stored shard as the GGUF reader sees it: buffered, since parsing the
/// header makes many tiny reads and each one is a call into the browser.
pub type StoreReader = BufReader<SourceReader<SyncFile>>;

/// Read buffer of a shard (tensor reads larger than this bypass it).
pub const READ_BUFFER: usize = 1 << 20;

/// Why a model could not be acquired.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// The plan refused it (a bad manifest, an impossible size, no room).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The download failed.
    #[error(transparent)]
    Download(DownloadError),
    /// The manifest could not be fetched, and none is stored.
    #[error(transparent)]
    Manifest(FetchError),
    /// A plain URL that does not start like a GGUF file.
    #[error("{url} is not a GGUF model: it starts with {start:?}, not \"GGUF\"")]
    NotGguf {
        /// The URL.
        url: String,
        /// What it starts with.
        start: String,
    },
    /// A cross-origin server that hides `Content-Range`.
    #[error("{url}: the server does not let Sprig read Content-Range (a cross-origin server must send Access-Control-Expose-Headers: Content-Range); serve a manifest instead")]
    HiddenRange {
        /// The URL.
        url: String,
    },
    /// A server that ignores Range and gives no length.
    #[error("{url}: the server ignores Range and sends no Content-Length, so the download could not be checked or resumed")]
    NoLength {
        /// The URL.
        url: String,
    },
    /// A shard too large for the chunk record.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The model's folder could not be made.
    #[error("cannot create the model's folder")]
    NoFolder,
    /// A picked file is read in place, never downloaded.
    #[error("a local file is not downloaded")]
    LocalFile,
}

impl Failure for AcquireError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Plan(e) => e.kind(),
            Self::Store(_) | Self::NoFolder => ErrorKind::Storage,
            Self::Download(
                DownloadError::Fetch(_) | DownloadError::Protocol { .. } | DownloadError::Changed { .. } | DownloadError::Stopped,
            )
            | Self::Manifest(_) => ErrorKind::Network,
            Self::HiddenRange { .. } | Self::NoLength { .. } => ErrorKind::Network,
            Self::Download(DownloadError::Verification { .. }) | Self::NotGguf { .. } | Self::TooLarge(_) => ErrorKind::BadModel,
            Self::Download(DownloadError::Store(_)) => ErrorKind::Storage,
            Self::LocalFile => ErrorKind::BadMessage,
        }
    }
}

/// What acquiring gave.
#[derive(Debug)]
pub enum Acquired {
    /// The model is complete in the store: its shards, and its size.
    Stored {
        /// A reader per shard, in order.
        readers: Vec<StoreReader>,
        /// Bytes in all.
        size: u64,
    },
    /// The user paused (`discarded: false`) or cancelled the download.
    Stopped {
        /// Whether what was stored is to be deleted.
        discarded: bool,
    },
}

/// Brings a URL or manifest model into the store and opens its shards. A
/// plain URL whose file changes on the server mid-download (another ETag)
/// starts over with the new version, up to [`plan::RESTARTS_ON_CHANGE`]
/// times: the new probe's ETag differs from the one recorded, so what was
/// stored of the old version is discarded, never mixed with the new.
///
/// # Errors
/// [`AcquireError`]; a stop on request is [`Acquired::Stopped`], not an error.
pub async fn acquire(store: &ModelStore, source: &ModelSource, connections: usize, ctl: &Control) -> Result<Acquired, AcquireError> {
    let mut restarts = 0;
    loop {
        match acquire_once(store, source, connections, ctl).await {
            Err(AcquireError::Download(DownloadError::Changed { url })) if restarts < plan::RESTARTS_ON_CHANGE => {
                restarts += 1;
                web_sys::console::warn_1(&format!("sprig-worker: {url} changed on the server; downloading the new version").into());
                ctl.rearm().map_err(|message| AcquireError::Download(DownloadError::Protocol { url, message }))?;
            }
            other => return other,
        }
    }
}

async fn acquire_once(store: &ModelStore, source: &ModelSource, connections: usize, ctl: &Control) -> Result<Acquired, AcquireError> {
    let id = model_id(source);
    // The folder is created only once the model is checked and fits.
    let existing = store.model(&id, false).await?;
    let known = match &existing {
        Some(dir) => dir.meta().await.filter(|m| m.source == *source),
        None => None,
    };
    if let (Some(dir), Some(m)) = (&existing, &known) {
        if all_verified(dir, m).await {
            return Ok(Acquired::Stored { readers: open_shards(dir, m).await?, size: m.total_size });
        }
    }
    let (meta, urls) = match source {
        ModelSource::Manifest { url } => manifest_meta(url, known).await?,
        ModelSource::Url { url } => {
            let meta = url_meta(url, ctl).await?;
            if let (Some(dir), Some(old)) = (&existing, &known) {
                if plan::replaced(old, &meta) {
                    for s in &old.shards {
                        dir.discard(s).await?;
                    }
                }
            }
            (meta, vec![url.clone()])
        }
        ModelSource::File { .. } => return Err(AcquireError::LocalFile),
    };
    // What is missing, then the quota, before anything is recorded, created
    // or sized: a model that cannot fit leaves the store as it was.
    let mut missing = Vec::new();
    for (shard, url) in meta.shards.iter().zip(urls) {
        let state = match &existing {
            Some(dir) => Some(dir.shard_state(shard).await?),
            None => None,
        };
        let stored = match &state {
            Some(ShardState::Verified) => continue,
            Some(ShardState::Partial(map)) => map.stored_bytes(),
            Some(ShardState::Evicted) | None => 0,
        };
        missing.push((shard, url, state, stored));
    }
    let need = plan::bytes_needed(missing.iter().map(|(shard, _, _, stored)| (*shard, *stored)));
    if need > 0 {
        plan::check_quota(&meta.name, need, js::estimate().await)?;
    }
    let dir = match existing {
        Some(dir) => dir,
        None => store.model(&id, true).await?.ok_or(AcquireError::NoFolder)?,
    };
    dir.save_meta(&meta).await?;
    // Ranges of a plain URL must come from the version begun.
    let etag = meta.etag.clone();
    let mut targets = Vec::new();
    for (shard, url, state, _) in missing {
        let map = match state {
            Some(ShardState::Partial(map)) => map,
            Some(ShardState::Evicted) => {
                dir.discard(shard).await?;
                ChunkMap::new(shard.size)?
            }
            _ => ChunkMap::new(shard.size)?,
        };
        let writer = dir.writer(shard, map).await?;
        targets.push(download::Target { url, writer, etag: etag.clone() });
    }
    if !targets.is_empty() {
        let progress = js::progress_poster();
        match download::run(&dir, targets, connections, ctl, meta.total_size, &progress).await {
            Ok(()) => {}
            Err(DownloadError::Stopped) => return Ok(Acquired::Stopped { discarded: ctl.stopped().unwrap_or(false) }),
            Err(e) => return Err(AcquireError::Download(e)),
        }
    }
    Ok(Acquired::Stored { readers: open_shards(&dir, &meta).await?, size: meta.total_size })
}

/// The shards of a manifest source, from the network or (offline, or already
/// complete) from the store: the record to keep and each shard's URL.
async fn manifest_meta(url: &str, known: Option<StoreMeta>) -> Result<(StoreMeta, Vec<String>), AcquireError> {
    let stored = known.and_then(|m| m.manifest);
    let json = match fetch::text(url, MAX_MANIFEST_BYTES).await {
        Ok(json) => json,
        Err(e) => stored.ok_or(AcquireError::Manifest(e))?,
    };
    let resolve = |shard: &str, base: &str| fetch::resolve(shard, base).map_err(|e| e.to_string());
    Ok(plan::manifest_record(url, &json, resolve)?)
}

/// The record of a plain GGUF URL: its size and ETag from a four-byte range
/// request, which also refuses a file that is not GGUF before any download.
async fn url_meta(url: &str, ctl: &Control) -> Result<StoreMeta, AcquireError> {
    let (size, etag) = match download::fetch_chunk(url, 0, 4, None, ctl).await.map_err(AcquireError::Download)? {
        RangeReply::Partial { bytes, .. } if bytes != b"GGUF" => {
            return Err(AcquireError::NotGguf { url: url.to_string(), start: String::from_utf8_lossy(&bytes).into_owned() });
        }
        RangeReply::Partial { total: Some(total), etag, .. } => (total, etag),
        RangeReply::Partial { total: None, .. } => return Err(AcquireError::HiddenRange { url: url.to_string() }),
        RangeReply::Whole(body) => {
            let size = body.length.ok_or_else(|| AcquireError::NoLength { url: url.to_string() })?;
            let etag = body.etag.clone();
            body.cancel();
            (size, etag)
        }
    };
    Ok(plan::url_record(url, size, etag)?)
}

/// Whether every shard of `meta` is stored and verified.
async fn all_verified(dir: &ModelDir, meta: &StoreMeta) -> bool {
    for shard in &meta.shards {
        if !matches!(dir.shard_state(shard).await, Ok(ShardState::Verified)) {
            return false;
        }
    }
    true
}

async fn open_shards(dir: &ModelDir, meta: &StoreMeta) -> Result<Vec<StoreReader>, StoreError> {
    let mut readers = Vec::with_capacity(meta.shards.len());
    for shard in &meta.shards {
        readers.push(BufReader::with_capacity(READ_BUFFER, SourceReader::new(dir.reader(shard).await?)));
    }
    Ok(readers)
}

/// Why a model complete in the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model, its record or some of its bytes are not stored.
    #[error("the model is not complete in the store")]
    Incomplete,
}

/// Opens the shards of a model already complete in the store (for a worker
/// holding a slice of it, which rank 0 has just acquired).
///
/// # Errors
/// [`OpenError`].
pub async fn open_stored(source: &ModelSource) -> Result<Vec<StoreReader>, OpenError> {
    let store = ModelStore::open().await?;
    let dir = store.model(&model_id(source), false).await?.ok_or(OpenError::Incomplete)?;
    let meta = dir.meta().await.ok_or(OpenError::Incomplete)?;
    if !all_verified(&dir, &meta).await {
        return Err(OpenError::Incomplete);
    }
    Ok(open_shards(&dir, &meta).await?)
}

/// After a failed or stopped download: deletes the model's entry when asked
/// or when nothing of it is stored ([`plan::delete_after_failure`]).
pub async fn tidy(store: &ModelStore, source: &ModelSource, discard: bool) {
    let id = model_id(source);
    let delete = match store.model(&id, false).await {
        Ok(Some(dir)) => plan::delete_after_failure(discard, dir.describe().await.map(|m| m.stored_bytes)),
        _ => discard,
    };
    if delete {
        if let Err(e) = store.delete(&id).await {
            web_sys::console::warn_1(&format!("sprig-worker: cannot delete {id}: {e}").into());
        }
    }
}

//! The model store: downloaded models kept in the browser's Origin Private
//! File System, so a download resumes where it stopped and a second visit
//! loads with no network at all.
//!
//! Why OPFS and not the Cache API: a dedicated worker can open an OPFS file
//! with a *synchronous* access handle and read or write at any offset. So
//! chunks arriving out of order over parallel connections are written in
//! place, and the engine's synchronous GGUF reader loads tensors straight from
//! disk, one at a time: peak memory stays the weights plus one tensor. The
//! Cache API only hands out whole responses asynchronously, which forces the
//! model through memory twice (and a 4 GiB model cannot fit twice in wasm32).
//!
//! Layout, under `sprig-models/<model id>/`:
//! - `meta.json`: name, source, shards (and the manifest text, for offline use);
//! - per shard, keyed by its SHA-256 (or `file` for a plain URL):
//!   `<key>.data` (the bytes, chunks written in place), `<key>.chunks` (one
//!   byte per chunk, set after that chunk's data is flushed) and `<key>.ok`
//!   (`"<size> <sha256>"`, written last, only once the stored bytes hashed to
//!   the expected digest).
//!
//! A completion record whose data is missing or short means the browser
//! evicted the data: it reads as "needs download", never as a corrupt model.

use sha2::{Digest, Sha256};
use sprig_protocol::{ModelSource, StoreStatus, StoredModel};

pub use crate::record::{model_id, ShardMeta, StoreMeta};

use sprig_engine::gguf::ByteSource;

use crate::chunk_map::ChunkMap;
use crate::opfs::{Dir, StoreError, SyncFile};

/// The OPFS directory holding every model.
pub const ROOT: &str = "sprig-models";
const META: &str = "meta.json";

/// What the store holds of one shard.
#[derive(Debug)]
pub enum ShardState {
    /// Stored and verified.
    Verified,
    /// Was verified, but the browser evicted its data.
    Evicted,
    /// These chunks are stored (possibly none).
    Partial(ChunkMap),
}

fn record(size: u64, sha256: &str) -> String {
    format!("{size} {sha256}")
}

/// The store.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: Dir,
}

impl ModelStore {
    /// Opens (creating) the store.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] without OPFS.
    pub async fn open() -> Result<Self, StoreError> {
        let root = Dir::root().await?.dir(ROOT, true).await?;
        root.map(|root| Self { root }).ok_or_else(|| StoreError::Unavailable("cannot create the model folder".into()))
    }

    /// The model `id`'s directory; `None` if absent and not `create`.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn model(&self, id: &str, create: bool) -> Result<Option<ModelDir>, StoreError> {
        Ok(self.root.dir(id, create).await?.map(|dir| ModelDir { dir, id: id.to_string() }))
    }

    /// Every stored model.
    ///
    /// # Errors
    /// The browser's refusal to list the store.
    pub async fn list(&self) -> Result<Vec<StoredModel>, StoreError> {
        let mut models = Vec::new();
        for id in self.root.names().await? {
            if let Some(dir) = self.model(&id, false).await? {
                if let Some(m) = dir.describe().await {
                    models.push(m);
                }
            }
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// Deletes model `id` and everything stored for it.
    ///
    /// # Errors
    /// The browser's refusal (e.g. another tab is reading it).
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.root.remove(id).await
    }
}

/// One model's directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: Dir,
    id: String,
}

impl ModelDir {
    /// The recorded description; `None` if absent, unreadable or damaged.
    pub async fn meta(&self) -> Option<StoreMeta> {
        self.read_meta().await.ok().flatten()
    }

    /// The recorded description: `Ok(None)` if absent, an error saying why
    /// if it cannot be read or fails [`StoreMeta::check`].
    async fn read_meta(&self) -> Result<Option<StoreMeta>, String> {
        let Some(bytes) = self.dir.read(META).await.map_err(|e| e.to_string())? else { return Ok(None) };
        let meta: StoreMeta = serde_json::from_slice(&bytes).map_err(|e| format!("its record ({META}) does not parse: {e}"))?;
        meta.check().map_err(|e| format!("its record ({META}) {e}"))?;
        Ok(Some(meta))
    }

    /// Records the description, and deletes the files of shards it no longer lists.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn save_meta(&self, meta: &StoreMeta) -> Result<(), StoreError> {
        let json = serde_json::to_vec(meta).map_err(|e| StoreError::Io { action: "encode", what: META.into(), message: e.to_string() })?;
        self.dir.write(META, &json).await?;
        let keep: Vec<String> = meta.shards.iter().flat_map(|s| [s.data(), s.chunks(), s.ok()]).collect();
        for name in self.dir.names().await? {
            if name != META && !keep.contains(&name) {
                self.dir.remove(&name).await?;
            }
        }
        Ok(())
    }

    /// What is stored of `shard`.
    ///
    /// # Errors
    /// The browser's refusal to read.
    pub async fn shard_state(&self, shard: &ShardMeta) -> Result<ShardState, StoreError> {
        let data_size = self.dir.size(&shard.data()).await?.unwrap_or(0);
        if let Some(ok) = self.dir.read(&shard.ok()).await? {
            let ok = String::from_utf8_lossy(&ok);
            let valid = match &shard.sha256 {
                Some(sha) => ok == record(shard.size, sha),
                None => ok.split_once(' ').is_some_and(|(size, _)| size == shard.size.to_string()),
            };
            if valid {
                return Ok(if data_size == shard.size { ShardState::Verified } else { ShardState::Evicted });
            }
        }
        let marks = self.dir.read(&shard.chunks()).await?.unwrap_or_default();
        let mut map = ChunkMap::from_record(shard.size, &marks).map_err(|e| StoreError::Io {
            action: "read",
            what: shard.chunks(),
            message: e.to_string(),
        })?;
        // A chunk whose bytes are not all there is not stored, whatever the record says.
        let claimed = map.clone();
        map.clear();
        for i in 0..claimed.len() {
            if claimed.is_stored(i) && claimed.range(i).1 <= data_size {
                map.mark(i);
            }
        }
        Ok(ShardState::Partial(map))
    }

    /// Deletes what is stored of `shard`.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn discard(&self, shard: &ShardMeta) -> Result<(), StoreError> {
        for name in [shard.ok(), shard.chunks(), shard.data()] {
            self.dir.remove(&name).await?;
        }
        Ok(())
    }

    /// Opens `shard` for writing, resuming from `map`.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another tab writes it; other refusals.
    pub async fn writer(&self, shard: &ShardMeta, map: ChunkMap) -> Result<ShardWriter, StoreError> {
        let missing = |name: String| StoreError::Io { action: "create", what: name, message: "not created".into() };
        let mut data = self.dir.open(&shard.data(), true, false).await?.ok_or_else(|| missing(shard.data()))?;
        if data.len() < shard.size {
            data.truncate(shard.size)?;
        }
        let mut marks = self.dir.open(&shard.chunks(), true, false).await?.ok_or_else(|| missing(shard.chunks()))?;
        // Rewrite the record to what was checked to be there.
        let record: Vec<u8> = (0..map.len()).map(|i| u8::from(map.is_stored(i))).collect();
        marks.truncate(0)?;
        marks.write_at(0, &record)?;
        marks.flush()?;
        Ok(ShardWriter { meta: shard.clone(), data, marks, map, hasher: Sha256::new(), hashed: 0, buf: Vec::new() })
    }

    /// Writes `shard`'s completion record: call only after its bytes hashed
    /// to `sha256`.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn complete(&self, shard: &ShardMeta, sha256: &str) -> Result<(), StoreError> {
        self.dir.write(&shard.ok(), record(shard.size, sha256).as_bytes()).await
    }

    /// Opens a verified shard for reading.
    ///
    /// # Errors
    /// The browser's refusal; a missing file.
    pub async fn reader(&self, shard: &ShardMeta) -> Result<SyncFile, StoreError> {
        let file = match self.dir.open(&shard.data(), false, true).await {
            Ok(f) => f,
            // Browsers without read-only handles: an exclusive one.
            Err(StoreError::Io { .. }) => self.dir.open(&shard.data(), false, false).await?,
            Err(e) => return Err(e),
        };
        file.ok_or_else(|| StoreError::Io { action: "open", what: shard.data(), message: "the file is gone".into() })
    }

    /// The model as the Models panel shows it: `None` without `meta.json`,
    /// a [`StoreStatus::Damaged`] entry (which can be deleted) when the
    /// record cannot be used.
    pub async fn describe(&self) -> Option<StoredModel> {
        let meta = match self.read_meta().await {
            Ok(meta) => meta?,
            Err(problem) => return Some(self.damaged(problem).await),
        };
        let mut stored = 0;
        let mut complete = true;
        let mut evicted = false;
        for shard in &meta.shards {
            match self.shard_state(shard).await {
                Ok(ShardState::Verified) => stored += shard.size,
                Ok(ShardState::Evicted) => {
                    evicted = true;
                    complete = false;
                }
                Ok(ShardState::Partial(map)) => {
                    stored += map.stored_bytes();
                    complete = false;
                }
                // Being written right now (the writer holds it open).
                Err(_) => complete = false,
            }
        }
        let status = if complete {
            StoreStatus::Complete
        } else if evicted {
            StoreStatus::NeedsDownload
        } else {
            StoreStatus::Partial
        };
        Some(StoredModel {
            id: self.id.clone(),
            name: meta.name,
            source: meta.source,
            total_size: meta.total_size,
            stored_bytes: stored,
            status,
            problem: None,
        })
    }

    /// The entry of a model whose record is damaged: what can still be read
    /// of its name and source, and the problem.
    async fn damaged(&self, problem: String) -> StoredModel {
        let value: serde_json::Value = match self.dir.read(META).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let name = value.get("name").and_then(|n| n.as_str()).filter(|n| n.len() <= 200).map_or_else(|| self.id.clone(), str::to_string);
        let source =
            value.get("source").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or(ModelSource::Url { url: String::new() });
        StoredModel {
            id: self.id.clone(),
            name,
            source,
            total_size: 0,
            stored_bytes: 0,
            status: StoreStatus::Damaged,
            problem: Some(problem),
        }
    }
}

/// A shard being downloaded: writes chunks in place (into a file sized up
/// front, which makes the writes about twice as fast as growing it), records
/// each one after its data is flushed, and hashes the shard in order: a chunk
/// that arrives in turn is hashed from memory, one that arrived early is read
/// back from the store when its turn comes (as is everything a resume finds).
#[derive(Debug)]
pub struct ShardWriter {
    /// The shard.
    pub meta: ShardMeta,
    data: SyncFile,
    marks: SyncFile,
    map: ChunkMap,
    hasher: Sha256,
    hashed: usize,
    buf: Vec<u8>,
}

impl ShardWriter {
    /// Which chunks are stored.
    pub fn map(&self) -> &ChunkMap {
        &self.map
    }

    /// Stores chunk `i` (its exact bytes), then hashes whatever became contiguous.
    ///
    /// # Errors
    /// [`StoreError::Full`] when out of space; other refusals.
    pub fn put(&mut self, i: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let (start, end) = self.map.range(i);
        if bytes.len() as u64 != end - start {
            return Err(StoreError::Io {
                action: "store",
                what: self.data.what().to_string(),
                message: format!("chunk {i} has {} bytes, expected {}", bytes.len(), end - start),
            });
        }
        self.data.write_at(start, bytes)?;
        self.data.flush()?;
        self.marks.write_at(i as u64, &[1])?;
        self.marks.flush()?;
        self.map.mark(i);
        if i == self.hashed {
            // The next chunk in order: hash it from memory rather than read it back.
            self.hasher.update(bytes);
            self.hashed += 1;
        }
        self.hash_stored(&mut |_, _| {})
    }

    /// Hashes the stored chunks from where the hash stands, in order, calling
    /// `progress(hashed_bytes, size)`.
    ///
    /// # Errors
    /// A read refusal or a short file.
    pub fn hash_stored(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<(), StoreError> {
        while self.hashed < self.map.len() && self.map.is_stored(self.hashed) {
            let (start, end) = self.map.range(self.hashed);
            self.buf.resize((end - start) as usize, 0);
            self.data.read_exact_at(start, &mut self.buf)?;
            self.hasher.update(&self.buf);
            self.hashed += 1;
            progress(end, self.map.size());
        }
        Ok(())
    }

    /// Whether every chunk is stored and hashed.
    pub fn complete(&self) -> bool {
        self.hashed == self.map.len()
    }

    /// The SHA-256 of the stored bytes (meaningful once [`Self::complete`]).
    pub fn digest(&self) -> String {
        sprig_protocol::hex(&self.hasher.clone().finalize())
    }

    /// Forgets everything stored, to fetch the shard again.
    ///
    /// # Errors
    /// The browser's refusal.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        // Emptied, then sized up front again like a fresh shard.
        self.data.truncate(0)?;
        self.data.truncate(self.meta.size)?;
        self.data.flush()?;
        self.marks.truncate(0)?;
        self.marks.flush()?;
        self.map.clear();
        self.hasher = Sha256::new();
        self.hashed = 0;
        Ok(())
    }
}

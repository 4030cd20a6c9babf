//! Verified model shards kept in the browser's Cache API, so a second visit
//! loads without downloading them again (and works offline).
//!
//! A shard is stored as its chunks (`<url>?sprig-chunk=<i>`) and, written last,
//! a completion record (`<url>?sprig-complete`) holding its size and SHA-256.
//! Only a shard that was verified is recorded; a record whose chunks are gone
//! (evicted by the browser) reads as "not cached", never as a corrupt model.

use js_sys::Uint8Array;
use sprig_engine::gguf::ChunkedBytes;
use sprig_protocol::manifest::Shard;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, Response, WorkerGlobalScope};

use crate::fetch::CHUNK;

/// The Cache API cache holding model shards.
pub const CACHE_NAME: &str = "sprig-models-v1";

fn key(url: &str, suffix: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{suffix}")
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map_or_else(|| format!("{e:?}"), |e| String::from(e.message()))
}

/// An open model cache.
#[derive(Debug)]
pub struct ModelCache {
    cache: Cache,
}

impl ModelCache {
    /// Opens the cache.
    ///
    /// # Errors
    /// The browser's reason when the Cache API is unavailable.
    pub async fn open() -> Result<Self, String> {
        let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
        let storage: CacheStorage = scope.caches().map_err(|e| describe(&e))?;
        let cache = JsFuture::from(storage.open(CACHE_NAME)).await.map_err(|e| describe(&e))?;
        Ok(Self { cache: cache.unchecked_into() })
    }

    async fn get(&self, key: &str) -> Option<Response> {
        let v = JsFuture::from(self.cache.match_with_str(key)).await.ok()?;
        v.dyn_into::<Response>().ok()
    }

    /// The shard's chunks, if a verified copy of exactly this shard is stored
    /// and complete.
    pub async fn load(&self, url: &str, shard: &Shard) -> Option<ChunkedBytes> {
        let record = self.get(&key(url, "sprig-complete")).await?;
        let text = JsFuture::from(record.text().ok()?).await.ok()?.as_string()?;
        if text != format!("{} {}", shard.size, shard.sha256) {
            return None;
        }
        let mut store = ChunkedBytes::new(shard.size, CHUNK);
        for i in 0..store.chunk_count() {
            let resp = self.get(&key(url, &format!("sprig-chunk={i}"))).await?;
            let buf = JsFuture::from(resp.array_buffer().ok()?).await.ok()?;
            store.put(i, Uint8Array::new(&buf).to_vec()).ok()?;
        }
        Some(store)
    }

    /// Stores a verified shard: every chunk, then the completion record.
    ///
    /// # Errors
    /// The browser's reason (e.g. the storage quota is exceeded).
    pub async fn save(&self, url: &str, shard: &Shard, store: &ChunkedBytes) -> Result<(), String> {
        for i in 0..store.chunk_count() {
            let mut bytes = store.chunk(i).ok_or("a chunk is missing")?.to_vec();
            let resp = Response::new_with_opt_u8_array(Some(&mut bytes)).map_err(|e| describe(&e))?;
            JsFuture::from(self.cache.put_with_str(&key(url, &format!("sprig-chunk={i}")), &resp)).await.map_err(|e| describe(&e))?;
        }
        let record = Response::new_with_opt_str(Some(&format!("{} {}", shard.size, shard.sha256))).map_err(|e| describe(&e))?;
        JsFuture::from(self.cache.put_with_str(&key(url, "sprig-complete"), &record)).await.map_err(|e| describe(&e))?;
        Ok(())
    }

    /// The manifest last seen at `url`, for loading without a network.
    pub async fn manifest(&self, url: &str) -> Option<String> {
        let resp = self.get(&key(url, "sprig-manifest")).await?;
        JsFuture::from(resp.text().ok()?).await.ok()?.as_string()
    }

    /// Remembers the manifest at `url`.
    ///
    /// # Errors
    /// The browser's reason.
    pub async fn save_manifest(&self, url: &str, json: &str) -> Result<(), String> {
        let resp = Response::new_with_opt_str(Some(json)).map_err(|e| describe(&e))?;
        JsFuture::from(self.cache.put_with_str(&key(url, "sprig-manifest"), &resp)).await.map_err(|e| describe(&e))?;
        Ok(())
    }
}

//! Downloading a model file in the worker (never through the main thread),
//! streaming the body into a chunk store with progress.

use js_sys::Uint8Array;
use sha2::{Digest, Sha256};
use sprig_engine::gguf::ChunkedBytes;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, Response, WorkerGlobalScope};

/// Size of the chunks the model is stored in.
pub const CHUNK: usize = 4 << 20;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed before an answer (network down, CORS, bad URL).
    #[error("cannot fetch {url}: {message}")]
    Network {
        /// The URL.
        url: String,
        /// What the browser said.
        message: String,
    },
    /// The server answered with an error status.
    #[error("cannot fetch {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The body ended early or was longer than announced.
    #[error("download of {url} is incomplete: {message}")]
    Body {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

fn js_message(v: &JsValue) -> String {
    v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{v:?}"))
}

/// Accumulates streamed pieces into fixed-size chunks.
struct Assembler {
    hasher: Sha256,
    pieces: Vec<Vec<u8>>,
    current: Vec<u8>,
    done: u64,
}

impl Assembler {
    fn push(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (CHUNK - self.current.len()).min(rest.len());
            self.current.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.current.len() == CHUNK {
                self.pieces.push(std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK)));
            }
        }
        self.done += bytes.len() as u64;
    }

    fn finish(mut self) -> Result<ChunkedBytes, String> {
        if !self.current.is_empty() {
            self.pieces.push(std::mem::take(&mut self.current));
        }
        let mut store = ChunkedBytes::new(self.done, CHUNK);
        if store.chunk_count() != self.pieces.len() {
            return Err(format!("received {} bytes", self.done));
        }
        for (i, p) in self.pieces.into_iter().enumerate() {
            store.put(i, p).map_err(|e| e.to_string())?;
        }
        Ok(store)
    }
}

/// A downloaded file: its chunks, size and SHA-256 (lowercase hex).
#[derive(Debug)]
pub struct Download {
    /// The bytes.
    pub store: ChunkedBytes,
    /// How many.
    pub size: u64,
    /// Their SHA-256.
    pub sha256: String,
}

/// Fetches a small text resource (a manifest).
///
/// # Errors
/// [`FetchError`] for network failures and HTTP errors.
pub async fn text(url: &str) -> Result<String, FetchError> {
    let net = |message: String| FetchError::Network { url: url.to_string(), message };
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
    let resp: Response = JsFuture::from(scope.fetch_with_str(url)).await.map_err(|e| net(js_message(&e)))?.unchecked_into();
    if !resp.ok() {
        return Err(FetchError::Status { url: url.to_string(), status: resp.status() });
    }
    let body = JsFuture::from(resp.text().map_err(|e| net(js_message(&e)))?).await.map_err(|e| net(js_message(&e)))?;
    body.as_string().ok_or_else(|| net("the body is not text".into()))
}

/// Resolves `url` against `base` (itself resolved against the worker's location).
///
/// # Errors
/// [`FetchError::Network`] for a URL that does not parse.
pub fn resolve(url: &str, base: &str) -> Result<String, FetchError> {
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
    let here = scope.location().href();
    let bad = |e: JsValue| FetchError::Network { url: url.to_string(), message: format!("not a valid URL: {}", js_message(&e)) };
    let base = web_sys::Url::new_with_base(base, &here).map_err(bad)?.href();
    Ok(web_sys::Url::new_with_base(url, &base).map_err(bad)?.href())
}

/// Downloads `url` into chunks, hashing as bytes arrive and calling
/// `progress(done, total)`.
///
/// # Errors
/// [`FetchError`] for network failures, HTTP errors and short bodies.
pub async fn download(url: &str, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<Download, FetchError> {
    let net = |message: String| FetchError::Network { url: url.to_string(), message };
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
    let resp: Response = JsFuture::from(scope.fetch_with_str(url)).await.map_err(|e| net(js_message(&e)))?.unchecked_into();
    if !resp.ok() {
        return Err(FetchError::Status { url: url.to_string(), status: resp.status() });
    }
    // With a content encoding, content-length counts compressed bytes: unknown total.
    let encoded = resp.headers().get("content-encoding").ok().flatten().is_some_and(|e| e != "identity");
    let total = if encoded { None } else { resp.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok()) };
    let body = resp.body().ok_or_else(|| net("the response has no body".into()))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut asm = Assembler { hasher: Sha256::new(), pieces: Vec::new(), current: Vec::with_capacity(CHUNK), done: 0 };
    let mut reported = 0u64;
    loop {
        let result = JsFuture::from(reader.read()).await.map_err(|e| FetchError::Body { url: url.to_string(), message: js_message(&e) })?;
        let done = js_sys::Reflect::get(&result, &"done".into()).map(|v| v.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&result, &"value".into()).map_err(|e| net(js_message(&e)))?;
        let bytes = Uint8Array::new(&value);
        asm.push(&bytes.to_vec());
        if let Some(t) = total {
            if asm.done > t {
                return Err(FetchError::Body { url: url.to_string(), message: format!("more than the announced {t} bytes") });
            }
        }
        if asm.done - reported >= 1 << 20 {
            reported = asm.done;
            progress(asm.done, total);
        }
    }
    let size = asm.done;
    progress(size, total);
    let sha256 = asm.hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect();
    if let Some(t) = total {
        if size != t {
            return Err(FetchError::Body { url: url.to_string(), message: format!("{size} of {t} bytes arrived") });
        }
    }
    let store = asm.finish().map_err(|message| FetchError::Body { url: url.to_string(), message })?;
    Ok(Download { store, size, sha256 })
}

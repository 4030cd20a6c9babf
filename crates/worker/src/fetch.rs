//! HTTP in the worker (never through the main thread): small text resources,
//! byte ranges of model files, and whole-file streams for servers that ignore
//! Range. Requests bypass the HTTP cache (`no-store`): the model store is the
//! only copy of a model the browser keeps.

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, ReadableStreamDefaultReader, RequestCache, RequestInit, Response, WorkerGlobalScope};

use crate::chunk_map::is_transient;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The body was cut or had the wrong length.
    #[error("download of {url} was cut: {message}")]
    Body {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The request was aborted on purpose (pause, cancel).
    #[error("stopped")]
    Aborted,
}

impl FetchError {
    /// Whether trying again may succeed.
    pub fn transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Body { .. } => true,
            Self::Status { status, .. } => is_transient(*status),
            Self::Aborted => false,
        }
    }
}

fn js_message(v: &JsValue) -> String {
    v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{v:?}"))
}

fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Whether `url` is on the worker's own origin.
fn same_origin(url: &str) -> bool {
    let here = scope().location();
    web_sys::Url::new_with_base(url, &here.href()).is_ok_and(|u| u.origin() == here.origin())
}

async fn request(url: &str, range: Option<String>, if_range: Option<&str>, signal: Option<&AbortSignal>) -> Result<Response, FetchError> {
    let aborted = || signal.is_some_and(AbortSignal::aborted);
    let net =
        |e: &JsValue| if aborted() { FetchError::Aborted } else { FetchError::Network { url: url.to_string(), message: js_message(e) } };
    let init = RequestInit::new();
    init.set_cache(RequestCache::NoStore);
    if let Some(range) = range {
        let headers = Headers::new().map_err(|e| net(&e))?;
        headers.set("range", &range).map_err(|e| net(&e))?;
        // If-Range is not a CORS-safelisted header: cross-origin it would
        // need every host to allow it in a preflight, so there the caller's
        // check of each answer's ETag does the same work.
        if let Some(etag) = if_range.filter(|_| same_origin(url)) {
            headers.set("if-range", etag).map_err(|e| net(&e))?;
        }
        init.set_headers(&headers);
    }
    if let Some(s) = signal {
        init.set_signal(Some(s));
    }
    let resp: Response = JsFuture::from(scope().fetch_with_str_and_init(url, &init)).await.map_err(|e| net(&e))?.unchecked_into();
    if !resp.ok() {
        return Err(FetchError::Status { url: url.to_string(), status: resp.status() });
    }
    Ok(resp)
}

/// Fetches a small text resource (a manifest) of at most `max` bytes: a
/// longer one is refused by its `Content-Length` before its body is read,
/// or by its length before it is copied into wasm memory.
///
/// # Errors
/// [`FetchError`] for network failures and HTTP errors,
/// [`FetchError::Body`] for a body longer than `max`.
pub async fn text(url: &str, max: usize) -> Result<String, FetchError> {
    let net = |e: JsValue| FetchError::Network { url: url.to_string(), message: js_message(&e) };
    let too_long =
        |n: f64| FetchError::Body { url: url.to_string(), message: format!("the answer is {n} bytes long; at most {max} are read") };
    let resp = request(url, None, None, None).await?;
    if let Some(n) = header(&resp, "content-length").and_then(|v| v.trim().parse::<f64>().ok()) {
        if n > max as f64 {
            return Err(too_long(n));
        }
    }
    let body = JsFuture::from(resp.text().map_err(net)?).await.map_err(net)?;
    let body: js_sys::JsString =
        body.dyn_into().map_err(|_| FetchError::Network { url: url.to_string(), message: "the body is not text".into() })?;
    // UTF-16 units: a lower bound of the UTF-8 length, checked again by the caller.
    if body.length() as usize > max {
        return Err(too_long(f64::from(body.length())));
    }
    Ok(String::from(body))
}

/// Resolves `url` against `base` (itself resolved against the worker's location).
///
/// # Errors
/// [`FetchError::Network`] for a URL that does not parse.
pub fn resolve(url: &str, base: &str) -> Result<String, FetchError> {
    let here = scope().location().href();
    let bad = |e: JsValue| FetchError::Network { url: url.to_string(), message: format!("not a valid URL: {}", js_message(&e)) };
    let base = web_sys::Url::new_with_base(base, &here).map_err(bad)?.href();
    Ok(web_sys::Url::new_with_base(url, &base).map_err(bad)?.href())
}

/// The answer to a range request.
#[derive(Debug)]
pub enum RangeReply {
    /// `206`: exactly the bytes asked for.
    Partial {
        /// The bytes.
        bytes: Vec<u8>,
        /// The file's size, from `Content-Range`, when readable.
        total: Option<u64>,
        /// The file's ETag, when readable.
        etag: Option<String>,
    },
    /// `200`: the server ignores Range and sends the whole file.
    Whole(WholeBody),
}

/// A whole-file response being streamed.
#[derive(Debug)]
pub struct WholeBody {
    url: String,
    reader: ReadableStreamDefaultReader,
    signal: AbortSignal,
    /// The announced length (absent with a content encoding).
    pub length: Option<u64>,
    /// The file's ETag, when readable.
    pub etag: Option<String>,
}

impl WholeBody {
    /// Stops receiving the body.
    pub fn cancel(self) {
        let _ = self.reader.cancel();
    }

    /// The next piece of the body, of at most `room` bytes (checked before
    /// it is copied into wasm memory); `None` at its end.
    ///
    /// # Errors
    /// [`FetchError::Body`] when cut or when a piece is longer than `room`,
    /// [`FetchError::Aborted`] when stopped.
    pub async fn next(&mut self, room: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let result = JsFuture::from(self.reader.read()).await.map_err(|e| {
            if self.signal.aborted() {
                FetchError::Aborted
            } else {
                FetchError::Body { url: self.url.clone(), message: js_message(&e) }
            }
        })?;
        if js_sys::Reflect::get(&result, &"done".into()).map(|v| v.is_truthy()).unwrap_or(true) {
            return Ok(None);
        }
        let value = js_sys::Reflect::get(&result, &"value".into())
            .map_err(|e| FetchError::Body { url: self.url.clone(), message: js_message(&e) })?;
        let piece = Uint8Array::new(&value);
        if u64::from(piece.length()) > room {
            return Err(FetchError::Body {
                url: self.url.clone(),
                message: format!("the server sends more than the {room} bytes still expected"),
            });
        }
        Ok(Some(piece.to_vec()))
    }
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

/// Parses a `Content-Range: bytes first-last/total` header (`total` may be
/// `*`, unknown): `(first, last, total)`.
pub fn content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.trim().split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (first <= last && total.is_none_or(|t| last < t)).then_some((first, last, total))
}

/// Fetches bytes `[start, end)` of `url`; with `if_range` (an ETag), only
/// from that version of the file (another version answers whole, `200`).
///
/// # Errors
/// [`FetchError`]: network failures, error statuses, a cut or wrong-length body.
pub async fn range(url: &str, start: u64, end: u64, if_range: Option<&str>, signal: &AbortSignal) -> Result<RangeReply, FetchError> {
    let resp = request(url, Some(format!("bytes={start}-{}", end - 1)), if_range, Some(signal)).await?;
    let etag = header(&resp, "etag");
    if resp.status() == 200 {
        let encoded = header(&resp, "content-encoding").is_some_and(|e| e != "identity");
        let length = if encoded { None } else { header(&resp, "content-length").and_then(|v| v.parse().ok()) };
        let body = resp.body().ok_or_else(|| FetchError::Body { url: url.to_string(), message: "no body".into() })?;
        return Ok(RangeReply::Whole(WholeBody {
            url: url.to_string(),
            reader: body.get_reader().unchecked_into(),
            signal: signal.clone(),
            length,
            etag,
        }));
    }
    if resp.status() != 206 {
        return Err(FetchError::Status { url: url.to_string(), status: resp.status() });
    }
    let bad = |message: String| FetchError::Body { url: url.to_string(), message };
    // Both ends of the range, before any byte is copied. (A header that
    // CORS hides reads as absent: the length check below still holds.)
    let total = match header(&resp, "content-range") {
        None => None,
        Some(v) => match content_range(&v) {
            Some((first, last, total)) if first == start && last + 1 == end => total,
            Some((first, last, _)) => {
                return Err(bad(format!("the server sent bytes {first}-{last} for a request of {start}-{}", end - 1)))
            }
            None => return Err(bad(format!("the server's Content-Range `{v}` does not parse"))),
        },
    };
    if let Some(n) = header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        if n != end - start {
            return Err(bad(format!("the server announced {n} bytes for a range of {}", end - start)));
        }
    }
    let cut = |e: JsValue| if signal.aborted() { FetchError::Aborted } else { bad(js_message(&e)) };
    let buf: js_sys::ArrayBuffer = JsFuture::from(resp.array_buffer().map_err(cut)?).await.map_err(cut)?.unchecked_into();
    if u64::from(buf.byte_length()) != end - start {
        return Err(bad(format!("{} bytes arrived for a range of {}", buf.byte_length(), end - start)));
    }
    let bytes = Uint8Array::new(&buf).to_vec();
    Ok(RangeReply::Partial { bytes, total, etag })
}

/// Waits `ms` milliseconds.
pub async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

//! The typed bridge to the model worker: spawns it, queues requests until the
//! worker announces it is ready, and hands decoded events to a callback.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_events::EventListener;
use sprig_protocol::codec::{decode, encode, CodecError};
use sprig_protocol::{Event, Request};
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker};

/// The worker's loader as Trunk names it, beside `index.html`. Every build
/// gets this same name, so `scripts/pwa-build` renames the worker's files
/// per build and writes the new name into `index.html` (see [`worker_url`]).
pub const UNVERSIONED_WORKER_URL: &str = "./sprig-worker_loader.js";

/// The same for the worker built with the relaxed-SIMD kernels.
pub const UNVERSIONED_RELAXED_WORKER_URL: &str = "./sprig-worker-relaxed_loader.js";

/// The worker's loader for this build and browser: derefs to
/// [`worker_url`], so it goes wherever a `&str` URL does.
pub const WORKER_URL: &WorkerUrl = &WorkerUrl;

/// The URL of this build's worker loader (see [`WORKER_URL`]).
#[derive(Debug, Clone, Copy)]
pub struct WorkerUrl;

impl std::ops::Deref for WorkerUrl {
    type Target = str;

    fn deref(&self) -> &str {
        worker_url()
    }
}

/// The worker builds a page can start: the same worker with different
/// kernels (docs/architecture.md, Kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerBuild {
    /// wasm `simd128` kernels: every browser with wasm SIMD runs it.
    Simd128,
    /// Relaxed-SIMD kernels, faster; a browser without relaxed SIMD refuses
    /// to compile the module.
    RelaxedSimd,
}

/// A wasm module whose one function uses `i32x4.relaxed_dot_i8x16_i7x16_add_s`:
/// `WebAssembly.validate` accepts it exactly where relaxed SIMD runs.
const RELAXED_SIMD_PROBE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of that type
    0x0a, 0x3d, 0x01, 0x3b, 0x00, // code: one body of 59 bytes, no locals
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s
    0x0b, // end
];

/// Whether this browser validates relaxed-SIMD wasm.
pub fn relaxed_simd_supported() -> bool {
    js_sys::WebAssembly::validate(&js_sys::Uint8Array::from(RELAXED_SIMD_PROBE).into()).unwrap_or(false)
}

/// The build to start: relaxed SIMD where the browser validates it, unless
/// the page's query (`search`, e.g. `?kernels=simd128`) forces the `simd128`
/// fallback. Any other value of `kernels` leaves the choice automatic.
pub fn pick_worker_build(search: &str, relaxed_supported: bool) -> WorkerBuild {
    let forced_fallback = search.trim_start_matches('?').split('&').any(|pair| pair == "kernels=simd128");
    if relaxed_supported && !forced_fallback {
        WorkerBuild::RelaxedSimd
    } else {
        WorkerBuild::Simd128
    }
}

/// The worker loader this page starts: the build [`pick_worker_build`]
/// chooses, at the URL this page was built with (`<meta name="sprig-worker">`
/// or `<meta name="sprig-worker-relaxed">`: names with the build's hash, so a
/// new page never starts a worker an old build left in a cache), or
/// [`UNVERSIONED_WORKER_URL`] / [`UNVERSIONED_RELAXED_WORKER_URL`] when the
/// page has no such meta. Chosen once.
pub fn worker_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let window = web_sys::window();
        let search = window.as_ref().and_then(|w| w.location().search().ok()).unwrap_or_default();
        let meta = |name: &str| {
            window
                .as_ref()
                .and_then(|w| w.document())
                .and_then(|d| d.query_selector(&format!(r#"meta[name="{name}"]"#)).ok().flatten())
                .and_then(|meta| meta.get_attribute("content"))
                .filter(|url| !url.trim().is_empty())
        };
        match pick_worker_build(&search, relaxed_simd_supported()) {
            WorkerBuild::RelaxedSimd => meta("sprig-worker-relaxed").unwrap_or_else(|| UNVERSIONED_RELAXED_WORKER_URL.to_string()),
            WorkerBuild::Simd128 => meta("sprig-worker").unwrap_or_else(|| UNVERSIONED_WORKER_URL.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_simd_unless_forced_or_unsupported() {
        assert_eq!(pick_worker_build("", true), WorkerBuild::RelaxedSimd);
        assert_eq!(pick_worker_build("?embed=1", true), WorkerBuild::RelaxedSimd);
        assert_eq!(pick_worker_build("?kernels=simd128", true), WorkerBuild::Simd128);
        assert_eq!(pick_worker_build("?embed=1&kernels=simd128", true), WorkerBuild::Simd128);
        assert_eq!(pick_worker_build("?kernels=relaxed-simd", false), WorkerBuild::Simd128);
        assert_eq!(pick_worker_build("?kernels=simd1280", true), WorkerBuild::RelaxedSimd);
        assert_eq!(pick_worker_build("", false), WorkerBuild::Simd128);
    }

    #[test]
    fn the_probe_module_is_well_formed() {
        // Sizes: the code section holds one body of 59 bytes.
        let code = RELAXED_SIMD_PROBE.iter().position(|&b| b == 0x0a).unwrap();
        assert_eq!(RELAXED_SIMD_PROBE.len() - code - 2, 0x3d);
        assert_eq!(RELAXED_SIMD_PROBE.len() - code - 4, 0x3b);
    }
}

/// Errors of talking to the worker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The browser refused to start the worker.
    #[error("cannot start the model worker from {url}: {message}")]
    Spawn {
        /// The worker script's URL.
        url: String,
        /// What the browser said.
        message: String,
    },
    /// A message could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The browser refused to post the message.
    #[error("cannot post to the model worker: {0}")]
    Post(String),
}

/// What the client reports to its owner: a decoded event, or a failure.
pub type Incoming = Result<Event, ClientError>;

#[derive(Default)]
struct Pending {
    ready: bool,
    queue: Vec<(Request, Option<web_sys::File>)>,
}

/// A running model worker.
pub struct WorkerClient {
    worker: Worker,
    pending: Rc<RefCell<Pending>>,
    /// The worker's `message` and `error` listeners, removed on drop.
    _listeners: [EventListener; 2],
}

impl std::fmt::Debug for WorkerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerClient").field("ready", &self.pending.borrow().ready).finish()
    }
}

impl WorkerClient {
    /// Starts the worker at `url`; `on_event` receives every event it posts (and
    /// script errors, as [`ClientError`]s).
    ///
    /// # Errors
    /// [`ClientError::Spawn`] when the browser cannot start the worker.
    pub fn spawn(url: &str, on_event: impl Fn(Incoming) + 'static) -> Result<Self, ClientError> {
        let worker = Worker::new(url).map_err(|e| ClientError::Spawn { url: url.to_string(), message: format!("{e:?}") })?;
        let pending = Rc::new(RefCell::new(Pending::default()));
        let on_event = Rc::new(on_event);

        let on_message = {
            let (worker, pending, on_event) = (worker.clone(), pending.clone(), on_event.clone());
            EventListener::new(&worker.clone(), "message", move |msg| {
                let Some(msg) = msg.dyn_ref::<MessageEvent>() else { return };
                let event = decode::<Event>(msg.data()).map_err(ClientError::from);
                if let Ok(Event::Ready) = event {
                    let queued = {
                        let mut p = pending.borrow_mut();
                        p.ready = true;
                        std::mem::take(&mut p.queue)
                    };
                    for (request, file) in queued {
                        if let Err(e) = post(&worker, request, file.as_ref()) {
                            on_event(Err(e));
                        }
                    }
                }
                on_event(event);
            })
        };
        let on_error = {
            let url = url.to_string();
            EventListener::new(&worker, "error", move |e| {
                let message = e.dyn_ref::<ErrorEvent>().map_or_else(|| "the worker failed".to_string(), ErrorEvent::message);
                on_event(Err(ClientError::Spawn { url: url.clone(), message }));
            })
        };

        Ok(Self { worker, pending, _listeners: [on_message, on_error] })
    }

    /// Sends a request now, or as soon as the worker is ready.
    ///
    /// # Errors
    /// [`ClientError::Codec`] / [`ClientError::Post`] when the message cannot be sent.
    pub fn send(&self, request: Request) -> Result<(), ClientError> {
        self.send_with_file(request, None)
    }

    /// Sends a request with a picked file beside it (for
    /// [`sprig_protocol::ModelSource::File`]); the file is handed over, not copied.
    ///
    /// # Errors
    /// [`ClientError::Codec`] / [`ClientError::Post`] when the message cannot be sent.
    pub fn send_with_file(&self, request: Request, file: Option<web_sys::File>) -> Result<(), ClientError> {
        let mut p = self.pending.borrow_mut();
        if p.ready {
            drop(p);
            post(&self.worker, request, file.as_ref())
        } else {
            p.queue.push((request, file));
            Ok(())
        }
    }
}

impl Drop for WorkerClient {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

fn post(worker: &Worker, request: Request, file: Option<&web_sys::File>) -> Result<(), ClientError> {
    let value = encode(request)?;
    if let Some(file) = file {
        js_sys::Reflect::set(&value, &"file".into(), file).map_err(|e| ClientError::Post(format!("{e:?}")))?;
    }
    worker.post_message(&value).map_err(|e| ClientError::Post(format!("{e:?}")))
}

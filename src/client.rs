//! The typed bridge to the model worker: spawns it, queues requests until the
//! worker announces it is ready, and hands decoded events to a callback.

use std::cell::RefCell;
use std::rc::Rc;

use sprig_protocol::codec::{decode, encode, CodecError};
use sprig_protocol::{Event, Request};
use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, MessageEvent, Worker};

/// The worker's loader as Trunk names it, beside `index.html`. Every build
/// gets this same name, so `scripts/pwa-build` renames the worker's files
/// per build and writes the new name into `index.html` (see [`worker_url`]).
pub const UNVERSIONED_WORKER_URL: &str = "./sprig-worker_loader.js";

/// The worker's loader for this build: derefs to [`worker_url`], so it goes
/// wherever a `&str` URL does.
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

/// The worker loader this page was built with: the content of
/// `<meta name="sprig-worker">` (a name with the build's hash, so a new page
/// never starts a worker an old build left in a cache), or
/// [`UNVERSIONED_WORKER_URL`] when the page has no such meta. Read once.
pub fn worker_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(r#"meta[name="sprig-worker"]"#).ok().flatten())
            .and_then(|meta| meta.get_attribute("content"))
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| UNVERSIONED_WORKER_URL.to_string())
    })
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
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
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
        let worker = Worker::new(url).map_err(|e| ClientError::Spawn {
            url: url.to_string(),
            message: format!("{e:?}"),
        })?;
        let pending = Rc::new(RefCell::new(Pending::default()));
        let on_event = Rc::new(on_event);

        let on_message = {
            let (worker, pending, on_event) = (worker.clone(), pending.clone(), on_event.clone());
            Closure::<dyn FnMut(MessageEvent)>::new(move |msg: MessageEvent| {
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
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let on_error = {
            let url = url.to_string();
            Closure::<dyn FnMut(ErrorEvent)>::new(move |e: ErrorEvent| {
                on_event(Err(ClientError::Spawn { url: url.clone(), message: e.message() }));
            })
        };
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));

        Ok(Self { worker, pending, _on_message: on_message, _on_error: on_error })
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

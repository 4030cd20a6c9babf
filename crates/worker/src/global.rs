//! The worker's JS side: listening on the dedicated worker scope, fetching
//! models, running replies token by token and posting events.

use std::cell::{Cell, RefCell};

use sprig_engine::gguf::{ChunkedBytes, SourceReader};
use sprig_protocol::codec::{decode, encode};
use sprig_protocol::{ErrorKind, Event, LoadStage, Manifest, ModelSource, Request};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DedicatedWorkerGlobalScope, MessageChannel, MessageEvent};

use crate::fetch;
use crate::model_cache::ModelCache;
use crate::host::{error, worker_info, Host};

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::new());
    static LOADING: Cell<bool> = const { Cell::new(false) };
    static YIELD: RefCell<Option<MessageChannel>> = const { RefCell::new(None) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts one event to the UI. Failures to encode or post are logged, since there
/// is nobody else to tell.
fn post(event: Event) {
    match encode(event) {
        Ok(value) => {
            if let Err(e) = scope().post_message(&value) {
                web_sys::console::error_2(&"sprig-worker: postMessage failed".into(), &e);
            }
        }
        Err(e) => web_sys::console::error_1(&format!("sprig-worker: {e}").into()),
    }
}

/// Lets queued messages (a Stop) run: resolves on the next task, through a
/// MessageChannel (unlike setTimeout, not clamped to 4 ms).
async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let posted = YIELD.with(|y| {
            let mut y = y.borrow_mut();
            if y.is_none() {
                *y = MessageChannel::new().ok();
            }
            y.as_ref().map(|ch| {
                ch.port1().set_onmessage(Some(resolve.unchecked_ref()));
                ch.port2().post_message(&JsValue::NULL).is_ok()
            })
        });
        if posted != Some(true) {
            // No MessageChannel: resolve at once rather than hang.
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Loads a manifest's shards one after the other: from the model cache when a
/// verified copy is there, else from the network, checking each one's size and
/// SHA-256 before caching it. Progress counts bytes over all shards. Without a
/// network, the manifest last seen at `url` is used.
async fn download_manifest(url: &str) -> Result<(Vec<ChunkedBytes>, u64), Event> {
    let cache = match ModelCache::open().await {
        Ok(c) => Some(c),
        Err(e) => {
            web_sys::console::warn_1(&format!("sprig-worker: no model cache ({e}); downloading every time").into());
            None
        }
    };
    let json = match fetch::text(url).await {
        Ok(json) => json,
        Err(e) => match &cache {
            Some(c) => c.manifest(url).await.ok_or_else(|| error(ErrorKind::Network, e.to_string()))?,
            None => return Err(error(ErrorKind::Network, e.to_string())),
        },
    };
    let manifest = Manifest::parse(&json).map_err(|e| error(ErrorKind::BadModel, format!("{url}: {e}")))?;
    if let Some(c) = &cache {
        if let Err(e) = c.save_manifest(url, &json).await {
            web_sys::console::warn_1(&format!("sprig-worker: cannot cache the manifest: {e}").into());
        }
    }
    let total = manifest.total_size;
    let mut stores = Vec::with_capacity(manifest.shards.len());
    let mut before = 0u64;
    for (i, shard) in manifest.shards.iter().enumerate() {
        let shard_url = fetch::resolve(&shard.url, url).map_err(|e| error(ErrorKind::BadModel, e.to_string()))?;
        if let Some(c) = &cache {
            if let Some(store) = c.load(&shard_url, shard).await {
                before += shard.size;
                post(Event::Progress { stage: LoadStage::Download, done: before, total: Some(total) });
                stores.push(store);
                continue;
            }
        }
        let mut on_download =
            |done: u64, _: Option<u64>| post(Event::Progress { stage: LoadStage::Download, done: before + done, total: Some(total) });
        let d = fetch::download(&shard_url, &mut on_download).await.map_err(|e| error(ErrorKind::Network, e.to_string()))?;
        if d.size != shard.size || d.sha256 != shard.sha256 {
            return Err(error(
                ErrorKind::BadModel,
                format!(
                    "shard {} ({shard_url}) failed verification: expected {} bytes with sha256 {}, got {} bytes with sha256 {}",
                    i + 1,
                    shard.size,
                    shard.sha256,
                    d.size,
                    d.sha256
                ),
            ));
        }
        if let Some(c) = &cache {
            if let Err(e) = c.save(&shard_url, shard, &d.store).await {
                web_sys::console::warn_1(&format!("sprig-worker: cannot keep shard {} for next time: {e}", i + 1).into());
            }
        }
        before += d.size;
        stores.push(d.store);
    }
    Ok((stores, total))
}

async fn load(source: ModelSource) {
    let downloaded = match &source {
        ModelSource::Url { url } => {
            let mut on_download = |done: u64, total: Option<u64>| post(Event::Progress { stage: LoadStage::Download, done, total });
            fetch::download(url, &mut on_download)
                .await
                .map(|d| (vec![d.store], d.size))
                .map_err(|e| error(ErrorKind::Network, e.to_string()))
        }
        ModelSource::Manifest { url } => download_manifest(url).await,
    };
    let event = match downloaded {
        Ok((stores, size)) => {
            let readers = stores.into_iter().map(SourceReader::new).collect();
            HOST.with(|h| h.borrow_mut().load(readers, size, &mut post))
        }
        Err(event) => event,
    };
    LOADING.with(|l| l.set(false));
    post(event);
}

async fn run_reply() {
    loop {
        let events = HOST.with(|h| h.borrow_mut().step());
        if events.is_empty() {
            return;
        }
        let last = events.iter().any(|e| matches!(e, Event::Done { .. } | Event::Error { .. }));
        events.into_iter().for_each(post);
        if last {
            return;
        }
        yield_now().await;
    }
}

fn on_request(request: Request) {
    match request {
        Request::Hello { nonce } => post(match worker_info() {
            Ok(info) => Event::Hello { nonce, info },
            Err(message) => error(ErrorKind::Engine, message),
        }),
        Request::Load { source } => {
            if LOADING.with(Cell::get) {
                post(error(ErrorKind::Busy, "a model is already loading"));
            } else if HOST.with(|h| h.borrow().generating()) {
                post(error(ErrorKind::Busy, "a reply is being generated; stop it first"));
            } else {
                LOADING.with(|l| l.set(true));
                spawn_local(load(source));
            }
        }
        Request::Generate { turn, messages, settings } => {
            if LOADING.with(Cell::get) {
                post(error(ErrorKind::Busy, "the model is still loading"));
                return;
            }
            let event = HOST.with(|h| h.borrow_mut().start(turn, &messages, &settings));
            let started = matches!(event, Event::Started { .. });
            post(event);
            if started {
                spawn_local(run_reply());
            }
        }
        Request::Stop => HOST.with(|h| h.borrow_mut().cancel()),
    }
}

/// Registers the message handler and the panic reporter, then announces
/// [`Event::Ready`]. Called once by the worker binary's `main`.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(Event::Error { kind: ErrorKind::Panic, message: info.to_string() });
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|msg: MessageEvent| match decode::<Request>(msg.data()) {
        Ok(request) => on_request(request),
        Err(e) => post(error(ErrorKind::BadMessage, e.to_string())),
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(Event::Ready);
}

//! The worker's JS side: listening on the dedicated worker scope, fetching
//! models, running replies token by token and posting events.

use std::cell::{Cell, RefCell};
use std::io::{BufReader, Read, Seek};
use std::rc::Rc;

use sprig_engine::gguf::{ByteSource, SourceReader};
use sprig_protocol::codec::{decode, encode};
use sprig_protocol::{ErrorKind, Event, LoadStage, Manifest, ModelSource, Request, MAX_MANIFEST_BYTES, MAX_MODEL_BYTES};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DedicatedWorkerGlobalScope, File, MessageChannel, MessageEvent};

use crate::chunk_map::ChunkMap;
use crate::download::{self, Control, DownloadError};
use crate::fetch;
use crate::file_source::FileSource;
use crate::host::{self, error, memory_bytes, start_reply, step_reply, team_size, worker_info, Host, Prepared};
use crate::team::{self, Team};
use crate::peer;
use js_sys::Array;
use sprig_engine::model::{split_parts, Alone, Collective, Partition};
use crate::model_store::{model_id, ModelDir, ModelStore, ShardMeta, ShardState, StoreMeta};
use crate::opfs::{StoreError, SyncFile};

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::new());
    static LOADING: Cell<bool> = const { Cell::new(false) };
    static DOWNLOAD: RefCell<Option<Rc<Control>>> = const { RefCell::new(None) };
    static YIELD: RefCell<Option<MessageChannel>> = const { RefCell::new(None) };
    /// The other workers holding slices of the loaded model, if it is split.
    static TEAM: RefCell<Option<Team>> = const { RefCell::new(None) };
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

/// A stored shard as the GGUF reader sees it: buffered, since parsing the
/// header makes many tiny reads and each one is a call into the browser.
pub(crate) type StoreReader = BufReader<SourceReader<SyncFile>>;

/// Read buffer of a shard (tensor reads larger than this bypass it).
pub(crate) const READ_BUFFER: usize = 1 << 20;

/// Posts download progress at most every 100 ms (and always the last bytes),
/// with the speed of this download and the time left at that speed.
fn progress_poster() -> impl Fn(LoadStage, u64, u64) {
    let last = Cell::new(0.0f64);
    let start: Cell<Option<(f64, u64)>> = Cell::new(None);
    move |stage, done, total| {
        let now = js_sys::Date::now();
        let (rate, eta_s) = if stage == LoadStage::Download {
            let (t0, d0) = start.get().unwrap_or_else(|| {
                start.set(Some((now, done)));
                (now, done)
            });
            let secs = (now - t0) / 1000.0;
            let rate = (secs > 0.5 && done > d0).then(|| (done - d0) as f64 / secs);
            (rate, rate.map(|r| total.saturating_sub(done) as f64 / r))
        } else {
            (None, None)
        };
        if done >= total || now - last.get() >= 100.0 {
            last.set(now);
            post(Event::Progress { stage, done, total: Some(total), rate, eta_s });
        }
    }
}

fn storage_error(e: &StoreError) -> Event {
    error(ErrorKind::Storage, e.to_string())
}

fn download_error(e: DownloadError) -> Event {
    match e {
        DownloadError::Fetch(_) | DownloadError::Protocol { .. } => error(ErrorKind::Network, e.to_string()),
        DownloadError::Verification { .. } => error(ErrorKind::BadModel, e.to_string()),
        DownloadError::Store(ref s) => storage_error(s),
        DownloadError::Stopped => error(ErrorKind::Network, e.to_string()),
    }
}

/// The site's storage use and quota, if the browser says.
async fn estimate() -> Option<(u64, u64)> {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let promise = scope.navigator().storage().estimate().ok()?;
    let e = JsFuture::from(promise).await.ok()?;
    let get = |k: &str| js_sys::Reflect::get(&e, &k.into()).ok().and_then(|v| v.as_f64()).map(|v| v as u64);
    Some((get("usage")?, get("quota")?))
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// Refuses a download the site's storage cannot hold.
async fn check_quota(need: u64, name: &str) -> Result<(), Event> {
    let Some((usage, quota)) = estimate().await else { return Ok(()) };
    let free = quota.saturating_sub(usage);
    if need > free {
        return Err(error(
            ErrorKind::Storage,
            format!(
                "not enough storage for {name}: it needs {} more, but the browser lets this site store only {} more ({} of {} used). Delete a model in the Models panel or free disk space, then try again",
                gb(need),
                gb(free),
                gb(usage),
                gb(quota)
            ),
        ));
    }
    Ok(())
}

/// The shards of a manifest source, from the network or (offline, or already
/// complete) from the store: the record to keep and each shard's URL.
async fn manifest_meta(url: &str, known: Option<StoreMeta>) -> Result<(StoreMeta, Vec<String>), Event> {
    let stored = known.and_then(|m| m.manifest);
    let json = match fetch::text(url, MAX_MANIFEST_BYTES).await {
        Ok(json) => json,
        Err(e) => stored.ok_or_else(|| error(ErrorKind::Network, e.to_string()))?,
    };
    manifest_shards(url, &json)
}

fn manifest_shards(url: &str, json: &str) -> Result<(StoreMeta, Vec<String>), Event> {
    let manifest = Manifest::parse(json).map_err(|e| error(ErrorKind::BadModel, format!("{url}: {e}")))?;
    let mut urls = Vec::with_capacity(manifest.shards.len());
    let mut shards = Vec::with_capacity(manifest.shards.len());
    for s in &manifest.shards {
        urls.push(fetch::resolve(&s.url, url).map_err(|e| error(ErrorKind::BadModel, e.to_string()))?);
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

/// The single "shard" of a plain GGUF URL: its size and ETag from a one-byte
/// range request. A changed file (other size or ETag) discards a partial copy.
async fn url_meta(dir: Option<&ModelDir>, url: &str, known: Option<StoreMeta>, ctl: &Control) -> Result<StoreMeta, Event> {
    let (size, etag) = match download::fetch_chunk(url, 0, 4, None, ctl).await.map_err(download_error)? {
        // Refuse a file that is not GGUF before downloading all of it.
        fetch::RangeReply::Partial { bytes, .. } if bytes != b"GGUF" => {
            return Err(error(
                ErrorKind::BadModel,
                format!("{url} is not a GGUF model: it starts with {:?}, not \"GGUF\"", String::from_utf8_lossy(&bytes)),
            ))
        }
        fetch::RangeReply::Partial { total: Some(total), etag, .. } => (total, etag),
        fetch::RangeReply::Partial { total: None, .. } => {
            return Err(error(
                ErrorKind::Network,
                format!("{url}: the server does not let Sprig read Content-Range (a cross-origin server must send Access-Control-Expose-Headers: Content-Range); serve a manifest instead"),
            ))
        }
        fetch::RangeReply::Whole(body) => {
            let size = body.length.ok_or_else(|| {
                error(ErrorKind::Network, format!("{url}: the server ignores Range and sends no Content-Length, so the download could not be checked or resumed"))
            })?;
            let etag = body.etag.clone();
            body.cancel();
            (size, etag)
        }
    };
    if size > MAX_MODEL_BYTES {
        return Err(error(
            ErrorKind::BadModel,
            format!("{url}: the server gives the file's size (Content-Range total or Content-Length) as {size} bytes; Sprig stores models of at most {MAX_MODEL_BYTES} bytes (64 GiB)"),
        ));
    }
    if size == 0 {
        return Err(error(ErrorKind::BadModel, format!("{url}: the server gives the file's size as 0 bytes")));
    }
    let name = url.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or(url).split('?').next().unwrap_or(url).to_string();
    let shard = ShardMeta { key: "file".into(), size, sha256: None };
    if let (Some(dir), Some(old)) = (dir, known) {
        if old.total_size != size || old.etag != etag {
            for s in &old.shards {
                dir.discard(s).await.map_err(|e| storage_error(&e))?;
            }
        }
    }
    Ok(StoreMeta { name, source: ModelSource::Url { url: url.to_string() }, total_size: size, shards: vec![shard], etag, manifest: None })
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

/// Brings a URL or manifest model into the store (resuming what is there,
/// with no network at all when it is complete) and opens its shards.
async fn fetch_to_store(store: &ModelStore, source: &ModelSource, connections: usize, ctl: &Control) -> Result<(Vec<StoreReader>, u64), Event> {
    let id = model_id(source);
    // The folder is created only once the model is checked and fits.
    let existing = store.model(&id, false).await.map_err(|e| storage_error(&e))?;
    let known = match &existing {
        Some(dir) => dir.meta().await.filter(|m| m.source == *source),
        None => None,
    };
    if let (Some(dir), Some(m)) = (&existing, &known) {
        if all_verified(dir, m).await {
            return Ok((open_shards(dir, m).await?, m.total_size));
        }
    }
    let (meta, urls) = match source {
        ModelSource::Manifest { url } => manifest_meta(url, known).await?,
        ModelSource::Url { url } => (url_meta(existing.as_ref(), url, known, ctl).await?, vec![url.clone()]),
        ModelSource::File { .. } => return Err(error(ErrorKind::BadMessage, "a local file is not downloaded")),
    };
    // What is missing, then the quota, before anything is recorded, created
    // or sized: a model that cannot fit leaves the store as it was.
    let mut missing = Vec::new();
    let mut need = 0;
    for (shard, url) in meta.shards.iter().zip(urls) {
        let state = match &existing {
            Some(dir) => Some(dir.shard_state(shard).await.map_err(|e| storage_error(&e))?),
            None => None,
        };
        let stored = match &state {
            Some(ShardState::Verified) => continue,
            Some(ShardState::Partial(map)) => map.stored_bytes(),
            Some(ShardState::Evicted) | None => 0,
        };
        need += shard.size - stored;
        missing.push((shard, url, state));
    }
    if need > 0 {
        check_quota(need, &meta.name).await?;
    }
    let dir = match existing {
        Some(dir) => dir,
        None => store.model(&id, true).await.map_err(|e| storage_error(&e))?.ok_or_else(|| error(ErrorKind::Storage, "cannot create the model's folder"))?,
    };
    dir.save_meta(&meta).await.map_err(|e| storage_error(&e))?;
    // Ranges of a plain URL must come from the version begun (a strong ETag;
    // a weak one cannot be used with If-Range).
    let etag = meta.etag.clone().filter(|e| !e.starts_with("W/"));
    let mut targets = Vec::new();
    for (shard, url, state) in missing {
        let map = match state {
            Some(ShardState::Partial(map)) => map,
            Some(ShardState::Evicted) => {
                dir.discard(shard).await.map_err(|e| storage_error(&e))?;
                ChunkMap::new(shard.size).map_err(|e| error(ErrorKind::BadModel, e.to_string()))?
            }
            _ => ChunkMap::new(shard.size).map_err(|e| error(ErrorKind::BadModel, e.to_string()))?,
        };
        let writer = dir.writer(shard, map).await.map_err(|e| storage_error(&e))?;
        targets.push(download::Target { url, writer, etag: etag.clone() });
    }
    if !targets.is_empty() {
        let progress = progress_poster();
        download::run(&dir, targets, connections, ctl, meta.total_size, &progress).await.map_err(|e| match e {
            DownloadError::Stopped => Event::DownloadStopped { discarded: ctl.stopped().unwrap_or(false) },
            e => download_error(e),
        })?;
    }
    Ok((open_shards(&dir, &meta).await?, meta.total_size))
}

async fn open_shards(dir: &ModelDir, meta: &StoreMeta) -> Result<Vec<StoreReader>, Event> {
    let mut readers = Vec::with_capacity(meta.shards.len());
    for shard in &meta.shards {
        readers.push(BufReader::with_capacity(READ_BUFFER, SourceReader::new(dir.reader(shard).await.map_err(|e| storage_error(&e))?)));
    }
    Ok(readers)
}

/// Opens the shards of a model already complete in the store (for a worker
/// holding a slice of it, which rank 0 has just fetched).
///
/// # Errors
/// The store's error as text.
pub(crate) async fn open_stored(source: &ModelSource) -> Result<Vec<StoreReader>, String> {
    let text = |e: Event| match e {
        Event::Error { message, .. } => message,
        other => format!("{other:?}"),
    };
    let store = ModelStore::open().await.map_err(|e| e.to_string())?;
    let dir = store.model(&model_id(source), false).await.map_err(|e| e.to_string())?.ok_or("the model is not in the store")?;
    let meta = dir.meta().await.ok_or("the model's record is missing from the store")?;
    if !all_verified(&dir, &meta).await {
        return Err("the model is not complete in the store".into());
    }
    open_shards(&dir, &meta).await.map_err(text)
}

/// After a failed or cancelled download: deletes the model when asked or when
/// nothing of it is stored, so the store lists no empty entries.
async fn tidy(store: &ModelStore, source: &ModelSource, discard: bool) {
    let id = model_id(source);
    let empty = match store.model(&id, false).await {
        Ok(Some(dir)) => dir.describe().await.is_none_or(|m| m.stored_bytes == 0),
        _ => false,
    };
    if discard || empty {
        if let Err(e) = store.delete(&id).await {
            web_sys::console::warn_1(&format!("sprig-worker: cannot delete {id}: {e}").into());
        }
    }
}

/// Fits the loaded model's usable context to this worker's memory and
/// `others` (the other workers' [`host::usable_positions`]), and says it in
/// the `Loaded` event.
fn fit_context(event: &mut Event, others: &[usize]) {
    if let Event::Loaded { model } = event {
        if let Some(context) = HOST.with(|h| h.borrow_mut().fit_context(memory_bytes(), others)) {
            model.context_length = context as u64;
        }
    }
}

/// Loads the model from `readers`, split across workers when it needs more
/// than one (or the user asked): starts the others and loads this worker's
/// slice while they load theirs.
async fn load_split<R: Read + Seek>(readers: Vec<R>, size: u64, source: &ModelSource, file: Option<&File>, requested: usize) -> Event {
    let gguf = match host::open(readers) {
        Ok(f) => f,
        Err(e) => return e,
    };
    // A model whose parts cannot be told fails in the load below, which says why.
    let parts = split_parts(&gguf).unwrap_or(1);
    let cores = scope().navigator().hardware_concurrency() as usize;
    let count = team_size(requested, size, parts, cores.max(1));
    if count == 1 {
        let mut event = HOST.with(|h| h.borrow_mut().load_file(gguf, size, Partition::WHOLE, &mut post));
        fit_context(&mut event, &[]);
        return warmed_up(event, &mut Alone).await;
    }
    let partition = match Partition::new(0, count) {
        Ok(p) => p,
        Err(e) => return error(ErrorKind::BadMessage, e.to_string()),
    };
    let script = scope().location().href();
    let source_json = match serde_json::to_string(source) {
        Ok(s) => s,
        Err(e) => return error(ErrorKind::Engine, e.to_string()),
    };
    let files = Array::new();
    if let Some(f) = file {
        files.push(f);
    }
    let mut team = match Team::start(&script, count, &[("source", source_json.into()), ("files", files.into())]).await {
        Ok(t) => t,
        Err(e) => return error(ErrorKind::Engine, format!("cannot start {count} workers for the model: {e}")),
    };
    let mut event = HOST.with(|h| h.borrow_mut().load_file(gguf, size, partition, &mut post));
    if let Event::Loaded { model } = &mut event {
        match team.loaded().await {
            Ok(()) => {
                model.worker_memory_bytes = std::iter::once(memory_bytes()).chain(team.memory.iter().copied()).collect();
                fit_context(&mut event, &team.positions);
                event = warmed_up(event, &mut team.mesh).await;
                if matches!(event, Event::Loaded { .. }) {
                    TEAM.with(|t| *t.borrow_mut() = Some(team));
                }
            }
            Err(e) => {
                HOST.with(|h| h.borrow_mut().unload());
                event = error(ErrorKind::BadModel, format!("cannot load the model across {count} workers: {e}"));
            }
        }
    }
    event
}

/// A `Loaded` event after the model's kernels have run once (see
/// `Session::warm_up_with`), its load time including that; the model is
/// unloaded and an error returned if they fail.
async fn warmed_up<C: Collective>(mut event: Event, collective: &mut C) -> Event {
    let Event::Loaded { model } = &mut event else { return event };
    let Some(mut session) = HOST.with(|h| h.borrow_mut().take_session()) else { return event };
    let started = js_sys::Date::now();
    let result = session.warm_up_with(collective).await;
    session.take_profile();
    model.load_ms += js_sys::Date::now() - started;
    HOST.with(|h| h.borrow_mut().restore_session(session));
    match result {
        Ok(()) => event,
        Err(e) => {
            HOST.with(|h| h.borrow_mut().unload());
            error(ErrorKind::Engine, format!("the model failed its first run: {e}"))
        }
    }
}

async fn load(source: ModelSource, file: Option<File>, connections: usize, workers: usize) {
    // The workers holding the previous model go with it.
    TEAM.with(|t| t.borrow_mut().take());
    HOST.with(|h| h.borrow_mut().unload());
    let event = match &source {
        ModelSource::File { name, .. } => match file.clone().map(FileSource::new) {
            Some(Ok(f)) => {
                let size = f.len();
                let reader = BufReader::with_capacity(READ_BUFFER, SourceReader::new(f));
                load_split(vec![reader], size, &source, file.as_ref(), workers).await
            }
            Some(Err(message)) => error(ErrorKind::BadModel, format!("{name}: {message}")),
            None => error(ErrorKind::BadMessage, format!("{name}: the message carries no file")),
        },
        _ => match ModelStore::open().await {
            Err(e) => storage_error(&e),
            Ok(store) => {
                let ctl = match Control::new() {
                    Ok(c) => Rc::new(c),
                    Err(message) => {
                        finish_load(error(ErrorKind::Engine, message));
                        return;
                    }
                };
                DOWNLOAD.with(|d| *d.borrow_mut() = Some(ctl.clone()));
                let fetch_started = js_sys::Date::now();
                let fetched = fetch_to_store(&store, &source, connections, &ctl).await;
                let fetch_ms = js_sys::Date::now() - fetch_started;
                DOWNLOAD.with(|d| *d.borrow_mut() = None);
                match fetched {
                    Ok((readers, size)) => {
                        let mut event = load_split(readers, size, &source, None, workers).await;
                        if let Event::Loaded { model } = &mut event {
                            model.fetch_ms = fetch_ms;
                        }
                        // Stored bytes that are not a usable model are not kept.
                        if let Event::Error { kind: ErrorKind::BadModel, .. } = event {
                            tidy(&store, &source, true).await;
                        }
                        event
                    }
                    Err(event) => {
                        tidy(&store, &source, ctl.stopped() == Some(true)).await;
                        event
                    }
                }
            }
        },
    };
    finish_load(event);
}

fn finish_load(mut event: Event) {
    LOADING.with(|l| l.set(false));
    if let Event::Loaded { model } = &mut event {
        model.memory_bytes = memory_bytes();
        if model.worker_memory_bytes.is_empty() {
            model.worker_memory_bytes = vec![model.memory_bytes];
        }
    }
    post(event);
}

async fn list_models() -> Event {
    let store = match ModelStore::open().await {
        Ok(s) => s,
        Err(e) => return storage_error(&e),
    };
    match store.list().await {
        Ok(models) => {
            let (usage, quota) = estimate().await.map_or((None, None), |(u, q)| (Some(u), Some(q)));
            Event::Models { models, usage, quota }
        }
        Err(e) => storage_error(&e),
    }
}

async fn delete_model(id: String) {
    if LOADING.with(Cell::get) {
        post(error(ErrorKind::Busy, "a model is downloading or loading; stop it before deleting models"));
        return;
    }
    let deleted = match ModelStore::open().await {
        Ok(store) => store.delete(&id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        post(storage_error(&e));
    }
    post(list_models().await);
}

/// Runs a reply: the uncached part of the prompt, then a token at a time,
/// yielding between tokens so that a Stop can arrive. The session is lent out
/// of the host while a step runs (with a model split across workers each step
/// waits for the others), and a Stop arriving meanwhile takes effect at the
/// next token.
async fn run_reply(prepared: Prepared, received: f64) {
    match TEAM.with(|t| t.borrow_mut().take()) {
        None => {
            drive_reply(&prepared, &mut Alone, received).await;
        }
        Some(mut team) => {
            if drive_reply(&prepared, &mut team.mesh, received).await {
                // A failed exchange leaves the workers out of step: unload,
                // so the next attempt starts from a fresh load.
                team.mesh.broadcast_error("rank 0 gave up on this model");
                HOST.with(|h| h.borrow_mut().unload());
            } else {
                TEAM.with(|t| *t.borrow_mut() = Some(team));
            }
        }
    }
}

/// Posts a reply's events until it ends; returns whether it ended in an
/// error. `received`: when the request arrived (`Date.now()`), for the
/// timings logged for benchmarks and tuning.
async fn drive_reply<C: Collective>(prepared: &Prepared, collective: &mut C, received: f64) -> bool {
    let Some((mut session, _, _)) = HOST.with(|h| h.borrow_mut().lend()) else { return false };
    let prefill_start = js_sys::Date::now();
    let event = start_reply(&mut session, prepared, collective).await;
    let prefill_end = js_sys::Date::now();
    // For benchmarks and tuning: where the forward passes went.
    web_sys::console::debug_1(&format!("sprig profile: prefill {}", session.take_profile()).into());
    let started = matches!(event, Event::Started { .. });
    HOST.with(|h| h.borrow_mut().give_back(session, !started));
    post(event);
    if !started {
        return true;
    }
    let mut first_token = true;
    loop {
        let Some((mut session, turn, dropped)) = HOST.with(|h| h.borrow_mut().lend()) else { return false };
        let (mut events, finished) = step_reply(&mut session, turn, dropped, collective).await;
        for event in &mut events {
            if let Event::Done { stats, .. } = event {
                stats.memory_bytes = memory_bytes();
            }
        }
        if finished {
            web_sys::console::debug_1(&format!("sprig profile: decode {}", session.take_profile()).into());
        }
        HOST.with(|h| h.borrow_mut().give_back(session, finished));
        let failed = events.iter().any(|e| matches!(e, Event::Error { .. }));
        let first = std::mem::replace(&mut first_token, false) && !events.is_empty();
        events.into_iter().for_each(post);
        if first {
            let now = js_sys::Date::now();
            web_sys::console::debug_1(
                &format!(
                    "sprig timing: prompt ready {:.0} ms, prefill {:.0} ms, first token posted {:.0} ms after the request",
                    prefill_start - received,
                    prefill_end - prefill_start,
                    now - received
                )
                .into(),
            );
        }
        if finished {
            return failed;
        }
        yield_now().await;
    }
}

fn on_request(request: Request, file: Option<File>) {
    match request {
        Request::Hello { nonce } => post(match worker_info() {
            Ok(info) => Event::Hello { nonce, info },
            Err(message) => error(ErrorKind::Engine, message),
        }),
        Request::Load { source, connections, workers } => {
            if LOADING.with(Cell::get) {
                post(error(ErrorKind::Busy, "a model is already loading"));
            } else if HOST.with(|h| h.borrow().generating()) {
                post(error(ErrorKind::Busy, "a reply is being generated; stop it first"));
            } else {
                LOADING.with(|l| l.set(true));
                spawn_local(load(source, file, connections.clamp(1, 16), workers));
            }
        }
        Request::StopDownload { discard } => match DOWNLOAD.with(|d| d.borrow().clone()) {
            Some(ctl) => ctl.stop(discard),
            None => post(error(ErrorKind::NotLoaded, "no download is in progress")),
        },
        Request::ListModels => spawn_local(async { post(list_models().await) }),
        Request::DeleteModel { id } => spawn_local(delete_model(id)),
        Request::Generate { turn, messages, settings } => {
            if LOADING.with(Cell::get) {
                post(error(ErrorKind::Busy, "the model is still loading"));
                return;
            }
            let received = js_sys::Date::now();
            match HOST.with(|h| h.borrow_mut().prepare(turn, &messages, &settings)) {
                Ok(prepared) => spawn_local(run_reply(prepared, received)),
                Err(event) => post(event),
            }
        }
        Request::Stop => HOST.with(|h| h.borrow_mut().cancel()),
        // Five timed reads of a buffer the memory keeps (wasm memory never shrinks).
        Request::ProbeBandwidth { bytes } => {
            let gb_per_s = sprig_engine::bandwidth::read_bandwidth(usize::try_from(bytes).unwrap_or(usize::MAX), 5);
            post(Event::Bandwidth { bytes, gb_per_s });
        }
    }
}

/// Registers the message handler and the panic reporter, then announces
/// [`Event::Ready`]. Called once by the worker binary's `main`.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(Event::Error { kind: ErrorKind::Panic, message: info.to_string() });
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|msg: MessageEvent| {
        let data = msg.data();
        // A picked file travels beside the envelope (see `ModelSource::File`).
        // A worker started by another to hold a slice of its model.
        if team::kind(&data) == "peer" {
            spawn_local(peer::run(team::field(&data, "init")));
            return;
        }
        let file = js_sys::Reflect::get(&data, &"file".into()).ok().and_then(|f| f.dyn_into::<File>().ok());
        match decode::<Request>(data) {
            Ok(request) => on_request(request, file),
            Err(e) => post(error(ErrorKind::BadMessage, e.to_string())),
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(Event::Ready);
}

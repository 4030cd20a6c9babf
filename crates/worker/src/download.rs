//! Downloads a model's shards into the model store: fixed-size chunks fetched
//! as HTTP Range requests over several connections, each chunk stored as it
//! arrives, transient failures retried with backoff, every shard's SHA-256
//! checked (a mismatch discards that shard and fetches it once more), and a
//! whole-file stream for servers that ignore Range. A [`Control`] pauses or
//! cancels it between any two awaits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use futures_util::future::join_all;
use sprig_protocol::LoadStage;
use web_sys::{AbortController, AbortSignal};

use crate::chunk_map::{backoff_ms, MAX_ATTEMPTS};
use crate::fetch::{self, FetchError, RangeReply, WholeBody};
use crate::model_store::{ModelDir, ShardWriter};
use crate::opfs::StoreError;
use crate::plan::{self, Version};

/// Why a download ended without the model.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The network or the server failed, retries included.
    #[error("{0}. What arrived so far is kept: load the model again to resume")]
    Fetch(FetchError),
    /// A shard's bytes did not hash to the manifest's SHA-256, twice.
    #[error("shard {shard} ({url}) failed verification twice: expected sha256 {expected}, got {got}; the stored copy was discarded")]
    Verification {
        /// Position of the shard, from 1.
        shard: usize,
        /// Its URL.
        url: String,
        /// The manifest's digest.
        expected: String,
        /// The stored bytes' digest.
        got: String,
    },
    /// The file changed on the server (another ETag) during the download.
    #[error("{url}: the file changed on the server during the download (another ETag); load it again to download the new version from the start")]
    Changed {
        /// The URL.
        url: String,
    },
    /// The server's answers do not fit together.
    #[error("{url}: {message}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The store refused (full storage, another tab).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Paused or cancelled on request.
    #[error("the download was stopped")]
    Stopped,
}

/// Pauses or cancels a download from outside.
#[derive(Debug)]
pub struct Control {
    controller: RefCell<AbortController>,
    stop: Cell<Option<bool>>,
}

impl Control {
    /// A control for a new download.
    ///
    /// # Errors
    /// The browser's reason when `AbortController` is unavailable.
    pub fn new() -> Result<Self, String> {
        let controller = AbortController::new().map_err(|e| format!("no AbortController: {e:?}"))?;
        Ok(Self { controller: RefCell::new(controller), stop: Cell::new(None) })
    }

    /// Stops the download: in-flight requests are aborted; `discard` says
    /// whether the caller will delete what is stored.
    pub fn stop(&self, discard: bool) {
        self.stop.set(Some(discard));
        self.controller.borrow().abort();
    }

    /// Readies the control for another download after a failed one, whose
    /// first error aborted its other requests; a stop on request stays.
    ///
    /// # Errors
    /// The browser's reason when `AbortController` is unavailable.
    pub fn rearm(&self) -> Result<(), String> {
        if self.stopped().is_none() {
            *self.controller.borrow_mut() = AbortController::new().map_err(|e| format!("no AbortController: {e:?}"))?;
        }
        Ok(())
    }

    /// `Some(discard)` once stopped.
    pub fn stopped(&self) -> Option<bool> {
        self.stop.get()
    }

    fn signal(&self) -> AbortSignal {
        self.controller.borrow().signal()
    }

    fn check(&self) -> Result<(), DownloadError> {
        if self.stopped().is_some() {
            Err(DownloadError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Sleeps `ms`, waking early when stopped.
    async fn sleep(&self, ms: u32) -> Result<(), DownloadError> {
        let mut left = ms;
        while left > 0 {
            self.check()?;
            let step = left.min(100);
            fetch::sleep(step).await;
            left -= step;
        }
        self.check()
    }
}

/// One shard to download.
#[derive(Debug)]
pub struct Target {
    /// Its absolute URL.
    pub url: String,
    /// Its writer, positioned on what is already stored.
    pub writer: ShardWriter,
    /// A plain URL's ETag when its download began: every range must come
    /// back with it (weak comparison; asked with `If-Range` when strong and
    /// same-origin), so a file replaced on the server mid-download is never
    /// stored as a mix of two versions.
    pub etag: Option<String>,
}

/// Reports progress: `(stage, bytes done, bytes in all)`.
pub type Progress<'a> = &'a dyn Fn(LoadStage, u64, u64);

struct Slot {
    url: String,
    etag: Option<String>,
    writer: Option<ShardWriter>,
    refetched: bool,
}

struct State {
    queue: VecDeque<(usize, usize)>,
    in_flight: usize,
    slots: Vec<Slot>,
    done: u64,
    total: u64,
    error: Option<DownloadError>,
}

/// What to do once a shard's last chunk is stored.
enum Finished {
    /// Verified: record it (writer handed back to drop after the record).
    Record(Box<ShardWriter>, String),
    /// Mismatch: fetch it again.
    Refetch,
    /// Nothing to do yet.
    No,
}

impl State {
    fn finish(&mut self, si: usize) -> Result<Finished, DownloadError> {
        let slot = &mut self.slots[si];
        let Some(w) = slot.writer.as_mut() else { return Ok(Finished::No) };
        if !w.complete() {
            return Ok(Finished::No);
        }
        let got = w.digest();
        match w.meta.sha256.clone() {
            Some(expected) if expected != got => {
                let size = w.map().size();
                w.reset()?;
                self.done -= size;
                if slot.refetched {
                    return Err(DownloadError::Verification { shard: si + 1, url: slot.url.clone(), expected, got });
                }
                slot.refetched = true;
                let missing = w.map().missing();
                self.queue.extend(missing.into_iter().map(|ci| (si, ci)));
                web_sys::console::warn_1(&format!("sprig-worker: shard {} failed verification; fetching it again", si + 1).into());
                Ok(Finished::Refetch)
            }
            _ => Ok(slot.writer.take().map_or(Finished::No, |w| Finished::Record(Box::new(w), got))),
        }
    }
}

async fn record(dir: &ModelDir, finished: Finished) -> Result<(), DownloadError> {
    if let Finished::Record(writer, sha) = finished {
        dir.complete(&writer.meta, &sha).await?;
    }
    Ok(())
}

/// Fetches one chunk, retrying transient failures with backoff.
pub async fn fetch_chunk(url: &str, start: u64, end: u64, etag: Option<&str>, ctl: &Control) -> Result<RangeReply, DownloadError> {
    let mut attempt = 1;
    loop {
        ctl.check()?;
        match fetch::range(url, start, end, plan::if_range(etag), &ctl.signal()).await {
            Ok(reply) => return Ok(reply),
            Err(FetchError::Aborted) => return Err(DownloadError::Stopped),
            Err(e) if e.transient() && attempt < MAX_ATTEMPTS => {
                web_sys::console::warn_1(&format!("sprig-worker: {e}; retry {attempt} of {}", MAX_ATTEMPTS - 1).into());
                ctl.sleep(backoff_ms(attempt)).await?;
                attempt += 1;
            }
            Err(e) => return Err(DownloadError::Fetch(e)),
        }
    }
}

/// Downloads every missing chunk of `targets` into `dir` with `connections`
/// parallel requests, verifying and recording each shard as it completes.
/// `total` is the model's size, `progress` is told about stored bytes.
///
/// # Errors
/// [`DownloadError`]; what was stored stays stored (except a shard that failed
/// verification).
pub async fn run(
    dir: &ModelDir,
    targets: Vec<Target>,
    connections: usize,
    ctl: &Control,
    total: u64,
    progress: Progress<'_>,
) -> Result<(), DownloadError> {
    // Resumed shards: hash what is already stored (from disk) before adding to it.
    let mut slots = Vec::with_capacity(targets.len());
    let mut before = 0u64;
    for mut t in targets {
        let base = before;
        t.writer.hash_stored(&mut |done, _| progress(LoadStage::Verify, base + done, total))?;
        before += t.writer.map().stored_bytes();
        slots.push(Slot { url: t.url, etag: t.etag, writer: Some(t.writer), refetched: false });
    }
    let done = total - slots.iter().filter_map(|s| s.writer.as_ref()).map(|w| w.map().size() - w.map().stored_bytes()).sum::<u64>();
    let state = RefCell::new(State { queue: VecDeque::new(), in_flight: 0, slots, done, total, error: None });
    // Shards fully stored by an earlier visit (but not yet recorded) finish now.
    let count = state.borrow().slots.len();
    for si in 0..count {
        let finished = state.borrow_mut().finish(si)?;
        record(dir, finished).await?;
    }
    {
        let mut s = state.borrow_mut();
        let tasks: Vec<(usize, usize)> = s
            .slots
            .iter()
            .enumerate()
            .filter_map(|(si, slot)| slot.writer.as_ref().map(|w| (si, w)))
            .flat_map(|(si, w)| w.map().missing().into_iter().map(move |ci| (si, ci)))
            .collect();
        s.queue.extend(tasks);
    }
    progress(LoadStage::Download, state.borrow().done, total);
    // The first chunk alone: it tells whether the server honours Range.
    let Some((si, ci)) = state.borrow_mut().queue.pop_front() else { return Ok(()) };
    let (url, start, end, etag) = task_range(&state, si, ci);
    match fetch_chunk(&url, start, end, etag.as_deref(), ctl).await? {
        RangeReply::Partial { bytes, etag: got, .. } => {
            same_version(&url, etag.as_deref(), got.as_deref())?;
            let finished = store(&state, si, ci, &bytes, progress)?;
            record(dir, finished).await?;
        }
        // With If-Range, a whole answer is a new version, unless it is the
        // same one from a server that ignores Range.
        RangeReply::Whole(body) if whole_is_other(etag.as_deref(), body.etag.as_deref()) => {
            body.cancel();
            return Err(changed(&url));
        }
        RangeReply::Whole(body) => return stream_all(dir, &state, si, body, ctl, progress).await,
    }
    let conns = (0..connections.max(1)).map(|_| connection(dir, &state, ctl, progress));
    join_all(conns).await;
    let error = state.borrow_mut().error.take();
    match error {
        Some(e) => Err(e),
        None => ctl.check(),
    }
}

fn task_range(state: &RefCell<State>, si: usize, ci: usize) -> (String, u64, u64, Option<String>) {
    let s = state.borrow();
    let slot = &s.slots[si];
    let (start, end) = slot.writer.as_ref().map_or((0, 0), |w| w.map().range(ci));
    (slot.url.clone(), start, end, slot.etag.clone())
}

/// The error of a file replaced on the server mid-download.
fn changed(url: &str) -> DownloadError {
    DownloadError::Changed { url: url.to_string() }
}

/// Refuses a range of another version of the file than the one begun.
fn same_version(url: &str, want: Option<&str>, got: Option<&str>) -> Result<(), DownloadError> {
    match plan::version(want, got) {
        Version::Other => Err(changed(url)),
        Version::Same | Version::Unknown => Ok(()),
    }
}

/// Whether a whole-file answer to a range request with `If-Range: want`
/// is another version of the file: it must carry the same ETag to be the
/// same version from a server that ignores Range.
fn whole_is_other(want: Option<&str>, got: Option<&str>) -> bool {
    want.is_some() && plan::version(want, got) != Version::Same
}

/// Stores a ranged chunk, and finishes its shard when that was the last one.
fn store(state: &RefCell<State>, si: usize, ci: usize, bytes: &[u8], progress: Progress<'_>) -> Result<Finished, DownloadError> {
    put_chunk(state, si, ci, bytes, progress)?;
    state.borrow_mut().finish(si)
}

/// One connection: takes chunks off the queue until it is empty and nothing
/// is in flight (a failed shard may requeue its chunks), or until an error.
async fn connection(dir: &ModelDir, state: &RefCell<State>, ctl: &Control, progress: Progress<'_>) {
    loop {
        if ctl.stopped().is_some() {
            return;
        }
        let task = {
            let mut s = state.borrow_mut();
            if s.error.is_some() {
                return;
            }
            match s.queue.pop_front() {
                Some(t) => {
                    s.in_flight += 1;
                    Some(t)
                }
                None if s.in_flight == 0 => return,
                None => None,
            }
        };
        let Some((si, ci)) = task else {
            fetch::sleep(50).await;
            continue;
        };
        let (url, start, end, etag) = task_range(state, si, ci);
        let outcome = match fetch_chunk(&url, start, end, etag.as_deref(), ctl).await {
            Ok(RangeReply::Partial { bytes, etag: got, .. }) => {
                same_version(&url, etag.as_deref(), got.as_deref()).and_then(|()| store(state, si, ci, &bytes, progress))
            }
            Ok(RangeReply::Whole(body)) if whole_is_other(etag.as_deref(), body.etag.as_deref()) => {
                body.cancel();
                Err(changed(&url))
            }
            Ok(RangeReply::Whole(_)) => {
                Err(DownloadError::Protocol { url: url.clone(), message: "the server stopped honouring Range requests".into() })
            }
            Err(e) => Err(e),
        };
        state.borrow_mut().in_flight -= 1;
        let outcome = match outcome {
            Ok(finished) => record(dir, finished).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            let mut s = state.borrow_mut();
            if s.error.is_none() && !matches!(e, DownloadError::Stopped) {
                s.error = Some(e);
            }
            drop(s);
            // Stop the other connections' requests too (not a pause: nothing is discarded).
            ctl.controller.borrow().abort();
            return;
        }
    }
}

/// For servers without Range: every unfinished shard as one stream, in order,
/// starting with `first` (already requested for shard `si`). A cut restarts
/// the shard (with backoff), since nothing can be asked from the middle.
async fn stream_all(
    dir: &ModelDir,
    state: &RefCell<State>,
    si: usize,
    first: WholeBody,
    ctl: &Control,
    progress: Progress<'_>,
) -> Result<(), DownloadError> {
    let mut pending = Some(first);
    let count = state.borrow().slots.len();
    for index in si..count {
        let mut attempt = 1;
        loop {
            if state.borrow().slots[index].writer.is_none() {
                break;
            }
            let body = match pending.take() {
                Some(b) => Ok(b),
                None => {
                    let (url, _, _, _) = task_range(state, index, 0);
                    let size = state.borrow().slots[index].writer.as_ref().map_or(0, |w| w.map().size());
                    match fetch_chunk(&url, 0, size.max(1), None, ctl).await {
                        Ok(RangeReply::Whole(b)) => Ok(b),
                        Ok(RangeReply::Partial { .. }) => {
                            Err(DownloadError::Protocol { url, message: "the server answered a whole-file request with a range".into() })
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            let outcome = match body {
                Ok(body) => stream_shard(state, index, body, progress).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    let finished = state.borrow_mut().finish(index)?;
                    record(dir, finished).await?;
                    // A verification failure left the writer in place, reset: go again.
                }
                Err(DownloadError::Fetch(e)) if e.transient() && attempt < MAX_ATTEMPTS => {
                    ctl.sleep(backoff_ms(attempt)).await?;
                    attempt += 1;
                }
                Err(e) => return Err(if ctl.stopped().is_some() { DownloadError::Stopped } else { e }),
            }
        }
    }
    ctl.check()
}

/// Writes one whole-file body into shard `si` from its start.
async fn stream_shard(state: &RefCell<State>, si: usize, mut body: WholeBody, progress: Progress<'_>) -> Result<(), DownloadError> {
    let (url, size, stored) = {
        let mut s = state.borrow_mut();
        let slot = &mut s.slots[si];
        let url = slot.url.clone();
        let w = slot.writer.as_mut().ok_or(DownloadError::Stopped)?;
        let stored = w.map().stored_bytes();
        let size = w.map().size();
        w.reset()?;
        (url, size, stored)
    };
    state.borrow_mut().done -= stored;
    if let Some(len) = body.length {
        if len != size {
            return Err(DownloadError::Protocol { url, message: format!("the server sends {len} bytes, the model needs {size}") });
        }
    }
    let chunk = crate::chunk_map::CHUNK as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    let mut index = 0usize;
    let mut received = 0u64;
    while let Some(piece) = body.next(size - received).await.map_err(|e| {
        if matches!(e, FetchError::Aborted) {
            DownloadError::Stopped
        } else {
            DownloadError::Fetch(e)
        }
    })? {
        received += piece.len() as u64;
        if received > size {
            return Err(DownloadError::Protocol { url, message: format!("the server sends more than the {size} bytes expected") });
        }
        let mut rest = piece.as_slice();
        while !rest.is_empty() {
            let take = (chunk - buf.len()).min(rest.len());
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buf.len() == chunk {
                put_chunk(state, si, index, &buf, progress)?;
                buf.clear();
                index += 1;
            }
        }
    }
    if !buf.is_empty() {
        put_chunk(state, si, index, &buf, progress)?;
    }
    if received != size {
        return Err(DownloadError::Fetch(FetchError::Body { url, message: format!("{received} of {size} bytes arrived") }));
    }
    Ok(())
}

/// Writes chunk `ci` of shard `si` and counts its bytes (the shard is finished by the caller).
fn put_chunk(state: &RefCell<State>, si: usize, ci: usize, bytes: &[u8], progress: Progress<'_>) -> Result<(), DownloadError> {
    let mut s = state.borrow_mut();
    let Some(w) = s.slots[si].writer.as_mut() else { return Ok(()) };
    w.put(ci, bytes)?;
    s.done += bytes.len() as u64;
    progress(LoadStage::Download, s.done, s.total);
    Ok(())
}

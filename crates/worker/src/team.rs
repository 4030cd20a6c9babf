//! A model split across several workers, each with its own wasm memory (so
//! together they hold more than one 4 GiB memory can): this worker is rank 0,
//! the coordinator, and starts the others from its own script.
//!
//! Every pair of workers shares a `MessageChannel`. At each exchange point
//! every worker posts its block of partial sums to every other one (the
//! buffer is transferred, not copied, and the buffers received are reused
//! for the blocks sent back) and reads theirs in rank order; the
//! model adds them up in segment order, so every worker holds exactly what
//! one worker running the whole model would. Rank 0 also tells the others
//! which tokens each forward pass runs. Nothing here needs `SharedArrayBuffer`, so neither
//! COOP/COEP nor a cross-origin-isolated host page.
//!
//! The messages between workers are [`PeerMessage`]s, decoded strictly.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use gloo_events::EventListener;
use js_sys::{ArrayBuffer, Float32Array};
use sprig_engine::model::{Collective, CollectiveError};
use sprig_protocol::{Event, ModelSource};
use wasm_bindgen::prelude::*;
use web_sys::{File, MessageChannel, MessageEvent, MessagePort, Worker};

use crate::peer_message::{PeerMessage, PeerMessageError};

/// Messages received from one other worker, waiting to be read.
#[derive(Default)]
struct InboxState {
    queue: VecDeque<JsValue>,
    waker: Option<Waker>,
}

/// Where one other worker's messages arrive.
#[derive(Clone, Default)]
pub struct Inbox(Rc<RefCell<InboxState>>);

impl Inbox {
    fn push(&self, value: JsValue) {
        let mut s = self.0.borrow_mut();
        s.queue.push_back(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The next message as it came, waiting for it.
    async fn recv_raw(&self) -> JsValue {
        poll_fn(|cx| {
            let mut s = self.0.borrow_mut();
            match s.queue.pop_front() {
                Some(v) => Poll::Ready(v),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next message, waiting for it.
    ///
    /// # Errors
    /// A message that is not a [`PeerMessage`].
    pub async fn recv(&self) -> Result<PeerMessage, PeerMessageError> {
        PeerMessage::decode(&self.recv_raw().await)
    }

    /// Puts every message `target` gets here, until the listener is dropped.
    fn listen(&self, target: &web_sys::EventTarget) -> EventListener {
        let inbox = self.clone();
        EventListener::new(target, "message", move |e| {
            if let Some(e) = e.dyn_ref::<MessageEvent>() {
                inbox.push(e.data());
            }
        })
    }
}

/// One end of the channel to another worker.
pub struct Link {
    port: MessagePort,
    inbox: Inbox,
    /// Buffers of blocks received from the other worker, reused for the
    /// blocks sent to it: a block's buffer goes back and forth instead of a
    /// new one (hundreds of KiB during a prompt) being made for every
    /// exchange and left to the garbage collector.
    spare: RefCell<Vec<ArrayBuffer>>,
    _on_message: EventListener,
}

impl Link {
    /// Listens on `port`, queueing its messages in `inbox`.
    pub fn new(port: MessagePort, inbox: Inbox) -> Self {
        let on_message = inbox.listen(&port);
        // A port listened to with addEventListener delivers nothing before start().
        port.start();
        Self { port, inbox, spare: RefCell::new(Vec::new()), _on_message: on_message }
    }

    /// Sends `values` as a `block` message, in a spare buffer when one is
    /// big enough, transferring it.
    fn send_block(&self, values: &[f32]) -> Result<(), CollectiveError> {
        let bytes = values.len() * 4;
        let reused = {
            let mut spare = self.spare.borrow_mut();
            let at = spare.iter().position(|b| b.byte_length() as usize >= bytes);
            at.map(|i| spare.swap_remove(i))
        };
        let buffer = reused.unwrap_or_else(|| ArrayBuffer::new(bytes as u32));
        let data = Float32Array::new_with_byte_offset_and_length(&buffer, 0, values.len() as u32);
        data.copy_from(values);
        self.send(&PeerMessage::Block { data })
    }

    /// Keeps the buffer of a received block for a later [`Link::send_block`].
    fn keep(&self, data: &Float32Array) {
        let mut spare = self.spare.borrow_mut();
        // Two are enough for the blocks in flight; more would only hold memory.
        if spare.len() < 2 {
            spare.push(data.buffer());
        }
    }

    /// Posts `message`, transferring what it carries.
    pub fn send(&self, message: &PeerMessage) -> Result<(), CollectiveError> {
        let (value, transfer) = message.encode();
        self.port.post_message_with_transferable(&value, &transfer).map_err(|e| CollectiveError(js_text(&e)))
    }

    /// The next message from the other worker.
    ///
    /// # Errors
    /// A message that is not a [`PeerMessage`].
    pub async fn recv(&self) -> Result<PeerMessage, PeerMessageError> {
        self.inbox.recv().await
    }
}

/// Text of a JS value, for error messages.
pub fn js_text(v: &JsValue) -> String {
    v.as_string().or_else(|| js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string())).unwrap_or_else(|| format!("{v:?}"))
}

/// This worker's channels to every other worker of the model.
pub struct Mesh {
    rank: usize,
    /// Indexed by rank; `None` at this worker's own rank.
    links: Vec<Option<Link>>,
}

impl Mesh {
    /// The mesh of worker `rank`, given its links by rank.
    pub fn new(rank: usize, links: Vec<Option<Link>>) -> Self {
        Self { rank, links }
    }

    /// The link to worker `rank`.
    pub fn link(&self, rank: usize) -> Option<&Link> {
        self.links.get(rank).and_then(Option::as_ref)
    }

    /// Tells every other worker this one failed (best effort).
    pub fn broadcast_error(&self, text: &str) {
        let m = PeerMessage::Error { message: text.to_string() };
        for l in self.links.iter().flatten() {
            let _ = l.send(&m);
        }
    }
}

impl Collective for Mesh {
    async fn begin(&mut self, pos: usize, tokens: &[u32]) -> Result<(), CollectiveError> {
        if self.rank != 0 {
            return Ok(());
        }
        let m = PeerMessage::Run { pos, tokens: tokens.to_vec() };
        for l in self.links.iter().flatten() {
            l.send(&m)?;
        }
        Ok(())
    }

    async fn all_gather(&mut self, mine: &[f32], all: &mut Vec<f32>) -> Result<(), CollectiveError> {
        for l in self.links.iter().flatten() {
            l.send_block(mine)?;
        }
        all.clear();
        for (r, link) in self.links.iter().enumerate() {
            let Some(link) = link else {
                all.extend_from_slice(mine);
                continue;
            };
            match link.recv().await {
                Ok(PeerMessage::Block { data }) => {
                    // Blocks differ in size (each worker's share of rows).
                    let at = all.len();
                    all.resize(at + data.length() as usize, 0.0);
                    data.copy_to(&mut all[at..]);
                    link.keep(&data);
                }
                Ok(PeerMessage::Error { message }) => return Err(CollectiveError(format!("worker {r} failed: {message}"))),
                Ok(other) => return Err(CollectiveError(format!("worker {r} sent an unexpected {other:?}"))),
                Err(e) => return Err(CollectiveError(format!("worker {r} sent {e}"))),
            }
        }
        Ok(())
    }
}

/// The workers rank 0 started, and its mesh.
pub struct Team {
    workers: Vec<Worker>,
    _handlers: Vec<EventListener>,
    /// Rank 0's channels.
    pub mesh: Mesh,
    /// Each other worker's memory after loading, in rank order from 1.
    pub memory: Vec<u64>,
    /// How many positions each other worker's KV cache can reach.
    pub positions: Vec<usize>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("workers", &self.workers.len())
            .field("memory", &self.memory)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        for w in &self.workers {
            w.terminate();
        }
    }
}

/// Why a team could not start or load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamError {
    /// A worker could not be started or reached.
    #[error("cannot start worker {rank}: {message}")]
    Start {
        /// Its rank.
        rank: usize,
        /// What the browser said.
        message: String,
    },
    /// A worker failed (its script, or loading its slice).
    #[error("worker {rank}: {message}")]
    Failed {
        /// Its rank.
        rank: usize,
        /// What it said.
        message: String,
    },
    /// A worker sent something else than it should have.
    #[error("worker {rank} sent {what}")]
    Unexpected {
        /// Its rank.
        rank: usize,
        /// What it sent.
        what: String,
    },
}

/// How long a worker of the team may take to start its wasm and say it is
/// ready (compiling the module takes seconds even on slow devices).
const START_TIMEOUT_MS: u32 = 60_000;

impl Team {
    /// Starts `count - 1` workers from `script` (this worker's own loader),
    /// waits until each is ready, wires the mesh, and sends each its
    /// [`PeerMessage::Init`]: its rank, its ports, and the model (`source`,
    /// and the picked `files` of a local one).
    ///
    /// # Errors
    /// A worker that cannot start, fails before it is ready, or is not
    /// ready within a minute.
    pub async fn start(script: &str, count: usize, source: &ModelSource, files: &[File]) -> Result<Self, TeamError> {
        let mut workers = Vec::with_capacity(count - 1);
        let mut handlers = Vec::with_capacity(count - 1);
        let mut inboxes = vec![Inbox::default()];
        for rank in 1..count {
            let worker = Worker::new(script).map_err(|e| TeamError::Start { rank, message: js_text(&e) })?;
            let inbox = Inbox::default();
            // Messages the worker posts on its own scope (its ready signal,
            // a panic report) land in the same inbox as its channel's.
            let handler = inbox.listen(&worker);
            let on_error = inbox.clone();
            let error_handler = EventListener::new(&worker, "error", move |_| {
                on_error.push(PeerMessage::Error { message: "the worker's script failed to start".into() }.encode().0);
            });
            workers.push(worker);
            handlers.push(handler);
            handlers.push(error_handler);
            inboxes.push(inbox);
        }
        // Each worker announces readiness (the protocol's `Ready`, as to the
        // UI) once its wasm runs; a message posted before that would be lost.
        for (rank, inbox) in inboxes.iter().enumerate().skip(1) {
            let ready = std::pin::pin!(inbox.recv_raw());
            let timeout = std::pin::pin!(gloo_timers::future::TimeoutFuture::new(START_TIMEOUT_MS));
            let first = match futures_util::future::select(ready, timeout).await {
                futures_util::future::Either::Left((first, _)) => first,
                futures_util::future::Either::Right(_) => {
                    return Err(TeamError::Start { rank, message: format!("it was not ready after {} s", START_TIMEOUT_MS / 1000) })
                }
            };
            match sprig_protocol::codec::decode::<Event>(first.clone()) {
                Ok(Event::Ready) => continue,
                Ok(Event::Error { message, .. }) => return Err(TeamError::Failed { rank, message }),
                _ => {}
            }
            return Err(match PeerMessage::decode(&first) {
                Ok(PeerMessage::Error { message }) => TeamError::Failed { rank, message },
                _ => TeamError::Unexpected { rank, what: format!("{} before it was ready", js_text(&first)) },
            });
        }
        // ports[a][b]: worker a's end of the channel between a and b.
        let mut ports: Vec<Vec<Option<MessagePort>>> = (0..count).map(|_| (0..count).map(|_| None).collect()).collect();
        for (a, b) in (0..count).flat_map(|a| (a + 1..count).map(move |b| (a, b))) {
            let ch = MessageChannel::new().map_err(|e| TeamError::Start { rank: b, message: js_text(&e) })?;
            ports[a][b] = Some(ch.port1());
            ports[b][a] = Some(ch.port2());
        }
        let mut mine = ports.remove(0);
        for (i, (worker, theirs)) in workers.iter().zip(ports).enumerate() {
            let rank = i + 1;
            let init = PeerMessage::Init { rank, count, source: source.clone(), files: files.to_vec(), ports: theirs };
            let (value, transfer) = init.encode();
            worker.post_message_with_transfer(&value, &transfer).map_err(|e| TeamError::Start { rank, message: js_text(&e) })?;
        }
        let links = mine.iter_mut().enumerate().map(|(r, p)| p.take().map(|p| Link::new(p, inboxes[r].clone()))).collect();
        Ok(Self { workers, _handlers: handlers, mesh: Mesh::new(0, links), memory: Vec::new(), positions: Vec::new() })
    }

    /// Waits until every other worker has loaded its slice.
    ///
    /// # Errors
    /// The first worker's failure.
    pub async fn loaded(&mut self) -> Result<(), TeamError> {
        for rank in 1..self.workers.len() + 1 {
            let Some(link) = self.mesh.link(rank) else { continue };
            match link.recv().await {
                Ok(PeerMessage::Loaded { memory, positions }) => {
                    self.memory.push(memory);
                    self.positions.push(usize::try_from(positions).unwrap_or(usize::MAX));
                }
                Ok(PeerMessage::Error { message }) => return Err(TeamError::Failed { rank, message }),
                Ok(other) => return Err(TeamError::Unexpected { rank, what: format!("{other:?} while loading") }),
                Err(e) => return Err(TeamError::Unexpected { rank, what: e.to_string() }),
            }
        }
        Ok(())
    }
}

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
//! Messages between workers are plain objects with a `kind`:
//! `run {pos, tokens}` (rank 0 → others), `block {data}`, `loaded {memory}`,
//! `error {message}`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use js_sys::{Array, ArrayBuffer, Float32Array, Object, Reflect, Uint32Array};
use sprig_engine::model::{Collective, CollectiveError};
use wasm_bindgen::prelude::*;
use web_sys::{MessageChannel, MessageEvent, MessagePort, Worker};

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

    /// The next message, waiting for it.
    pub async fn recv(&self) -> JsValue {
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

    /// A handler that puts every message it gets here.
    fn handler(&self) -> Closure<dyn FnMut(MessageEvent)> {
        let inbox = self.clone();
        Closure::new(move |e: MessageEvent| inbox.push(e.data()))
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
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Link {
    /// Listens on `port`, queueing its messages in `inbox`.
    pub fn new(port: MessagePort, inbox: Inbox) -> Self {
        let on_message = inbox.handler();
        // Setting onmessage also starts the port.
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
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
        self.send(&message("block", &[("data", &data)]), &[buffer.into()])
    }

    /// Keeps the buffer of a received block for a later [`Link::send_block`].
    fn keep(&self, data: &Float32Array) {
        let mut spare = self.spare.borrow_mut();
        // Two are enough for the blocks in flight; more would only hold memory.
        if spare.len() < 2 {
            spare.push(data.buffer());
        }
    }

    /// Posts `message`, transferring `transfer`.
    pub fn send(&self, message: &JsValue, transfer: &[JsValue]) -> Result<(), CollectiveError> {
        let list: Array = transfer.iter().collect();
        self.port.post_message_with_transferable(message, &list).map_err(|e| CollectiveError(js_text(&e)))
    }

    /// The next message from the other worker.
    pub async fn recv(&self) -> JsValue {
        self.inbox.recv().await
    }
}

/// Text of a JS value, for error messages.
pub fn js_text(v: &JsValue) -> String {
    v.as_string()
        .or_else(|| js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| format!("{v:?}"))
}

/// A message object `{kind, ...fields}`.
pub fn message(kind: &str, fields: &[(&str, &JsValue)]) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"kind".into(), &kind.into());
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

/// The `kind` of a message ("" when it has none).
pub fn kind(v: &JsValue) -> String {
    Reflect::get(v, &"kind".into()).ok().and_then(|k| k.as_string()).unwrap_or_default()
}

/// Field `name` of a message.
pub fn field(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap_or(JsValue::UNDEFINED)
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
        let m = message("error", &[("message", &text.into())]);
        for l in self.links.iter().flatten() {
            let _ = l.send(&m, &[]);
        }
    }
}

impl Collective for Mesh {
    async fn begin(&mut self, pos: usize, tokens: &[u32]) -> Result<(), CollectiveError> {
        if self.rank != 0 {
            return Ok(());
        }
        let m = message("run", &[("pos", &JsValue::from(pos as f64)), ("tokens", &Uint32Array::from(tokens).into())]);
        for l in self.links.iter().flatten() {
            l.send(&m, &[])?;
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
            let m = link.recv().await;
            match kind(&m).as_str() {
                "block" => {
                    let data: Float32Array = field(&m, "data").dyn_into().map_err(|_| CollectiveError(format!("worker {r} sent a block without data")))?;
                    let at = all.len();
                    all.resize(at + data.length() as usize, 0.0);
                    data.copy_to(&mut all[at..]);
                    link.keep(&data);
                }
                "error" => return Err(CollectiveError(format!("worker {r} failed: {}", js_text(&field(&m, "message"))))),
                _ => return Err(CollectiveError(format!("worker {r} sent an unexpected message: {}", js_text(&m)))),
            }
        }
        Ok(())
    }
}

/// The workers rank 0 started, and its mesh.
pub struct Team {
    workers: Vec<Worker>,
    _handlers: Vec<Closure<dyn FnMut(MessageEvent)>>,
    /// Rank 0's channels.
    pub mesh: Mesh,
    /// Each other worker's memory after loading, in rank order from 1.
    pub memory: Vec<u64>,
    /// How many positions each other worker's KV cache can reach.
    pub positions: Vec<usize>,
}

impl Drop for Team {
    fn drop(&mut self) {
        for w in &self.workers {
            w.terminate();
        }
    }
}

impl Team {
    /// Starts `count - 1` workers from `script` (this worker's own loader),
    /// waits until each is ready, wires the mesh, and sends each its
    /// `init` fields (what to load; `rank`, `count` and its ports are added).
    ///
    /// # Errors
    /// A worker that cannot start or fails before it is ready.
    pub async fn start(script: &str, count: usize, init: &[(&str, JsValue)]) -> Result<Self, String> {
        let mut workers = Vec::with_capacity(count - 1);
        let mut handlers = Vec::with_capacity(count - 1);
        let mut inboxes = vec![Inbox::default()];
        for rank in 1..count {
            let worker = Worker::new(script).map_err(|e| format!("cannot start worker {rank}: {}", js_text(&e)))?;
            let inbox = Inbox::default();
            // Messages the worker posts on its own scope (its ready signal,
            // a panic report) land in the same inbox as its channel's.
            let handler = inbox.handler();
            worker.set_onmessage(Some(handler.as_ref().unchecked_ref()));
            let on_error = inbox.clone();
            let error_handler = Closure::<dyn FnMut(MessageEvent)>::new(move |_e: MessageEvent| {
                on_error.push(message("error", &[("message", &"the worker's script failed to start".into())]));
            });
            worker.set_onerror(Some(error_handler.as_ref().unchecked_ref()));
            workers.push(worker);
            handlers.push(handler);
            handlers.push(error_handler);
            inboxes.push(inbox);
        }
        // Each worker announces readiness once its wasm runs; a message posted
        // before that would be lost.
        for (rank, inbox) in inboxes.iter().enumerate().skip(1) {
            let first = inbox.recv().await;
            if kind(&first) == "error" {
                return Err(format!("worker {rank}: {}", js_text(&field(&first, "message"))));
            }
        }
        // ports[a][b]: worker a's end of the channel between a and b.
        let mut ports: Vec<Vec<Option<MessagePort>>> = (0..count).map(|_| (0..count).map(|_| None).collect()).collect();
        for (a, b) in (0..count).flat_map(|a| (a + 1..count).map(move |b| (a, b))) {
            let ch = MessageChannel::new().map_err(|e| js_text(&e))?;
            ports[a][b] = Some(ch.port1());
            ports[b][a] = Some(ch.port2());
        }
        let mut mine = ports.remove(0);
        for (i, (worker, theirs)) in workers.iter().zip(ports).enumerate() {
            let rank = i + 1;
            let list: Array = theirs.iter().map(|p| p.as_ref().map_or(JsValue::NULL, |p| p.clone().into())).collect();
            let transfer: Array = theirs.iter().flatten().map(JsValue::from).collect();
            let o = Object::new();
            for (k, v) in init {
                let _ = Reflect::set(&o, &(*k).into(), v);
            }
            let _ = Reflect::set(&o, &"rank".into(), &(rank as f64).into());
            let _ = Reflect::set(&o, &"count".into(), &(count as f64).into());
            let _ = Reflect::set(&o, &"ports".into(), &list);
            let init = message("peer", &[("init", &o.into())]);
            worker.post_message_with_transfer(&init, &transfer).map_err(|e| format!("cannot reach worker {rank}: {}", js_text(&e)))?;
        }
        let links = mine.iter_mut().enumerate().map(|(r, p)| p.take().map(|p| Link::new(p, inboxes[r].clone()))).collect();
        Ok(Self { workers, _handlers: handlers, mesh: Mesh::new(0, links), memory: Vec::new(), positions: Vec::new() })
    }

    /// Waits until every other worker has loaded its slice.
    ///
    /// # Errors
    /// The first worker's failure.
    pub async fn loaded(&mut self) -> Result<(), String> {
        for rank in 1..self.workers.len() + 1 {
            let Some(link) = self.mesh.link(rank) else { continue };
            let m = link.recv().await;
            match kind(&m).as_str() {
                "loaded" => {
                    self.memory.push(field(&m, "memory").as_f64().unwrap_or(0.0) as u64);
                    let positions = field(&m, "positions").as_f64().ok_or_else(|| format!("worker {rank} did not say how far its cache can grow"))?;
                    self.positions.push(positions as usize);
                }
                "error" => return Err(format!("worker {rank}: {}", js_text(&field(&m, "message")))),
                _ => return Err(format!("worker {rank} sent an unexpected message: {}", js_text(&m))),
            }
        }
        Ok(())
    }
}

//! `sprig-worker`: the Web Worker that runs the engine.
//!
//! The logic free of browser APIs is plain Rust, testable natively: [`Host`]
//! holds the loaded model and runs replies, [`plan`] makes the store's
//! decisions (the record and shards of a model, the quota, what a failed
//! download leaves), [`record`] is what the store keeps about a model.
//!
//! In the browser, [`start`] routes the worker's first messages: a UI's
//! requests go to the coordinator (`coordinator.rs`, the worker's state in
//! one struct), which `dispatch.rs` drives and whose parts are `acquire.rs`
//! (the OPFS store and ranged downloads), `load.rs`, `reply.rs` and `js.rs`
//! (the glue to the worker scope). A model too big for one wasm memory is
//! split across several workers: the coordinator starts the others
//! (`team.rs`), which each hold a slice (`peer.rs`), speaking typed
//! messages (`peer_message.rs`). Every error is a `thiserror` type with a
//! kind, made into an [`Event::Error`](sprig_protocol::Event) in one place
//! (`failure.rs`); a panic is reported as an [`ErrorKind::Panic`](sprig_protocol::ErrorKind) event.

pub mod chunk_map;
pub mod failure;
pub mod host;
pub mod plan;
pub mod record;

#[cfg(target_arch = "wasm32")]
mod acquire;
#[cfg(target_arch = "wasm32")]
mod coordinator;
#[cfg(target_arch = "wasm32")]
mod dispatch;
#[cfg(target_arch = "wasm32")]
mod download;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod file_source;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod load;
#[cfg(target_arch = "wasm32")]
mod model_store;
#[cfg(target_arch = "wasm32")]
mod opfs;
#[cfg(target_arch = "wasm32")]
mod peer;
#[cfg(target_arch = "wasm32")]
pub mod peer_message;
#[cfg(target_arch = "wasm32")]
mod reply;
#[cfg(target_arch = "wasm32")]
mod team;

pub use host::{worker_info, Host};

/// Starts the worker: reports panics as events, then routes each message —
/// a team's [`peer_message::PeerMessage::Init`] makes this worker hold a
/// slice of a split model (`peer.rs`); anything else is a UI request for the
/// coordinator — and announces [`Event::Ready`](sprig_protocol::Event).
/// Called once by the worker binary's `main`.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use sprig_protocol::codec::decode;
    use sprig_protocol::{Event, Request};
    use wasm_bindgen::prelude::*;
    use web_sys::{File, MessageEvent};

    use crate::coordinator::Coordinator;
    use crate::peer_message::PeerMessage;

    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        js::post(failure::event(&failure::Panicked(info.to_string())));
    }));
    let shared = Rc::new(RefCell::new(Coordinator::new()));
    let on_message = gloo_events::EventListener::new(&js::scope(), "message", move |msg| {
        let Some(data) = msg.dyn_ref::<MessageEvent>().map(MessageEvent::data) else { return };
        if PeerMessage::is_init(&data) {
            match PeerMessage::decode(&data) {
                Ok(PeerMessage::Init { rank, count, source, files, ports }) => {
                    wasm_bindgen_futures::spawn_local(peer::run(rank, count, source, files, ports));
                }
                other => web_sys::console::error_1(&format!("sprig-worker: a bad team init: {other:?}").into()),
            }
            return;
        }
        // A picked file travels beside the envelope (see `ModelSource::File`).
        let file = js_sys::Reflect::get(&data, &"file".into()).ok().and_then(|f| f.dyn_into::<File>().ok());
        match decode::<Request>(data) {
            Ok(request) => dispatch::on_request(&shared, request, file),
            Err(e) => js::post(failure::event(&e)),
        }
    });
    // The handler lives as long as the worker.
    on_message.forget();
    js::post(Event::Ready);
}

//! The worker's JS side: listening on the dedicated worker scope and posting events.

use sprig_protocol::codec::{decode, encode};
use sprig_protocol::{ErrorKind, Event, Request};
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

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

/// Registers the message handler and the panic reporter, then announces
/// [`Event::Ready`]. Called once by the worker binary's `main`.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(Event::Error { kind: ErrorKind::Panic, message: info.to_string() });
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|msg: MessageEvent| {
        let events = match decode::<Request>(msg.data()) {
            Ok(request) => crate::handle(request),
            Err(e) => vec![Event::Error { kind: ErrorKind::BadMessage, message: e.to_string() }],
        };
        events.into_iter().for_each(post);
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(Event::Ready);
}

//! The worker's glue to its JS scope: posting events to the UI, yielding to
//! the event loop, the storage estimate, the clock and the core count.

use std::cell::Cell;

use sprig_protocol::codec::encode;
use sprig_protocol::{Event, LoadStage};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageChannel};

/// This worker's global scope.
pub fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Milliseconds since the epoch (`Date.now()`).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Posts one event to the UI. Failures to encode or post are logged, since
/// there is nobody else to tell.
pub fn post(event: Event) {
    match encode(event) {
        Ok(value) => {
            if let Err(e) = scope().post_message(&value) {
                web_sys::console::error_2(&"sprig-worker: postMessage failed".into(), &e);
            }
        }
        Err(e) => web_sys::console::error_1(&format!("sprig-worker: {e}").into()),
    }
}

/// Lets queued messages (a Stop) run between two steps of a reply: resolves
/// on the next task, through a MessageChannel (unlike `setTimeout`, not
/// clamped to 4 ms), made once and reused.
#[derive(Debug, Default)]
pub struct Yielder {
    channel: Option<MessageChannel>,
}

impl Yielder {
    /// Resolves on the next task (at once when no MessageChannel can be made).
    pub async fn yield_now(&mut self) {
        if self.channel.is_none() {
            self.channel = MessageChannel::new().ok();
        }
        let Some(channel) = self.channel.clone() else { return };
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            channel.port1().set_onmessage(Some(resolve.unchecked_ref()));
            if channel.port2().post_message(&JsValue::NULL).is_err() {
                let _ = resolve.call0(&JsValue::NULL);
            }
        });
        let _ = JsFuture::from(promise).await;
    }
}

/// The site's storage use and quota, if the browser says.
pub async fn estimate() -> Option<(u64, u64)> {
    let promise = scope().navigator().storage().estimate().ok()?;
    let e = JsFuture::from(promise).await.ok()?;
    let get = |k: &str| js_sys::Reflect::get(&e, &k.into()).ok().and_then(|v| v.as_f64()).map(|v| v as u64);
    Some((get("usage")?, get("quota")?))
}

/// Logical cores the browser reports (at least 1).
pub fn cores() -> usize {
    (scope().navigator().hardware_concurrency() as usize).max(1)
}

/// Posts download or verification progress at most every 100 ms (and
/// always the last bytes), with the speed of this download and the time
/// left at that speed.
pub fn progress_poster() -> impl Fn(LoadStage, u64, u64) {
    let last = Cell::new(0.0f64);
    let start: Cell<Option<(f64, u64)>> = Cell::new(None);
    move |stage, done, total| {
        let now = now_ms();
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

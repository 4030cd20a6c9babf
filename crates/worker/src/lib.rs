//! `sprig-worker`: the Web Worker that runs the engine.
//!
//! The worker decodes each incoming message into a [`sprig_protocol::Request`],
//! handles it ([`handle`], plain Rust, testable anywhere) and posts the resulting
//! [`sprig_protocol::Event`]s back. An undecodable message becomes an
//! [`Event::Error`] of kind [`ErrorKind::BadMessage`]; a panic is reported as an
//! [`ErrorKind::Panic`] event before the worker dies.

use sprig_protocol::{ErrorKind, Event, Request, WorkerInfo};

/// Handles one request and returns the events that answer it, in order.
pub fn handle(request: Request) -> Vec<Event> {
    match request {
        Request::Hello { nonce } => vec![match worker_info() {
            Ok(info) => Event::Hello { nonce, info },
            Err(message) => Event::Error { kind: ErrorKind::Engine, message },
        }],
    }
}

/// Describes this worker, running the engine's self-test on the way.
///
/// # Errors
/// The engine's self-test failure, as text.
pub fn worker_info() -> Result<WorkerInfo, String> {
    let self_test = sprig_engine::self_test::matmul_2x2()
        .map_err(|e| format!("engine self-test failed: {e}"))?;
    Ok(WorkerInfo {
        worker_version: env!("CARGO_PKG_VERSION").to_string(),
        engine_version: sprig_engine::VERSION.to_string(),
        simd128: sprig_engine::SIMD128,
        self_test,
    })
}

#[cfg(target_arch = "wasm32")]
mod global;
#[cfg(target_arch = "wasm32")]
pub use global::start;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_answered_with_the_same_nonce() {
        let events = handle(Request::Hello { nonce: 7 });
        match &events[..] {
            [Event::Hello { nonce: 7, info }] => {
                assert_eq!(info.self_test, "[[19, 22], [43, 50]]");
                assert_eq!(info.engine_version, sprig_engine::VERSION);
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

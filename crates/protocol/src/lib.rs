//! `sprig-protocol`: the typed messages the Sprig UI and its Web Workers exchange.
//!
//! Both sides compile against these types, so a message that one side can send is
//! one the other side can read. Every message travels inside an [`Envelope`] that
//! carries [`PROTOCOL_VERSION`]; a receiver answers a message it cannot decode or
//! whose version differs with [`Event::Error`], never with a panic.

use serde::{Deserialize, Serialize};

#[cfg(feature = "js")]
pub mod codec;

/// Version of the message format. Bump it on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// A message on the wire: the protocol version and the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The [`PROTOCOL_VERSION`] of the sender.
    pub v: u32,
    /// The message itself.
    pub body: T,
}

impl<T> Envelope<T> {
    /// Wraps `body` with this build's [`PROTOCOL_VERSION`].
    pub fn new(body: T) -> Self {
        Self { v: PROTOCOL_VERSION, body }
    }

    /// Unwraps the body, refusing a message from another protocol version.
    ///
    /// # Errors
    /// [`ProtocolError::VersionMismatch`] when the sender's version is not ours.
    pub fn open(self) -> Result<T, ProtocolError> {
        if self.v == PROTOCOL_VERSION {
            Ok(self.body)
        } else {
            Err(ProtocolError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: self.v })
        }
    }
}

/// What the UI asks a worker to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Asks the worker to describe itself; answered by [`Event::Hello`].
    Hello {
        /// Chosen by the UI and echoed back, to pair the answer with the question.
        nonce: u64,
    },
}

/// What a worker tells the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker's wasm has started and it now listens; sent once, unasked.
    /// Messages posted before this one may be lost.
    Ready,
    /// The answer to [`Request::Hello`].
    Hello {
        /// The nonce of the request this answers.
        nonce: u64,
        /// What the worker runs.
        info: WorkerInfo,
    },
    /// Something went wrong; the worker stays usable.
    Error {
        /// What kind of failure, for the UI to choose its wording and recovery.
        kind: ErrorKind,
        /// A human-readable explanation.
        message: String,
    },
}

/// A description of a worker's build and its engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Version of the `sprig-worker` crate.
    pub worker_version: String,
    /// Version of the `sprig-engine` crate.
    pub engine_version: String,
    /// Whether the engine was compiled with wasm SIMD (`+simd128`).
    pub simd128: bool,
    /// The result of a small matrix product the engine ran on start, proving the
    /// tensor backend works in this worker.
    pub self_test: String,
}

/// The kinds of failure a worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A message could not be decoded, or came from another protocol version.
    BadMessage,
    /// The engine failed.
    Engine,
    /// The worker panicked; it should be restarted.
    Panic,
}

/// Errors of decoding or checking a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The sender speaks another version of the protocol.
    #[error("protocol version mismatch: ours is {ours}, the message's is {theirs}")]
    VersionMismatch {
        /// Our [`PROTOCOL_VERSION`].
        ours: u32,
        /// The version in the message.
        theirs: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_json() {
        let req = Envelope::new(Request::Hello { nonce: 42 });
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"v":1,"body":{"type":"hello","nonce":42}}"#);
        let back: Envelope<Request> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.open().unwrap(), Request::Hello { nonce: 42 });
    }

    #[test]
    fn event_round_trips_through_json() {
        let ev = Envelope::new(Event::Error { kind: ErrorKind::BadMessage, message: "nope".into() });
        let json = serde_json::to_string(&ev).unwrap();
        let back: Envelope<Event> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn other_version_is_refused() {
        let env = Envelope { v: PROTOCOL_VERSION + 1, body: Request::Hello { nonce: 1 } };
        let err = env.open().unwrap_err();
        assert!(err.to_string().contains("version mismatch"), "{err}");
    }

    #[test]
    fn unknown_message_type_is_an_error_not_a_panic() {
        let r: Result<Envelope<Request>, _> =
            serde_json::from_str(r#"{"v":1,"body":{"type":"format_disk"}}"#);
        assert!(r.is_err());
    }
}

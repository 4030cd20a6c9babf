//! The one place an error becomes an [`Event::Error`]: every module's error
//! says its [`ErrorKind`] ([`Failure`]), and [`event`] makes the event.

use sprig_protocol::{ErrorKind, Event};

/// An error the UI is told about: its kind, and its message (`Display`).
pub trait Failure: std::fmt::Display {
    /// The kind of error the UI is told.
    fn kind(&self) -> ErrorKind;
}

/// The error event for `failure`.
pub fn event(failure: &(impl Failure + ?Sized)) -> Event {
    Event::Error { kind: failure.kind(), message: failure.to_string() }
}

/// A panic in this worker (its message and place), reported before the
/// worker dies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub String);

impl Failure for Panicked {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Panic
    }
}

/// A message that does not decode, or comes from another protocol version.
impl Failure for sprig_protocol::codec::CodecError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::BadMessage
    }
}

//! Turning protocol messages into JS values and back, for `postMessage`.
//!
//! Messages cross the worker boundary as structured-clone objects made by
//! `serde-wasm-bindgen`, wrapped in a versioned [`Envelope`].

use crate::Envelope;
use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::JsValue;

/// Errors of encoding or decoding a message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is not a message of the expected type.
    #[error("undecodable message: {0}")]
    Decode(String),
    /// The message came from another protocol version.
    #[error(transparent)]
    Protocol(#[from] crate::ProtocolError),
    /// The message could not be turned into a JS value.
    #[error("unencodable message: {0}")]
    Encode(String),
}

/// Encodes `body` in a versioned envelope as a JS value.
///
/// # Errors
/// [`CodecError::Encode`] if serialisation fails.
pub fn encode<T: Serialize>(body: T) -> Result<JsValue, CodecError> {
    serde_wasm_bindgen::to_value(&Envelope::new(body)).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a JS value into a message body, checking the protocol version.
///
/// # Errors
/// [`CodecError::Decode`] for a value of the wrong shape,
/// [`CodecError::Protocol`] for another protocol version.
pub fn decode<T: DeserializeOwned>(value: JsValue) -> Result<T, CodecError> {
    let envelope: Envelope<T> = serde_wasm_bindgen::from_value(value).map_err(|e| CodecError::Decode(e.to_string()))?;
    Ok(envelope.open()?)
}

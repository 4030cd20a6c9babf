//! `sprig-worker`: the Web Worker that runs the engine.
//!
//! The logic is plain Rust, testable natively: [`Host`] owns the loaded model
//! and turns requests into [`Event`]s. `global.rs` (wasm only) binds it to the
//! worker scope: it decodes messages, fetches models ([`fetch`]), and runs the
//! generation loop, yielding to the event loop between tokens so that a
//! [`Request::Stop`] can arrive. An undecodable message becomes an
//! [`Event::Error`] of kind [`ErrorKind::BadMessage`]; a panic is reported as
//! an [`ErrorKind::Panic`] event.
//!
//! A model too big for one wasm memory is split across several workers:
//! this one coordinates (`team.rs`) and starts the others, which each hold a
//! slice (`peer.rs`).

pub mod chunk_map;
pub mod host;

#[cfg(target_arch = "wasm32")]
mod download;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod file_source;
#[cfg(target_arch = "wasm32")]
mod global;
#[cfg(target_arch = "wasm32")]
mod model_store;
#[cfg(target_arch = "wasm32")]
mod opfs;
#[cfg(target_arch = "wasm32")]
mod peer;
#[cfg(target_arch = "wasm32")]
mod team;
#[cfg(target_arch = "wasm32")]
pub use global::start;

pub use host::{worker_info, Host};

//! The Sprig web UI (Leptos, client-side rendered).
//!
//! [`app::App`] is the root component; [`client`] is the typed bridge to the
//! model worker and the only place that posts messages to it.

pub mod app;
pub mod client;
pub mod components;

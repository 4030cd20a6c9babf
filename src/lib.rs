//! The Sprig web UI (Leptos, client-side rendered).
//!
//! [`app::App`] lays out the components; [`controller::Controller`] holds the
//! state and the actions; [`client`] is the typed bridge to the model worker
//! and the only place that posts messages to it; [`store`] keeps
//! conversations in IndexedDB; [`markdown`] renders replies safely;
//! [`embed`] is the compact widget view and its bridge to the embedding page.

pub mod app;
pub mod client;
pub mod components;
pub mod controller;
pub mod embed;
pub mod markdown;
pub mod pwa;
pub mod state;
pub mod store;

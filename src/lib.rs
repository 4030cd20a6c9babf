//! The Sprig web UI (Leptos, client-side rendered).
//!
//! [`app::App`] lays out the components; [`ui_state`] is the UI's state as
//! plain data and [`reduce::reduce`] its one transition, tested natively;
//! [`controller::Controller`] owns that state, carries out its effects and
//! re-renders the parts that changed; [`client`] is the typed bridge to the model worker
//! and the only place that posts messages to it; [`store`] keeps
//! conversations in IndexedDB; [`markdown`] renders replies safely;
//! [`embed`] is the compact widget view and its bridge to the embedding page;
//! [`catalog`] holds the deployment's model catalog (`models.json`, read at
//! start) and the rule by which a model's defaults become the settings.

pub mod app;
pub mod catalog;
pub mod catalog_fetch;
pub mod client;
pub mod components;
pub mod controller;
pub mod embed;
pub mod markdown;
pub mod pwa;
pub mod reduce;
pub mod remembered;
pub mod state;
pub mod store;
pub mod ui_state;

//! UI components, one per file.

pub mod banners;
pub mod composer;
pub mod conversation;
pub mod history;
pub mod model_panel;
pub mod models;
pub mod progress;
pub mod settings;
pub mod status;
pub mod update_prompt;

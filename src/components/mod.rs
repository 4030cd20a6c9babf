//! UI components, one per file.

pub mod worker_status;

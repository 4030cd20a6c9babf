//! Which models this browser once held complete, kept in `localStorage`: if
//! the store no longer has one, the browser evicted it ("needs download"),
//! which the Models panel says.

use gloo_storage::{LocalStorage, Storage};

const KEY: &str = "sprig.completeModels";

/// URLs of models this browser once held complete (none when `localStorage`
/// is unavailable or holds something unreadable).
pub fn complete() -> Vec<String> {
    LocalStorage::get(KEY).unwrap_or_default()
}

/// Remembers that the model at `url` was complete.
pub fn remember(url: &str) {
    let mut all = complete();
    if !all.iter().any(|u| u == url) {
        all.push(url.to_string());
        let _ = LocalStorage::set(KEY, all);
    }
}

/// Forgets the model at `url` (deleted on purpose: not an eviction).
pub fn forget(url: &str) {
    let all: Vec<String> = complete().into_iter().filter(|u| u != url).collect();
    let _ = LocalStorage::set(KEY, all);
}

//! Which models this browser once held complete, kept in `localStorage`: if
//! the store no longer has one, the browser evicted it ("needs download"),
//! which the Models panel says.

const KEY: &str = "sprig.completeModels";

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

fn write(all: &[String]) {
    if let (Some(s), Ok(json)) = (local_storage(), serde_json::to_string(all)) {
        let _ = s.set_item(KEY, &json);
    }
}

/// URLs of models this browser once held complete.
pub fn complete() -> Vec<String> {
    local_storage().and_then(|s| s.get_item(KEY).ok().flatten()).and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default()
}

/// Remembers that the model at `url` was complete.
pub fn remember(url: &str) {
    let mut all = complete();
    if !all.iter().any(|u| u == url) {
        all.push(url.to_string());
        write(&all);
    }
}

/// Forgets the model at `url` (deleted on purpose: not an eviction).
pub fn forget(url: &str) {
    let all: Vec<String> = complete().into_iter().filter(|u| u != url).collect();
    write(&all);
}

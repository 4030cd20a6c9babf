//! Conversations saved in the browser's IndexedDB, so they survive a reload.
//!
//! One object store, `conversations`, keyed by conversation id; each value is
//! the conversation as JSON. A save is a read and a write in one transaction:
//! it stores the conversation only if what is stored is an older revision
//! ([`Conversation::rev`]), so two tabs never silently overwrite each other.

use gloo_events::EventListener;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

use crate::state::Conversation;

const DB: &str = "sprig";
const STORE: &str = "conversations";

/// Errors of the conversation store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// IndexedDB is unavailable or refused the operation.
    #[error("conversation storage failed while {doing}: {message}")]
    Idb {
        /// What was being done.
        doing: &'static str,
        /// What the browser said.
        message: String,
    },
    /// A saved conversation could not be read back.
    #[error("a saved conversation is unreadable: {0}")]
    Corrupt(String),
}

fn idb(doing: &'static str) -> impl Fn(JsValue) -> StoreError {
    move |e| StoreError::Idb {
        doing,
        message: e.dyn_ref::<js_sys::Error>().map_or_else(|| format!("{e:?}"), |e| String::from(e.message())),
    }
}

/// Waits for an IndexedDB request to succeed or fail.
async fn wait(request: &IdbRequest, doing: &'static str) -> Result<JsValue, StoreError> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.map_err(idb(doing))?;
    request.result().map_err(idb(doing))
}

/// The conversation store: a handle that opens the database once and keeps
/// it open, so that saves and deletes start their transactions at once (a
/// reload right after cannot overtake them). Clones share the database.
#[derive(Debug, Clone, Default)]
pub struct ConversationStore {
    db: std::rc::Rc<std::cell::RefCell<Option<IdbDatabase>>>,
}

impl ConversationStore {
    /// A store; the database opens on first use.
    pub fn new() -> Self {
        Self::default()
    }

    async fn open(&self) -> Result<IdbDatabase, StoreError> {
        if let Some(db) = self.db.borrow().clone() {
            return Ok(db);
        }
        let db = open_new().await?;
        *self.db.borrow_mut() = Some(db.clone());
        Ok(db)
    }

    /// Saves a conversation as its revision `conversation.rev`, unless the
    /// stored copy is that revision or newer.
    ///
    /// # Errors
    /// [`StoreError`] when IndexedDB fails (e.g. the storage is full).
    pub async fn save(&self, conversation: &Conversation) -> Result<Saved, StoreError> {
        let json = serde_json::to_string(conversation).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let db = self.open().await?;
        // Transactions on one store run in the order they were made, so saves
        // of one tab land in order; the read and the write share one.
        let tx = db.transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite).map_err(idb("saving"))?;
        let store = tx.object_store(STORE).map_err(idb("saving"))?;
        let key = JsValue::from_str(&conversation.id);
        let stored = wait(&store.get(&key).map_err(idb("saving"))?, "saving").await?;
        let stored_rev = stored.as_string().map(|s| serde_json::from_str::<Conversation>(&s).map_or(0, |c| c.rev));
        if !may_replace(stored_rev, conversation.rev) {
            return Ok(Saved::Conflict);
        }
        let req = store.put_with_key(&JsValue::from_str(&json), &key).map_err(idb("saving"))?;
        wait(&req, "saving").await?;
        Ok(Saved::Stored)
    }

    /// Deletes a conversation.
    ///
    /// # Errors
    /// [`StoreError`] when IndexedDB fails.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let db = self.open().await?;
        let tx = db.transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite).map_err(idb("deleting"))?;
        let store = tx.object_store(STORE).map_err(idb("deleting"))?;
        let req = store.delete(&JsValue::from_str(id)).map_err(idb("deleting"))?;
        wait(&req, "deleting").await?;
        Ok(())
    }

    /// All saved conversations, most recently updated first. Unreadable entries
    /// are skipped and counted.
    ///
    /// # Errors
    /// [`StoreError`] when IndexedDB fails.
    pub async fn load_all(&self) -> Result<(Vec<Conversation>, usize), StoreError> {
        let db = self.open().await?;
        let tx = db.transaction_with_str(STORE).map_err(idb("loading"))?;
        let store = tx.object_store(STORE).map_err(idb("loading"))?;
        let req = store.get_all().map_err(idb("loading"))?;
        let all = wait(&req, "loading").await?;
        let mut out = Vec::new();
        let mut bad = 0;
        for v in js_sys::Array::from(&all).iter() {
            match v.as_string().and_then(|s| serde_json::from_str::<Conversation>(&s).ok()) {
                Some(c) => out.push(c),
                None => bad += 1,
            }
        }
        out.sort_by(|a, b| b.updated.total_cmp(&a.updated));
        Ok((out, bad))
    }
}

async fn open_new() -> Result<IdbDatabase, StoreError> {
    let factory = web_sys::window()
        .ok_or_else(|| StoreError::Idb { doing: "opening", message: "no window".into() })?
        .indexed_db()
        .map_err(idb("opening"))?
        .ok_or_else(|| StoreError::Idb { doing: "opening", message: "IndexedDB is not available".into() })?;
    let request: IdbOpenDbRequest = factory.open_with_u32(DB, 1).map_err(idb("opening"))?;
    let upgrade = EventListener::once(&request, "upgradeneeded", move |e| {
        let db = e
            .target()
            .and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok())
            .and_then(|r| r.result().ok())
            .and_then(|r| r.dyn_into::<IdbDatabase>().ok());
        if let Some(db) = db {
            if !db.object_store_names().contains(STORE) {
                let _ = db.create_object_store(STORE);
            }
        }
    });
    let db = wait(&request, "opening").await?;
    drop(upgrade);
    db.dyn_into::<IdbDatabase>().map_err(idb("opening"))
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Stored as its revision.
    Stored,
    /// Not stored: the stored copy is as new or newer (another tab saved it).
    Conflict,
}

/// Whether a copy of revision `mine` may replace the stored one of
/// revision `stored` (`None`: nothing stored): only a newer revision may.
pub fn may_replace(stored: Option<u64>, mine: u64) -> bool {
    stored.is_none_or(|s| s < mine)
}

#[cfg(test)]
mod tests {
    use super::may_replace;

    #[test]
    fn only_a_newer_revision_replaces_the_stored_one() {
        assert!(may_replace(None, 1), "nothing stored");
        assert!(may_replace(Some(3), 4), "the next revision");
        assert!(!may_replace(Some(4), 4), "another tab stored this revision first");
        assert!(!may_replace(Some(7), 4), "another tab is ahead");
    }
}

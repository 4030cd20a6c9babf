//! The page's side of the UI state: [`Controller`] owns the one [`UiState`],
//! feeds every user action and worker event through [`reduce`], carries out
//! the [`Effect`]s (posting to the worker, saving conversations, asking the
//! browser), and re-renders only the parts an event changed.
//!
//! Views read the state through the controller's memos (`ctl.model.get()`),
//! each tied to one [`Part`]: a streamed token notifies [`Part::Reply`]
//! alone, so no earlier message is rendered again.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use sprig_protocol::{ModelSource, Request, StoredModel, WorkerInfo};

use crate::catalog::{CatalogState, Touched};
use crate::catalog_fetch::fetch_catalog;
use crate::client::{WorkerClient, WORKER_URL};
use crate::reduce::reduce;
use crate::remembered;
use crate::state::{Conversation, ModelState, Settings};
use crate::store::{self, ConversationStore};
use crate::ui_state::{Effect, Part, Reply, UiEvent, UiState};
pub use crate::ui_state::{ReplyEnd, WorkerStatus};

fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn fresh_conversation() -> Conversation {
    Conversation::new(now_ms(), js_sys::Math::random())
}

/// The source for a URL typed or chosen: made absolute (so the store knows the
/// model whatever page asked for it); `.json` is a shard manifest, anything
/// else one GGUF file.
fn source_for(url: &str) -> Result<ModelSource, String> {
    let base = web_sys::window().and_then(|w| w.document()).and_then(|d| d.base_uri().ok().flatten()).unwrap_or_default();
    let url = web_sys::Url::new_with_base(url, &base).map_err(|_| format!("{url} is not a valid URL"))?.href();
    Ok(ModelSource::for_url(&url))
}

/// The store entry for the model at absolute `url`.
pub fn stored_for<'a>(stored: &'a [StoredModel], url: &str) -> Option<&'a StoredModel> {
    stored.iter().find(|m| m.source.url() == Some(url))
}

type ReplyListener = Rc<dyn Fn(u64, ReplyEnd)>;

/// One trigger per [`Part`]: notified when an event changed that part.
#[derive(Clone, Copy)]
struct Parts([Trigger; Part::ALL.len()]);

impl Parts {
    fn new() -> Self {
        Self(std::array::from_fn(|_| Trigger::new()))
    }

    fn of(self, part: Part) -> Trigger {
        self.0[Part::ALL.iter().position(|p| *p == part).unwrap_or_default()]
    }
}

/// The app's state and actions; `Copy`, shared through Leptos context.
#[derive(Clone, Copy)]
pub struct Controller {
    state: StoredValue<UiState>,
    parts: Parts,
    client: StoredValue<Option<WorkerClient>, LocalStorage>,
    /// Where conversations are saved (IndexedDB).
    conversations: StoredValue<ConversationStore, LocalStorage>,
    /// A picked file waiting for its load request to be posted.
    pending_file: StoredValue<Option<web_sys::File>, LocalStorage>,
    on_reply_end: StoredValue<Vec<ReplyListener>, LocalStorage>,
    /// The worker's status.
    pub worker: Memo<WorkerStatus>,
    /// What the worker runs, once it has said.
    pub info: Memo<Option<WorkerInfo>>,
    /// The model's state.
    pub model: Memo<ModelState>,
    /// The source of the model being (or last) loaded.
    pub active: Memo<Option<ModelSource>>,
    /// The source of the model in use.
    pub loaded: Memo<Option<ModelSource>>,
    /// The models in the browser's model store.
    pub stored: Memo<Vec<StoredModel>>,
    /// The site's storage use and quota, in bytes, when the browser says.
    pub storage: Memo<Option<(u64, u64)>>,
    /// Whether the browser granted persistent storage.
    pub persisted: Memo<Option<bool>>,
    /// The open conversation (without the reply streaming into it).
    pub conversation: Memo<Conversation>,
    /// Saved conversations (id, title), most recent first.
    pub history: Memo<Vec<(String, String)>>,
    /// The reply streaming, if any.
    pub reply: Memo<Option<Reply>>,
    /// The turn id of the reply in progress.
    pub generating: Memo<Option<u64>>,
    /// The deployment's model catalog.
    pub catalog: Memo<CatalogState>,
    /// Chat settings.
    pub settings: Memo<Settings>,
    /// The last error, shown until dismissed.
    pub error: Memo<Option<String>>,
    /// A notice (e.g. old messages dropped to fit the context).
    pub notice: Memo<Option<String>>,
}

impl Default for Controller {
    fn default() -> Self {
        Self::new()
    }
}

impl Controller {
    /// Creates the state, reads the model catalog, spawns the worker, and
    /// restores saved conversations.
    pub fn new() -> Self {
        let c = Self::create(true);
        c.restore();
        c
    }

    /// Like [`Controller::new`], but the conversation lives only in this page:
    /// nothing is restored from or saved to the conversation history (the
    /// widget, whose chats belong to the page that embeds it, not to the app).
    pub fn ephemeral() -> Self {
        Self::create(false)
    }

    fn create(keep_history: bool) -> Self {
        let state = StoredValue::new(UiState::new(fresh_conversation(), keep_history));
        let parts = Parts::new();
        // A view of one part of the state: recomputed when that part changes,
        // and passed on only when its value did.
        fn view<T: PartialEq + Clone + Send + Sync + 'static>(
            state: StoredValue<UiState>,
            trigger: Trigger,
            read: fn(&UiState) -> T,
        ) -> Memo<T> {
            Memo::new(move |_| {
                trigger.track();
                state.with_value(read)
            })
        }
        let (link, models, chat, reply) = (parts.of(Part::Link), parts.of(Part::Models), parts.of(Part::Chat), parts.of(Part::Reply));
        let c = Self {
            state,
            parts,
            client: StoredValue::new_local(None),
            conversations: StoredValue::new_local(ConversationStore::new()),
            pending_file: StoredValue::new_local(None),
            on_reply_end: StoredValue::new_local(Vec::new()),
            worker: view(state, link, |s| s.link.status),
            info: view(state, link, |s| s.link.info.clone()),
            model: view(state, models, |s| s.models.model.clone()),
            active: view(state, models, |s| s.models.active.clone()),
            loaded: view(state, models, |s| s.models.loaded.clone()),
            stored: view(state, models, |s| s.models.stored.clone()),
            storage: view(state, models, |s| s.models.storage),
            persisted: view(state, models, |s| s.models.persisted),
            conversation: view(state, chat, |s| s.chat.conversation.clone()),
            history: view(state, chat, |s| s.chat.history.clone()),
            reply: view(state, reply, |s| s.chat.reply.clone()),
            generating: view(state, reply, |s| s.chat.generating()),
            catalog: view(state, parts.of(Part::Catalog), |s| s.catalog.clone()),
            settings: view(state, parts.of(Part::Settings), |s| s.settings.clone()),
            error: view(state, parts.of(Part::Banners), |s| s.banners.error.clone()),
            notice: view(state, parts.of(Part::Banners), |s| s.banners.notice.clone()),
        };
        c.dispatch(UiEvent::FetchCatalog);
        c.dispatch(UiEvent::StartWorker);
        c
    }

    /// Applies `event` to the state and carries out what it asks for.
    pub fn dispatch(self, event: UiEvent) {
        let effects = self.state.try_update_value(|s| reduce(s, event)).unwrap_or_default();
        for effect in effects {
            self.run(effect);
        }
    }

    fn run(self, effect: Effect) {
        match effect {
            Effect::Show(part) => self.parts.of(part).notify(),
            Effect::SpawnWorker => {
                // The old worker (if any) is terminated before the new one starts.
                self.client.set_value(None);
                let spawned = WorkerClient::spawn(WORKER_URL, move |incoming| {
                    self.dispatch(match incoming {
                        Ok(event) => UiEvent::Worker { event, now_ms: now_ms() },
                        Err(e) => UiEvent::Unreadable(e.to_string()),
                    })
                });
                match spawned {
                    Ok(client) => {
                        self.client.set_value(Some(client));
                        self.dispatch(UiEvent::WorkerSpawned);
                    }
                    Err(e) => self.dispatch(UiEvent::WorkerFailed(e.to_string())),
                }
            }
            Effect::FetchCatalog => spawn_local(async move { self.dispatch(UiEvent::CatalogFetched(fetch_catalog().await)) }),
            Effect::Post(request) => {
                let file = if matches!(request, Request::Load { source: ModelSource::File { .. }, .. }) {
                    self.pending_file.try_update_value(Option::take).flatten()
                } else {
                    None
                };
                let sent = self.client.with_value(|c| c.as_ref().map(|c| c.send_with_file(request.clone(), file)));
                let message = match sent {
                    Some(Ok(())) => return,
                    Some(Err(e)) => e.to_string(),
                    None => "the model worker is not running".to_string(),
                };
                self.dispatch(UiEvent::PostFailed { request, message });
            }
            Effect::Save(conversation) => spawn_local(async move {
                match self.conversations.get_value().save(&conversation).await {
                    Ok(store::Saved::Stored) => {}
                    Ok(store::Saved::Conflict) => {
                        self.dispatch(UiEvent::SaveConflict { mine: conversation, fresh_id: fresh_conversation().id })
                    }
                    Err(e) => self.dispatch(UiEvent::Failed(e.to_string())),
                }
            }),
            Effect::Open(id) => spawn_local(async move {
                match self.conversations.get_value().load_all().await {
                    Ok((all, _)) => {
                        if let Some(c) = all.into_iter().find(|c| c.id == id) {
                            self.dispatch(UiEvent::Opened(c));
                        }
                    }
                    Err(e) => self.dispatch(UiEvent::Failed(e.to_string())),
                }
            }),
            Effect::Delete(id) => spawn_local(async move {
                if let Err(e) = self.conversations.get_value().delete(&id).await {
                    self.dispatch(UiEvent::Failed(e.to_string()));
                }
            }),
            Effect::RememberComplete(url) => remembered::remember(&url),
            Effect::ForgetComplete(url) => remembered::forget(&url),
            Effect::AskPersistence => {
                let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) else { return };
                spawn_local(async move {
                    let granted = match storage.persist() {
                        Ok(p) => wasm_bindgen_futures::JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
                        Err(_) => None,
                    };
                    self.dispatch(UiEvent::Persisted(granted));
                });
            }
            Effect::ReplyEnded { turn, end } => {
                let listeners = self.on_reply_end.with_value(Clone::clone);
                for listener in listeners {
                    listener(turn, end.clone());
                }
            }
        }
    }

    fn restore(self) {
        spawn_local(async move {
            self.dispatch(match self.conversations.get_value().load_all().await {
                Ok((all, unreadable)) => UiEvent::Restored { all, unreadable },
                Err(e) => UiEvent::Failed(e.to_string()),
            });
        });
    }

    /// Calls `listener` with the turn id and the outcome each time a reply
    /// ends (the turn id is the one [`Controller::send`] returned).
    pub fn on_reply_end(self, listener: impl Fn(u64, ReplyEnd) + 'static) {
        self.on_reply_end.update_value(|l| l.push(Rc::new(listener)));
    }

    /// Replaces a crashed worker with a fresh one (the model must be reloaded).
    pub fn restart_worker(self) {
        self.dispatch(UiEvent::RestartWorker);
    }

    /// Loads a model from `url` (a shard manifest if it ends in `.json`, else
    /// one GGUF file): from the model store when it is there, else downloading
    /// it (resuming what is stored).
    pub fn load(self, url: String) {
        if url.trim().is_empty() {
            return self.dispatch(UiEvent::Failed("enter the URL of a GGUF model".into()));
        }
        match source_for(url.trim()) {
            Ok(source) => self.dispatch(UiEvent::Load { source, now_ms: now_ms() }),
            Err(message) => self.dispatch(UiEvent::Failed(message)),
        }
    }

    /// Loads a GGUF file picked by the user, read in place by the worker.
    pub fn load_file(self, file: web_sys::File) {
        let source = ModelSource::File { name: file.name(), size: file.size() as u64 };
        self.pending_file.set_value(Some(file));
        self.dispatch(UiEvent::Load { source, now_ms: now_ms() });
    }

    /// Loads a model the store lists.
    pub fn load_stored(self, source: ModelSource) {
        self.dispatch(UiEvent::Load { source, now_ms: now_ms() });
    }

    /// Marks the load as failed before it started, for `reason` (the page
    /// found it cannot work, e.g. storage the browser refuses).
    pub fn refuse_load(self, reason: String) {
        self.dispatch(UiEvent::LoadRefused(reason));
    }

    /// Pauses the download in progress, keeping what is stored.
    pub fn pause(self) {
        self.dispatch(UiEvent::Pause);
    }

    /// Cancels the download in progress, or the paused one, deleting what it stored.
    pub fn cancel(self) {
        self.dispatch(UiEvent::Cancel);
    }

    /// Resumes (or restarts) loading the model last asked for.
    pub fn resume(self) {
        self.dispatch(UiEvent::Resume { now_ms: now_ms() });
    }

    /// Asks the worker for the store's contents.
    pub fn refresh_models(self) {
        self.dispatch(UiEvent::RefreshModels);
    }

    /// Deletes a stored model (a deliberate delete is not an eviction).
    pub fn delete_model(self, id: String) {
        self.dispatch(UiEvent::DeleteModel(id));
    }

    /// Sends the user's message and starts the reply; returns the reply's turn
    /// id (see [`Controller::on_reply_end`]), or `None` when nothing was sent
    /// (empty text, a reply in progress, no model loaded, the worker gone).
    pub fn send(self, text: String) -> Option<u64> {
        let before = self.state.with_value(|s| s.chat.turn);
        self.dispatch(UiEvent::Send { text, now_ms: now_ms() });
        self.state.with_value(|s| s.chat.generating().filter(|turn| *turn > before))
    }

    /// Stops the reply in progress after the current token.
    pub fn stop(self) {
        self.dispatch(UiEvent::Stop);
    }

    /// Replaces the last reply with a new one.
    pub fn regenerate(self) {
        self.dispatch(UiEvent::Regenerate);
    }

    /// Starts a new, empty conversation.
    pub fn new_chat(self) {
        self.dispatch(UiEvent::NewChat(fresh_conversation()));
    }

    /// Opens a saved conversation.
    pub fn open(self, id: String) {
        self.dispatch(UiEvent::Open(id));
    }

    /// Deletes a saved conversation.
    pub fn delete(self, id: String) {
        self.dispatch(UiEvent::DeleteConversation { id, fresh: fresh_conversation() });
    }

    /// Changes the settings.
    pub fn update_settings(self, change: impl FnOnce(&mut Settings)) {
        let mut settings = self.state.with_value(|s| s.settings.clone());
        change(&mut settings);
        self.dispatch(UiEvent::Settings(settings));
    }

    /// Sets the settings the widget's host page chose (`pinned`: they stay
    /// when a model with defaults loads).
    pub fn set_host_settings(self, change: impl FnOnce(&mut Settings), pinned: Touched) {
        let mut settings = self.state.with_value(|s| s.settings.clone());
        change(&mut settings);
        self.dispatch(UiEvent::HostSettings { settings, pinned });
    }

    /// Hides the error banner.
    pub fn dismiss_error(self) {
        self.dispatch(UiEvent::DismissError);
    }
}

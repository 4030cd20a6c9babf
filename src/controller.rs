//! The app's actions (load, send, stop, regenerate, new chat...) and its
//! reaction to worker events, over reactive state shared through context.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use sprig_protocol::{ErrorKind, Event, LoadStage, Message, ModelSource, ReplyStats, Request, Role, StoreStatus, StoredModel, WorkerInfo};

use crate::client::{Incoming, WorkerClient, WORKER_URL};
use crate::state::{next_model_state, Conversation, Entry, ModelState, Settings};
use crate::store;

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The source for a URL typed or chosen: made absolute (so the store knows the
/// model whatever page asked for it); `.json` is a shard manifest, anything
/// else one GGUF file.
fn source_for(url: &str) -> Result<ModelSource, String> {
    let base = web_sys::window().and_then(|w| w.document()).and_then(|d| d.base_uri().ok().flatten()).unwrap_or_default();
    let url = web_sys::Url::new_with_base(url, &base).map_err(|_| format!("{url} is not a valid URL"))?.href();
    Ok(ModelSource::for_url(&url))
}

const COMPLETE_KEY: &str = "sprig.completeModels";

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// URLs of models this browser once held complete: if the store no longer
/// has one, the browser evicted it ("needs download").
pub fn remembered_complete() -> Vec<String> {
    local_storage().and_then(|s| s.get_item(COMPLETE_KEY).ok().flatten()).and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default()
}

fn remember_complete(url: &str) {
    let mut all = remembered_complete();
    if !all.iter().any(|u| u == url) {
        all.push(url.to_string());
        if let (Some(s), Ok(json)) = (local_storage(), serde_json::to_string(&all)) {
            let _ = s.set_item(COMPLETE_KEY, &json);
        }
    }
}

fn forget_complete(url: &str) {
    let all: Vec<String> = remembered_complete().into_iter().filter(|u| u != url).collect();
    if let (Some(s), Ok(json)) = (local_storage(), serde_json::to_string(&all)) {
        let _ = s.set_item(COMPLETE_KEY, &json);
    }
}

/// The absolute URL of a catalog or typed model URL.
pub fn absolute(url: &str) -> Option<String> {
    source_for(url).ok()?.url().map(str::to_string)
}

/// The store entry for the model at absolute `url`.
pub fn stored_for<'a>(stored: &'a [StoredModel], url: &str) -> Option<&'a StoredModel> {
    stored.iter().find(|m| m.source.url() == Some(url))
}

/// Whether a stored model is complete.
pub fn is_complete(m: &StoredModel) -> bool {
    m.status == StoreStatus::Complete
}

/// Where the worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Spawned, not yet ready.
    Starting,
    /// Listening.
    Ready,
    /// Crashed; must be restarted.
    Crashed,
}

/// How a reply ended, as [`Controller::on_reply_end`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEnd {
    /// The reply is complete (or was stopped): its whole text and figures.
    Done {
        /// The reply's text (Markdown).
        text: String,
        /// Its figures.
        stats: ReplyStats,
    },
    /// The reply failed (engine error, no model, the worker stopped).
    Failed(String),
}

type ReplyListener = Rc<dyn Fn(u64, ReplyEnd)>;

/// How often a streaming reply is saved, in milliseconds.
const SAVE_EVERY_MS: f64 = 1_000.0;

/// The app's state and actions; `Copy`, shared through Leptos context.
#[derive(Clone, Copy)]
pub struct Controller {
    /// The worker's status.
    pub worker: RwSignal<WorkerStatus>,
    /// What the worker runs, once it has said.
    pub info: RwSignal<Option<WorkerInfo>>,
    /// The model's state.
    pub model: RwSignal<ModelState>,
    /// The open conversation.
    pub conversation: RwSignal<Conversation>,
    /// Saved conversations (id, title), most recent first.
    pub history: RwSignal<Vec<(String, String)>>,
    /// The turn id of the reply in progress.
    pub generating: RwSignal<Option<u64>>,
    /// Tokens received so far for the reply in progress.
    pub live_tokens: RwSignal<usize>,
    /// Chat settings.
    pub settings: RwSignal<Settings>,
    /// The last error, shown until dismissed.
    pub error: RwSignal<Option<String>>,
    /// A notice (e.g. old messages dropped to fit the context).
    pub notice: RwSignal<Option<String>>,
    /// The models in the browser's model store.
    pub stored: RwSignal<Vec<StoredModel>>,
    /// The site's storage use and quota, in bytes, when the browser says.
    pub storage: RwSignal<Option<(u64, u64)>>,
    /// Whether the browser granted persistent storage (not cleared under pressure).
    pub persisted: RwSignal<Option<bool>>,
    /// The source of the model being (or last) loaded.
    pub active: RwSignal<Option<ModelSource>>,
    /// The source of the model in use.
    pub loaded: RwSignal<Option<ModelSource>>,
    client: StoredValue<Option<WorkerClient>, LocalStorage>,
    turn: StoredValue<u64>,
    /// The text of the reply in progress, whatever happens to the conversation.
    reply_text: StoredValue<String>,
    /// When the conversation was last saved (ms), to save a streaming reply
    /// at most every [`SAVE_EVERY_MS`].
    saved_at: StoredValue<f64>,
    on_reply_end: StoredValue<Vec<ReplyListener>, LocalStorage>,
    /// Whether conversations are restored from and saved to IndexedDB.
    keep_history: bool,
}

impl Default for Controller {
    fn default() -> Self {
        Self::new()
    }
}

impl Controller {
    /// Creates the state, spawns the worker, and restores saved conversations.
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
        let c = Self {
            worker: RwSignal::new(WorkerStatus::Starting),
            info: RwSignal::new(None),
            model: RwSignal::new(ModelState::Idle),
            conversation: RwSignal::new(Conversation::new(now_ms(), js_sys::Math::random())),
            history: RwSignal::new(Vec::new()),
            generating: RwSignal::new(None),
            live_tokens: RwSignal::new(0),
            settings: RwSignal::new(Settings::default()),
            error: RwSignal::new(None),
            notice: RwSignal::new(None),
            stored: RwSignal::new(Vec::new()),
            storage: RwSignal::new(None),
            persisted: RwSignal::new(None),
            active: RwSignal::new(None),
            loaded: RwSignal::new(None),
            client: StoredValue::new_local(None),
            turn: StoredValue::new(0),
            reply_text: StoredValue::new(String::new()),
            saved_at: StoredValue::new(0.0),
            on_reply_end: StoredValue::new_local(Vec::new()),
            keep_history,
        };
        c.spawn_worker();
        c
    }

    /// Calls `listener` with the turn id and the outcome each time a reply
    /// ends (the turn id is the one [`Controller::send`] returned).
    pub fn on_reply_end(self, listener: impl Fn(u64, ReplyEnd) + 'static) {
        self.on_reply_end.update_value(|l| l.push(Rc::new(listener)));
    }

    /// Ends the reply in progress, if any, and tells the listeners.
    fn end_reply(self, end: ReplyEnd) {
        let Some(turn) = self.generating.get_untracked() else { return };
        self.generating.set(None);
        let listeners = self.on_reply_end.with_value(Clone::clone);
        for listener in listeners {
            listener(turn, end.clone());
        }
    }

    fn spawn_worker(self) {
        self.worker.set(WorkerStatus::Starting);
        match WorkerClient::spawn(WORKER_URL, move |incoming| self.on_event(incoming)) {
            Ok(client) => {
                self.client.set_value(Some(client));
                // Queued until the worker announces it is ready.
                self.send_request(Request::Hello { nonce: 1 });
                self.send_request(Request::ListModels);
            }
            Err(e) => self.error.set(Some(e.to_string())),
        }
    }

    /// Replaces a crashed worker with a fresh one (the model must be reloaded).
    pub fn restart_worker(self) {
        self.client.set_value(None);
        self.end_reply(ReplyEnd::Failed("the model worker stopped".into()));
        self.model.set(ModelState::Idle);
        self.spawn_worker();
    }

    fn send_request(self, request: Request) -> bool {
        let result = self.client.with_value(|c| c.as_ref().map(|c| c.send(request)));
        match result {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                self.error.set(Some(e.to_string()));
                false
            }
            None => {
                self.error.set(Some("the model worker is not running".into()));
                false
            }
        }
    }

    fn restore(self) {
        spawn_local(async move {
            match store::load_all().await {
                Ok((all, bad)) => {
                    if bad > 0 {
                        self.notice.set(Some(format!("{bad} saved conversation(s) could not be read and were skipped")));
                    }
                    self.history.set(all.iter().map(|c| (c.id.clone(), c.title.clone())).collect());
                    if let Some(latest) = all.into_iter().next() {
                        if self.conversation.with_untracked(|c| c.entries.is_empty()) {
                            self.conversation.set(latest);
                        }
                    }
                }
                Err(e) => self.error.set(Some(e.to_string())),
            }
        });
    }

    fn persist(self) {
        if !self.keep_history {
            return;
        }
        if self.conversation.with_untracked(|c| c.entries.is_empty()) {
            return;
        }
        // Each save is the next revision of the copy this tab opened.
        self.conversation.update_untracked(|c| c.rev += 1);
        let conversation = self.conversation.get_untracked();
        self.saved_at.set_value(now_ms());
        let (id, title) = (conversation.id.clone(), conversation.title.clone());
        self.history.update(|h| {
            h.retain(|(i, _)| *i != id);
            h.insert(0, (id, title));
        });
        spawn_local(async move {
            match store::save(&conversation).await {
                Ok(store::Saved::Stored) => {}
                Ok(store::Saved::Conflict) => self.fork(conversation),
                Err(e) => self.error.set(Some(e.to_string())),
            }
        });
    }

    /// Another tab saved conversation `mine.id` while this tab changed it
    /// too: this tab's version becomes a new conversation, saved beside the
    /// other (the open one, if it still is, continues as the new one).
    fn fork(self, mine: Conversation) {
        let fresh = Conversation::new(now_ms(), js_sys::Math::random()).id;
        let title = format!("{} (this tab)", mine.title.trim_end_matches(" (this tab)"));
        self.notice.set(Some(
            "This conversation was also changed in another tab: this tab's version is kept as a new conversation beside it.".into(),
        ));
        if self.conversation.with_untracked(|c| c.id == mine.id) {
            self.conversation.update_untracked(|c| {
                c.id = fresh;
                c.rev = 0;
                c.title = title;
            });
            self.persist();
            return;
        }
        let copy = Conversation { id: fresh, rev: 1, title, ..mine };
        self.history.update(|h| h.insert(0, (copy.id.clone(), copy.title.clone())));
        spawn_local(async move {
            if let Err(e) = store::save(&copy).await {
                self.error.set(Some(e.to_string()));
            }
        });
    }

    /// Loads a model from `url` (a shard manifest if it ends in `.json`, else
    /// one GGUF file): from the model store when it is there, else downloading
    /// it (resuming what is stored).
    pub fn load(self, url: String) {
        if url.trim().is_empty() {
            self.error.set(Some("enter the URL of a GGUF model".into()));
            return;
        }
        let source = match source_for(url.trim()) {
            Ok(s) => s,
            Err(message) => {
                self.error.set(Some(message));
                return;
            }
        };
        self.start_load(source, None);
    }

    /// Loads a GGUF file picked by the user, read in place by the worker.
    pub fn load_file(self, file: web_sys::File) {
        let source = ModelSource::File { name: file.name(), size: file.size() as u64 };
        self.start_load(source, Some(file));
    }

    fn start_load(self, source: ModelSource, file: Option<web_sys::File>) {
        self.error.set(None);
        let now = now_ms();
        self.model.set(ModelState::Loading {
            stage: LoadStage::Download,
            done: 0,
            total: None,
            since_ms: now,
            now_ms: now,
            rate: None,
            eta_s: None,
        });
        self.active.set(Some(source.clone()));
        if file.is_none() {
            self.ask_persistence();
        }
        let (connections, workers) = self.settings.with_untracked(|s| (s.connections, s.workers));
        let request = Request::Load { source, connections, workers };
        let sent = self.client.with_value(|c| c.as_ref().map(|c| c.send_with_file(request, file)));
        match sent {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                self.error.set(Some(e.to_string()));
                self.model.set(ModelState::Idle);
            }
            None => {
                self.error.set(Some("the model worker is not running".into()));
                self.model.set(ModelState::Idle);
            }
        }
    }

    /// Pauses the download in progress, keeping what is stored.
    pub fn pause(self) {
        self.send_request(Request::StopDownload { discard: false });
    }

    /// Cancels the download in progress, or the paused one, deleting what it stored.
    pub fn cancel(self) {
        if !matches!(self.model.get_untracked(), ModelState::Paused { .. }) {
            self.send_request(Request::StopDownload { discard: true });
            return;
        }
        self.model.set(ModelState::Idle);
        let Some(url) = self.active.get_untracked().and_then(|s| s.url().map(str::to_string)) else { return };
        if let Some(id) = self.stored.with_untracked(|s| stored_for(s, &url).map(|m| m.id.clone())) {
            self.delete_model(id);
        }
    }

    /// Resumes (or restarts) loading the model last asked for.
    pub fn resume(self) {
        if let Some(source) = self.active.get_untracked() {
            if !matches!(source, ModelSource::File { .. }) {
                self.start_load(source, None);
            }
        }
    }

    /// Loads a model the store lists.
    pub fn load_stored(self, source: ModelSource) {
        self.start_load(source, None);
    }

    /// Asks the worker for the store's contents.
    pub fn refresh_models(self) {
        self.send_request(Request::ListModels);
    }

    /// Deletes a stored model (a deliberate delete is not an eviction).
    pub fn delete_model(self, id: String) {
        let url = self.stored.with_untracked(|s| s.iter().find(|m| m.id == id).and_then(|m| m.source.url().map(str::to_string)));
        if let Some(url) = url {
            forget_complete(&url);
        }
        self.send_request(Request::DeleteModel { id });
    }

    /// Asks the browser to keep the model store even under storage pressure.
    fn ask_persistence(self) {
        if self.persisted.get_untracked() == Some(true) {
            return;
        }
        let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) else { return };
        spawn_local(async move {
            let granted = match storage.persist() {
                Ok(p) => wasm_bindgen_futures::JsFuture::from(p).await.ok().and_then(|v| v.as_bool()),
                Err(_) => None,
            };
            self.persisted.set(granted);
        });
    }

    fn messages_for_model(self) -> Vec<Message> {
        let system = self.settings.with_untracked(|s| s.system_prompt.trim().to_string());
        let mut out = Vec::new();
        if !system.is_empty() {
            out.push(Message { role: Role::System, content: system });
        }
        self.conversation.with_untracked(|c| {
            out.extend(c.entries.iter().map(|e| Message { role: e.role, content: e.content.clone() }));
        });
        out
    }

    /// Starts a reply to the conversation; returns its turn id, or `None` when
    /// the request could not be sent.
    fn generate(self) -> Option<u64> {
        let messages = self.messages_for_model();
        let turn = self.turn.get_value() + 1;
        self.turn.set_value(turn);
        self.conversation.update(|c| c.entries.push(Entry { role: Role::Assistant, content: String::new(), stats: None }));
        self.generating.set(Some(turn));
        self.live_tokens.set(0);
        self.reply_text.set_value(String::new());
        self.notice.set(None);
        let settings = self.settings.with_untracked(|s| s.generation.clone());
        if self.send_request(Request::Generate { turn, messages, settings }) {
            Some(turn)
        } else {
            let message = self.error.get_untracked().unwrap_or_else(|| "the model worker is not running".into());
            self.end_reply(ReplyEnd::Failed(message));
            None
        }
    }

    /// Sends the user's message and starts the reply; returns the reply's turn
    /// id (see [`Controller::on_reply_end`]), or `None` when nothing was sent
    /// (empty text, a reply in progress, no model loaded, the worker gone).
    pub fn send(self, text: String) -> Option<u64> {
        if text.trim().is_empty() || self.generating.get_untracked().is_some() {
            return None;
        }
        if !matches!(self.model.get_untracked(), ModelState::Ready(_)) {
            self.error.set(Some("load a model first".into()));
            return None;
        }
        self.error.set(None);
        self.conversation.update(|c| {
            c.entries.push(Entry { role: Role::User, content: text, stats: None });
            c.updated = now_ms();
            if c.entries.len() == 1 {
                c.retitle();
            }
        });
        // Saved at once: a crash or a closed tab must not lose what was typed.
        self.persist();
        self.generate()
    }

    /// Stops the reply in progress after the current token.
    pub fn stop(self) {
        if self.generating.get_untracked().is_some() {
            self.send_request(Request::Stop);
        }
    }

    /// Replaces the last reply with a new one.
    pub fn regenerate(self) {
        if self.generating.get_untracked().is_some() || !matches!(self.model.get_untracked(), ModelState::Ready(_)) {
            return;
        }
        let had_reply = self.conversation.with_untracked(|c| c.entries.last().is_some_and(|e| e.role == Role::Assistant));
        if had_reply {
            self.conversation.update(|c| {
                c.entries.pop();
            });
        }
        if self.conversation.with_untracked(|c| c.entries.last().is_some_and(|e| e.role == Role::User)) {
            self.generate();
        }
    }

    /// Starts a new, empty conversation.
    pub fn new_chat(self) {
        if self.generating.get_untracked().is_some() {
            self.stop();
        }
        self.conversation.set(Conversation::new(now_ms(), js_sys::Math::random()));
        self.notice.set(None);
    }

    /// Opens a saved conversation.
    pub fn open(self, id: String) {
        if self.generating.get_untracked().is_some() {
            return;
        }
        spawn_local(async move {
            match store::load_all().await {
                Ok((all, _)) => {
                    if let Some(c) = all.into_iter().find(|c| c.id == id) {
                        self.conversation.set(c);
                    }
                }
                Err(e) => self.error.set(Some(e.to_string())),
            }
        });
    }

    /// Deletes a saved conversation.
    pub fn delete(self, id: String) {
        self.history.update(|h| h.retain(|(i, _)| *i != id));
        if self.conversation.with_untracked(|c| c.id == id) {
            self.new_chat();
        }
        spawn_local(async move {
            if let Err(e) = store::delete(&id).await {
                self.error.set(Some(e.to_string()));
            }
        });
    }

    fn on_event(self, incoming: Incoming) {
        let event = match incoming {
            Ok(e) => e,
            Err(e) => {
                self.error.set(Some(e.to_string()));
                return;
            }
        };
        // The load's part of the state: one pure step (`state.rs`, tested natively).
        if let Some(next) = self.model.with_untracked(|m| next_model_state(m, &event, now_ms())) {
            let ended = matches!(next, ModelState::Failed(_) | ModelState::Paused { .. } | ModelState::Idle);
            self.model.set(next);
            if ended {
                self.refresh_models();
            }
        }
        match event {
            Event::Ready => self.worker.set(WorkerStatus::Ready),
            // Only asked for by benchmarks (scripts/bench-browser).
            Event::Bandwidth { .. } => {}
            Event::Hello { info, .. } => self.info.set(Some(info)),
            Event::Progress { .. } => {}
            Event::Loaded { .. } => {
                let source = self.active.get_untracked();
                if let Some(url) = source.as_ref().and_then(ModelSource::url) {
                    remember_complete(url);
                }
                self.loaded.set(source);
                self.refresh_models();
            }
            Event::DownloadStopped { .. } => {}
            Event::Models { models, usage, quota } => {
                self.stored.set(models);
                self.storage.set(usage.zip(quota));
            }
            Event::Started { turn, dropped_messages, .. } => {
                if Some(turn) == self.generating.get_untracked() && dropped_messages > 0 {
                    self.notice.set(Some(format!(
                        "The conversation is longer than the model's context: the oldest {dropped_messages} message(s) were left out (the system prompt is kept)."
                    )));
                }
            }
            Event::Token { turn, text } => {
                if Some(turn) == self.generating.get_untracked() {
                    self.live_tokens.update(|n| *n += 1);
                    self.reply_text.update_value(|t| t.push_str(&text));
                    self.conversation.update(|c| {
                        if let Some(last) = c.entries.last_mut() {
                            last.content.push_str(&text);
                        }
                    });
                    // The reply so far, saved now and then as it streams.
                    if now_ms() - self.saved_at.get_value() >= SAVE_EVERY_MS {
                        self.persist();
                    }
                }
            }
            Event::Done { turn, stats } => {
                if Some(turn) == self.generating.get_untracked() {
                    self.conversation.update(|c| {
                        if let Some(last) = c.entries.last_mut() {
                            last.stats = Some(stats.clone());
                        }
                        c.updated = now_ms();
                    });
                    let text = self.reply_text.with_value(Clone::clone);
                    self.end_reply(ReplyEnd::Done { text, stats });
                    self.persist();
                }
            }
            Event::Error { kind, message } => {
                if kind == ErrorKind::Panic {
                    self.worker.set(WorkerStatus::Crashed);
                }
                if self.generating.get_untracked().is_some() && matches!(kind, ErrorKind::Engine | ErrorKind::NotLoaded | ErrorKind::Panic)
                {
                    // The reply ended with the error; drop it if empty.
                    self.conversation.update(|c| {
                        if c.entries.last().is_some_and(|e| e.role == Role::Assistant && e.content.is_empty()) {
                            c.entries.pop();
                        }
                    });
                    self.end_reply(ReplyEnd::Failed(message.clone()));
                    // Keeps the partial reply (or drops the empty one) in the saved copy.
                    self.persist();
                }
                self.error.set(Some(message));
            }
        }
    }
}

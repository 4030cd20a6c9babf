//! The UI's one state transition: [`reduce`] applies a [`UiEvent`] to the
//! [`UiState`] and says what the page must do ([`Effect`]s). Pure: no
//! browser, no clock, no randomness (events carry the time and any new id),
//! so every path, including every way a load can fail, is tested natively
//! below.

use sprig_protocol::{ErrorKind, Event, Message, ModelSource, Request, Role};

use crate::catalog::{with_defaults, CatalogState};
use crate::state::{next_model_state, Conversation, Entry, LoadProgress, ModelState, Settings};
use crate::ui_state::{Effect, Part, Reply, ReplyEnd, UiEvent, UiState, WorkerStatus, SAVE_EVERY_MS};

/// Applies `event` to `state`; returns the effects, in order, each
/// [`Effect::Show`] once.
pub fn reduce(state: &mut UiState, event: UiEvent) -> Vec<Effect> {
    let mut step = Step { s: state, effects: Vec::new() };
    step.apply(event);
    step.effects
}

/// One event being applied: the state and the effects so far.
struct Step<'a> {
    s: &'a mut UiState,
    effects: Vec<Effect>,
}

impl Step<'_> {
    fn show(&mut self, part: Part) {
        if !self.effects.contains(&Effect::Show(part)) {
            self.effects.push(Effect::Show(part));
        }
    }

    fn post(&mut self, request: Request) {
        self.effects.push(Effect::Post(request));
    }

    fn error(&mut self, message: Option<String>) {
        if self.s.banners.error != message {
            self.s.banners.error = message;
            self.show(Part::Banners);
        }
    }

    fn notice(&mut self, notice: Option<String>) {
        if self.s.banners.notice != notice {
            self.s.banners.notice = notice;
            self.show(Part::Banners);
        }
    }

    fn set_model(&mut self, model: ModelState) {
        self.s.models.model = model;
        self.show(Part::Models);
    }

    fn model_ready(&self) -> bool {
        matches!(self.s.models.model, ModelState::Ready(_))
    }

    /// Saves the open conversation (with the reply so far) as its next
    /// revision, and puts it first in the history. Revisions and save times
    /// are bookkeeping no view shows: they change without a re-render.
    fn persist(&mut self, now_ms: f64) {
        let chat = &mut self.s.chat;
        if !chat.keep_history || (chat.conversation.entries.is_empty() && chat.reply.is_none()) {
            return;
        }
        chat.conversation.rev += 1;
        chat.saved_at = now_ms;
        let saved = chat.snapshot();
        let first = (saved.id.clone(), saved.title.clone());
        if chat.history.first() != Some(&first) {
            chat.history.retain(|(id, _)| *id != first.0);
            chat.history.insert(0, first);
            self.show(Part::Chat);
        }
        self.effects.push(Effect::Save(saved));
    }

    /// Starts a reply to the open conversation.
    fn start_reply(&mut self) {
        let system = self.s.settings.system_prompt.trim().to_string();
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(Message { role: Role::System, content: system });
        }
        let chat = &mut self.s.chat;
        messages.extend(chat.conversation.entries.iter().map(|e| Message { role: e.role, content: e.content.clone() }));
        chat.turn += 1;
        let turn = chat.turn;
        chat.reply = Some(Reply { turn, conversation: chat.conversation.id.clone(), text: String::new(), tokens: 0 });
        self.show(Part::Reply);
        self.notice(None);
        let settings = self.s.settings.generation.clone();
        self.post(Request::Generate { turn, messages, settings });
    }

    /// Ends the reply in progress: what it wrote so far joins its
    /// conversation (if that is the open one) with `stats` when it finished,
    /// and whoever waits for it is told.
    fn end_reply(&mut self, end: ReplyEnd) {
        let Some(reply) = self.s.chat.reply.take() else { return };
        self.show(Part::Reply);
        let open = &mut self.s.chat.conversation;
        let stats = match &end {
            ReplyEnd::Done { stats, .. } => Some(stats.clone()),
            ReplyEnd::Failed(_) => None,
        };
        if reply.conversation == open.id && (!reply.text.is_empty() || stats.is_some()) {
            open.entries.push(Entry { role: Role::Assistant, content: reply.text, stats });
            self.show(Part::Chat);
        }
        self.effects.push(Effect::ReplyEnded { turn: reply.turn, end });
    }

    fn start_load(&mut self, source: ModelSource, now_ms: f64) {
        self.error(None);
        // The settings the model starts with (`catalog.rs`: the defaults rule).
        let defaults = source.url().and_then(|url| self.s.catalog.model_at(url)).and_then(|m| m.defaults.as_ref());
        let settings = with_defaults(&self.s.settings, self.s.touched, defaults);
        if settings != self.s.settings {
            self.s.settings = settings;
            self.show(Part::Settings);
        }
        self.set_model(ModelState::Loading(LoadProgress::start(now_ms)));
        let file = matches!(source, ModelSource::File { .. });
        self.s.models.active = Some(source.clone());
        if !file && self.s.models.persisted != Some(true) {
            self.effects.push(Effect::AskPersistence);
        }
        let Settings { connections, workers, context, .. } = self.s.settings;
        self.post(Request::Load { source, connections, workers, context });
    }

    fn delete_model(&mut self, id: String) {
        let url = self.s.models.stored.iter().find(|m| m.id == id).and_then(|m| m.source.url().map(str::to_string));
        if let Some(url) = url {
            self.effects.push(Effect::ForgetComplete(url));
        }
        self.post(Request::DeleteModel { id });
    }

    fn start_worker(&mut self) {
        self.s.link.status = WorkerStatus::Starting;
        self.show(Part::Link);
        self.effects.push(Effect::SpawnWorker);
    }

    fn apply(&mut self, event: UiEvent) {
        match event {
            UiEvent::StartWorker => self.start_worker(),
            UiEvent::WorkerSpawned => {
                self.post(Request::Hello { nonce: 1 });
                self.post(Request::ListModels);
            }
            UiEvent::WorkerFailed(message) => {
                self.s.link.status = WorkerStatus::Crashed;
                self.show(Part::Link);
                self.end_reply(ReplyEnd::Failed(message.clone()));
                if matches!(self.s.models.model, ModelState::Loading(_)) {
                    self.set_model(ModelState::Failed(message.clone()));
                }
                self.error(Some(message));
            }
            UiEvent::RestartWorker => {
                self.end_reply(ReplyEnd::Failed("the model worker stopped".into()));
                let now = self.s.chat.saved_at;
                self.persist(now);
                self.set_model(ModelState::Idle);
                self.s.models.loaded = None;
                self.start_worker();
            }
            UiEvent::FetchCatalog => {
                self.s.catalog = CatalogState::Loading;
                self.show(Part::Catalog);
                self.effects.push(Effect::FetchCatalog);
            }
            UiEvent::CatalogFetched(fetched) => {
                self.s.catalog = match fetched {
                    Ok(catalog) => CatalogState::Ready(catalog),
                    Err(reason) => CatalogState::Failed(reason),
                };
                self.show(Part::Catalog);
            }
            UiEvent::Worker { event, now_ms } => self.on_worker(event, now_ms),
            UiEvent::Unreadable(message) | UiEvent::Failed(message) => self.error(Some(message)),
            UiEvent::PostFailed { request, message } => {
                match request {
                    Request::Load { .. } => self.set_model(ModelState::Failed(message.clone())),
                    Request::Generate { turn, .. } if self.s.chat.generating() == Some(turn) => {
                        self.end_reply(ReplyEnd::Failed(message.clone()))
                    }
                    _ => {}
                }
                self.error(Some(message));
            }
            UiEvent::Load { source, now_ms } => self.start_load(source, now_ms),
            UiEvent::LoadRefused(reason) => self.set_model(ModelState::Failed(reason)),
            UiEvent::Pause => self.post(Request::StopDownload { discard: false }),
            UiEvent::Cancel => {
                if !matches!(self.s.models.model, ModelState::Paused { .. }) {
                    return self.post(Request::StopDownload { discard: true });
                }
                self.set_model(ModelState::Idle);
                let url = self.s.models.active.as_ref().and_then(ModelSource::url);
                let id = url.and_then(|u| self.s.models.stored.iter().find(|m| m.source.url() == Some(u))).map(|m| m.id.clone());
                if let Some(id) = id {
                    self.delete_model(id);
                }
            }
            UiEvent::Resume { now_ms } => {
                if let Some(source) = self.s.models.active.clone().filter(|s| !matches!(s, ModelSource::File { .. })) {
                    self.start_load(source, now_ms);
                }
            }
            UiEvent::RefreshModels => self.post(Request::ListModels),
            UiEvent::DeleteModel(id) => self.delete_model(id),
            UiEvent::Persisted(granted) => {
                self.s.models.persisted = granted;
                self.show(Part::Models);
            }
            UiEvent::Send { text, now_ms } => {
                if text.trim().is_empty() || self.s.chat.reply.is_some() {
                    return;
                }
                if !self.model_ready() {
                    return self.error(Some("load a model first".into()));
                }
                self.error(None);
                let c = &mut self.s.chat.conversation;
                c.entries.push(Entry { role: Role::User, content: text, stats: None });
                c.updated = now_ms;
                if c.entries.len() == 1 {
                    c.retitle();
                }
                self.show(Part::Chat);
                // Saved at once: a crash or a closed tab must not lose what was typed.
                self.persist(now_ms);
                self.start_reply();
            }
            UiEvent::Stop => {
                if self.s.chat.reply.is_some() {
                    self.post(Request::Stop);
                }
            }
            UiEvent::Regenerate => {
                if self.s.chat.reply.is_some() || !self.model_ready() {
                    return;
                }
                let entries = &mut self.s.chat.conversation.entries;
                if entries.last().is_some_and(|e| e.role == Role::Assistant) {
                    entries.pop();
                    self.show(Part::Chat);
                }
                if self.s.chat.conversation.entries.last().is_some_and(|e| e.role == Role::User) {
                    self.start_reply();
                }
            }
            UiEvent::NewChat(fresh) => self.open_new(fresh),
            UiEvent::Restored { all, unreadable } => {
                if unreadable > 0 {
                    self.notice(Some(format!("{unreadable} saved conversation(s) could not be read and were skipped")));
                }
                self.s.chat.history = all.iter().map(|c| (c.id.clone(), c.title.clone())).collect();
                self.show(Part::Chat);
                let untouched = self.s.chat.conversation.entries.is_empty() && self.s.chat.reply.is_none();
                if let Some(latest) = all.into_iter().next().filter(|_| untouched) {
                    self.s.chat.conversation = latest;
                }
            }
            UiEvent::Open(id) => {
                if self.s.chat.reply.is_none() && self.s.chat.conversation.id != id {
                    self.effects.push(Effect::Open(id));
                }
            }
            UiEvent::Opened(conversation) => {
                if self.s.chat.reply.is_none() {
                    self.s.chat.conversation = conversation;
                    self.notice(None);
                    self.show(Part::Chat);
                }
            }
            UiEvent::DeleteConversation { id, fresh } => {
                self.s.chat.history.retain(|(i, _)| *i != id);
                self.show(Part::Chat);
                if self.s.chat.conversation.id == id {
                    self.open_new(fresh);
                }
                self.effects.push(Effect::Delete(id));
            }
            UiEvent::SaveConflict { mine, fresh_id } => self.fork(mine, fresh_id),
            UiEvent::Settings(settings) => {
                self.s.touched.mark(&self.s.settings, &settings);
                self.s.settings = settings;
                self.show(Part::Settings);
            }
            UiEvent::HostSettings { settings, pinned } => {
                self.s.touched.pin(pinned);
                self.s.settings = settings;
                self.show(Part::Settings);
            }
            UiEvent::DismissError => self.error(None),
        }
    }

    /// Opens `fresh`. A reply still streaming goes on into the conversation
    /// it answers (saved with what it wrote so far) until the worker stops it.
    fn open_new(&mut self, fresh: Conversation) {
        if self.s.chat.reply.is_some() {
            self.post(Request::Stop);
            let now = self.s.chat.saved_at;
            self.persist(now);
            self.show(Part::Reply);
        }
        self.s.chat.conversation = fresh;
        self.notice(None);
        self.show(Part::Chat);
    }

    /// Another tab saved conversation `mine.id` while this tab changed it
    /// too: this tab's version becomes a new conversation, `fresh_id`, saved
    /// beside the other (the open one, if it still is, continues as the new one).
    fn fork(&mut self, mine: Conversation, fresh_id: String) {
        let title = format!("{} (this tab)", mine.title.trim_end_matches(" (this tab)"));
        self.notice(Some(
            "This conversation was also changed in another tab: this tab's version is kept as a new conversation beside it.".into(),
        ));
        let chat = &mut self.s.chat;
        if chat.conversation.id == mine.id {
            if let Some(reply) = chat.reply.as_mut().filter(|r| r.conversation == mine.id) {
                reply.conversation.clone_from(&fresh_id);
            }
            chat.conversation.id = fresh_id;
            chat.conversation.rev = 0;
            chat.conversation.title = title;
            self.show(Part::Chat);
            let now = self.s.chat.saved_at;
            return self.persist(now);
        }
        let copy = Conversation { id: fresh_id, rev: 1, title, ..mine };
        chat.history.insert(0, (copy.id.clone(), copy.title.clone()));
        self.show(Part::Chat);
        self.effects.push(Effect::Save(copy));
    }

    fn on_worker(&mut self, event: Event, now_ms: f64) {
        // The load's part: one pure step (`state.rs`).
        if let Some(next) = next_model_state(&self.s.models.model, &event, now_ms) {
            let ended = matches!(next, ModelState::Failed(_) | ModelState::Paused { .. } | ModelState::Idle);
            self.set_model(next);
            if ended {
                self.post(Request::ListModels);
            }
        }
        let current = |s: &UiState, turn: u64| s.chat.generating() == Some(turn);
        match event {
            Event::Ready => {
                self.s.link.status = WorkerStatus::Ready;
                self.show(Part::Link);
            }
            Event::Hello { info, .. } => {
                self.s.link.info = Some(info);
                self.show(Part::Link);
            }
            Event::Loaded { .. } => {
                if let Some(url) = self.s.models.active.as_ref().and_then(ModelSource::url) {
                    self.effects.push(Effect::RememberComplete(url.to_string()));
                }
                self.s.models.loaded = self.s.models.active.clone();
                self.post(Request::ListModels);
            }
            Event::Models { models, usage, quota } => {
                self.s.models.stored = models;
                self.s.models.storage = usage.zip(quota);
                self.show(Part::Models);
            }
            Event::Started { turn, dropped_messages, .. } if current(self.s, turn) && dropped_messages > 0 => {
                self.notice(Some(format!(
                    "The conversation is longer than the model's context: the oldest {dropped_messages} message(s) were left out (the system prompt is kept)."
                )));
            }
            Event::Token { turn, text } if current(self.s, turn) => {
                if let Some(reply) = self.s.chat.reply.as_mut() {
                    reply.text.push_str(&text);
                    reply.tokens += 1;
                }
                self.show(Part::Reply);
                // The reply so far, saved now and then as it streams.
                if now_ms - self.s.chat.saved_at >= SAVE_EVERY_MS {
                    self.persist(now_ms);
                }
            }
            Event::Done { turn, stats } if current(self.s, turn) => {
                let text = self.s.chat.reply.as_ref().map(|r| r.text.clone()).unwrap_or_default();
                self.end_reply(ReplyEnd::Done { text, stats });
                self.s.chat.conversation.updated = now_ms;
                self.persist(now_ms);
            }
            Event::Error { kind, message } => {
                if kind == ErrorKind::Panic {
                    self.s.link.status = WorkerStatus::Crashed;
                    self.show(Part::Link);
                }
                if matches!(kind, ErrorKind::Engine | ErrorKind::NotLoaded | ErrorKind::Panic) && self.s.chat.reply.is_some() {
                    // The reply ended with the error: what it wrote is kept.
                    self.end_reply(ReplyEnd::Failed(message.clone()));
                    self.persist(now_ms);
                }
                self.error(Some(message));
            }
            // Progress and stopped downloads moved the model above; the
            // rest is about another turn (or only a benchmark's).
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use sprig_protocol::{LoadStage, LoadedModel, ReplyStats, StopReason, StoreStatus, StoredModel};

    use super::*;

    fn conversation(id: &str) -> Conversation {
        Conversation { id: id.into(), title: "New chat".into(), entries: Vec::new(), updated: 0.0, rev: 0 }
    }

    fn app() -> UiState {
        UiState::new(conversation("c1"), true)
    }

    fn model() -> LoadedModel {
        LoadedModel {
            name: "demo".into(),
            architecture: "llama".into(),
            quantization: "Q4_1".into(),
            context_length: 8192,
            parameter_count: 1,
            size_bytes: 1,
            chat_format: "template".into(),
            fetch_ms: 0.0,
            load_ms: 0.0,
            memory_bytes: 0,
            worker_memory_bytes: Vec::new(),
            kernels: "simd128".into(),
        }
    }

    fn stats() -> ReplyStats {
        ReplyStats {
            prompt_tokens: 5,
            prefilled_tokens: 5,
            generated_tokens: 2,
            prefill_tok_s: 1.0,
            decode_tok_s: 1.0,
            stop: StopReason::Eos,
            dropped_messages: 0,
            prefill_exchange_ms: 0.0,
            decode_exchange_ms: 0.0,
            memory_bytes: 0,
            weight_bytes: 0,
            cache_bytes: 0,
        }
    }

    fn worker(s: &mut UiState, event: Event) -> Vec<Effect> {
        reduce(s, UiEvent::Worker { event, now_ms: 5_000.0 })
    }

    const DEMO: &str = "http://app/models/demo.json";

    fn demo() -> ModelSource {
        ModelSource::Manifest { url: DEMO.into() }
    }

    /// A state with the demo model loading.
    fn loading() -> UiState {
        let mut s = app();
        reduce(&mut s, UiEvent::Load { source: demo(), now_ms: 1.0 });
        s
    }

    /// A state with the demo model ready.
    fn ready() -> UiState {
        let mut s = loading();
        worker(&mut s, Event::Loaded { model: model() });
        s
    }

    fn posted(effects: &[Effect]) -> Vec<&Request> {
        effects.iter().filter_map(|e| if let Effect::Post(r) = e { Some(r) } else { None }).collect()
    }

    fn shown(effects: &[Effect]) -> Vec<Part> {
        effects.iter().filter_map(|e| if let Effect::Show(p) = e { Some(*p) } else { None }).collect()
    }

    fn load_is_offered_again_with(s: &UiState, reason: &str) {
        assert_eq!(s.models.model, ModelState::Failed(reason.into()), "the load ended, with its reason");
        // Load is enabled whenever the model is not loading.
        assert!(!matches!(s.models.model, ModelState::Loading(_)));
    }

    #[test]
    fn a_load_posts_the_request_with_the_settings_and_asks_for_persistence() {
        let mut s = app();
        reduce(&mut s, UiEvent::Settings(Settings { connections: 3, workers: 2, ..Settings::default() }));
        s.banners.error = Some("old".into());
        let effects = reduce(&mut s, UiEvent::Load { source: demo(), now_ms: 7.0 });
        assert_eq!(s.models.model, ModelState::Loading(LoadProgress::start(7.0)));
        assert_eq!(s.models.active, Some(demo()));
        assert_eq!(s.banners.error, None);
        assert!(effects.contains(&Effect::AskPersistence));
        assert_eq!(posted(&effects), [&Request::Load { source: demo(), connections: 3, workers: 2, context: 0 }]);
        // A file is read in place: no persistence to ask for.
        let file = ModelSource::File { name: "m.gguf".into(), size: 9 };
        assert!(!reduce(&mut app(), UiEvent::Load { source: file, now_ms: 7.0 }).contains(&Effect::AskPersistence));
    }

    #[test]
    fn every_way_a_load_can_fail_ends_loading_with_the_reason_shown() {
        use ErrorKind::*;
        // The worker says so, whatever the kind of error.
        for kind in [BadMessage, Network, BadModel, Engine, Panic, Storage] {
            let mut s = loading();
            let effects = worker(&mut s, Event::Error { kind, message: format!("{kind:?}") });
            load_is_offered_again_with(&s, &format!("{kind:?}"));
            assert_eq!(s.banners.error.as_deref(), Some(format!("{kind:?}").as_str()));
            assert!(posted(&effects).contains(&&Request::ListModels), "the store's state is read again");
        }
        // The request could not be posted.
        let mut s = loading();
        let request = Request::Load { source: demo(), connections: 1, workers: 0, context: 0 };
        reduce(&mut s, UiEvent::PostFailed { request, message: "the model worker is not running".into() });
        load_is_offered_again_with(&s, "the model worker is not running");
        // The worker could not start.
        let mut s = loading();
        reduce(&mut s, UiEvent::WorkerFailed("no Worker".into()));
        load_is_offered_again_with(&s, "no Worker");
        assert_eq!(s.link.status, WorkerStatus::Crashed);
        // The page refused it (storage blocked).
        let mut s = loading();
        reduce(&mut s, UiEvent::LoadRefused("storage is blocked".into()));
        load_is_offered_again_with(&s, "storage is blocked");
        // Refusals of another request leave the load running.
        for kind in [Busy, NotLoaded] {
            let mut s = loading();
            worker(&mut s, Event::Error { kind, message: "no".into() });
            assert!(matches!(s.models.model, ModelState::Loading(_)));
        }
    }

    #[test]
    fn a_load_ends_ready_and_remembers_the_model() {
        let mut s = loading();
        let effects = worker(&mut s, Event::Loaded { model: model() });
        assert_eq!(s.models.model, ModelState::Ready(model()));
        assert_eq!(s.models.loaded, Some(demo()));
        assert!(effects.contains(&Effect::RememberComplete(DEMO.into())));
        assert!(posted(&effects).contains(&&Request::ListModels));
    }

    fn stored(id: &str, status: StoreStatus) -> StoredModel {
        StoredModel { id: id.into(), name: "demo".into(), source: demo(), total_size: 10, stored_bytes: 5, status, problem: None }
    }

    #[test]
    fn pause_cancel_and_resume() {
        let mut s = loading();
        assert_eq!(posted(&reduce(&mut s, UiEvent::Pause)), [&Request::StopDownload { discard: false }]);
        worker(&mut s, Event::Progress { stage: LoadStage::Download, done: 5, total: Some(10), rate: None, eta_s: None });
        worker(&mut s, Event::DownloadStopped { discarded: false });
        assert_eq!(s.models.model, ModelState::Paused { done: 5, total: Some(10) });
        // Cancelling a paused download deletes what is stored (no worker download to stop).
        worker(&mut s, Event::Models { models: vec![stored("m1", StoreStatus::Partial)], usage: None, quota: None });
        let effects = reduce(&mut s, UiEvent::Cancel);
        assert_eq!(s.models.model, ModelState::Idle);
        assert!(effects.contains(&Effect::ForgetComplete(DEMO.into())));
        assert_eq!(posted(&effects), [&Request::DeleteModel { id: "m1".into() }]);
        // Cancelling a running download asks the worker.
        let mut s = loading();
        assert_eq!(posted(&reduce(&mut s, UiEvent::Cancel)), [&Request::StopDownload { discard: true }]);
        // Resume loads the last source again; a file cannot be resumed.
        let effects = reduce(&mut s, UiEvent::Resume { now_ms: 9.0 });
        assert!(matches!(posted(&effects)[..], [Request::Load { .. }]));
        let mut s = app();
        reduce(&mut s, UiEvent::Load { source: ModelSource::File { name: "f".into(), size: 1 }, now_ms: 1.0 });
        assert!(posted(&reduce(&mut s, UiEvent::Resume { now_ms: 2.0 })).is_empty());
    }

    /// Sends `text` in `s` and returns the reply's turn.
    fn send(s: &mut UiState, text: &str) -> u64 {
        reduce(s, UiEvent::Send { text: text.into(), now_ms: 2_000.0 });
        s.chat.generating().expect("a reply started")
    }

    #[test]
    fn a_message_is_saved_at_once_and_the_reply_asks_for_the_whole_conversation() {
        let mut s = ready();
        s.settings.system_prompt = " Be brief. ".into();
        let effects = reduce(&mut s, UiEvent::Send { text: "Hi there".into(), now_ms: 2_000.0 });
        assert_eq!(s.chat.conversation.title, "Hi there");
        assert!(matches!(&effects[..], [.., Effect::Save(saved), _, Effect::Post(Request::Generate { .. })] if saved.entries.len() == 1));
        let Some(Request::Generate { turn, messages, .. }) = posted(&effects).pop() else { panic!("{effects:?}") };
        assert_eq!(Some(*turn), s.chat.generating());
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User]);
        assert_eq!(messages[0].content, "Be brief.");
        assert_eq!(s.chat.history, [("c1".to_string(), "Hi there".to_string())]);
        // Nothing else goes while it streams; an empty message never goes.
        assert!(reduce(&mut s, UiEvent::Send { text: "more".into(), now_ms: 2_001.0 }).is_empty());
        let mut idle = ready();
        assert!(reduce(&mut idle, UiEvent::Send { text: "  ".into(), now_ms: 1.0 }).is_empty());
        // Without a model, the user is told.
        let mut none = app();
        reduce(&mut none, UiEvent::Send { text: "Hi".into(), now_ms: 1.0 });
        assert_eq!(none.banners.error.as_deref(), Some("load a model first"));
        assert!(none.chat.conversation.entries.is_empty());
    }

    #[test]
    fn a_streamed_token_changes_the_reply_alone() {
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        for (i, token) in ["Hel", "lo"].into_iter().enumerate() {
            let effects = reduce(&mut s, UiEvent::Worker { event: Event::Token { turn, text: token.into() }, now_ms: 2_100.0 + i as f64 });
            // The conversation (every earlier message) is not re-rendered.
            assert_eq!(effects, [Effect::Show(Part::Reply)]);
        }
        let reply = s.chat.reply.clone().unwrap();
        assert_eq!((reply.text.as_str(), reply.tokens), ("Hello", 2));
        assert_eq!(s.chat.conversation.entries.len(), 1, "the reply is not in the conversation while it streams");
        // Now and then the reply so far is saved, still without touching the view of the conversation.
        let effects = reduce(&mut s, UiEvent::Worker { event: Event::Token { turn, text: "!".into() }, now_ms: 3_500.0 });
        assert!(matches!(&effects[..], [Effect::Show(Part::Reply), Effect::Save(c)] if c.entries[1].content == "Hello!"));
        // Another turn's tokens are ignored.
        assert!(reduce(&mut s, UiEvent::Worker { event: Event::Token { turn: turn + 7, text: "x".into() }, now_ms: 3_600.0 }).is_empty());
    }

    #[test]
    fn a_finished_reply_joins_the_conversation_and_is_reported() {
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        worker(&mut s, Event::Token { turn, text: "Hello".into() });
        let effects = worker(&mut s, Event::Done { turn, stats: stats() });
        assert_eq!(s.chat.reply, None);
        let last = s.chat.conversation.entries.last().unwrap();
        assert_eq!((last.role, last.content.as_str(), last.stats.clone()), (Role::Assistant, "Hello", Some(stats())));
        assert!(effects.contains(&Effect::ReplyEnded { turn, end: ReplyEnd::Done { text: "Hello".into(), stats: stats() } }));
        assert!(effects.iter().any(|e| matches!(e, Effect::Save(c) if c.entries.len() == 2)));
        assert!(shown(&effects).contains(&Part::Chat) && shown(&effects).contains(&Part::Reply));
    }

    #[test]
    fn a_failed_reply_keeps_what_it_wrote_and_reports_the_failure() {
        // An engine error mid-reply.
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        worker(&mut s, Event::Token { turn, text: "Hal".into() });
        let effects = worker(&mut s, Event::Error { kind: ErrorKind::Engine, message: "out of memory".into() });
        assert_eq!(s.chat.conversation.entries.last().map(|e| e.content.as_str()), Some("Hal"));
        assert!(effects.contains(&Effect::ReplyEnded { turn, end: ReplyEnd::Failed("out of memory".into()) }));
        assert_eq!(s.banners.error.as_deref(), Some("out of memory"));
        // A panic before any token: no empty message is left, and the worker must be restarted.
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        let effects = worker(&mut s, Event::Error { kind: ErrorKind::Panic, message: "panicked".into() });
        assert_eq!(s.chat.conversation.entries.len(), 1);
        assert_eq!(s.link.status, WorkerStatus::Crashed);
        assert!(effects.contains(&Effect::ReplyEnded { turn, end: ReplyEnd::Failed("panicked".into()) }));
        // Restarting it ends nothing more, forgets the model and spawns a fresh worker.
        let effects = reduce(&mut s, UiEvent::RestartWorker);
        assert_eq!((s.models.model.clone(), s.models.loaded.clone(), s.link.status), (ModelState::Idle, None, WorkerStatus::Starting));
        assert!(effects.contains(&Effect::SpawnWorker));
        // The Generate request could not even be posted.
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        let request = Request::Generate { turn, messages: Vec::new(), settings: Default::default() };
        let effects = reduce(&mut s, UiEvent::PostFailed { request, message: "gone".into() });
        assert_eq!(s.chat.reply, None);
        assert!(effects.contains(&Effect::ReplyEnded { turn, end: ReplyEnd::Failed("gone".into()) }));
    }

    #[test]
    fn a_new_chat_while_a_reply_streams_stops_it_and_keeps_it_in_its_conversation() {
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        worker(&mut s, Event::Token { turn, text: "Hel".into() });
        let effects = reduce(&mut s, UiEvent::NewChat(conversation("c2")));
        assert!(posted(&effects).contains(&&Request::Stop));
        assert!(effects.iter().any(|e| matches!(e, Effect::Save(c) if c.id == "c1" && c.entries[1].content == "Hel")));
        assert_eq!(s.chat.conversation.id, "c2");
        // The reply ends in its own conversation, not in the new one; whoever waits for it hears.
        worker(&mut s, Event::Token { turn, text: "lo".into() });
        let effects = worker(&mut s, Event::Done { turn, stats: stats() });
        assert!(s.chat.conversation.entries.is_empty());
        assert!(effects.contains(&Effect::ReplyEnded { turn, end: ReplyEnd::Done { text: "Hello".into(), stats: stats() } }));
    }

    #[test]
    fn regenerate_replaces_the_last_reply() {
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        worker(&mut s, Event::Done { turn, stats: stats() });
        let effects = reduce(&mut s, UiEvent::Regenerate);
        assert_eq!(s.chat.conversation.entries.len(), 1);
        assert!(matches!(posted(&effects)[..], [Request::Generate { turn: t, .. }] if *t == turn + 1));
        // Not while one streams.
        assert!(reduce(&mut s, UiEvent::Regenerate).is_empty());
    }

    #[test]
    fn dropped_messages_are_noticed() {
        let mut s = ready();
        let turn = send(&mut s, "Hi");
        worker(&mut s, Event::Started { turn, prompt_tokens: 9, prefilled_tokens: 9, dropped_messages: 4 });
        assert!(s.banners.notice.as_deref().is_some_and(|n| n.contains("oldest 4 message(s)")));
    }

    #[test]
    fn history_restores_opens_deletes_and_forks() {
        let mut s = app();
        let mut saved = conversation("c9");
        saved.entries.push(Entry { role: Role::User, content: "Old".into(), stats: None });
        reduce(&mut s, UiEvent::Restored { all: vec![saved.clone(), conversation("c8")], unreadable: 1 });
        assert_eq!(s.chat.conversation.id, "c9", "the latest opens when nothing was typed");
        assert_eq!(s.chat.history.len(), 2);
        assert!(s.banners.notice.is_some());
        assert_eq!(reduce(&mut s, UiEvent::Open("c8".into())), [Effect::Open("c8".into())]);
        reduce(&mut s, UiEvent::Opened(conversation("c8")));
        assert_eq!(s.chat.conversation.id, "c8");
        let effects = reduce(&mut s, UiEvent::DeleteConversation { id: "c8".into(), fresh: conversation("c10") });
        assert_eq!((s.chat.conversation.id.as_str(), s.chat.history.len()), ("c10", 1));
        assert!(effects.contains(&Effect::Delete("c8".into())));
        // Another tab saved the open conversation first: this tab's copy goes on as a new one.
        let mut s = ready();
        send(&mut s, "Hi");
        let mine = s.chat.snapshot();
        let effects = reduce(&mut s, UiEvent::SaveConflict { mine, fresh_id: "c1b".into() });
        assert_eq!((s.chat.conversation.id.as_str(), s.chat.reply.as_ref().unwrap().conversation.as_str()), ("c1b", "c1b"));
        assert!(effects.iter().any(|e| matches!(e, Effect::Save(c) if c.id == "c1b" && c.title == "Hi (this tab)")));
        // A conversation no longer open is saved beside the other.
        let mut s = app();
        let effects = reduce(&mut s, UiEvent::SaveConflict { mine: saved, fresh_id: "c9b".into() });
        assert!(effects.iter().any(|e| matches!(e, Effect::Save(c) if c.id == "c9b" && c.rev == 1)));
        assert_eq!(s.chat.conversation.id, "c1");
    }

    #[test]
    fn the_widget_saves_nothing() {
        let mut s = UiState::new(conversation("w"), false);
        reduce(&mut s, UiEvent::Load { source: demo(), now_ms: 1.0 });
        worker(&mut s, Event::Loaded { model: model() });
        let effects = reduce(&mut s, UiEvent::Send { text: "Hi".into(), now_ms: 1.0 });
        assert!(!effects.iter().any(|e| matches!(e, Effect::Save(_))));
    }

    #[test]
    fn the_worker_link_follows_the_worker() {
        let mut s = app();
        assert_eq!(reduce(&mut s, UiEvent::StartWorker), [Effect::Show(Part::Link), Effect::SpawnWorker]);
        let effects = reduce(&mut s, UiEvent::WorkerSpawned);
        assert_eq!(posted(&effects), [&Request::Hello { nonce: 1 }, &Request::ListModels]);
        worker(&mut s, Event::Ready);
        assert_eq!(s.link.status, WorkerStatus::Ready);
        reduce(&mut s, UiEvent::Unreadable("bad message".into()));
        assert_eq!(s.banners.error.as_deref(), Some("bad message"));
        reduce(&mut s, UiEvent::DismissError);
        assert_eq!(s.banners.error, None);
    }

    fn catalog(allow_custom_urls: bool) -> sprig_protocol::Catalog {
        let json = format!(
            r#"{{"version":1,"allow_custom_urls":{allow_custom_urls},"models":[{{"id":"demo","label":"Demo","url":"{DEMO}","size":10,
                "license":"MIT","defaults":{{"temperature":0.2,"max_tokens":64,"context":2048,"workers":1,"system_prompt":"Be brief."}}}}]}}"#
        );
        sprig_protocol::Catalog::parse(&json).unwrap()
    }

    #[test]
    fn the_catalog_is_fetched_at_start_and_kept_or_its_failure_said() {
        let mut s = app();
        assert_eq!(reduce(&mut s, UiEvent::FetchCatalog), [Effect::Show(Part::Catalog), Effect::FetchCatalog]);
        assert_eq!(s.catalog, CatalogState::Loading);
        let effects = reduce(&mut s, UiEvent::CatalogFetched(Ok(catalog(false))));
        assert_eq!(effects, [Effect::Show(Part::Catalog)], "only the views of the catalog change");
        assert!(!s.catalog.allows_custom_urls());
        assert_eq!(s.catalog.models()[0].id, "demo");
        let mut s = app();
        reduce(&mut s, UiEvent::CatalogFetched(Err("models.json: HTTP 404".into())));
        assert_eq!(s.catalog, CatalogState::Failed("models.json: HTTP 404".into()));
        assert!(s.catalog.allows_custom_urls(), "the custom URL still works");
        // A load without a catalog goes ahead with the app's settings.
        let effects = reduce(&mut s, UiEvent::Load { source: demo(), now_ms: 1.0 });
        assert_eq!(posted(&effects), [&Request::Load { source: demo(), connections: 4, workers: 0, context: 0 }]);
    }

    #[test]
    fn a_catalog_model_starts_with_its_defaults_but_the_users_settings_stay() {
        let mut s = app();
        reduce(&mut s, UiEvent::CatalogFetched(Ok(catalog(true))));
        // The user set a temperature before loading.
        let mut mine = s.settings.clone();
        mine.generation.temperature = 1.5;
        reduce(&mut s, UiEvent::Settings(mine));
        let effects = reduce(&mut s, UiEvent::Load { source: demo(), now_ms: 1.0 });
        assert!(shown(&effects).contains(&Part::Settings));
        assert_eq!(posted(&effects), [&Request::Load { source: demo(), connections: 4, workers: 1, context: 2048 }]);
        assert_eq!((s.settings.generation.temperature, s.settings.generation.max_tokens), (1.5, 64));
        assert_eq!(s.settings.system_prompt, "Be brief.");
        // The model's system prompt goes into the reply's request.
        worker(&mut s, Event::Loaded { model: model() });
        let effects = reduce(&mut s, UiEvent::Send { text: "Hi".into(), now_ms: 2.0 });
        let Some(Request::Generate { messages, settings, .. }) = posted(&effects).pop() else { panic!("{effects:?}") };
        assert_eq!((messages[0].content.as_str(), settings.max_tokens, settings.temperature), ("Be brief.", 64, 1.5));
        // A model the catalog does not list: the untouched settings are the app's again.
        let other = ModelSource::Url { url: "http://elsewhere/m.gguf".into() };
        let effects = reduce(&mut s, UiEvent::Load { source: other.clone(), now_ms: 3.0 });
        assert_eq!(posted(&effects), [&Request::Load { source: other, connections: 4, workers: 0, context: 0 }]);
        assert_eq!((s.settings.generation.temperature, s.settings.generation.max_tokens), (1.5, 512));
        assert_eq!(s.settings.system_prompt, "");
    }

    #[test]
    fn the_widget_hosts_settings_win_over_a_models_defaults_even_at_the_apps_values() {
        let mut s = UiState::new(conversation("w"), false);
        reduce(&mut s, UiEvent::CatalogFetched(Ok(catalog(false))));
        // data-temperature="0.7": the app's own default, yet the page's choice.
        let pinned = crate::catalog::Touched { temperature: true, ..Default::default() };
        reduce(&mut s, UiEvent::HostSettings { settings: Settings::default(), pinned });
        reduce(&mut s, UiEvent::Load { source: demo(), now_ms: 1.0 });
        assert_eq!((s.settings.generation.temperature, s.settings.generation.max_tokens), (0.7, 64));
    }
}

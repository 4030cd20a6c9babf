//! The UI's whole state as plain data, the events that move it, and the
//! effects it asks of the page: what [`crate::reduce::reduce`] works on.
//!
//! Nothing here touches the browser, so every transition is tested natively
//! (`reduce.rs`). [`crate::controller::Controller`] owns one [`UiState`],
//! feeds it [`UiEvent`]s, carries out the [`Effect`]s, and re-renders only
//! the [`Part`]s an event changed.

use sprig_protocol::{Catalog, Event, ModelSource, ReplyStats, Request, StoredModel, WorkerInfo};

use crate::catalog::{CatalogState, Touched};
use crate::state::{Conversation, ModelState, Settings};

/// Where the worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerStatus {
    /// Spawned, not yet ready.
    #[default]
    Starting,
    /// Listening.
    Ready,
    /// Crashed or could not start; must be restarted.
    Crashed,
}

/// The link to the model worker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerLink {
    /// The worker's status.
    pub status: WorkerStatus,
    /// What the worker runs, once it has said.
    pub info: Option<WorkerInfo>,
}

/// The models: the load in progress or done, and the model store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelsState {
    /// The model's state.
    pub model: ModelState,
    /// The source of the model being (or last) loaded.
    pub active: Option<ModelSource>,
    /// The source of the model in use.
    pub loaded: Option<ModelSource>,
    /// The models in the browser's model store.
    pub stored: Vec<StoredModel>,
    /// The site's storage use and quota, in bytes, when the browser says.
    pub storage: Option<(u64, u64)>,
    /// Whether the browser granted persistent storage (not cleared under pressure).
    pub persisted: Option<bool>,
}

/// The reply being streamed: kept apart from the conversation, so a token
/// changes this alone and no earlier message is rendered again.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The turn id the request carried, echoed by the worker's events.
    pub turn: u64,
    /// The id of the conversation it answers (the user may start another
    /// while it ends).
    pub conversation: String,
    /// The text so far (Markdown).
    pub text: String,
    /// Tokens received so far.
    pub tokens: usize,
}

/// The conversations: the open one, the saved list and the reply streaming.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatState {
    /// The open conversation (without the reply streaming into it).
    pub conversation: Conversation,
    /// Saved conversations (id, title), most recent first.
    pub history: Vec<(String, String)>,
    /// The reply in progress.
    pub reply: Option<Reply>,
    /// The last turn id handed out.
    pub turn: u64,
    /// When the conversation was last saved (ms), to save a streaming reply
    /// at most every [`SAVE_EVERY_MS`].
    pub saved_at: f64,
    /// Whether conversations are restored and saved (not in the widget,
    /// whose chats belong to the page that embeds it).
    pub keep_history: bool,
}

impl ChatState {
    /// The open conversation as it is saved: with the reply streaming into
    /// it (so far) as its last message.
    pub fn snapshot(&self) -> Conversation {
        let mut c = self.conversation.clone();
        if let Some(reply) = self.reply.as_ref().filter(|r| r.conversation == c.id && !r.text.is_empty()) {
            c.entries.push(crate::state::Entry { role: sprig_protocol::Role::Assistant, content: reply.text.clone(), stats: None });
        }
        c
    }

    /// The turn id of the reply in progress.
    pub fn generating(&self) -> Option<u64> {
        self.reply.as_ref().map(|r| r.turn)
    }
}

/// The banners: the last error and a notice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Banners {
    /// The last error, shown until dismissed.
    pub error: Option<String>,
    /// A notice (e.g. old messages dropped to fit the context).
    pub notice: Option<String>,
}

/// The UI's state: four parts with one owner each, plus the catalog, the
/// settings and the banners.
#[derive(Debug, Clone, PartialEq)]
pub struct UiState {
    /// The worker link.
    pub link: WorkerLink,
    /// The models.
    pub models: ModelsState,
    /// The conversations.
    pub chat: ChatState,
    /// The deployment's model catalog (`models.json`).
    pub catalog: CatalogState,
    /// Chat settings.
    pub settings: Settings,
    /// Which settings the user changed (a model's defaults leave them).
    pub touched: Touched,
    /// Error and notice.
    pub banners: Banners,
}

impl UiState {
    /// The state at start: `conversation` open (new and empty), nothing loaded.
    pub fn new(conversation: Conversation, keep_history: bool) -> Self {
        Self {
            link: WorkerLink::default(),
            models: ModelsState::default(),
            chat: ChatState { conversation, history: Vec::new(), reply: None, turn: 0, saved_at: 0.0, keep_history },
            catalog: CatalogState::default(),
            settings: Settings::default(),
            touched: Touched::default(),
            banners: Banners::default(),
        }
    }
}

/// How often a streaming reply is saved, in milliseconds.
pub const SAVE_EVERY_MS: f64 = 1_000.0;

/// A part of the state that views read as a whole: an event re-renders the
/// views of the parts it changed ([`Effect::Show`]), and no others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// [`UiState::link`].
    Link,
    /// [`UiState::models`].
    Models,
    /// The open conversation and the history ([`ChatState`] but the reply).
    Chat,
    /// [`ChatState::reply`].
    Reply,
    /// [`UiState::catalog`].
    Catalog,
    /// [`UiState::settings`].
    Settings,
    /// [`UiState::banners`].
    Banners,
}

impl Part {
    /// Every part.
    pub const ALL: [Part; 7] = [Part::Link, Part::Models, Part::Chat, Part::Reply, Part::Catalog, Part::Settings, Part::Banners];
}

/// How a reply ended, as told to whoever waits for it.
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

/// Something that happened: a user's action, a worker's event, or the
/// outcome of an effect the page carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum UiEvent {
    /// The page starts (or restarts) the model worker.
    StartWorker,
    /// The worker was spawned (requests are queued until it is ready).
    WorkerSpawned,
    /// The worker could not be spawned.
    WorkerFailed(String),
    /// The crashed worker is replaced by a fresh one.
    RestartWorker,
    /// The page reads the model catalog (`models.json`).
    FetchCatalog,
    /// The catalog was read and checked (its model URLs made absolute), or
    /// could not be: why.
    CatalogFetched(Result<Catalog, String>),
    /// An event from the worker, received at `now_ms`.
    Worker {
        /// The event.
        event: Event,
        /// When it arrived (ms since the epoch).
        now_ms: f64,
    },
    /// A message from the worker could not be decoded.
    Unreadable(String),
    /// A request could not be posted to the worker.
    PostFailed {
        /// The request.
        request: Request,
        /// Why.
        message: String,
    },
    /// The user asks to load a model.
    Load {
        /// Where it is.
        source: ModelSource,
        /// When (ms since the epoch).
        now_ms: f64,
    },
    /// A load failed before it reached the worker (a URL that is not one,
    /// storage the browser refuses).
    LoadRefused(String),
    /// Pause the download in progress.
    Pause,
    /// Cancel the download in progress, or the paused one.
    Cancel,
    /// Load the model last asked for again.
    Resume {
        /// When (ms since the epoch).
        now_ms: f64,
    },
    /// Ask the worker for the store's contents.
    RefreshModels,
    /// Delete a stored model.
    DeleteModel(String),
    /// The browser answered the request for persistent storage.
    Persisted(Option<bool>),
    /// The user sends a message.
    Send {
        /// The message.
        text: String,
        /// When (ms since the epoch).
        now_ms: f64,
    },
    /// Stop the reply in progress.
    Stop,
    /// Replace the last reply with a new one.
    Regenerate,
    /// Open `fresh`, a new empty conversation.
    NewChat(Conversation),
    /// Saved conversations were read (most recent first); `unreadable` were skipped.
    Restored {
        /// The conversations.
        all: Vec<Conversation>,
        /// How many could not be read.
        unreadable: usize,
    },
    /// The user opens the saved conversation with this id.
    Open(String),
    /// A saved conversation was read, to be opened.
    Opened(Conversation),
    /// Delete a saved conversation; `fresh` opens if it was the open one.
    DeleteConversation {
        /// Its id.
        id: String,
        /// A new, empty conversation.
        fresh: Conversation,
    },
    /// Another tab saved `mine.id` first: this tab's copy becomes `fresh_id`.
    SaveConflict {
        /// The copy this tab tried to save.
        mine: Conversation,
        /// A new conversation id for it.
        fresh_id: String,
    },
    /// The user changed the settings.
    Settings(Settings),
    /// The widget's host page set these settings (its `data-*` options):
    /// `pinned` ones keep their value when a model with defaults loads,
    /// even where they equal the app's defaults.
    HostSettings {
        /// The settings.
        settings: Settings,
        /// The ones the page set.
        pinned: Touched,
    },
    /// Something the page did failed (the conversation store, say).
    Failed(String),
    /// The user dismissed the error.
    DismissError,
}

/// What the page must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Re-render the views of this part.
    Show(Part),
    /// Spawn the model worker (answer: [`UiEvent::WorkerSpawned`] or [`UiEvent::WorkerFailed`]).
    SpawnWorker,
    /// Fetch `models.json` beside the page (answer: [`UiEvent::CatalogFetched`]).
    FetchCatalog,
    /// Post a request to the worker (failure: [`UiEvent::PostFailed`]).
    Post(Request),
    /// Save a conversation (a conflict: [`UiEvent::SaveConflict`]).
    Save(Conversation),
    /// Read the saved conversation with this id and open it ([`UiEvent::Opened`]).
    Open(String),
    /// Delete a saved conversation.
    Delete(String),
    /// Remember that this browser held the model at this URL complete.
    RememberComplete(String),
    /// Forget it (a deliberate delete is not an eviction).
    ForgetComplete(String),
    /// Ask the browser for persistent storage ([`UiEvent::Persisted`]).
    AskPersistence,
    /// Tell whoever waits for reply `turn` how it ended.
    ReplyEnded {
        /// The turn id.
        turn: u64,
        /// How it ended.
        end: ReplyEnd,
    },
}

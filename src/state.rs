//! The UI's data: conversations, the model's state and the settings (the
//! deployment's model catalog is [`crate::catalog`]).

use serde::{Deserialize, Serialize};
use sprig_protocol::{
    ErrorKind, Event, GenerationSettings, LoadStage, LoadedModel, ReplyStats, Role, StoreStatus, StoredModel, DEFAULT_CONNECTIONS,
};

/// One message shown in the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Who said it.
    pub role: Role,
    /// The text (Markdown for the assistant).
    pub content: String,
    /// Figures of an assistant reply, once done.
    #[serde(default)]
    pub stats: Option<ReplyStats>,
}

/// A conversation, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Unique id.
    pub id: String,
    /// Title (the start of the first user message).
    pub title: String,
    /// The messages, oldest first.
    pub entries: Vec<Entry>,
    /// Last change, in milliseconds since the epoch.
    pub updated: f64,
    /// The revision of this copy: each save stores the next one, and a save
    /// finding a revision as new as its own already stored (another tab
    /// saved first) does not overwrite it.
    #[serde(default)]
    pub rev: u64,
}

impl Conversation {
    /// A new, empty conversation.
    pub fn new(now_ms: f64, random: f64) -> Self {
        Self {
            id: format!("c{}-{}", now_ms as u64, (random * 1e9) as u64),
            title: "New chat".into(),
            entries: Vec::new(),
            updated: now_ms,
            rev: 0,
        }
    }

    /// Sets the title from the first user message, if not done yet.
    pub fn retitle(&mut self) {
        if let Some(first) = self.entries.iter().find(|e| e.role == Role::User) {
            let t: String = first.content.split_whitespace().collect::<Vec<_>>().join(" ");
            self.title = if t.chars().count() > 48 { format!("{}…", t.chars().take(47).collect::<String>()) } else { t };
        }
    }
}

/// How far a load has come, from the worker's latest [`Event::Progress`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProgress {
    /// Which phase.
    pub stage: LoadStage,
    /// Bytes done.
    pub done: u64,
    /// Bytes in all, when known.
    pub total: Option<u64>,
    /// When this phase started (ms).
    pub since_ms: f64,
    /// Now (ms).
    pub now_ms: f64,
    /// Download speed (bytes/s), once the worker has measured it.
    pub rate: Option<f64>,
    /// Seconds left at that speed.
    pub eta_s: Option<f64>,
}

impl LoadProgress {
    /// A load starting at `now_ms`: nothing downloaded yet.
    pub fn start(now_ms: f64) -> Self {
        Self { stage: LoadStage::Download, done: 0, total: None, since_ms: now_ms, now_ms, rate: None, eta_s: None }
    }

    /// Percent done, when the total is known.
    pub fn percent(&self) -> Option<f64> {
        self.total.filter(|t| *t > 0).map(|t| percent(self.done, t))
    }

    /// "12.3 MiB/s, about 1:05 left", from the worker's figures; for the load
    /// stage (no rate), the speed of reading since the stage began.
    pub fn speed(&self) -> String {
        let elapsed_ms = self.now_ms - self.since_ms;
        let rate = self.rate.unwrap_or(if elapsed_ms > 0.0 { self.done as f64 / (elapsed_ms / 1000.0) } else { 0.0 });
        let mut s = format!("{}/s", bytes(rate as u64));
        if let Some(secs) = self.eta_s.filter(|s| s.is_finite() && *s >= 1.0) {
            let secs = secs.ceil() as u64;
            s.push_str(&format!(", about {}:{:02} left", secs / 60, secs % 60));
        }
        s
    }
}

/// Where the model stands.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ModelState {
    /// Nothing loaded.
    #[default]
    Idle,
    /// Downloading or loading.
    Loading(LoadProgress),
    /// A download paused by the user; loading the same model resumes it.
    Paused {
        /// Bytes stored.
        done: u64,
        /// Bytes in all, when known.
        total: Option<u64>,
    },
    /// Ready to chat.
    Ready(LoadedModel),
    /// Loading failed.
    Failed(String),
}

/// How a worker event moves the model's state (the load's part of the UI's
/// state), at `now_ms`: `None` when the event does not concern it. A load
/// ends with `Loaded`, with a stopped download (paused, or cancelled), or
/// with an error of any kind but two that refuse another request and leave
/// the load running: `Busy`, and `NotLoaded` (a pause with no download left
/// to pause). Either way, Load is offered again.
pub fn next_model_state(state: &ModelState, event: &Event, now_ms: f64) -> Option<ModelState> {
    let loading = matches!(state, ModelState::Loading(_));
    match event {
        Event::Progress { stage, done, total, rate, eta_s } => {
            let since_ms = match state {
                ModelState::Loading(p) if p.stage == *stage => p.since_ms,
                _ => now_ms,
            };
            Some(ModelState::Loading(LoadProgress {
                stage: *stage,
                done: *done,
                total: *total,
                since_ms,
                now_ms,
                rate: *rate,
                eta_s: *eta_s,
            }))
        }
        Event::Loaded { model } => Some(ModelState::Ready(model.clone())),
        Event::DownloadStopped { discarded } => Some(match (discarded, state) {
            (false, ModelState::Loading(p)) => ModelState::Paused { done: p.done, total: p.total },
            _ => ModelState::Idle,
        }),
        Event::Error { kind, message } if loading && !matches!(kind, ErrorKind::Busy | ErrorKind::NotLoaded) => {
            Some(ModelState::Failed(message.clone()))
        }
        _ => None,
    }
}

/// Settings of the chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The system prompt (empty for none).
    pub system_prompt: String,
    /// Sampling settings.
    pub generation: GenerationSettings,
    /// Parallel connections for model downloads.
    pub connections: usize,
    /// Workers to split a model across (0: chosen from its size).
    pub workers: usize,
    /// The most context positions a conversation uses (0: as many as the
    /// model and the workers' memory allow).
    pub context: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            system_prompt: String::new(),
            generation: GenerationSettings::default(),
            connections: DEFAULT_CONNECTIONS,
            workers: 0,
            context: 0,
        }
    }
}

/// A model's download state, as the Models panel shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum DownloadState {
    /// Nothing stored.
    NotCached,
    /// Downloading (or hashing what a resume found) now.
    Downloading {
        /// Percent done.
        percent: f64,
        /// Hashing stored bytes rather than downloading.
        verifying: bool,
    },
    /// Stopped part-way; loading resumes it.
    Paused {
        /// Percent stored.
        percent: f64,
    },
    /// Being read into the engine.
    Loading,
    /// Stored and verified (and loaded, if `loaded`).
    Ready {
        /// This is the model in use.
        loaded: bool,
    },
    /// Stored before, but the browser cleared it: loading downloads it again.
    NeedsDownload,
    /// The last attempt failed.
    Failed(String),
    /// The store's record of it is damaged: it can only be deleted.
    Damaged(String),
}

impl DownloadState {
    /// A short label.
    pub fn label(&self) -> String {
        match self {
            Self::NotCached => "Not downloaded".into(),
            Self::Downloading { percent, verifying: false } => format!("Downloading {percent:.0} %"),
            Self::Downloading { percent, verifying: true } => format!("Verifying {percent:.0} %"),
            Self::Paused { percent } => format!("Paused at {percent:.0} %"),
            Self::Loading => "Loading".into(),
            Self::Ready { loaded: true } => "Ready · in use".into(),
            Self::Ready { loaded: false } => "Ready · stored on this device".into(),
            Self::NeedsDownload => "Needs download (the browser cleared its copy)".into(),
            Self::Failed(reason) => format!("Failed: {reason}"),
            Self::Damaged(problem) => format!("Damaged: {problem}. Delete it to free its space."),
        }
    }

    /// A stable name for tests and styling.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NotCached => "not-cached",
            Self::Downloading { verifying: false, .. } => "downloading",
            Self::Downloading { verifying: true, .. } => "verifying",
            Self::Paused { .. } => "paused",
            Self::Loading => "loading",
            Self::Ready { .. } => "ready",
            Self::NeedsDownload => "needs-download",
            Self::Failed(_) => "failed",
            Self::Damaged(_) => "damaged",
        }
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64 * 100.0).min(100.0)
    }
}

/// The state of the model at `url` (absolute), from what the store holds,
/// whether it is the model being loaded (`active`) or in use (`loaded`), and
/// whether this browser once held it complete (`was_complete`).
pub fn download_state(stored: Option<&StoredModel>, active: Option<&ModelState>, loaded: bool, was_complete: bool) -> DownloadState {
    match active {
        Some(ModelState::Loading(p)) if p.stage == LoadStage::Load => return DownloadState::Loading,
        Some(ModelState::Loading(p)) => {
            return DownloadState::Downloading {
                percent: p.total.map_or(0.0, |t| percent(p.done, t)),
                verifying: p.stage == LoadStage::Verify,
            }
        }
        Some(ModelState::Paused { done, total }) => return DownloadState::Paused { percent: total.map_or(0.0, |t| percent(*done, t)) },
        Some(ModelState::Failed(reason)) => return DownloadState::Failed(reason.clone()),
        _ => {}
    }
    match stored {
        Some(m) if m.status == StoreStatus::Complete => DownloadState::Ready { loaded },
        Some(m) if m.status == StoreStatus::NeedsDownload => DownloadState::NeedsDownload,
        Some(m) if m.status == StoreStatus::Damaged => {
            DownloadState::Damaged(m.problem.clone().unwrap_or_else(|| "its record cannot be read".into()))
        }
        Some(m) => DownloadState::Paused { percent: percent(m.stored_bytes, m.total_size) },
        None if was_complete => DownloadState::NeedsDownload,
        None => DownloadState::NotCached,
    }
}

/// Human-readable bytes (KiB, MiB, GiB).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> LoadedModel {
        LoadedModel {
            name: name.into(),
            architecture: "llama".into(),
            quantization: "Q4_1".into(),
            context_length: 8192,
            parameter_count: 1,
            size_bytes: 1,
            chat_format: "chatml".into(),
            fetch_ms: 0.0,
            load_ms: 0.0,
            memory_bytes: 0,
            worker_memory_bytes: Vec::new(),
            kernels: "simd128".into(),
        }
    }

    fn loading() -> ModelState {
        ModelState::Loading(LoadProgress {
            stage: LoadStage::Download,
            done: 10,
            total: Some(100),
            since_ms: 1.0,
            now_ms: 2.0,
            rate: None,
            eta_s: None,
        })
    }

    #[test]
    fn a_load_failing_in_any_way_ends_loading_with_its_reason() {
        use ErrorKind::*;
        for kind in [BadMessage, Network, BadModel, Engine, Panic, Storage] {
            let error = Event::Error { kind, message: format!("{kind:?} went wrong") };
            assert_eq!(next_model_state(&loading(), &error, 3.0), Some(ModelState::Failed(format!("{kind:?} went wrong"))));
        }
        // Refusals of another request leave the load running.
        for kind in [Busy, NotLoaded] {
            assert_eq!(next_model_state(&loading(), &Event::Error { kind, message: "no".into() }, 3.0), None);
        }
        // An error after the load (a reply's) does not touch the model.
        let ready = ModelState::Ready(model("m"));
        assert_eq!(next_model_state(&ready, &Event::Error { kind: Engine, message: "x".into() }, 3.0), None);
    }

    #[test]
    fn progress_loaded_and_stopped_move_the_load() {
        let progress = |stage| Event::Progress { stage, done: 20, total: Some(100), rate: Some(5.0), eta_s: Some(16.0) };
        // The same stage keeps its start; a new one starts now.
        let Some(ModelState::Loading(p)) = next_model_state(&loading(), &progress(LoadStage::Download), 9.0) else { panic!() };
        assert_eq!((p.since_ms, p.done), (1.0, 20));
        let Some(ModelState::Loading(p)) = next_model_state(&loading(), &progress(LoadStage::Load), 9.0) else { panic!() };
        assert_eq!(p.since_ms, 9.0);
        let model = model("m");
        assert_eq!(next_model_state(&loading(), &Event::Loaded { model: model.clone() }, 9.0), Some(ModelState::Ready(model)));
        let paused = next_model_state(&loading(), &Event::DownloadStopped { discarded: false }, 9.0);
        assert_eq!(paused, Some(ModelState::Paused { done: 10, total: Some(100) }));
        assert_eq!(next_model_state(&loading(), &Event::DownloadStopped { discarded: true }, 9.0), Some(ModelState::Idle));
        assert_eq!(next_model_state(&loading(), &Event::Ready, 9.0), None);
    }

    #[test]
    fn titles_are_short_single_lines() {
        let mut c = Conversation::new(1.0, 0.5);
        c.entries.push(Entry {
            role: Role::User,
            content: "  What is\nthe capital of France, and why is it so very famous among cities?".into(),
            stats: None,
        });
        c.retitle();
        assert_eq!(c.title, "What is the capital of France, and why is it so…");
        assert_eq!(c.title.chars().count(), 48);
    }

    fn stored(status: StoreStatus, stored_bytes: u64) -> StoredModel {
        StoredModel {
            id: "m1".into(),
            name: "demo".into(),
            source: sprig_protocol::ModelSource::Manifest { url: "http://x/m.json".into() },
            total_size: 200,
            stored_bytes,
            status,
            problem: None,
        }
    }

    #[test]
    fn download_states_follow_store_and_activity() {
        use DownloadState as D;
        assert_eq!(download_state(None, None, false, false), D::NotCached);
        assert_eq!(download_state(None, None, false, true), D::NeedsDownload);
        assert_eq!(download_state(Some(&stored(StoreStatus::Complete, 200)), None, true, true), D::Ready { loaded: true });
        assert_eq!(download_state(Some(&stored(StoreStatus::Partial, 50)), None, false, false), D::Paused { percent: 25.0 });
        assert_eq!(download_state(Some(&stored(StoreStatus::NeedsDownload, 0)), None, false, true), D::NeedsDownload);
        let damaged = StoredModel {
            problem: Some("its record (meta.json) gives shard 1 a size of 9007199254740992 bytes".into()),
            ..stored(StoreStatus::Damaged, 0)
        };
        assert_eq!(download_state(Some(&damaged), None, false, true), D::Damaged(damaged.problem.clone().unwrap()));
        assert!(D::Damaged("x".into()).label().contains("Delete it"));
        let loading = ModelState::Loading(LoadProgress {
            stage: LoadStage::Download,
            done: 30,
            total: Some(60),
            since_ms: 0.0,
            now_ms: 1.0,
            rate: None,
            eta_s: None,
        });
        assert_eq!(download_state(None, Some(&loading), false, false), D::Downloading { percent: 50.0, verifying: false });
        let verifying = ModelState::Loading(LoadProgress {
            stage: LoadStage::Verify,
            done: 60,
            total: Some(60),
            since_ms: 0.0,
            now_ms: 1.0,
            rate: None,
            eta_s: None,
        });
        assert_eq!(download_state(None, Some(&verifying), false, false).key(), "verifying");
        let failed = ModelState::Failed("HTTP 404".into());
        assert_eq!(download_state(None, Some(&failed), false, false).label(), "Failed: HTTP 404");
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(98_362_432), "93.8 MiB");
        assert_eq!(bytes(4_400_000_000), "4.10 GiB");
        assert_eq!(bytes(512), "512 B");
    }
}

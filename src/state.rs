//! The UI's data: conversations, the model's state and the settings.

use serde::{Deserialize, Serialize};
use sprig_protocol::{GenerationSettings, LoadStage, LoadedModel, ReplyStats, Role};

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
}

impl Conversation {
    /// A new, empty conversation.
    pub fn new(now_ms: f64, random: f64) -> Self {
        Self { id: format!("c{}-{}", now_ms as u64, (random * 1e9) as u64), title: "New chat".into(), entries: Vec::new(), updated: now_ms }
    }

    /// Sets the title from the first user message, if not done yet.
    pub fn retitle(&mut self) {
        if let Some(first) = self.entries.iter().find(|e| e.role == Role::User) {
            let t: String = first.content.split_whitespace().collect::<Vec<_>>().join(" ");
            self.title = if t.chars().count() > 48 { format!("{}…", t.chars().take(47).collect::<String>()) } else { t };
        }
    }
}

/// Where the model stands.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ModelState {
    /// Nothing loaded.
    #[default]
    Idle,
    /// Downloading or loading.
    Loading {
        /// Which phase.
        stage: LoadStage,
        /// Bytes done.
        done: u64,
        /// Bytes in all, when known.
        total: Option<u64>,
        /// When this phase started (ms).
        since_ms: f64,
        /// Now (ms), for speed and ETA.
        now_ms: f64,
    },
    /// Ready to chat.
    Ready(LoadedModel),
    /// Loading failed.
    Failed(String),
}

/// Settings of the chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The system prompt (empty for none).
    pub system_prompt: String,
    /// Sampling settings.
    pub generation: GenerationSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self { system_prompt: String::new(), generation: GenerationSettings::default() }
    }
}

/// A model the picker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Stable key (the `<option>` value).
    pub key: &'static str,
    /// What the user reads.
    pub label: &'static str,
    /// Where it is, relative to the app: a shard manifest (`.json`) or a GGUF file.
    pub url: &'static str,
    /// Download size in bytes.
    pub size: u64,
}

/// The models the picker lists; "custom" takes a URL.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        key: "demo",
        label: "SmolLM2 135M Instruct · Q4_1 (demo)",
        url: "models/SmolLM2-135M-Instruct.Q4_1.manifest.json",
        size: 98_362_432,
    },
    CatalogEntry {
        key: "mistral-wanda30",
        label: "Mistral 7B Instruct v0.2 · Wanda 30 % · Q4_K_M",
        url: "models/mistral-7b-instruct-v0.2-wanda30-q4_k_m.manifest.json",
        size: 4_400_000_000,
    },
];

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

    #[test]
    fn titles_are_short_single_lines() {
        let mut c = Conversation::new(1.0, 0.5);
        c.entries.push(Entry { role: Role::User, content: "  What is\nthe capital of France, and why is it so very famous among cities?".into(), stats: None });
        c.retitle();
        assert_eq!(c.title, "What is the capital of France, and why is it so…");
        assert_eq!(c.title.chars().count(), 48);
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(98_362_432), "93.8 MiB");
        assert_eq!(bytes(4_400_000_000), "4.10 GiB");
        assert_eq!(bytes(512), "512 B");
    }
}

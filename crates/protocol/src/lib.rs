//! `sprig-protocol`: the typed messages the Sprig UI and its Web Workers exchange.
//!
//! Both sides compile against these types, so a message that one side can send is
//! one the other side can read. Every message travels inside an [`Envelope`] that
//! carries [`PROTOCOL_VERSION`]; a receiver answers a message it cannot decode or
//! whose version differs with [`Event::Error`], never with a panic.
//!
//! A shard manifest, checked before anything is sized from it:
//!
//! ```no_run
//! use sprig_protocol::Manifest;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let json = std::fs::read_to_string("models/SmolLM2-135M-Instruct.Q4_1.manifest.json")?;
//! let manifest = Manifest::parse(&json)?;
//! println!("{}: {} bytes in {} shards", manifest.name, manifest.total_size, manifest.shards.len());
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Serialize};

pub mod catalog;
#[cfg(feature = "js")]
pub mod codec;
pub mod limits;
pub mod manifest;

pub use catalog::{Catalog, CatalogError, CatalogModel, ModelDefaults, Provenance, CATALOG_VERSION};
pub use manifest::{hex, Manifest, ManifestError, MAX_MANIFEST_BYTES, MAX_MODEL_BYTES, MAX_SHARDS};

/// Version of the message format. Bump it on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 4;

/// A message on the wire: the protocol version and the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The [`PROTOCOL_VERSION`] of the sender.
    pub v: u32,
    /// The message itself.
    pub body: T,
}

impl<T> Envelope<T> {
    /// Wraps `body` with this build's [`PROTOCOL_VERSION`].
    pub fn new(body: T) -> Self {
        Self { v: PROTOCOL_VERSION, body }
    }

    /// Unwraps the body, refusing a message from another protocol version.
    ///
    /// # Errors
    /// [`ProtocolError::VersionMismatch`] when the sender's version is not ours.
    pub fn open(self) -> Result<T, ProtocolError> {
        if self.v == PROTOCOL_VERSION {
            Ok(self.body)
        } else {
            Err(ProtocolError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: self.v })
        }
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelSource {
    /// One GGUF file at a URL (absolute, or relative to the page).
    Url {
        /// The file's URL.
        url: String,
    },
    /// A shard manifest ([`Manifest`]) at a URL; its shards are fetched and
    /// each one's SHA-256 is checked before the model loads.
    Manifest {
        /// The manifest's URL.
        url: String,
    },
    /// A GGUF file the user picked, read in place (nothing is uploaded or
    /// copied). The browser `File` travels beside the envelope, in the
    /// message's `file` property, since it is not serializable.
    File {
        /// The file's name, for display.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
}

impl ModelSource {
    /// The source of a model at `url`: a shard manifest when its path ends
    /// in `.json`, one GGUF file otherwise.
    pub fn for_url(url: &str) -> Self {
        let url = url.to_string();
        if url.split(['?', '#']).next().is_some_and(|path| path.ends_with(".json")) {
            Self::Manifest { url }
        } else {
            Self::Url { url }
        }
    }

    /// The URL of a manifest or GGUF source; `None` for a picked file.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Url { url } | Self::Manifest { url } => Some(url),
            Self::File { .. } => None,
        }
    }

    /// A short description for messages.
    pub fn describe(&self) -> &str {
        match self {
            Self::Url { url } | Self::Manifest { url } => url,
            Self::File { name, .. } => name,
        }
    }
}

/// Parallel connections a download uses unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 4;

fn default_connections() -> usize {
    DEFAULT_CONNECTIONS
}

/// What the model store holds of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreStatus {
    /// Every shard is stored and verified: it loads with no network request.
    Complete,
    /// A download was interrupted; loading resumes it.
    Partial,
    /// It was complete but the browser evicted (some of) its data: loading
    /// downloads it again.
    NeedsDownload,
    /// Its record cannot be read or claims what cannot be (a store written
    /// by an older version from a hostile manifest, a damaged file): it can
    /// only be deleted. [`StoredModel::problem`] says why.
    Damaged,
}

/// A model in the browser's model store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredModel {
    /// The store's key for it.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Where it came from (absolute URL).
    pub source: ModelSource,
    /// Its full size in bytes.
    pub total_size: u64,
    /// Bytes stored (verified or not).
    pub stored_bytes: u64,
    /// Whether it is complete.
    pub status: StoreStatus,
    /// Why a [`StoreStatus::Damaged`] entry is damaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// How to generate a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationSettings {
    /// Softmax temperature; 0 is greedy.
    pub temperature: f64,
    /// Nucleus threshold (1 = off).
    pub top_p: f64,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Repeat penalty (1 = off).
    pub repeat_penalty: f32,
    /// Maximum new tokens.
    pub max_tokens: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self { temperature: 0.7, top_p: 0.9, top_k: 40, repeat_penalty: 1.1, max_tokens: 512, seed: 299_792_458 }
    }
}

/// What the UI asks a worker to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Asks the worker to describe itself; answered by [`Event::Hello`].
    Hello {
        /// Chosen by the UI and echoed back, to pair the answer with the question.
        nonce: u64,
    },
    /// Fetches and loads a model, replacing any loaded one. Answered by
    /// [`Event::Progress`]es, then [`Event::Loaded`] or [`Event::Error`].
    Load {
        /// Where the model is.
        source: ModelSource,
        /// Parallel HTTP connections for the download (at least 1).
        #[serde(default = "default_connections")]
        connections: usize,
        /// Workers to split the model across, each with its own memory
        /// (0: chosen from the model's size and the device's cores).
        #[serde(default)]
        workers: usize,
        /// The most context positions a conversation may use (0: as many
        /// as the model and the workers' memory allow; else within
        /// [`limits::CONTEXT`]).
        #[serde(default)]
        context: usize,
    },
    /// Stops the download in progress: keeps what is stored (pause; loading
    /// the same source again resumes) or, with `discard`, deletes it (cancel).
    /// Answered by [`Event::DownloadStopped`].
    StopDownload {
        /// Delete the partial download too.
        discard: bool,
    },
    /// Lists the model store; answered by [`Event::Models`].
    ListModels,
    /// Deletes a stored model; answered by [`Event::Models`].
    DeleteModel {
        /// [`StoredModel::id`].
        id: String,
    },
    /// Generates the assistant's reply to a conversation (ending with the
    /// user's message). Answered by [`Event::Started`], [`Event::Token`]s, then
    /// [`Event::Done`] or [`Event::Error`].
    Generate {
        /// Chosen by the UI, echoed in the events of this reply.
        turn: u64,
        /// The whole conversation so far; the worker reuses what it has cached.
        messages: Vec<Message>,
        /// Sampling settings.
        settings: GenerationSettings,
    },
    /// Stops the reply in progress after the current token.
    Stop,
    /// Measures how fast the worker's thread reads its wasm memory: allocates
    /// a buffer of `bytes` once (the worker's memory grows by that much and
    /// keeps it), times a few full reads and answers with [`Event::Bandwidth`].
    /// The worker is busy for the measurement (well under a second for
    /// 256 MiB). Only in builds with the `bench` feature (`scripts/bench-browser`).
    #[cfg(feature = "bench")]
    ProbeBandwidth {
        /// The buffer's size in bytes; larger than the caches (e.g. 256 MiB).
        bytes: u64,
    },
}

/// Which phase of loading a [`Event::Progress`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadStage {
    /// Bytes arriving over the network (or already stored, on a resume).
    Download,
    /// Stored bytes being hashed against the manifest (on a resume).
    Verify,
    /// Tensors being read into the engine.
    Load,
}

/// What a loaded model is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    /// `general.name`.
    pub name: String,
    /// `general.architecture`.
    pub architecture: String,
    /// The most common weight type (e.g. `Q4_1`).
    pub quantization: String,
    /// Context length in tokens.
    pub context_length: u64,
    /// Number of weights.
    pub parameter_count: u64,
    /// Size of the model file in bytes.
    pub size_bytes: u64,
    /// The chat format used (`template` or `mistral-v1`).
    pub chat_format: String,
    /// Milliseconds spent bringing the bytes into the model store (0 when
    /// they were all there).
    #[serde(default)]
    pub fetch_ms: f64,
    /// Milliseconds spent reading the model into the engine.
    #[serde(default)]
    pub load_ms: f64,
    /// The worker's memory after loading, in bytes (wasm memory only grows,
    /// so this is its peak so far); 0 when unknown.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The wasm memory of every worker holding a slice of the model, in rank
    /// order (one entry when the model is not split).
    #[serde(default)]
    pub worker_memory_bytes: Vec<u64>,
    /// Which kernel build runs the model: `relaxed-simd`, `simd128` or
    /// `portable` (empty when unknown).
    #[serde(default)]
    pub kernels: String,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model ended its turn.
    Eos,
    /// The token limit was reached.
    MaxTokens,
    /// The user stopped it.
    Cancelled,
    /// The context is full.
    ContextFull,
}

/// Figures of one reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyStats {
    /// Why it ended.
    pub stop: StopReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens actually run (the rest came from the cache).
    pub prefilled_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Prefill speed, tokens per second.
    pub prefill_tok_s: f64,
    /// Decode speed, tokens per second.
    pub decode_tok_s: f64,
    /// Oldest messages left out so the conversation fits the context.
    pub dropped_messages: usize,
    /// Milliseconds of the prefill spent exchanging with the other workers
    /// holding the model (0 when it is not split).
    #[serde(default)]
    pub prefill_exchange_ms: f64,
    /// Milliseconds of the decoding spent exchanging with the other workers.
    #[serde(default)]
    pub decode_exchange_ms: f64,
    /// The coordinating worker's wasm memory after the reply (it only grows,
    /// so this is its peak so far), in bytes; 0 when unknown.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Bytes of weights that worker holds.
    #[serde(default)]
    pub weight_bytes: u64,
    /// Bytes that worker's KV cache takes.
    #[serde(default)]
    pub cache_bytes: u64,
}

/// What a worker tells the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker's wasm has started and it now listens; sent once, unasked.
    /// Messages posted before this one may be lost.
    Ready,
    /// The answer to [`Request::Hello`].
    Hello {
        /// The nonce of the request this answers.
        nonce: u64,
        /// What the worker runs.
        info: WorkerInfo,
    },
    /// Loading advanced.
    Progress {
        /// Download or load.
        stage: LoadStage,
        /// Bytes done.
        done: u64,
        /// Bytes in all, when known.
        total: Option<u64>,
        /// Download speed in bytes per second, over the bytes fetched by this
        /// download (not those a resume found stored).
        #[serde(default)]
        rate: Option<f64>,
        /// Seconds left at that speed.
        #[serde(default)]
        eta_s: Option<f64>,
    },
    /// A download stopped on request ([`Request::StopDownload`]).
    DownloadStopped {
        /// Whether the stored part was deleted.
        discarded: bool,
    },
    /// The model store's contents and the site's storage figures.
    Models {
        /// The stored models.
        models: Vec<StoredModel>,
        /// Bytes this site uses, if the browser says.
        usage: Option<u64>,
        /// Bytes this site may use, if the browser says.
        quota: Option<u64>,
    },
    /// The model is ready to chat.
    Loaded {
        /// What it is.
        model: LoadedModel,
    },
    /// The prompt of a reply has been run; tokens follow.
    Started {
        /// The reply's turn id.
        turn: u64,
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Prompt tokens actually run.
        prefilled_tokens: usize,
        /// Oldest messages left out so the conversation fits the context.
        dropped_messages: usize,
    },
    /// More text of a reply.
    Token {
        /// The reply's turn id.
        turn: u64,
        /// The new text (never a partial character).
        text: String,
    },
    /// A reply ended.
    Done {
        /// The reply's turn id.
        turn: u64,
        /// Its figures.
        stats: ReplyStats,
    },
    /// The answer to `Request::ProbeBandwidth` (feature `bench`).
    #[cfg(feature = "bench")]
    Bandwidth {
        /// The buffer's size in bytes, as asked.
        bytes: u64,
        /// The best read rate in GB/s (10⁹ bytes per second); 0 when the
        /// buffer could not be allocated.
        gb_per_s: f64,
    },
    /// Something went wrong; the worker stays usable unless `kind` is `panic`.
    Error {
        /// What kind of failure, for the UI to choose its wording and recovery.
        kind: ErrorKind,
        /// A human-readable explanation.
        message: String,
    },
}

/// A description of a worker's build and its engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Version of the `sprig-worker` crate.
    pub worker_version: String,
    /// Version of the `sprig-engine` crate.
    pub engine_version: String,
    /// Whether the engine was compiled with wasm SIMD (`+simd128`).
    pub simd128: bool,
    /// Which kernel build runs: `relaxed-simd`, `simd128` or `portable`.
    #[serde(default)]
    pub kernels: String,
    /// The result of a small matrix product the engine ran on start, proving the
    /// tensor backend works in this worker.
    pub self_test: String,
}

/// The kinds of failure a worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A message could not be decoded, or came from another protocol version.
    BadMessage,
    /// The model could not be downloaded (HTTP error, network failure).
    Network,
    /// The downloaded file is not a usable model.
    BadModel,
    /// A request needs a loaded model and there is none.
    NotLoaded,
    /// A request came while the worker was busy with another.
    Busy,
    /// The engine failed while generating.
    Engine,
    /// The worker panicked; it must be restarted.
    Panic,
    /// The browser's storage cannot hold the model, or refused a write.
    Storage,
}

/// Errors of decoding or checking a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The sender speaks another version of the protocol.
    #[error("protocol version mismatch: ours is {ours}, the message's is {theirs}")]
    VersionMismatch {
        /// Our [`PROTOCOL_VERSION`].
        ours: u32,
        /// The version in the message.
        theirs: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_ending_in_json_is_a_manifest() {
        assert_eq!(
            ModelSource::for_url("https://s.example/m.json?v=2#x"),
            ModelSource::Manifest { url: "https://s.example/m.json?v=2#x".into() }
        );
        assert_eq!(ModelSource::for_url("https://s.example/m.gguf"), ModelSource::Url { url: "https://s.example/m.gguf".into() });
        assert_eq!(
            ModelSource::for_url("https://s.example/m.gguf?as=.json"),
            ModelSource::Url { url: "https://s.example/m.gguf?as=.json".into() }
        );
        assert_eq!(ModelSource::for_url("m.json").url(), Some("m.json"));
        assert_eq!(ModelSource::File { name: "a.gguf".into(), size: 1 }.url(), None);
    }

    #[test]
    fn request_round_trips_through_json() {
        let req = Envelope::new(Request::Hello { nonce: 42 });
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, format!(r#"{{"v":{PROTOCOL_VERSION},"body":{{"type":"hello","nonce":42}}}}"#));
        let back: Envelope<Request> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.open().unwrap(), Request::Hello { nonce: 42 });
    }

    #[test]
    fn generate_round_trips_with_defaults_filled_in() {
        let json =
            r#"{"v":4,"body":{"type":"generate","turn":3,"messages":[{"role":"user","content":"hi"}],"settings":{"temperature":0}}}"#;
        let req: Envelope<Request> = serde_json::from_str(json).unwrap();
        match req.open().unwrap() {
            Request::Generate { turn: 3, messages, settings } => {
                assert_eq!(messages, vec![Message { role: Role::User, content: "hi".into() }]);
                assert_eq!(settings.temperature, 0.0);
                assert_eq!(settings.max_tokens, GenerationSettings::default().max_tokens);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn event_round_trips_through_json() {
        let ev = Envelope::new(Event::Done {
            turn: 1,
            stats: ReplyStats {
                stop: StopReason::Cancelled,
                prompt_tokens: 10,
                prefilled_tokens: 4,
                generated_tokens: 2,
                prefill_tok_s: 1.5,
                decode_tok_s: 2.5,
                dropped_messages: 0,
                prefill_exchange_ms: 0.5,
                decode_exchange_ms: 0.25,
                memory_bytes: 3 << 30,
                weight_bytes: 2 << 30,
                cache_bytes: 1 << 29,
            },
        });
        let json = serde_json::to_string(&ev).unwrap();
        let back: Envelope<Event> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }

    #[cfg(feature = "bench")]
    #[test]
    fn bandwidth_probe_round_trips_through_json() {
        let json = format!(r#"{{"v":{PROTOCOL_VERSION},"body":{{"type":"probe_bandwidth","bytes":268435456}}}}"#);
        let req: Envelope<Request> = serde_json::from_str(&json).unwrap();
        assert_eq!(req.clone().open().unwrap(), Request::ProbeBandwidth { bytes: 256 << 20 });
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
        let ev = Envelope::new(Event::Bandwidth { bytes: 256 << 20, gb_per_s: 7.25 });
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(json, format!(r#"{{"v":{PROTOCOL_VERSION},"body":{{"type":"bandwidth","bytes":268435456,"gb_per_s":7.25}}}}"#));
        assert_eq!(serde_json::from_str::<Envelope<Event>>(&json).unwrap(), ev);
    }

    #[test]
    fn load_defaults_to_four_connections() {
        let json = r#"{"v":4,"body":{"type":"load","source":{"type":"manifest","url":"m.json"}}}"#;
        let req: Envelope<Request> = serde_json::from_str(json).unwrap();
        assert_eq!(
            req.open().unwrap(),
            Request::Load {
                source: ModelSource::Manifest { url: "m.json".into() },
                connections: DEFAULT_CONNECTIONS,
                workers: 0,
                context: 0
            }
        );
    }

    #[test]
    fn other_version_is_refused() {
        let env = Envelope { v: PROTOCOL_VERSION + 1, body: Request::Stop };
        let err = env.open().unwrap_err();
        assert!(err.to_string().contains("version mismatch"), "{err}");
    }

    #[test]
    fn unknown_message_type_is_an_error_not_a_panic() {
        let r: Result<Envelope<Request>, _> = serde_json::from_str(r#"{"v":4,"body":{"type":"format_disk"}}"#);
        assert!(r.is_err());
    }
}

//! The messages between the workers of a split model (see [`crate::team`]),
//! typed, with a strict decoder: a message with an unknown `kind`, or
//! missing a field or holding one of the wrong type, is an error, never a
//! default. They travel as plain objects `{kind, ...fields}` because some
//! fields are JS objects that are transferred, not serialized (message ports,
//! picked files, the buffers of partial sums).

use js_sys::{Array, Float32Array, Object, Reflect, Uint32Array};
use sprig_protocol::ModelSource;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{File, MessagePort};

/// A message between two workers of a team.
#[derive(Debug)]
pub enum PeerMessage {
    /// Rank 0 → a worker it started: what to load and how to reach the others.
    Init {
        /// This worker's rank (1 and up).
        rank: usize,
        /// Workers in the team.
        count: usize,
        /// The model (a stored one, or the picked `files`).
        source: ModelSource,
        /// The picked file(s) of a local model (empty otherwise).
        files: Vec<File>,
        /// By rank, this worker's end of its channel to each other worker
        /// (`None` at its own rank).
        ports: Vec<Option<MessagePort>>,
    },
    /// A worker → rank 0: its slice is loaded.
    Loaded {
        /// Its wasm memory after loading.
        memory: u64,
        /// How many positions its KV cache can reach.
        positions: u64,
    },
    /// Rank 0 → the others: run a forward pass of `tokens` from `pos`.
    Run {
        /// First position.
        pos: usize,
        /// Token ids.
        tokens: Vec<u32>,
    },
    /// A worker's block of partial sums at an exchange point.
    Block {
        /// The values (its buffer is transferred).
        data: Float32Array,
    },
    /// A worker failed; the team stops.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// A message that is not a [`PeerMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerMessageError {
    /// No `kind`, or one this version does not know.
    #[error("a message of unknown kind {0:?}")]
    Kind(String),
    /// A field is missing or of the wrong type.
    #[error("a {kind} message without a valid {field}")]
    Field {
        /// The message's kind.
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
}

fn get(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// A non-negative whole number of at most 2^53 in field `field`.
fn count(v: &JsValue, kind: &'static str, field: &'static str) -> Result<u64, PeerMessageError> {
    let bad = PeerMessageError::Field { kind, field };
    let n = get(v, field).as_f64().ok_or(bad.clone())?;
    if n < 0.0 || n.fract() != 0.0 || n > 9_007_199_254_740_992.0 {
        return Err(bad);
    }
    Ok(n as u64)
}

fn index(v: &JsValue, kind: &'static str, field: &'static str) -> Result<usize, PeerMessageError> {
    usize::try_from(count(v, kind, field)?).map_err(|_| PeerMessageError::Field { kind, field })
}

impl PeerMessage {
    /// Whether `v` is a team's `init` message (what a worker started to hold a
    /// slice receives first, instead of a UI request).
    pub fn is_init(v: &JsValue) -> bool {
        get(v, "kind").as_string().as_deref() == Some("init")
    }

    /// Decodes a message, strictly.
    ///
    /// # Errors
    /// [`PeerMessageError`] naming the kind or the field.
    pub fn decode(v: &JsValue) -> Result<Self, PeerMessageError> {
        let kind = get(v, "kind").as_string().unwrap_or_default();
        let field = |kind, field| PeerMessageError::Field { kind, field };
        Ok(match kind.as_str() {
            "init" => {
                let k = "init";
                let source = get(v, "source").as_string().ok_or(field(k, "source"))?;
                let source = serde_json::from_str(&source).map_err(|_| field(k, "source"))?;
                let files = get(v, "files").dyn_into::<Array>().map_err(|_| field(k, "files"))?;
                let files = files.iter().map(|f| f.dyn_into::<File>()).collect::<Result<_, _>>().map_err(|_| field(k, "files"))?;
                let ports = get(v, "ports").dyn_into::<Array>().map_err(|_| field(k, "ports"))?;
                let ports = ports
                    .iter()
                    .map(|p| if p.is_null() { Ok(None) } else { p.dyn_into::<MessagePort>().map(Some) })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| field(k, "ports"))?;
                Self::Init { rank: index(v, k, "rank")?, count: index(v, k, "count")?, source, files, ports }
            }
            "loaded" => Self::Loaded { memory: count(v, "loaded", "memory")?, positions: count(v, "loaded", "positions")? },
            "run" => Self::Run {
                pos: index(v, "run", "pos")?,
                tokens: get(v, "tokens").dyn_into::<Uint32Array>().map_err(|_| field("run", "tokens"))?.to_vec(),
            },
            "block" => Self::Block { data: get(v, "data").dyn_into().map_err(|_| field("block", "data"))? },
            "error" => Self::Error { message: get(v, "message").as_string().ok_or(field("error", "message"))? },
            _ => return Err(PeerMessageError::Kind(kind)),
        })
    }

    /// The message as a JS object, and what to transfer with it.
    pub fn encode(&self) -> (JsValue, Array) {
        let o = Object::new();
        let set = |k: &str, v: &JsValue| {
            let _ = Reflect::set(&o, &k.into(), v);
        };
        let transfer = Array::new();
        match self {
            Self::Init { rank, count, source, files, ports } => {
                set("kind", &"init".into());
                set("rank", &(*rank as f64).into());
                set("count", &(*count as f64).into());
                set("source", &serde_json::to_string(source).unwrap_or_default().into());
                set("files", &files.iter().collect::<Array>());
                let list: Array = ports.iter().map(|p| p.as_ref().map_or(JsValue::NULL, JsValue::from)).collect();
                set("ports", &list);
                ports.iter().flatten().for_each(|p| {
                    transfer.push(p);
                });
            }
            Self::Loaded { memory, positions } => {
                set("kind", &"loaded".into());
                set("memory", &(*memory as f64).into());
                set("positions", &(*positions as f64).into());
            }
            Self::Run { pos, tokens } => {
                set("kind", &"run".into());
                set("pos", &(*pos as f64).into());
                set("tokens", &Uint32Array::from(tokens.as_slice()));
            }
            Self::Block { data } => {
                set("kind", &"block".into());
                set("data", data);
                transfer.push(&data.buffer());
            }
            Self::Error { message } => {
                set("kind", &"error".into());
                set("message", &message.as_str().into());
            }
        }
        (o.into(), transfer)
    }
}

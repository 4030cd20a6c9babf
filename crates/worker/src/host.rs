//! The worker's state and its answers to requests, free of any browser API.

use std::io::{Read, Seek};

use sprig_engine::chat::{ChatMessage, Role as EngineRole};
use sprig_engine::gguf::GgufFile;
use sprig_engine::model::{run_to_completion, Alone, Collective, Partition};
use sprig_engine::{SamplingParams, Session, Step};
use sprig_protocol::{ErrorKind, Event, GenerationSettings, LoadStage, LoadedModel, Message, ReplyStats, Role, StopReason, WorkerInfo};

use crate::failure::{self, Failure};

/// Describes this worker, running the engine's self-test on the way.
///
/// # Errors
/// The engine's self-test failure, as text.
pub fn worker_info() -> Result<WorkerInfo, String> {
    let self_test = sprig_engine::self_test::matmul_2x2().map_err(|e| format!("engine self-test failed: {e}"))?;
    Ok(WorkerInfo {
        worker_version: env!("CARGO_PKG_VERSION").to_string(),
        engine_version: sprig_engine::VERSION.to_string(),
        simd128: sprig_engine::SIMD128,
        kernels: sprig_engine::kernels::BUILD.to_string(),
        self_test,
    })
}

/// Why the host cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// A reply is running.
    #[error("a reply is already being generated; stop it first")]
    Busy,
    /// No model is loaded.
    #[error("no model is loaded")]
    NotLoaded,
    /// The bytes are not a GGUF model the reader takes.
    #[error("not a usable GGUF model: {0}")]
    NotGguf(String),
    /// The GGUF's metadata does not describe a model.
    #[error("{0}")]
    BadModel(String),
    /// The model's tensors could not be loaded.
    #[error("cannot load the model: {0}")]
    Load(String),
    /// The KV cache for [`RESERVED_CONTEXT`] positions does not fit.
    #[error("cannot load the model: {0}; more model workers (Settings) would each hold less")]
    Cache(String),
    /// The engine failed while running the model.
    #[error("{0}")]
    Engine(String),
}

impl Failure for HostError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Busy => ErrorKind::Busy,
            Self::NotLoaded => ErrorKind::NotLoaded,
            Self::NotGguf(_) | Self::BadModel(_) | Self::Load(_) | Self::Cache(_) => ErrorKind::BadModel,
            Self::Engine(_) => ErrorKind::Engine,
        }
    }
}

fn engine_error(e: impl std::fmt::Display) -> Event {
    failure::event(&HostError::Engine(e.to_string()))
}

/// The reply in progress.
#[derive(Debug)]
struct Reply {
    turn: u64,
    dropped: usize,
}

/// Positions of the KV cache allocated when a model loads (at most its
/// context): a conversation up to this long allocates no more memory, and a
/// model whose cache would not fit fails at load, not mid-reply.
pub const RESERVED_CONTEXT: usize = 4096;

/// The most memory a wasm32 instance can have.
pub const WASM_MEMORY_BYTES: u64 = 4 << 30;

/// Memory kept free beside the KV cache: a prompt chunk's activations and
/// the kernels' scratch, which grow during the first long prompt.
pub const MEMORY_MARGIN: u64 = 256 << 20;

/// How many positions this worker's KV cache can reach: the `reserved` ones
/// (holding `cache_bytes`) plus as many more as the memory left after
/// `memory_bytes` and [`MEMORY_MARGIN`] holds, at the same bytes per position.
pub fn usable_positions(reserved: usize, cache_bytes: u64, memory_bytes: u64) -> usize {
    if reserved == 0 || cache_bytes == 0 {
        return usize::MAX; // no cache here: no limit from this worker
    }
    let per_position = cache_bytes.div_ceil(reserved as u64);
    let free = WASM_MEMORY_BYTES.saturating_sub(memory_bytes).saturating_sub(MEMORY_MARGIN);
    reserved.saturating_add(usize::try_from(free / per_position).unwrap_or(usize::MAX))
}

/// This worker's wasm memory in bytes (what [`usable_positions`] counts
/// from): it only grows, so it is the most this instance has ever used.
#[cfg(target_arch = "wasm32")]
pub fn memory_bytes() -> u64 {
    use wasm_bindgen::JsCast;
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| m.buffer().dyn_into::<js_sys::ArrayBuffer>().ok())
        .map_or(0, |b| u64::from(b.byte_length()))
}

/// The loaded model's session (if any) and the reply in progress (if any).
/// What the model is ([`LoadedModel`]) is told once, by the load, and not
/// kept here.
#[derive(Debug, Default)]
pub struct Host {
    session: Option<Session>,
    reply: Option<Reply>,
    /// A stop requested while the session was lent out.
    cancel_pending: bool,
}

fn role(r: Role) -> EngineRole {
    match r {
        Role::System => EngineRole::System,
        Role::User => EngineRole::User,
        Role::Assistant => EngineRole::Assistant,
    }
}

fn stop(r: sprig_engine::StopReason) -> StopReason {
    match r {
        sprig_engine::StopReason::Eos => StopReason::Eos,
        sprig_engine::StopReason::MaxTokens => StopReason::MaxTokens,
        sprig_engine::StopReason::Cancelled => StopReason::Cancelled,
        sprig_engine::StopReason::ContextFull => StopReason::ContextFull,
    }
}

impl Host {
    /// A host with no model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the model (and any reply in progress).
    pub fn unload(&mut self) {
        self.session = None;
        self.reply = None;
    }

    /// Takes the loaded session out (to run it across an `await`); put it
    /// back with [`Host::restore_session`].
    pub fn take_session(&mut self) -> Option<Session> {
        self.session.take()
    }

    /// Puts back a session taken with [`Host::take_session`].
    pub fn restore_session(&mut self, session: Session) {
        self.session = Some(session);
    }

    /// Whether a reply is in progress.
    pub fn generating(&self) -> bool {
        self.reply.is_some()
    }

    /// Loads a model from GGUF byte sources (one file, or the shards of a
    /// gguf-split model) of `size` bytes in all, replacing the current one;
    /// `post` receives load progress. Returns what is loaded.
    ///
    /// # Errors
    /// [`HostError`]: not a GGUF model, or one that cannot load here.
    pub fn load<R: Read + Seek>(
        &mut self,
        readers: Vec<R>,
        size: u64,
        partition: Partition,
        post: &mut dyn FnMut(Event),
    ) -> Result<LoadedModel, HostError> {
        self.load_file(open(readers)?, size, partition, post)
    }

    /// As [`Host::load`], from a file already [`open`]ed.
    ///
    /// # Errors
    /// As [`Host::load`].
    pub fn load_file<R: Read + Seek>(
        &mut self,
        mut file: GgufFile<R>,
        size: u64,
        partition: Partition,
        post: &mut dyn FnMut(Event),
    ) -> Result<LoadedModel, HostError> {
        self.session = None;
        self.reply = None;
        let started = web_time::Instant::now();
        let info = file.info().map_err(|e| HostError::BadModel(e.to_string()))?;
        let mut last = 0u64;
        let mut on_progress = |p: sprig_engine::model::LoadProgress| {
            // About a hundred progress events per load, not one per tensor.
            if p.bytes_done == p.bytes_total || p.bytes_done - last >= p.bytes_total / 100 {
                last = p.bytes_done;
                post(Event::Progress { stage: LoadStage::Load, done: p.bytes_done, total: Some(p.bytes_total), rate: None, eta_s: None });
            }
        };
        let mut session = Session::load_partition(&mut file, partition, &mut on_progress).map_err(|e| HostError::Load(e.to_string()))?;
        session.reserve_context(RESERVED_CONTEXT).map_err(|e| HostError::Cache(e.to_string()))?;
        let quantization = info
            .tensor_types
            .iter()
            .filter(|(t, _)| *t != "F32")
            .max_by_key(|(_, n)| **n)
            .map_or_else(|| "F32".to_string(), |(t, _)| t.clone());
        let model = LoadedModel {
            name: info.name.clone(),
            architecture: info.architecture.clone(),
            quantization,
            context_length: session.model().config().context_length as u64,
            parameter_count: info.parameter_count,
            size_bytes: size,
            chat_format: session.chat_format().name().to_string(),
            fetch_ms: 0.0,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
            memory_bytes: 0,
            worker_memory_bytes: Vec::new(),
            kernels: sprig_engine::kernels::BUILD.to_string(),
        };
        self.session = Some(session);
        Ok(model)
    }

    /// Builds the prompt of a reply (dropping the oldest turns when the
    /// conversation does not fit the context) and marks the reply as in
    /// progress; the caller then runs [`start_reply`] on the session.
    ///
    /// # Errors
    /// [`HostError`]: busy, no model, a prompt that cannot fit.
    pub fn prepare(&mut self, turn: u64, messages: &[Message], settings: &GenerationSettings) -> Result<Prepared, HostError> {
        if self.reply.is_some() {
            return Err(HostError::Busy);
        }
        let Some(session) = self.session.as_ref() else {
            return Err(HostError::NotLoaded);
        };
        let messages: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage::new(role(m.role), m.content.clone())).collect();
        let (prompt, dropped) = session.fit_chat_prompt(&messages, settings.max_tokens).map_err(|e| HostError::Engine(e.to_string()))?;
        let params = SamplingParams {
            temperature: settings.temperature,
            top_k: settings.top_k,
            top_p: settings.top_p,
            repeat_penalty: settings.repeat_penalty,
            seed: settings.seed,
            max_tokens: settings.max_tokens,
            ..SamplingParams::default()
        };
        self.reply = Some(Reply { turn, dropped });
        self.cancel_pending = false;
        Ok(Prepared { turn, prompt, params, dropped })
    }

    /// Fits the usable context to memory: the smallest of this worker's
    /// [`usable_positions`] (at `memory_bytes`) and `others` (the other
    /// workers' of a split model). Returns the context now used.
    pub fn fit_context(&mut self, memory_bytes: u64, others: &[usize]) -> Option<usize> {
        let session = self.session.as_mut()?;
        let reserved = RESERVED_CONTEXT.min(session.model().config().context_length);
        let mine = usable_positions(reserved, session.model().cache_bytes() as u64, memory_bytes);
        session.limit_context(others.iter().copied().fold(mine, usize::min));
        Some(session.context())
    }

    /// Takes the session out while an asynchronous step runs on it (so no
    /// borrow of the host is held across the wait).
    pub fn lend(&mut self) -> Option<(Session, u64, usize)> {
        let reply = self.reply.as_ref()?;
        let (turn, dropped) = (reply.turn, reply.dropped);
        self.session.take().map(|s| (s, turn, dropped))
    }

    /// Puts the session back after a step; `finished` ends the reply. A stop
    /// requested while it was out takes effect now.
    pub fn give_back(&mut self, mut session: Session, finished: bool) {
        if finished {
            self.reply = None;
        } else if std::mem::take(&mut self.cancel_pending) {
            session.cancel();
        }
        self.session = Some(session);
    }

    /// Starts a reply synchronously (a model in one worker): [`Event::Started`]
    /// or an error event.
    pub fn start(&mut self, turn: u64, messages: &[Message], settings: &GenerationSettings) -> Event {
        let prepared = match self.prepare(turn, messages, settings) {
            Ok(p) => p,
            Err(e) => return failure::event(&e),
        };
        let Some((mut session, _, _)) = self.lend() else { return failure::event(&HostError::NotLoaded) };
        let event = run_to_completion(start_reply(&mut session, &prepared, &mut Alone)).unwrap_or_else(engine_error);
        let failed = !matches!(event, Event::Started { .. });
        self.give_back(session, failed);
        event
    }

    /// Stops the reply in progress at its next step.
    pub fn cancel(&mut self) {
        match self.session.as_mut() {
            Some(s) => s.cancel(),
            None => self.cancel_pending = self.reply.is_some(),
        }
    }

    /// Advances the reply in progress by one token synchronously (a model in
    /// one worker); see [`step_reply`]. Empty when no reply is in progress.
    pub fn step(&mut self) -> Vec<Event> {
        let Some((mut session, turn, dropped)) = self.lend() else { return Vec::new() };
        let (events, finished) =
            run_to_completion(step_reply(&mut session, turn, dropped, &mut Alone)).unwrap_or_else(|e| (vec![engine_error(e)], true));
        self.give_back(session, finished);
        events
    }
}

/// Opens the GGUF header of a model's byte sources.
///
/// # Errors
/// [`HostError::NotGguf`].
pub fn open<R: Read + Seek>(readers: Vec<R>) -> Result<GgufFile<R>, HostError> {
    GgufFile::open_split(readers).map_err(|e| HostError::NotGguf(e.to_string()))
}

/// Weights one worker holds at most when Sprig chooses the number of
/// workers: well inside a 4 GiB wasm memory, with room for the cache.
pub const WEIGHTS_PER_WORKER: u64 = 2_500_000_000;

/// Models from this size on are split across the device's cores when Sprig
/// chooses; smaller ones run in one worker, where exchanging activations
/// costs more than the second core saves (`scripts/bench-browser` measures
/// both on the demo model).
pub const SPLIT_FROM: u64 = 1_000_000_000;

/// How many workers hold a model of `size` bytes whose layers split into
/// `parts` ([`sprig_engine::model::split_parts`]) on a device with `cores`
/// cores: the `requested` number, or (0) enough for its size to fit their
/// memories and, for a large model, one per core; never more than `parts`
/// when chosen.
pub fn team_size(requested: usize, size: u64, parts: usize, cores: usize) -> usize {
    if requested > 0 {
        return requested.min(16);
    }
    let needed = size.div_ceil(WEIGHTS_PER_WORKER) as usize;
    let parallel = if size >= SPLIT_FROM { cores } else { 1 };
    needed.max(parallel).clamp(1, parts.clamp(1, 16))
}

/// A reply about to start: its turn, prompt and sampling parameters.
#[derive(Debug, Clone)]
pub struct Prepared {
    turn: u64,
    prompt: Vec<u32>,
    params: SamplingParams,
    dropped: usize,
}

/// Runs the uncached part of the prompt: [`Event::Started`] or an error event.
pub async fn start_reply<C: Collective>(session: &mut Session, p: &Prepared, collective: &mut C) -> Event {
    match session.start_with(&p.prompt, p.params.clone(), collective).await {
        Ok(prefilled) => {
            Event::Started { turn: p.turn, prompt_tokens: p.prompt.len(), prefilled_tokens: prefilled, dropped_messages: p.dropped }
        }
        Err(e) => engine_error(e),
    }
}

/// Advances a reply by one token: [`Event::Token`], or at its end any last
/// text and [`Event::Done`], or an error event. The flag says the reply ended.
pub async fn step_reply<C: Collective>(session: &mut Session, turn: u64, dropped: usize, collective: &mut C) -> (Vec<Event>, bool) {
    match session.next_token_with(collective).await {
        Ok(Step::Token { text, .. }) => (vec![Event::Token { turn, text }], false),
        Ok(Step::Done { stats, tail }) => {
            let mut events = Vec::new();
            if !tail.is_empty() {
                events.push(Event::Token { turn, text: tail });
            }
            events.push(Event::Done {
                turn,
                stats: ReplyStats {
                    stop: stop(stats.stop),
                    prompt_tokens: stats.prompt_tokens,
                    prefilled_tokens: stats.prefilled_tokens,
                    generated_tokens: stats.generated_tokens,
                    prefill_tok_s: stats.prefill_tok_s,
                    decode_tok_s: stats.decode_tok_s,
                    dropped_messages: dropped,
                    prefill_exchange_ms: stats.prefill_exchange_ms,
                    decode_exchange_ms: stats.decode_exchange_ms,
                    memory_bytes: 0,
                    weight_bytes: session.model().weight_bytes() as u64,
                    cache_bytes: session.model().cache_bytes() as u64,
                },
            });
            (events, true)
        }
        Err(e) => (vec![engine_error(e)], true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{BufReader, Cursor};

    fn demo() -> (BufReader<File>, u64) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let f = File::open(path).expect("run scripts/fetch-models");
        let size = f.metadata().unwrap().len();
        (BufReader::new(f), size)
    }

    fn user(text: &str) -> Message {
        Message { role: Role::User, content: text.into() }
    }

    fn greedy(max_tokens: usize) -> GenerationSettings {
        GenerationSettings { temperature: 0.0, max_tokens, ..GenerationSettings::default() }
    }

    #[test]
    fn the_usable_context_is_what_the_memory_left_can_hold() {
        const GIB: u64 = 1 << 30;
        // One of two workers of the 7B mix: 2.57 GiB after load, 0.25 GiB of
        // it the cache for 4,096 positions (64 KiB each).
        let memory = 2.57 * GIB as f64;
        let n = usable_positions(4096, GIB / 4, memory as u64);
        let free = 4.0 * GIB as f64 - memory - (256 << 20) as f64;
        assert_eq!(n, 4096 + (free / 65536.0) as usize);
        assert!((20_000..25_000).contains(&n), "{n}");
        // Memory already past the limit: the reserved positions only.
        assert_eq!(usable_positions(4096, GIB / 4, 5 * GIB), 4096);
        // A worker with no cache sets no limit.
        assert_eq!(usable_positions(4096, 0, GIB), usize::MAX);
        assert_eq!(usable_positions(0, GIB, GIB), usize::MAX);
    }

    #[test]
    fn team_size_follows_the_request_the_size_and_the_cores() {
        // Small models stay in one worker; a 4.4 GB one needs two memories.
        assert_eq!(team_size(0, 100_000_000, 3, 8), 1);
        assert_eq!(team_size(0, 4_370_000_000, 8, 2), 2);
        assert_eq!(team_size(0, 4_370_000_000, 8, 1), 2);
        // Large models use the cores, within the parts the model splits into.
        assert_eq!(team_size(0, 4_370_000_000, 8, 6), 6);
        assert_eq!(team_size(0, 4_370_000_000, 8, 64), 8);
        assert_eq!(team_size(0, 1_500_000_000, 8, 4), 4);
        // What the user asks for, even when it cannot work (the load says why).
        assert_eq!(team_size(3, 100_000_000, 3, 2), 3);
        assert_eq!(team_size(4, 100_000_000, 3, 2), 4);
    }

    #[test]
    fn the_protocols_sampling_defaults_are_the_engines() {
        // The protocol mirrors the engine's parameters on purpose (it has no
        // engine dependency); this keeps the two one definition.
        let (wire, engine) = (GenerationSettings::default(), SamplingParams::default());
        assert_eq!(wire.temperature, engine.temperature);
        assert_eq!(wire.top_p, engine.top_p);
        assert_eq!(wire.top_k, engine.top_k);
        assert_eq!(wire.repeat_penalty, engine.repeat_penalty);
        assert_eq!(wire.max_tokens, engine.max_tokens);
        assert_eq!(wire.seed, engine.seed);
    }

    #[test]
    fn generate_before_load_is_refused() {
        let mut h = Host::new();
        assert!(matches!(h.start(1, &[user("hi")], &greedy(4)), Event::Error { kind: ErrorKind::NotLoaded, .. }));
        assert!(h.step().is_empty());
    }

    #[test]
    fn garbage_is_a_bad_model_and_the_host_stays_usable() {
        let mut h = Host::new();
        let err = h.load(vec![Cursor::new(b"<!doctype html><p>not a model</p>".to_vec())], 34, Partition::WHOLE, &mut |_| {}).unwrap_err();
        assert!(matches!(err, HostError::NotGguf(_)) && err.kind() == ErrorKind::BadModel, "{err:?}");
        match failure::event(&err) {
            Event::Error { kind: ErrorKind::BadModel, message } => assert!(message.contains("GGUF"), "{message}"),
            other => panic!("{other:?}"),
        }
        let (r, size) = demo();
        assert!(h.load(vec![r], size, Partition::WHOLE, &mut |_| {}).is_ok());
    }

    #[test]
    fn a_reply_streams_then_ends_with_stats() {
        let mut h = Host::new();
        let (r, size) = demo();
        let mut progress = Vec::new();
        let model = h.load(vec![r], size, Partition::WHOLE, &mut |e| progress.push(e)).unwrap();
        assert_eq!(model.architecture, "llama");
        assert_eq!(model.quantization, "Q4_1");
        assert_eq!(model.context_length, 8192);
        assert!(progress.len() >= 10, "load progress is reported: {}", progress.len());
        let started = h.start(7, &[user("What is the capital of France?")], &greedy(6));
        let Event::Started { turn: 7, prompt_tokens, prefilled_tokens, dropped_messages: 0 } = started else { panic!("{started:?}") };
        assert_eq!(prompt_tokens, prefilled_tokens);
        assert!(matches!(h.start(8, &[user("again")], &greedy(6)), Event::Error { kind: ErrorKind::Busy, .. }));
        let mut text = String::new();
        let mut done = None;
        for _ in 0..20 {
            for e in h.step() {
                match e {
                    Event::Token { turn: 7, text: t } => text.push_str(&t),
                    Event::Done { turn: 7, stats } => done = Some(stats),
                    other => panic!("{other:?}"),
                }
            }
            if done.is_some() {
                break;
            }
        }
        let stats = done.expect("the reply ends");
        assert_eq!(stats.generated_tokens, 6);
        assert_eq!(stats.stop, StopReason::MaxTokens);
        assert!(!text.is_empty());
        assert!(!h.generating());
    }

    #[test]
    fn cancel_stops_at_the_next_step() {
        let mut h = Host::new();
        let (r, size) = demo();
        h.load(vec![r], size, Partition::WHOLE, &mut |_| {}).unwrap();
        h.start(1, &[user("Tell me a story.")], &greedy(100));
        assert_eq!(h.step().len(), 1);
        h.cancel();
        let events = h.step();
        match events.last() {
            Some(Event::Done { stats, .. }) => {
                assert_eq!(stats.stop, StopReason::Cancelled);
                assert_eq!(stats.generated_tokens, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The step API: load once; per turn, prefill only the tokens that are not
//! already in the KV cache, then produce tokens one by one until a stop.
//!
//! ```text
//! let mut s = Session::load(&mut file)?;
//! let prompt = s.chat_prompt(&messages)?;
//! s.start(&prompt, SamplingParams::default())?;
//! loop {
//!     match s.next_token()? {
//!         Step::Token { text, .. } => print!("{text}"),
//!         Step::Done(stats) => break,
//!     }
//! }
//! ```
//! Cancelling is calling [`Session::cancel`] between two tokens.
//!
//! A session whose model is split across workers runs through the `_with`
//! methods, which meet the other workers through a [`Collective`].

use std::io::{Read, Seek};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::chat::{ChatError, ChatFormat, ChatMessage, Role};
use crate::gguf::{GgufError, GgufFile};
use crate::model::{run_to_completion, Alone, Collective, LoadProgress, Model, ModelError, Partition};
use crate::sample::{Sampler, SamplingParams};
use crate::stream::TextStream;
use crate::tokenizer::{Tokenizer, TokenizerError};

impl From<ModelError> for SessionError {
    fn from(e: ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

/// Errors of a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading the model file failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Loading or running the model failed (boxed: it is large).
    #[error(transparent)]
    Model(Box<ModelError>),
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Building the chat prompt failed.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// Sampling failed.
    #[error("sampling failed: {0}")]
    Sample(#[source] candle_core::Error),
    /// A call out of order (e.g. `next_token` with no turn started).
    #[error("{0}")]
    State(&'static str),
    /// The vocabulary of the tokenizer and the model's embedding disagree.
    #[error("the tokenizer has {tokenizer} tokens but the model's embedding has {model} rows")]
    VocabMismatch {
        /// Tokens in the tokenizer.
        tokenizer: usize,
        /// Rows of the embedding.
        model: usize,
    },
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-sequence or end-of-turn token.
    Eos,
    /// The reply reached the token limit.
    MaxTokens,
    /// The caller cancelled.
    Cancelled,
    /// The context is full.
    ContextFull,
}

/// Figures of one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnStats {
    /// Why the reply ended.
    pub stop: StopReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens actually run (the rest were in the KV cache).
    pub prefilled_tokens: usize,
    /// Tokens generated (the stop token excluded).
    pub generated_tokens: usize,
    /// Prefill time in milliseconds.
    pub prefill_ms: f64,
    /// Decode time in milliseconds (from the end of prefill to the last token).
    pub decode_ms: f64,
    /// Prefilled tokens per second.
    pub prefill_tok_s: f64,
    /// Decoded tokens per second (forward passes after the first token).
    pub decode_tok_s: f64,
    /// Of `prefill_ms`, milliseconds spent exchanging with the other workers
    /// holding the model (0 when it is not split).
    pub prefill_exchange_ms: f64,
    /// Of `decode_ms`, milliseconds spent exchanging with the other workers.
    pub decode_exchange_ms: f64,
}

/// One step of generation.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new token and the text it completes (may be empty while a multi-byte
    /// character is incomplete).
    Token {
        /// The token id.
        id: u32,
        /// Text delta.
        text: String,
    },
    /// The reply is over; a final text delta, if any, is in `tail`.
    Done {
        /// Figures of the turn.
        stats: TurnStats,
        /// Text held back until the end (an incomplete character), usually empty.
        tail: String,
    },
}

struct Turn {
    sampler: Sampler,
    params: SamplingParams,
    stream: TextStream,
    /// The last sampled token, not yet run through the model.
    pending: Option<u32>,
    logits: Option<Tensor>,
    prompt_tokens: usize,
    prefilled: usize,
    prefill_ms: f64,
    prefill_exchange_ms: f64,
    decode_start: Instant,
    /// The model's exchange time when decoding started.
    decode_exchange_start: f64,
    generated: usize,
    cancelled: bool,
}

/// Largest number of tokens run in one forward call during prefill.
pub const PREFILL_CHUNK: usize = 256;

/// A loaded model with its tokenizer, chat format and conversation state.
pub struct Session {
    model: Model,
    tokenizer: Tokenizer,
    chat: ChatFormat,
    /// Ids whose keys and values are in the model's cache, in order.
    cached: Vec<u32>,
    turn: Option<Turn>,
    /// The most positions a conversation may use ([`Session::limit_context`]).
    context_limit: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("cached", &self.cached.len()).field("chat", &self.chat.name()).finish_non_exhaustive()
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1e3 / ms
    } else {
        0.0
    }
}

impl Session {
    /// Loads the model, tokenizer and chat format of a GGUF file.
    ///
    /// # Errors
    /// [`SessionError`] naming what is wrong with the file.
    pub fn load<R: Read + Seek>(file: &mut GgufFile<R>) -> Result<Self, SessionError> {
        Self::load_partition(file, Partition::WHOLE, &mut |_| {})
    }

    /// As [`Session::load`], reporting progress after each tensor.
    ///
    /// # Errors
    /// As [`Session::load`].
    pub fn load_with_progress<R: Read + Seek>(
        file: &mut GgufFile<R>,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Self, SessionError> {
        Self::load_partition(file, Partition::WHOLE, on_progress)
    }

    /// As [`Session::load_with_progress`], holding only `partition`'s slice of
    /// the model (the coordinating worker of a split model is rank 0).
    ///
    /// # Errors
    /// As [`Session::load`].
    pub fn load_partition<R: Read + Seek>(
        file: &mut GgufFile<R>,
        partition: Partition,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Self, SessionError> {
        let tokenizer = Tokenizer::from_gguf(&file.metadata())?;
        let template = file.metadata().opt_string("tokenizer.chat_template")?.map(str::to_owned);
        let chat = ChatFormat::detect(template.as_deref(), &tokenizer);
        let model = Model::load_partition(file, partition, on_progress)?;
        if model.vocab() < tokenizer.vocab_size() {
            return Err(SessionError::VocabMismatch { tokenizer: tokenizer.vocab_size(), model: model.vocab() });
        }
        Ok(Self { model, tokenizer, chat, cached: Vec::new(), turn: None, context_limit: usize::MAX })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The chat format in use.
    pub fn chat_format(&self) -> &ChatFormat {
        &self.chat
    }

    /// The ids whose keys and values are cached.
    pub fn cached(&self) -> &[u32] {
        &self.cached
    }

    /// Forgets the conversation (empties the KV cache).
    pub fn reset(&mut self) {
        self.model.truncate_cache(0);
        self.cached.clear();
        self.turn = None;
    }

    /// The prompt ids of a conversation, ending with the assistant's cue.
    ///
    /// # Errors
    /// [`SessionError::Chat`].
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, SessionError> {
        Ok(self.chat.encode(&self.tokenizer, messages, true)?)
    }

    /// The prompt ids of a conversation that fits the context with room for
    /// `reply_tokens` new tokens (at most half the context is reserved). When it
    /// does not fit, the oldest messages after the system prompt are left out,
    /// a user message together with the replies after it, until it does.
    /// Returns the ids and how many messages were left out.
    ///
    /// # Errors
    /// [`SessionError::Chat`]; [`SessionError::Model`] with
    /// [`ModelError::ContextFull`] when even the last message alone is too long.
    pub fn fit_chat_prompt(&self, messages: &[ChatMessage], reply_tokens: usize) -> Result<(Vec<u32>, usize), SessionError> {
        let context = self.context();
        let room = reply_tokens.clamp(1, (context / 2).max(1));
        let budget = context.saturating_sub(room);
        let system: Vec<ChatMessage> = messages.iter().filter(|m| m.role == Role::System).cloned().collect();
        let rest: Vec<ChatMessage> = messages.iter().filter(|m| m.role != Role::System).cloned().collect();
        let mut start = 0;
        loop {
            let mut kept = system.clone();
            kept.extend_from_slice(&rest[start..]);
            let ids = self.chat_prompt(&kept)?;
            if ids.len() <= budget {
                return Ok((ids, start));
            }
            if start + 1 >= rest.len() {
                return Err(ModelError::ContextFull { needed: ids.len() + room, max: context }.into());
            }
            start += 1;
            while start + 1 < rest.len() && rest[start].role != Role::User {
                start += 1;
            }
        }
    }

    /// Starts a turn: runs the part of `prompt` that is not already cached.
    /// Returns how many tokens were run.
    ///
    /// # Errors
    /// [`SessionError::Model`] (context full, compute error); an empty prompt
    /// is a [`SessionError::State`].
    pub fn start(&mut self, prompt: &[u32], params: SamplingParams) -> Result<usize, SessionError> {
        run_to_completion(self.start_with(prompt, params, &mut Alone)).map_err(ModelError::from)?
    }

    /// As [`Session::start`], for a model split across workers.
    ///
    /// # Errors
    /// As [`Session::start`].
    pub async fn start_with<C: Collective>(
        &mut self,
        prompt: &[u32],
        params: SamplingParams,
        collective: &mut C,
    ) -> Result<usize, SessionError> {
        if prompt.is_empty() {
            return Err(SessionError::State("the prompt is empty"));
        }
        self.turn = None;
        let started = Instant::now();
        let exchanged = self.model.exchange_ms();
        let common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // The last prompt token always runs: its logits pick the first reply token.
        let keep = common.min(prompt.len() - 1);
        self.model.truncate_cache(keep);
        self.cached.truncate(keep);
        let mut logits = None;
        for chunk in prompt[keep..].chunks(PREFILL_CHUNK) {
            let out = self.model.forward_with(chunk, collective).await?;
            logits = Some(Tensor::from_slice(out, out.len(), &Device::Cpu).map_err(SessionError::Sample)?);
            self.cached.extend_from_slice(chunk);
        }
        let prefilled = prompt.len() - keep;
        self.turn = Some(Turn {
            sampler: Sampler::new(&params),
            params,
            stream: TextStream::new(),
            pending: None,
            logits,
            prompt_tokens: prompt.len(),
            prefilled,
            prefill_ms: ms(started),
            prefill_exchange_ms: self.model.exchange_ms() - exchanged,
            decode_start: Instant::now(),
            decode_exchange_start: self.model.exchange_ms(),
            generated: 0,
            cancelled: false,
        });
        Ok(prefilled)
    }

    /// Runs the model's kernels once before the first question, then forgets
    /// what it ran: a prompt of two tokens and one more token, repeated
    /// (at most four times) until about 250 ms have passed. A browser
    /// compiles wasm in two tiers, a quick baseline first and optimized code
    /// for the functions that have run a while, so without this the first
    /// reply after a load would run partly on baseline code. Every worker
    /// holding a split model takes part through `collective`. The chat
    /// template and the tokenizer run once too (a tokenizer compiles its
    /// pre-tokenizing expressions on first use).
    ///
    /// # Errors
    /// [`SessionError::Model`] when a forward pass fails.
    pub async fn warm_up_with<C: Collective>(&mut self, collective: &mut C) -> Result<(), SessionError> {
        self.turn = None;
        // A failing template fails the first question the same way: not here.
        let _ = self.chat_prompt(&[ChatMessage::new(Role::User, "Hello, how are you?".to_string())]);
        if self.model.config().context_length < 3 {
            return Ok(());
        }
        let id = self.tokenizer.bos().unwrap_or(0);
        let started = Instant::now();
        for round in 0..4 {
            if round > 0 && ms(started) >= 250.0 {
                break;
            }
            self.model.truncate_cache(0);
            self.model.forward_with(&[id, id], collective).await?;
            self.model.forward_with(&[id], collective).await?;
        }
        self.model.truncate_cache(0);
        self.cached.clear();
        Ok(())
    }

    /// Allocates the model's KV cache for `positions` positions (see
    /// [`Model::reserve_cache`]).
    ///
    /// # Errors
    /// [`SessionError::Model`] when the memory cannot hold it.
    pub fn reserve_context(&mut self, positions: usize) -> Result<(), SessionError> {
        Ok(self.model.reserve_cache(positions)?)
    }

    /// Caps the positions a conversation may use below the model's context
    /// (what the memory left can hold): prompts are fitted to it, dropping
    /// the oldest turns, and a reply stops when it is full.
    pub fn limit_context(&mut self, positions: usize) {
        self.context_limit = positions.max(1);
    }

    /// The positions a conversation may use: the model's context, or less
    /// after [`Session::limit_context`].
    pub fn context(&self) -> usize {
        self.model.config().context_length.min(self.context_limit)
    }

    /// Where the model's forward passes spent their time since the last call.
    pub fn take_profile(&mut self) -> crate::model::Profile {
        self.model.take_profile()
    }

    /// Ends the current turn at the next [`Session::next_token`] call.
    pub fn cancel(&mut self) {
        if let Some(t) = self.turn.as_mut() {
            t.cancelled = true;
        }
    }

    /// Produces the next token of the current turn, or the end of the turn.
    ///
    /// # Errors
    /// [`SessionError::State`] without a started turn; model or sampling errors.
    pub fn next_token(&mut self) -> Result<Step, SessionError> {
        run_to_completion(self.next_token_with(&mut Alone)).map_err(ModelError::from)?
    }

    /// As [`Session::next_token`], for a model split across workers.
    ///
    /// # Errors
    /// As [`Session::next_token`].
    pub async fn next_token_with<C: Collective>(&mut self, collective: &mut C) -> Result<Step, SessionError> {
        let Some(turn) = self.turn.as_mut() else {
            return Err(SessionError::State("no turn in progress: call start first"));
        };
        let stop = if turn.cancelled {
            Some(StopReason::Cancelled)
        } else if turn.generated >= turn.params.max_tokens {
            Some(StopReason::MaxTokens)
        } else {
            None
        };
        if let Some(stop) = stop {
            return self.finish(stop);
        }
        if let Some(id) = turn.pending.take() {
            if self.cached.len() + 1 > self.context() {
                return self.finish(StopReason::ContextFull);
            }
            let out = self.model.forward_with(&[id], collective).await?;
            let logits = Tensor::from_slice(out, out.len(), &Device::Cpu).map_err(SessionError::Sample)?;
            self.cached.push(id);
            if let Some(t) = self.turn.as_mut() {
                t.logits = Some(logits);
            }
        }
        let Some(turn) = self.turn.as_mut() else { return Err(SessionError::State("no turn in progress")) };
        let Some(logits) = turn.logits.take() else { return Err(SessionError::State("no logits to sample from")) };
        let id = turn.sampler.sample(&logits, &self.cached).map_err(SessionError::Sample)?;
        if self.tokenizer.stop_ids().contains(&id) {
            return self.finish(StopReason::Eos);
        }
        turn.generated += 1;
        turn.pending = Some(id);
        let text = turn.stream.push(&self.tokenizer, id)?;
        Ok(Step::Token { id, text })
    }

    fn finish(&mut self, stop: StopReason) -> Result<Step, SessionError> {
        let Some(mut turn) = self.turn.take() else { return Err(SessionError::State("no turn in progress")) };
        let tail = turn.stream.finish(&self.tokenizer)?;
        let decode_ms = ms(turn.decode_start);
        let stats = TurnStats {
            stop,
            prompt_tokens: turn.prompt_tokens,
            prefilled_tokens: turn.prefilled,
            generated_tokens: turn.generated,
            prefill_ms: turn.prefill_ms,
            decode_ms,
            prefill_tok_s: rate(turn.prefilled, turn.prefill_ms),
            decode_tok_s: rate(turn.generated.saturating_sub(1), decode_ms),
            prefill_exchange_ms: turn.prefill_exchange_ms,
            decode_exchange_ms: self.model.exchange_ms() - turn.decode_exchange_start,
        };
        Ok(Step::Done { stats, tail })
    }

    /// Runs a whole turn, calling `on_text` with each text delta; returns the
    /// generated ids and the figures.
    ///
    /// # Errors
    /// As [`Session::start`] and [`Session::next_token`].
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: SamplingParams,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(Vec<u32>, TurnStats), SessionError> {
        self.start(prompt, params)?;
        let mut ids = Vec::new();
        loop {
            match self.next_token()? {
                Step::Token { id, text } => {
                    ids.push(id);
                    on_text(&text);
                }
                Step::Done { stats, tail } => {
                    on_text(&tail);
                    return Ok((ids, stats));
                }
            }
        }
    }
}

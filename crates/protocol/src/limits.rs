//! The ranges the app accepts for each setting: the Settings panel bounds
//! its fields with them, the widget checks its query against them, the
//! worker clamps what it is asked, and a catalog's model defaults
//! ([`crate::catalog`]) must lie inside them. One place, so the four never
//! disagree.

use std::ops::RangeInclusive;

/// Sampling temperature (0 is greedy).
pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=2.0;

/// Nucleus threshold (1 = off).
pub const TOP_P: RangeInclusive<f64> = 0.0..=1.0;

/// Keep the k most likely tokens (0 = off).
pub const TOP_K: RangeInclusive<usize> = 0..=1000;

/// Repeat penalty (1 = off).
pub const REPEAT_PENALTY: RangeInclusive<f64> = 1.0..=2.0;

/// The longest reply, in new tokens.
pub const MAX_TOKENS: RangeInclusive<usize> = 1..=4096;

/// Parallel connections of a model download.
pub const CONNECTIONS: RangeInclusive<usize> = 1..=16;

/// Workers a model is split across (0: chosen from its size and the cores).
pub const WORKERS: RangeInclusive<usize> = 0..=16;

/// The most context positions a conversation may use, when set (0 means:
/// as many as the model and the workers' memory allow). The upper end is
/// the engine's most positions per session.
pub const CONTEXT: RangeInclusive<usize> = 256..=131_072;

/// The longest system prompt, in bytes.
pub const MAX_SYSTEM_PROMPT_BYTES: usize = 16 * 1024;

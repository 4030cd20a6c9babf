//! Choosing the next token from logits: temperature (0 = greedy), top-k,
//! top-p, a repeat penalty over a window of recent tokens, and a seed.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f64,
    /// Divide the logits of recently seen tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random choice.
    pub seed: u64,
    /// Stop after this many new tokens.
    pub max_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.7, top_k: 40, top_p: 0.9, repeat_penalty: 1.1, repeat_last_n: 64, seed: 299_792_458, max_tokens: 512 }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalty: the same prompt always gives the same tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, max_tokens, ..Self::default() }
    }
}

/// A stateful token picker built from [`SamplingParams`].
pub struct Sampler {
    processor: LogitsProcessor,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").field("repeat_penalty", &self.repeat_penalty).finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler for `params`; out-of-range values are clamped to sensible ones.
    pub fn new(params: &SamplingParams) -> Self {
        let t = if params.temperature.is_finite() { params.temperature.max(0.0) } else { 0.0 };
        let p = if params.top_p.is_finite() { params.top_p.clamp(0.0, 1.0) } else { 1.0 };
        let sampling = if t < 1e-7 {
            Sampling::ArgMax
        } else {
            match (params.top_k, p < 1.0) {
                (0, false) => Sampling::All { temperature: t },
                (k, false) => Sampling::TopK { k, temperature: t },
                (0, true) => Sampling::TopP { p, temperature: t },
                (k, true) => Sampling::TopKThenTopP { k, p, temperature: t },
            }
        };
        let penalty = if params.repeat_penalty.is_finite() && params.repeat_penalty > 0.0 { params.repeat_penalty } else { 1.0 };
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            repeat_penalty: penalty,
            repeat_last_n: params.repeat_last_n,
        }
    }

    /// Picks a token from `logits` (`[vocab]`), penalising those in the last
    /// `repeat_last_n` of `history`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> candle_core::Result<u32> {
        let logits = if (self.repeat_penalty - 1.0).abs() > f32::EPSILON && self.repeat_last_n > 0 {
            let start = history.len().saturating_sub(self.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(logits, self.repeat_penalty, &history[start..])?
        } else {
            logits.clone()
        };
        self.processor.sample(&logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn greedy_takes_the_maximum_and_penalty_moves_it() {
        let logits = Tensor::new(&[1.0f32, 3.0, 2.9], &Device::Cpu).unwrap();
        let mut s = Sampler::new(&SamplingParams::greedy(1));
        assert_eq!(s.sample(&logits, &[]).unwrap(), 1);
        let mut p = Sampler::new(&SamplingParams { repeat_penalty: 1.5, repeat_last_n: 4, ..SamplingParams::greedy(1) });
        assert_eq!(p.sample(&logits, &[1]).unwrap(), 2);
        // Outside the window, no penalty.
        assert_eq!(p.sample(&logits, &[1, 0, 0, 0, 0]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_choices() {
        let logits = Tensor::new(&[1.0f32, 1.1, 0.9, 1.05], &Device::Cpu).unwrap();
        let params = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, seed: 7, ..Default::default() };
        let run = || {
            let mut s = Sampler::new(&params);
            (0..20).map(|_| s.sample(&logits, &[]).unwrap()).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|&t| t != a[0]), "temperature 1 should vary: {a:?}");
    }
}

//! Where a forward pass spends its time: wall-clock milliseconds per stage,
//! summed over passes until taken. For benchmarks and tuning (the worker
//! logs it after each reply); a clock read per stage costs nothing next to
//! the work it times.

use std::fmt;

use web_time::Instant;

/// The stages of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Embedding rows, RMS norms, activation quantization, residual adds.
    Other,
    /// The query, key and value projections.
    Qkv,
    /// RoPE, the KV cache and the attention itself.
    Attention,
    /// The attention output projection.
    Wo,
    /// The gate and up projections and SwiGLU.
    GateUp,
    /// The down projection.
    Down,
    /// The output projection (logits).
    Output,
    /// Waiting for and exchanging with the other workers.
    Exchange,
}

const STAGES: [Stage; 8] =
    [Stage::Other, Stage::Qkv, Stage::Attention, Stage::Wo, Stage::GateUp, Stage::Down, Stage::Output, Stage::Exchange];

/// Milliseconds per stage, and the forward passes and tokens they cover.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    ms: [f64; 8],
    passes: usize,
    tokens: usize,
    last: Option<Instant>,
}

impl Profile {
    /// Starts timing a forward pass of `tokens` tokens.
    pub fn begin(&mut self, tokens: usize) {
        self.passes += 1;
        self.tokens += tokens;
        self.last = Some(Instant::now());
    }

    /// Adds the time since the last mark to `stage`.
    pub fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        if let Some(last) = self.last.replace(now) {
            self.ms[stage as usize] += (now - last).as_secs_f64() * 1e3;
        }
    }

    /// Milliseconds spent in `stage`.
    pub fn ms(&self, stage: Stage) -> f64 {
        self.ms[stage as usize]
    }

    /// Forward passes timed.
    pub fn passes(&self) -> usize {
        self.passes
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: f64 = self.ms.iter().sum();
        write!(f, "{} passes, {} tokens, {total:.0} ms:", self.passes, self.tokens)?;
        for stage in STAGES {
            let ms = self.ms(stage);
            write!(f, " {stage:?} {ms:.0} ms ({:.0} %)", 100.0 * ms / total.max(1e-9))?;
        }
        Ok(())
    }
}

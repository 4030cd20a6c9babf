//! A fixed generation benchmark, the same natively (`sprig bench`) and in the
//! browser (`scripts/bench`): a prompt of N tokens, greedy decoding of M tokens,
//! repeated, with the median speeds.

use crate::sample::SamplingParams;
use crate::session::{Session, SessionError};

/// The text repeated to make the benchmark prompt.
pub const TEXT: &str = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills, and the farmer counts his sheep one by one before night falls on the quiet valley. ";

/// Figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRun {
    /// Prompt tokens run.
    pub prompt_tokens: usize,
    /// Prefill time, ms.
    pub prefill_ms: f64,
    /// Tokens generated.
    pub generated: usize,
    /// Decode time, ms.
    pub decode_ms: f64,
    /// Prefill speed.
    pub prefill_tok_s: f64,
    /// Decode speed.
    pub decode_tok_s: f64,
}

/// The prompt: BOS (when the model has one) and [`TEXT`] repeated, cut to `n` tokens.
///
/// # Errors
/// Tokenizer errors.
pub fn prompt(session: &Session, n: usize) -> Result<Vec<u32>, SessionError> {
    let t = session.tokenizer();
    let mut ids: Vec<u32> = t.bos().into_iter().collect();
    let text = t.encode(TEXT)?;
    while ids.len() < n {
        ids.extend_from_slice(&text);
    }
    ids.truncate(n.max(1));
    Ok(ids)
}

/// Runs the benchmark `runs` times from an empty cache; `report` gets each run.
///
/// # Errors
/// Session errors.
pub fn run(
    session: &mut Session,
    prompt_tokens: usize,
    gen_tokens: usize,
    runs: usize,
    report: &mut dyn FnMut(usize, &BenchRun),
) -> Result<Vec<BenchRun>, SessionError> {
    let ids = prompt(session, prompt_tokens)?;
    let mut out = Vec::new();
    for i in 0..runs.max(1) {
        session.reset();
        let (generated, s) = session.generate(&ids, SamplingParams::greedy(gen_tokens), &mut |_| {})?;
        let r = BenchRun {
            prompt_tokens: s.prefilled_tokens,
            prefill_ms: s.prefill_ms,
            generated: generated.len(),
            decode_ms: s.decode_ms,
            prefill_tok_s: s.prefill_tok_s,
            decode_tok_s: s.decode_tok_s,
        };
        report(i + 1, &r);
        out.push(r);
    }
    Ok(out)
}

/// The median of `values` (0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// One line describing a run.
pub fn describe(i: usize, r: &BenchRun) -> String {
    format!(
        "run {i}: prefill {} tok in {:.0} ms = {:.1} tok/s; decode {} tok in {:.0} ms = {:.1} tok/s",
        r.prompt_tokens, r.prefill_ms, r.prefill_tok_s, r.generated, r.decode_ms, r.decode_tok_s
    )
}

/// The summary line over all runs.
pub fn summary(runs: &[BenchRun]) -> String {
    format!(
        "median: prefill {:.1} tok/s, decode {:.1} tok/s",
        median(runs.iter().map(|r| r.prefill_tok_s).collect()),
        median(runs.iter().map(|r| r.decode_tok_s).collect())
    )
}

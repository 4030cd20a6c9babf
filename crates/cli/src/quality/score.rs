//! The figures of model quality as llama.cpp's `llama-perplexity` computes
//! them: log-probabilities of next tokens, perplexity with its error, and,
//! against a base model's distributions, the KL divergence and top-token
//! agreement. Pure arithmetic on logits, tested below.

/// `logits` turned into log-probabilities in place (a stable log-softmax, in f64).
pub fn log_softmax(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln() as f32 + max;
    logits.iter_mut().for_each(|l| *l -= log_sum);
}

/// The index of the largest value (the first, on ties).
pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// The index of the largest value (the first, on ties) and how far it is
/// above the second largest: the top-1 token and its margin, which on
/// log-probabilities is the margin in logits too.
pub fn top_margin(values: &[f32]) -> (usize, f32) {
    let best = argmax(values);
    let second = values.iter().enumerate().filter(|(i, _)| *i != best).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
    (best, values.get(best).map_or(0.0, |b| b - second))
}

/// A running mean of values and of their squares: a mean with its standard
/// error, as llama.cpp reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    sum: f64,
    sum2: f64,
    count: usize,
}

impl Mean {
    /// Adds one value.
    pub fn add(&mut self, v: f64) {
        self.sum += v;
        self.sum2 += v * v;
        self.count += 1;
    }

    /// How many values.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean (0 for none).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The standard error of the mean: √((E[v²] − E[v]²) / (n − 1)), 0 below two values.
    pub fn error(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let variance = self.sum2 / n - self.mean() * self.mean();
        (variance.max(0.0) / (n - 1.0)).sqrt()
    }
}

/// Perplexity from the negative log-likelihoods of the scored tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Perplexity {
    nll: Mean,
}

impl Perplexity {
    /// Scores one token: `log_probs` is the model's distribution (log-probabilities)
    /// at the position before `target`.
    pub fn add(&mut self, log_probs: &[f32], target: u32) {
        self.nll.add(-f64::from(log_probs[target as usize]));
    }

    /// Tokens scored.
    pub fn count(&self) -> usize {
        self.nll.count()
    }

    /// exp(mean negative log-likelihood).
    pub fn value(&self) -> f64 {
        self.nll.mean().exp()
    }

    /// Its error: the perplexity times the standard error of the mean nll
    /// (llama.cpp's "PPL = x +/- y").
    pub fn error(&self) -> f64 {
        self.value() * self.nll.error()
    }
}

/// One token's comparison of a model's distribution with the base model's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenDivergence {
    /// KL(base ‖ model) = Σ p_base · (log p_base − log p_model), in nats.
    pub kld: f64,
    /// Whether both put the same token first.
    pub same_top: bool,
}

/// Compares `log_probs` (the model's) with `base` (the base model's), both
/// log-probabilities over the same vocabulary.
pub fn divergence(base: &[f32], log_probs: &[f32]) -> TokenDivergence {
    let kld = base.iter().zip(log_probs).map(|(&b, &m)| f64::from(b).exp() * f64::from(b - m)).sum::<f64>();
    TokenDivergence { kld: kld.max(0.0), same_top: argmax(base) == argmax(log_probs) }
}

/// The KL divergence of many tokens: mean with its error, the spread, and
/// how often the top token agrees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Divergence {
    kld: Mean,
    values: Vec<f64>,
    same_top: usize,
}

impl Divergence {
    /// Adds one token's comparison.
    pub fn add(&mut self, d: TokenDivergence) {
        self.kld.add(d.kld);
        self.values.push(d.kld);
        self.same_top += usize::from(d.same_top);
    }

    /// Tokens compared.
    pub fn count(&self) -> usize {
        self.kld.count()
    }

    /// Mean KL divergence and its standard error.
    pub fn mean(&self) -> (f64, f64) {
        (self.kld.mean(), self.kld.error())
    }

    /// The share of tokens whose top token agrees, and its standard error
    /// √(p (1 − p) / (n − 1)).
    pub fn same_top(&self) -> (f64, f64) {
        let n = self.count();
        if n == 0 {
            return (0.0, 0.0);
        }
        let p = self.same_top as f64 / n as f64;
        let err = if n > 1 { (p * (1.0 - p) / (n - 1) as f64).sqrt() } else { 0.0 };
        (p, err)
    }

    /// The KL divergence at each of `fractions` of the sorted values (0 the
    /// smallest, 1 the largest), interpolating between neighbours.
    pub fn percentiles(&self, fractions: &[f64]) -> Vec<f64> {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        fractions.iter().map(|&f| percentile(&sorted, f)).collect()
    }
}

/// The value at `fraction` of sorted `v`, linearly interpolated (0 for none).
pub fn percentile(v: &[f64], fraction: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let at = fraction.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises() {
        let mut l = vec![1.0f32, 2.0, 3.0, 1000.0];
        log_softmax(&mut l);
        let total: f64 = l.iter().map(|&x| f64::from(x).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(l[3] > -1e-6 && l[3] <= 0.0);
        assert_eq!(argmax(&l), 3);
    }

    #[test]
    fn perplexity_of_a_uniform_guess_is_the_vocabulary() {
        let mut p = Perplexity::default();
        let mut logits = vec![0.0f32; 50];
        log_softmax(&mut logits);
        for t in 0..10 {
            p.add(&logits, t);
        }
        assert!((p.value() - 50.0).abs() < 1e-3, "{}", p.value());
        assert!(p.error() < 1e-6, "no spread, no error");
        assert_eq!(p.count(), 10);
    }

    #[test]
    fn mean_error_is_the_standard_error() {
        let mut m = Mean::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            m.add(v);
        }
        // population variance 1.25; / (n − 1) = 0.41667; √ = 0.6455
        assert!((m.mean() - 2.5).abs() < 1e-12);
        assert!((m.error() - (1.25f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn divergence_is_zero_for_the_same_distribution_and_positive_otherwise() {
        let mut a = vec![0.5f32, 1.5, -2.0];
        log_softmax(&mut a);
        let same = divergence(&a, &a);
        assert!(same.kld.abs() < 1e-9 && same.same_top);
        let mut b = vec![1.5f32, 0.5, -2.0];
        log_softmax(&mut b);
        let d = divergence(&a, &b);
        assert!(d.kld > 0.1 && !d.same_top, "{d:?}");
        let mut all = Divergence::default();
        all.add(same);
        all.add(d);
        assert_eq!(all.same_top(), (0.5, 0.5));
        assert_eq!(all.percentiles(&[0.0, 1.0]), vec![same.kld.max(0.0), d.kld]);
        assert!((percentile(&[0.0, 10.0], 0.25) - 2.5).abs() < 1e-12);
    }
}

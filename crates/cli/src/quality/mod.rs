//! Measuring a model's quality as llama.cpp does: perplexity on a text, and
//! the KL divergence of its next-token distributions from a base model's.

pub mod logits_file;
pub mod score;

//! Tokenizers built from GGUF metadata with the `tokenizers` crate.
//!
//! - `tokenizer.ggml.model = llama`: SentencePiece-style BPE from tokens, scores
//!   and token types, with byte fallback and the leading-space prefix.
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE from tokens and merges, with
//!   the pre-tokenizer that `tokenizer.ggml.pre` names.
//!
//! Text is always encoded as plain text: control tokens typed in a message come
//! out as the characters, never as control ids. [`Tokenizer::encode_with_special`]
//! is the one place where control-token strings become ids.

use std::collections::HashMap;

use tokenizers::decoders::{
    byte_fallback::ByteFallback, byte_level::ByteLevel as ByteLevelDecoder, fuse::Fuse, sequence::Sequence as DecoderSequence,
    strip::Strip, DecoderWrapper,
};
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::{
    byte_level::ByteLevel,
    digits::Digits,
    sequence::Sequence as PreSequence,
    split::{Split, SplitPattern},
    PreTokenizerWrapper,
};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::{GgufError, Metadata};

/// Errors of building or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer key in the GGUF metadata is missing or malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The `tokenizers` crate refused the vocabulary or the text.
    #[error("tokenizer {context}: {message}")]
    Tokenizers {
        /// What was being done.
        context: &'static str,
        /// What the crate said.
        message: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
}

fn tk(context: &'static str) -> impl FnOnce(tokenizers::Error) -> TokenizerError {
    move |e| TokenizerError::Tokenizers { context, message: e.to_string() }
}

/// The GGUF token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An ordinary piece.
    Normal,
    /// The unknown token.
    Unknown,
    /// A control token (BOS, EOS, `<|im_start|>`...).
    Control,
    /// A user-defined token, matched as a whole.
    UserDefined,
    /// Not used.
    Unused,
    /// A byte-fallback token `<0xXX>`.
    Byte,
}

impl TokenType {
    fn from_gguf(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Which algorithm the vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece-style BPE (`llama`): Llama 2, Mistral.
    SentencePiece,
    /// Byte-level BPE (`gpt2`): SmolLM2, Llama 3, Qwen.
    ByteLevelBpe,
}

/// A tokenizer and the special ids a chat needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: TokenizerKind,
    tokens: Vec<String>,
    /// Control and user-defined tokens, longest first, for [`Self::encode_with_special`].
    specials: Vec<(String, u32)>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
}

/// End-of-turn markers of common chat formats, stop tokens when the vocabulary
/// holds them as control tokens.
const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>"];

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` keys.
    ///
    /// # Errors
    /// [`TokenizerError::Gguf`] naming a missing or malformed key;
    /// [`TokenizerError::Tokenizers`] if the vocabulary is unusable.
    pub fn from_gguf(meta: &Metadata<'_>) -> Result<Self, TokenizerError> {
        let model = meta.string("tokenizer.ggml.model")?;
        let tokens: Vec<String> = meta.strings("tokenizer.ggml.tokens")?.into_iter().map(str::to_owned).collect();
        if tokens.is_empty() {
            return Err(GgufError::BadKey { key: "tokenizer.ggml.tokens".into(), reason: "the vocabulary is empty".into() }.into());
        }
        let types: Vec<TokenType> = match meta.get("tokenizer.ggml.token_type") {
            Some(_) => meta.i64s("tokenizer.ggml.token_type")?.into_iter().map(TokenType::from_gguf).collect(),
            None => vec![TokenType::Normal; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(GgufError::BadKey {
                key: "tokenizer.ggml.token_type".into(),
                reason: format!("{} types for {} tokens", types.len(), tokens.len()),
            }
            .into());
        }
        let id_key = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match meta.opt_u64(key)? {
                None => Ok(None),
                Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
                Some(id) => {
                    Err(GgufError::BadKey { key: key.into(), reason: format!("id {id} is outside the vocabulary of {}", tokens.len()) }
                        .into())
                }
            }
        };
        let bos = id_key("tokenizer.ggml.bos_token_id")?;
        let eos = id_key("tokenizer.ggml.eos_token_id")?;
        let eot = id_key("tokenizer.ggml.eot_token_id")?;
        let unk = id_key("tokenizer.ggml.unknown_token_id")?;

        let (kind, mut inner) = match model {
            "llama" => (TokenizerKind::SentencePiece, sentencepiece_bpe(meta, &tokens, &types, unk)?),
            "gpt2" => (TokenizerKind::ByteLevelBpe, byte_level_bpe(meta, &tokens)?),
            other => {
                return Err(GgufError::BadKey {
                    key: "tokenizer.ggml.model".into(),
                    reason: format!("`{other}` is not supported (supported: llama, gpt2)"),
                }
                .into())
            }
        };
        let add_bos = meta.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(kind == TokenizerKind::SentencePiece);

        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, t))| matches!(t, TokenType::Control | TokenType::UserDefined))
            .map(|(i, (s, _))| (s.clone(), i as u32))
            .filter(|(s, _)| !s.is_empty())
            .collect();
        let added: Vec<AddedToken> = specials
            .iter()
            .filter(|(_, id)| types[*id as usize] == TokenType::Control)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(added).map_err(tk("cannot add the control tokens"))?;
        // Plain text never turns into control tokens.
        inner.set_encode_special_tokens(true);
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let mut stop_ids: Vec<u32> = eos.into_iter().chain(eot).collect();
        for (s, id) in &specials {
            if END_OF_TURN.contains(&s.as_str()) && types[*id as usize] == TokenType::Control && !stop_ids.contains(id) {
                stop_ids.push(*id);
            }
        }
        Ok(Self { inner, kind, tokens, specials, bos, eos, add_bos, stop_ids })
    }

    /// Which algorithm this tokenizer uses.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The beginning-of-sequence id, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence id, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether prompts start with BOS (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end a reply: EOS, EOT and the end-of-turn control tokens.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The id of a control or user-defined token given its text.
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.specials.iter().find(|(s, _)| s == text).map(|(_, id)| *id)
    }

    /// The vocabulary entry of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Encodes `text` as plain text (no BOS; control-token strings stay characters).
    ///
    /// # Errors
    /// [`TokenizerError::Tokenizers`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.inner.encode_fast(text, false).map_err(tk("cannot encode"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes `text`, turning the strings of control and user-defined tokens
    /// into their ids and the rest into plain text.
    ///
    /// # Errors
    /// [`TokenizerError::Tokenizers`].
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        for piece in self.split_special(text) {
            match piece {
                Piece::Special(id) => ids.push(id),
                Piece::Text(t) => ids.extend(self.encode(t)?),
            }
        }
        Ok(ids)
    }

    /// Splits `text` at the strings of control and user-defined tokens (longest match first).
    pub fn split_special<'t>(&self, text: &'t str) -> Vec<Piece<'t>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some((s, id)) = self.specials.iter().find(|(s, _)| rest.starts_with(s.as_str())) {
                if start < i {
                    out.push(Piece::Text(&text[start..i]));
                }
                out.push(Piece::Special(*id));
                i += s.len();
                start = i;
            } else {
                i += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        if start < text.len() {
            out.push(Piece::Text(&text[start..]));
        }
        out
    }

    /// Decodes `ids` to text; control tokens are dropped when `skip_special`.
    ///
    /// # Errors
    /// [`TokenizerError::BadId`] for an id outside the vocabulary.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.tokens.len()) {
            return Err(TokenizerError::BadId { id, vocab: self.tokens.len() });
        }
        self.inner.decode(ids, skip_special).map_err(tk("cannot decode"))
    }
}

/// A piece of text split at special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'t> {
    /// Plain text.
    Text(&'t str),
    /// A control or user-defined token.
    Special(u32),
}

fn vocab_of(tokens: &[String]) -> Vocab {
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    vocab
}

/// SentencePiece BPE as `tokenizers` BPE: merges ranked by the score of the
/// merged piece (the rule SentencePiece's BPE applies), byte fallback, and the
/// `▁` word prefix.
fn sentencepiece_bpe(
    meta: &Metadata<'_>,
    tokens: &[String],
    types: &[TokenType],
    unk: Option<u32>,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let scores = match meta.get("tokenizer.ggml.scores") {
        Some(_) => meta.f32s("tokenizer.ggml.scores")?,
        None => (0..tokens.len()).map(|i| -(i as f32)).collect(),
    };
    if scores.len() != tokens.len() {
        return Err(GgufError::BadKey {
            key: "tokenizer.ggml.scores".into(),
            reason: format!("{} scores for {} tokens", scores.len(), tokens.len()),
        }
        .into());
    }
    let vocab = vocab_of(tokens);
    let mergeable = |i: usize| matches!(types[i], TokenType::Normal | TokenType::UserDefined);
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().filter(|(i, _)| mergeable(*i)).map(|(i, t)| (t.as_str(), i)).collect();
    let mut ranked: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if !mergeable(id) || piece.chars().count() < 2 {
            continue;
        }
        for (split, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(split);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                ranked.push((scores[id], id, li, ri));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
    let merges: Merges = ranked.into_iter().map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone())).collect();
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(tokens[unk as usize].clone());
    }
    let bpe = builder.build().map_err(tk("cannot build the SentencePiece vocabulary"))?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    let prefix = meta.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = Replace::new(" ", "▁").map_err(tk("normalizer"))?;
    let normalizer = if prefix {
        NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace.into()])
    } else {
        NormalizerSequence::new(vec![replace.into()])
    };
    t.with_normalizer(Some(normalizer)).map_err(tk("normalizer"))?;
    let mut decoders: Vec<DecoderWrapper> =
        vec![Replace::new("▁", " ").map_err(tk("decoder"))?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    t.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(t)
}

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn regex_then_bytes(regex: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(tk("pre-tokenizer"))?;
    Ok(PreSequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]).into())
}

/// The pre-tokenizer llama.cpp applies for a `tokenizer.ggml.pre` value.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, TokenizerError> {
    Ok(match pre {
        // Digits one by one, then GPT-2's split (SmolLM, StarCoder).
        "smollm" | "starcoder" | "refact" => {
            PreSequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into()
        }
        "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" | "dbrx" => regex_then_bytes(LLAMA3_REGEX)?,
        "qwen2" | "deepseek-r1-qwen" => regex_then_bytes(QWEN2_REGEX)?,
        // GPT-2's own split; also the choice for unknown values.
        _ => regex_then_bytes(GPT2_REGEX)?,
    })
}

fn byte_level_bpe(meta: &Metadata<'_>, tokens: &[String]) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let merges: Merges = meta
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| {
                TokenizerError::from(GgufError::BadKey {
                    key: "tokenizer.ggml.merges".into(),
                    reason: format!("merge {i} `{m}` is not two pieces"),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    let bpe =
        BPE::builder().vocab_and_merges(vocab_of(tokens), merges).build().map_err(tk("cannot build the byte-level BPE vocabulary"))?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    let pre = meta.opt_string("tokenizer.ggml.pre")?.unwrap_or("default");
    t.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    t.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(t)
}

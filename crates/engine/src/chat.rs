//! Chat prompts: a conversation to token ids.
//!
//! Two formats:
//! - [`ChatFormat::Template`]: the GGUF's `tokenizer.chat_template`, rendered with
//!   minijinja (Jinja2 as Hugging Face runs it: `trim_blocks`, `lstrip_blocks`,
//!   Python string methods, `raise_exception`).
//! - [`ChatFormat::MistralV1`]: what Mistral's own `mistral-common` v1 tokenizer
//!   produces: `<s>[INST] user [/INST] answer</s>[INST] next [/INST]`, each text
//!   piece encoded on its own with its leading space, BOS once, EOS after each
//!   answer, system messages joined by a blank line and put before the first user
//!   message.
//!
//! In both, control tokens become ids only where the format puts them: message
//! text is never searched for control-token strings, so a user typing `</s>`
//! gets those characters, not EOS. For templates this works by rendering each
//! message's content as a private-use placeholder, then encoding the template's
//! own text with control tokens recognised and the content as plain text.

use serde::{Deserialize, Serialize};

use crate::tokenizer::{Piece, Tokenizer, TokenizerError, TokenizerKind};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said, as typed.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// Errors of building a chat prompt.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The chat template failed to compile or render (including its own
    /// `raise_exception` calls).
    #[error("chat template error: {0}")]
    Template(String),
    /// Tokenizing the prompt failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The conversation does not fit the format.
    #[error("invalid conversation: {0}")]
    Conversation(String),
}

/// How a model's conversations become prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFormat {
    /// A Jinja chat template.
    Template(String),
    /// Mistral's v1 instruct format (`mistral-common`).
    MistralV1,
}

/// ChatML, the fallback for byte-level models that carry no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl ChatFormat {
    /// Picks the format for a model: Mistral's v1 format for a SentencePiece
    /// vocabulary whose template is Mistral's `[INST]` style (or that has no
    /// template) — `mistral-common` is the reference for those models, and the
    /// Hugging Face template differs from it in spaces; the model's template
    /// otherwise; ChatML for a byte-level model without one.
    pub fn detect(template: Option<&str>, tokenizer: &Tokenizer) -> Self {
        let spm = tokenizer.kind() == TokenizerKind::SentencePiece;
        match template {
            None if spm => Self::MistralV1,
            Some(t) if spm && t.contains("[INST]") && !t.contains("<<SYS>>") => Self::MistralV1,
            Some(t) => Self::Template(t.to_string()),
            None => Self::Template(CHATML_TEMPLATE.to_string()),
        }
    }

    /// A short name for display.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Template(_) => "template",
            Self::MistralV1 => "mistral-v1",
        }
    }

    /// The token ids of `messages`, ending with the cue for the assistant's
    /// reply when `add_generation_prompt`.
    ///
    /// # Errors
    /// [`ChatError`] for a template failure, an unusable conversation or a
    /// tokenizer error.
    pub fn encode(&self, tokenizer: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>, ChatError> {
        match self {
            Self::MistralV1 => mistral_v1(tokenizer, messages, add_generation_prompt),
            Self::Template(t) => template(t, tokenizer, messages, add_generation_prompt),
        }
    }
}

fn mistral_v1(tokenizer: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>, ChatError> {
    let bos = tokenizer.bos().ok_or_else(|| ChatError::Conversation("the vocabulary has no BOS token".into()))?;
    let eos = tokenizer.eos().ok_or_else(|| ChatError::Conversation("the vocabulary has no EOS token".into()))?;
    let system: Vec<&str> = messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
    let turns: Vec<&ChatMessage> = messages.iter().filter(|m| m.role != Role::System).collect();
    if turns.first().map(|m| m.role) != Some(Role::User) {
        return Err(ChatError::Conversation("the first message after the system prompt must be the user's".into()));
    }
    let mut ids = vec![bos];
    let mut first_user = true;
    for (i, m) in turns.iter().enumerate() {
        let expected = if i % 2 == 0 { Role::User } else { Role::Assistant };
        if m.role != expected {
            return Err(ChatError::Conversation(format!(
                "message {} should be from the {} (roles must alternate)",
                i + 1,
                expected.as_str()
            )));
        }
        match m.role {
            Role::User => {
                let content =
                    if first_user && !system.is_empty() { format!("{}\n\n{}", system.join("\n\n"), m.content) } else { m.content.clone() };
                first_user = false;
                ids.extend(tokenizer.encode(&format!("[INST] {content} [/INST]"))?);
            }
            Role::Assistant => {
                ids.extend(tokenizer.encode(&m.content)?);
                let last = i + 1 == turns.len();
                if !last || add_generation_prompt {
                    ids.push(eos);
                }
            }
            Role::System => unreachable!("system messages were filtered out"),
        }
    }
    Ok(ids)
}

const OPEN: char = '\u{F8F0}';
const CLOSE: char = '\u{F8F1}';

/// Template output, split into the template's own text and message contents.
enum Rendered<'a> {
    Template(&'a str),
    Content(usize),
}

fn split_placeholders(out: &str) -> Vec<Rendered<'_>> {
    let mut parts = Vec::new();
    let mut rest = out;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else { break };
        match after[..end].parse::<usize>() {
            Ok(i) => {
                if start > 0 {
                    parts.push(Rendered::Template(&rest[..start]));
                }
                parts.push(Rendered::Content(i));
                rest = &after[end + CLOSE.len_utf8()..];
            }
            Err(_) => {
                parts.push(Rendered::Template(&rest[..start + OPEN.len_utf8()]));
                rest = after;
            }
        }
    }
    if !rest.is_empty() {
        parts.push(Rendered::Template(rest));
    }
    parts
}

/// The step budget of one chat-template rendering (minijinja's fuel, about
/// one unit per instruction): a real template over a long conversation uses
/// a few tens of thousands; a hostile one (nested loops) stops here, in well
/// under a second, instead of hanging the worker.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// The longest text a chat template may render, in bytes (message contents
/// are placeholders in it, so a real prompt's template text is small).
pub const TEMPLATE_OUTPUT_BYTES: usize = 1 << 20;

/// A writer that refuses to grow past [`TEMPLATE_OUTPUT_BYTES`].
struct CappedOutput {
    out: Vec<u8>,
    over: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > TEMPLATE_OUTPUT_BYTES {
            self.over = true;
            return Err(std::io::Error::other("the chat template's output is too long"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders the template `source` for `ctx` within [`TEMPLATE_FUEL`] steps
/// and [`TEMPLATE_OUTPUT_BYTES`] of output.
fn render_bounded(env: &minijinja::Environment<'_>, ctx: minijinja::Value) -> Result<String, ChatError> {
    let tmpl = env.get_template("chat").map_err(|e| ChatError::Template(e.to_string()))?;
    let mut out = CappedOutput { out: Vec::new(), over: false };
    if let Err(e) = tmpl.render_captured_to(ctx, &mut out) {
        return Err(ChatError::Template(if out.over {
            format!("its output passed {TEMPLATE_OUTPUT_BYTES} bytes")
        } else if e.kind() == minijinja::ErrorKind::OutOfFuel {
            format!("it ran past its budget of {TEMPLATE_FUEL} steps (a loop that does not end in time)")
        } else {
            e.to_string()
        }));
    }
    String::from_utf8(out.out).map_err(|e| ChatError::Template(format!("its output is not UTF-8: {e}")))
}

fn template(source: &str, tokenizer: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>, ChatError> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
    });
    env.add_template("chat", source).map_err(|e| ChatError::Template(e.to_string()))?;
    let placeholders: Vec<minijinja::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| minijinja::context! { role => m.role.as_str(), content => format!("{OPEN}{i}{CLOSE}") })
        .collect();
    let token = |id: Option<u32>| id.and_then(|id| tokenizer.token(id)).unwrap_or("").to_string();
    let ctx = minijinja::context! {
        messages => placeholders,
        add_generation_prompt => add_generation_prompt,
        bos_token => token(tokenizer.bos()),
        eos_token => token(tokenizer.eos()),
    };
    let out = render_bounded(&env, ctx)?;

    // Control tokens come only from the template's own text; text between two
    // control tokens is encoded in one piece, message content included.
    let mut ids = Vec::new();
    let mut text = String::new();
    for part in split_placeholders(&out) {
        match part {
            Rendered::Content(i) => {
                let m = messages.get(i).ok_or_else(|| ChatError::Template(format!("placeholder {i} has no message")))?;
                text.push_str(&m.content);
            }
            Rendered::Template(t) => {
                for piece in tokenizer.split_special(t) {
                    match piece {
                        Piece::Text(s) => text.push_str(s),
                        Piece::Special(id) => {
                            ids.extend(tokenizer.encode(&text)?);
                            text.clear();
                            ids.push(id);
                        }
                    }
                }
            }
        }
    }
    ids.extend(tokenizer.encode(&text)?);
    if tokenizer.add_bos() {
        if let Some(bos) = tokenizer.bos() {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
    }
    Ok(ids)
}

//! The bridge's messages and its state machine: which asks wait, which are
//! being answered, what the page was last told about the model. Pure (no
//! window, no controller), so every path is tested natively; `dom.rs` carries
//! the messages and [`super::EmbedApp`] drives it from the controller.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ui_state::ReplyEnd;

/// Version of the bridge's messages, sent in `sprig:hello`.
pub const BRIDGE_VERSION: u32 = 1;

/// Why the widget cannot load a model when the browser denies it storage.
pub const STORAGE_BLOCKED: &str =
    "this browser does not let Sprig store models inside other sites' pages (third-party storage is blocked): open the chat in its own tab";

/// A message from the embedding page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum Inbound {
    /// Send `text` as the user's message; answered by [`Outbound::Reply`] or
    /// [`Outbound::Error`] with the same `id`.
    #[serde(rename = "sprig:ask")]
    Ask {
        /// Chosen by the page, echoed back.
        id: Value,
        /// The message.
        text: String,
    },
}

impl Inbound {
    /// Decodes a message's JSON; `None` for anything that is not a bridge message.
    pub fn parse(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }
}

/// A message to the embedding page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Outbound {
    /// The bridge listens.
    #[serde(rename = "sprig:hello")]
    Hello {
        /// [`BRIDGE_VERSION`].
        v: u32,
    },
    /// The model is loaded.
    #[serde(rename = "sprig:ready")]
    Ready {
        /// Its name.
        model: String,
        /// The `data-model` it was asked for and loaded (a catalog id, or
        /// a URL), which embed.js checks is its own; else the URL loaded.
        url: String,
    },
    /// The whole reply to an ask.
    #[serde(rename = "sprig:reply")]
    Reply {
        /// The ask's id.
        id: Value,
        /// The reply (Markdown).
        text: String,
    },
    /// An ask failed (`id`), or the model did (no `id`).
    #[serde(rename = "sprig:error")]
    Error {
        /// The ask's id, if about one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        /// What went wrong.
        message: String,
    },
    /// The user closed the chat.
    #[serde(rename = "sprig:close")]
    Close,
}

/// The model, as far as the page is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelPhase {
    /// Not loaded yet (or loading).
    #[default]
    Waiting,
    /// Loaded: its name and what it was loaded as.
    Ready {
        /// The model's name.
        name: String,
        /// The `data-model` loaded (catalog id or URL), else the URL loaded.
        url: String,
    },
    /// It could not be loaded, for this reason.
    Failed(String),
}

/// What the page is told when the model cannot be loaded.
fn failure(reason: &str) -> String {
    if reason == STORAGE_BLOCKED {
        reason.to_string()
    } else {
        format!("the model could not be loaded: {reason}")
    }
}

/// The bridge's state: asks waiting for the model, asks being answered (by
/// the turn id of their reply), and the model's phase last told.
#[derive(Debug, Default)]
pub struct BridgeState {
    /// Whether the embedding page configured a model at all.
    has_model: bool,
    phase: ModelPhase,
    queue: VecDeque<(Value, String)>,
    in_flight: HashMap<u64, Value>,
}

impl BridgeState {
    /// A bridge for a widget with (`has_model`) or without a configured model.
    pub fn new(has_model: bool) -> Self {
        Self { has_model, ..Self::default() }
    }

    /// The page asks: queued, or refused at once with the reason.
    pub fn ask(&mut self, id: Value, text: String) -> Vec<Outbound> {
        let refusal = if text.trim().is_empty() {
            "the message is empty".to_string()
        } else if !self.has_model {
            "no model is configured (data-model)".to_string()
        } else if let ModelPhase::Failed(reason) = &self.phase {
            failure(reason)
        } else {
            self.queue.push_back((id, text));
            return Vec::new();
        };
        vec![Outbound::Error { id: Some(id), message: refusal }]
    }

    /// The model's phase now: the page hears of each new ready or failed
    /// model once, and a failure fails every queued ask.
    pub fn model(&mut self, phase: ModelPhase) -> Vec<Outbound> {
        if phase == self.phase {
            return Vec::new();
        }
        self.phase = phase.clone();
        match phase {
            ModelPhase::Waiting => Vec::new(),
            ModelPhase::Ready { name, url } => vec![Outbound::Ready { model: name, url }],
            ModelPhase::Failed(reason) => {
                let message = failure(&reason);
                let mut out = vec![Outbound::Error { id: None, message: message.clone() }];
                out.extend(self.queue.drain(..).map(|(id, _)| Outbound::Error { id: Some(id), message: message.clone() }));
                out
            }
        }
    }

    /// The next ask to send, when the model is ready and `free` (no reply running).
    pub fn next(&mut self, free: bool) -> Option<(Value, String)> {
        if free && matches!(self.phase, ModelPhase::Ready { .. }) {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// Ask `id` was sent (its reply is turn `Ok(turn)`) or could not be (`Err`).
    pub fn sent(&mut self, id: Value, result: Result<u64, String>) -> Vec<Outbound> {
        match result {
            Ok(turn) => {
                self.in_flight.insert(turn, id);
                Vec::new()
            }
            Err(message) => vec![Outbound::Error { id: Some(id), message }],
        }
    }

    /// Reply `turn` ended: its ask (if it was one) gets the reply or the failure.
    pub fn reply_ended(&mut self, turn: u64, end: ReplyEnd) -> Vec<Outbound> {
        let Some(id) = self.in_flight.remove(&turn) else { return Vec::new() };
        vec![match end {
            ReplyEnd::Done { text, .. } => Outbound::Reply { id, text },
            ReplyEnd::Failed(message) => Outbound::Error { id: Some(id), message },
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> ModelPhase {
        ModelPhase::Ready { name: "demo".into(), url: "https://s/m.json".into() }
    }

    fn stats() -> sprig_protocol::ReplyStats {
        serde_json::from_value(serde_json::json!({
            "stop": "eos", "prompt_tokens": 1, "prefilled_tokens": 1, "generated_tokens": 1,
            "prefill_tok_s": 1.0, "decode_tok_s": 1.0, "dropped_messages": 0
        }))
        .unwrap()
    }

    #[test]
    fn asks_wait_for_the_model_then_go_one_at_a_time() {
        let mut b = BridgeState::new(true);
        assert!(b.ask(Value::from(1), "Hi".into()).is_empty());
        assert!(b.ask(Value::from(2), "Again".into()).is_empty());
        assert_eq!(b.next(true), None, "no model yet");
        assert_eq!(b.model(ready()), [Outbound::Ready { model: "demo".into(), url: "https://s/m.json".into() }]);
        assert!(b.model(ready()).is_empty(), "told once");
        assert_eq!(b.next(false), None, "a reply runs");
        assert_eq!(b.next(true), Some((Value::from(1), "Hi".into())));
        assert!(b.sent(Value::from(1), Ok(7)).is_empty());
        let end = ReplyEnd::Done { text: "Hello".into(), stats: stats() };
        assert_eq!(b.reply_ended(7, end.clone()), [Outbound::Reply { id: Value::from(1), text: "Hello".into() }]);
        // A reply the page did not ask for (the user typed) is not reported.
        assert!(b.reply_ended(8, end).is_empty());
        assert_eq!(b.next(true), Some((Value::from(2), "Again".into())));
        assert_eq!(b.sent(Value::from(2), Err("busy".into())), [Outbound::Error { id: Some(Value::from(2)), message: "busy".into() }]);
        assert_eq!(b.reply_ended(9, ReplyEnd::Failed("x".into())), [], "only asks in flight are answered, once");
    }

    #[test]
    fn a_failed_model_fails_the_queue_and_later_asks() {
        let mut b = BridgeState::new(true);
        b.ask(Value::from(1), "Hi".into());
        let out = b.model(ModelPhase::Failed("HTTP 404".into()));
        let message = "the model could not be loaded: HTTP 404".to_string();
        assert_eq!(
            out,
            [
                Outbound::Error { id: None, message: message.clone() },
                Outbound::Error { id: Some(Value::from(1)), message: message.clone() }
            ]
        );
        assert_eq!(b.ask(Value::from(2), "Hi".into()), [Outbound::Error { id: Some(Value::from(2)), message }]);
        // Storage blocked is told as it is: the page can offer a tab of its own.
        let mut b = BridgeState::new(true);
        assert_eq!(b.model(ModelPhase::Failed(STORAGE_BLOCKED.into())), [Outbound::Error { id: None, message: STORAGE_BLOCKED.into() }]);
        // Retried and loaded: asks go again.
        b.model(ModelPhase::Waiting);
        b.model(ready());
        b.ask(Value::from(3), "Hi".into());
        assert_eq!(b.next(true), Some((Value::from(3), "Hi".into())));
    }

    #[test]
    fn empty_asks_and_asks_without_a_model_are_refused() {
        let mut b = BridgeState::new(true);
        assert_eq!(
            b.ask(Value::from(1), "  ".into()),
            [Outbound::Error { id: Some(Value::from(1)), message: "the message is empty".into() }]
        );
        let mut none = BridgeState::new(false);
        assert_eq!(
            none.ask(Value::from(1), "Hi".into()),
            [Outbound::Error { id: Some(Value::from(1)), message: "no model is configured (data-model)".into() }]
        );
    }

    #[test]
    fn asks_decode_and_other_messages_do_not() {
        assert_eq!(
            Inbound::parse(r#"{"type":"sprig:ask","id":7,"text":"Hi"}"#),
            Some(Inbound::Ask { id: Value::from(7), text: "Hi".into() })
        );
        for other in
            [r#"{"type":"sprig:reply","id":7,"text":"Hi"}"#, r#"{"type":"sprig:ask","id":7}"#, r#""sprig:ask""#, "null", r#"{"text":"Hi"}"#]
        {
            assert_eq!(Inbound::parse(other), None, "{other}");
        }
    }

    #[test]
    fn outbound_messages_are_tagged() {
        let json = |m: &Outbound| serde_json::to_string(m).unwrap();
        assert_eq!(json(&Outbound::Hello { v: 1 }), r#"{"type":"sprig:hello","v":1}"#);
        assert_eq!(
            json(&Outbound::Ready { model: "m".into(), url: "https://s/m.json".into() }),
            r#"{"type":"sprig:ready","model":"m","url":"https://s/m.json"}"#
        );
        assert_eq!(json(&Outbound::Reply { id: Value::from(3), text: "Hello".into() }), r#"{"type":"sprig:reply","id":3,"text":"Hello"}"#);
        assert_eq!(json(&Outbound::Error { id: None, message: "x".into() }), r#"{"type":"sprig:error","message":"x"}"#);
        assert_eq!(json(&Outbound::Close), r#"{"type":"sprig:close"}"#);
    }
}

//! The widget: the same app in a compact layout, shown when the page is opened
//! as `/?embed=1&…` (by `www/embed.js`, in an iframe on Sprig's own origin),
//! and its `postMessage` bridge to the page that embeds it.
//!
//! The query carries what the embedding page chose: `model` (a manifest or
//! GGUF URL, loaded at once: from the model store when it is there),
//! `title`, `theme` (`auto`, `light`, `dark`), `system` (system prompt),
//! `max_tokens`, `temperature`, `parent`, the embedding page's origin, and
//! `nonce`, a random value of embed.js's.
//!
//! The bridge accepts a message only when it comes from the parent window
//! *and* from that origin, and posts only to that origin (never `"*"`), with
//! embed.js's `nonce` in every message (embed.js drops messages without it,
//! so a page framing the widget on its own cannot pass as it):
//!
//! | direction | message |
//! |---|---|
//! | page → widget | `{type: "sprig:ask", id, text}`: send `text` as the user's message (queued until the model is ready and no reply is running) |
//! | widget → page | `{type: "sprig:hello", v: 1}`: the bridge listens (posted once, at start) |
//! | widget → page | `{type: "sprig:ready", model, url}`: the model (its name, and the URL loaded, which embed.js checks is its `data-model`) is loaded |
//! | widget → page | `{type: "sprig:reply", id, text}`: the whole reply to ask `id` |
//! | widget → page | `{type: "sprig:error", id?, message}`: ask `id` failed, or (no `id`) the model did |
//! | widget → page | `{type: "sprig:close"}`: the user closed the chat (× or Escape) |
//!
//! Conversations in the widget live only in its page ([`Controller::ephemeral`]):
//! the embedding site never sees the app's history, nor the app the widget's.
//! A host's asks join the widget's one conversation, beside what the user
//! types there: the model reads both, so a host page can have it repeat what
//! the user wrote in the widget (docs/widget.md says so).
//!
//! Opened as a top-level page (a link, not embed.js's frame), the widget
//! downloads nothing before the user clicks "Download and load".
//!
//! On another site's page the widget is a third-party frame: browsers that
//! partition storage give it a store of its own per embedding site; those that
//! block third-party storage give it none, and the widget offers to open
//! itself in a tab of its own instead ([`STORAGE_BLOCKED`]).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::components::banners::Banners;
use crate::components::composer::Composer;
use crate::components::conversation::ConversationView;
use crate::components::model_panel::speed;
use crate::controller::{Controller, ReplyEnd};
use crate::state::{bytes, ModelState};

/// Version of the bridge's messages, sent in `sprig:hello`.
pub const BRIDGE_VERSION: u32 = 1;

/// Why the widget cannot load a model when the browser denies it storage.
pub const STORAGE_BLOCKED: &str =
    "this browser does not let Sprig store models inside other sites' pages (third-party storage is blocked): open the chat in its own tab";

/// The widget's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    /// Follow the device's light or dark preference.
    #[default]
    Auto,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    fn parse(s: &str) -> Self {
        match s {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::Auto,
        }
    }
}

/// What the embedding page asked for, read from the widget's query string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbedConfig {
    /// The model to load (manifest or GGUF URL), if any.
    pub model: Option<String>,
    /// The title bar's text.
    pub title: String,
    /// Light, dark or automatic colours.
    pub theme: Theme,
    /// The embedding page's origin, when it is a valid http(s) origin: the
    /// only origin the bridge listens to and posts to. `None`: no bridge.
    pub parent: Option<String>,
    /// embed.js's random nonce (16 to 64 letters and digits), echoed in
    /// every bridge message.
    pub nonce: Option<String>,
    /// A system prompt for every conversation.
    pub system_prompt: Option<String>,
    /// The longest reply, in tokens.
    pub max_tokens: Option<usize>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
}

impl EmbedConfig {
    /// The configuration in a query's key/value pairs, or `None` when the
    /// query does not ask for the widget (`embed=1`).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Option<Self> {
        let mut embed = false;
        let mut c = Self { title: "Sprig".into(), ..Self::default() };
        for (k, v) in pairs {
            let v = v.as_ref().trim();
            match k.as_ref() {
                "embed" => embed = v == "1",
                "model" if !v.is_empty() => c.model = Some(v.to_string()),
                "title" if !v.is_empty() => c.title = v.chars().take(80).collect(),
                "theme" => c.theme = Theme::parse(v),
                "parent" if is_origin(v) => c.parent = Some(v.to_string()),
                "nonce" if (16..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric()) => c.nonce = Some(v.to_string()),
                "system" if !v.is_empty() => c.system_prompt = Some(v.to_string()),
                "max_tokens" => c.max_tokens = v.parse().ok().filter(|n| (1..=4096).contains(n)),
                "temperature" => c.temperature = v.parse().ok().filter(|t: &f64| (0.0..=2.0).contains(t)),
                _ => {}
            }
        }
        embed.then_some(c)
    }

    /// The configuration of this page's URL, or `None` when it is not the widget.
    pub fn from_location() -> Option<Self> {
        let search = window().location().search().ok()?;
        let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
        let entries = js_sys::try_iter(&params).ok()??;
        let pairs = entries.filter_map(Result::ok).filter_map(|pair| {
            let pair = js_sys::Array::from(&pair);
            Some((pair.get(0).as_string()?, pair.get(1).as_string()?))
        });
        Self::from_pairs(pairs)
    }
}

/// Whether `s` is a serialized http(s) origin (`https://host[:port]`, as
/// `location.origin` gives it): never `null`, `*`, a path or credentials.
pub fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else { return false };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((inner, after)) = v6.split_once(']') else { return false };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return false;
        }
        ("v6", port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

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
        /// The URL it was loaded from (embed.js checks it is its `data-model`).
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

/// What the page is told when the model cannot be loaded.
fn failure(reason: &str) -> String {
    if reason == STORAGE_BLOCKED {
        reason.to_string()
    } else {
        format!("the model could not be loaded: {reason}")
    }
}

/// Asks waiting for the model, and asks being answered (by turn id).
#[derive(Debug, Default)]
struct Asks {
    queue: VecDeque<(Value, String)>,
    in_flight: HashMap<u64, Value>,
}

/// The widget's end of the bridge: the parent window and its origin.
struct Bridge {
    parent: web_sys::Window,
    origin: String,
    /// embed.js's nonce, echoed in every message.
    nonce: Option<String>,
    asks: RefCell<Asks>,
}

impl Bridge {
    /// The bridge to the parent window, when there is one and its origin is known.
    fn connect(config: &EmbedConfig) -> Option<Rc<Self>> {
        let origin = config.parent.clone()?;
        let parent = window().parent().ok().flatten()?;
        if js_sys::Object::is(parent.as_ref(), window().as_ref()) {
            return None; // not in a frame
        }
        Some(Rc::new(Self { parent, origin, nonce: config.nonce.clone(), asks: RefCell::default() }))
    }

    fn post(&self, message: &Outbound) {
        let Ok(json) = serde_json::to_string(message) else { return };
        let Ok(value) = js_sys::JSON::parse(&json) else { return };
        // embed.js takes only messages carrying the nonce it put in this
        // frame's address, which another page framing the widget cannot know.
        if let Some(nonce) = &self.nonce {
            let _ = js_sys::Reflect::set(&value, &"nonce".into(), &nonce.into());
        }
        // Delivered only if the parent still shows a page of that origin.
        let _ = self.parent.post_message(&value, &self.origin);
    }

    /// The bridge message in `event`, if it is one from the parent window at
    /// the parent's origin; anything else is ignored, silently.
    fn accept(&self, event: &web_sys::MessageEvent) -> Option<Inbound> {
        let from_parent = event.source().is_some_and(|s| js_sys::Object::is(s.as_ref(), self.parent.as_ref()));
        if !from_parent || event.origin() != self.origin {
            return None;
        }
        let json = js_sys::JSON::stringify(&event.data()).ok()?.as_string()?;
        Inbound::parse(&json)
    }

    /// Sends the next queued ask when the model is ready and no reply runs.
    fn pump(&self, ctl: Controller) {
        match ctl.model.get_untracked() {
            ModelState::Ready(_) => {}
            ModelState::Failed(reason) => return self.fail_queued(&failure(&reason)),
            _ => return,
        }
        if ctl.generating.get_untracked().is_some() {
            return;
        }
        let Some((id, text)) = self.asks.borrow_mut().queue.pop_front() else { return };
        match ctl.send(text) {
            Some(turn) => {
                self.asks.borrow_mut().in_flight.insert(turn, id);
            }
            None => {
                let message = ctl.error.get_untracked().unwrap_or_else(|| "the message could not be sent".into());
                self.post(&Outbound::Error { id: Some(id), message });
            }
        }
    }

    fn fail_queued(&self, message: &str) {
        let queued = std::mem::take(&mut self.asks.borrow_mut().queue);
        for (id, _) in queued {
            self.post(&Outbound::Error { id: Some(id), message: message.to_string() });
        }
    }

    fn on_message(&self, ctl: Controller, has_model: bool, message: Inbound) {
        match message {
            Inbound::Ask { id, text } => {
                if text.trim().is_empty() {
                    self.post(&Outbound::Error { id: Some(id), message: "the message is empty".into() });
                } else if !has_model {
                    self.post(&Outbound::Error { id: Some(id), message: "no model is configured (data-model)".into() });
                } else {
                    self.asks.borrow_mut().queue.push_back((id, text));
                    self.pump(ctl);
                }
            }
        }
    }

    fn on_reply_end(&self, turn: u64, end: ReplyEnd) {
        let Some(id) = self.asks.borrow_mut().in_flight.remove(&turn) else { return };
        self.post(&match end {
            ReplyEnd::Done { text, .. } => Outbound::Reply { id, text },
            ReplyEnd::Failed(message) => Outbound::Error { id: Some(id), message },
        });
    }
}

/// Whether the browser lets this page use its file storage (OPFS), where the
/// worker keeps models. Browsers that block third-party storage refuse it to
/// the widget on another site's page; those that partition it allow it.
async fn storage_available() -> bool {
    let promise = window().navigator().storage().get_directory();
    wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
}

/// This page's URL without the bridge (`parent`): the widget on its own, as a
/// top-level page of Sprig's origin, where its storage is Sprig's own.
fn standalone_url() -> Option<String> {
    let url = web_sys::Url::new(&window().location().href().ok()?).ok()?;
    url.search_params().delete("parent");
    Some(url.href())
}

/// Applies the configuration to the document: title, theme, links opening
/// outside the widget.
fn dress_document(config: &EmbedConfig) {
    let document = document();
    document.set_title(&config.title);
    if let Some(root) = document.document_element() {
        let _ = root.set_attribute("data-embed", "");
        match config.theme {
            Theme::Light => drop(root.set_attribute("data-theme", "light")),
            Theme::Dark => drop(root.set_attribute("data-theme", "dark")),
            Theme::Auto => {}
        }
    }
    // A link in a reply opens a new tab instead of replacing the widget.
    if let (Some(head), Ok(base)) = (document.head(), document.create_element("base")) {
        let _ = base.set_attribute("target", "_blank");
        let _ = head.append_child(&base);
    }
}

/// Starts the bridge: listens to the parent, tells it about the model, and
/// answers its asks.
fn start_bridge(ctl: Controller, bridge: Rc<Bridge>, has_model: bool) {
    let on_message = {
        let bridge = bridge.clone();
        Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            if let Some(message) = bridge.accept(&event) {
                bridge.on_message(ctl, has_model, message);
            }
        })
    };
    let on_key = {
        let bridge = bridge.clone();
        Closure::<dyn Fn(web_sys::KeyboardEvent)>::new(move |event: web_sys::KeyboardEvent| {
            if event.key() == "Escape" && !event.default_prevented() {
                bridge.post(&Outbound::Close);
            }
        })
    };
    let w = window();
    let _ = w.add_event_listener_with_callback("message", on_message.as_ref().unchecked_ref());
    let _ = w.add_event_listener_with_callback("keydown", on_key.as_ref().unchecked_ref());
    // The widget lives as long as its page.
    on_message.forget();
    on_key.forget();

    ctl.on_reply_end({
        let bridge = bridge.clone();
        move |turn, end| bridge.on_reply_end(turn, end)
    });
    // Tell the page when the model becomes ready or fails, and send queued
    // asks whenever the model is free.
    Effect::new({
        let bridge = bridge.clone();
        move |was: Option<&'static str>| {
            let now = match ctl.model.get() {
                ModelState::Ready(m) => {
                    if was != Some("ready") {
                        let url = ctl.active.get_untracked().and_then(|s| s.url().map(str::to_string)).unwrap_or_default();
                        bridge.post(&Outbound::Ready { model: m.name, url });
                    }
                    "ready"
                }
                ModelState::Failed(reason) => {
                    if was != Some("failed") {
                        bridge.post(&Outbound::Error { id: None, message: failure(&reason) });
                    }
                    "failed"
                }
                _ => "other",
            };
            ctl.generating.track();
            bridge.pump(ctl);
            now
        }
    });
    bridge.post(&Outbound::Hello { v: BRIDGE_VERSION });
}

/// The compact model line: progress while loading, the model's name once ready.
#[component]
fn EmbedModelStatus(
    /// The configured model's URL, if any.
    model: Option<String>,
    /// Set when the browser denies this page storage.
    blocked: ReadSignal<bool>,
    /// Starts loading the model (opened as a top-level page, the widget
    /// waits for a click on it).
    start: Callback<()>,
) -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let has_model = model.is_some();
    let shown = model.clone().unwrap_or_default();
    let retry = move || {
        if let Some(url) = model.clone() {
            ctl.load(url);
        }
    };
    view! {
        <div class="embed-model" aria-label="Model">
            {move || match ctl.model.get() {
                _ if blocked.get() => view! {
                    <p class="failed" data-testid="storage-blocked">
                        "This browser does not let Sprig keep its model inside this site's page. "
                        <a href=standalone_url() target="_blank" rel="noopener" data-testid="open-in-tab">"Open the chat in a new tab"</a>
                    </p>
                }.into_any(),
                ModelState::Idle if !has_model => view! {
                    <p class="muted" data-testid="model-none">"No model is configured: the page embedding this chat sets one with data-model."</p>
                }.into_any(),
                ModelState::Idle if !crate::app::framed() => {
                    let url = shown.clone();
                    view! {
                        <p class="muted" data-testid="model-consent">"This link asks Sprig to download the model at "
                            <code>{url}</code>" and run it on this device. "
                            <button data-testid="model-consent-load" on:click=move |_| start.run(())>"Download and load"</button></p>
                    }.into_any()
                }
                ModelState::Idle => view! { <p class="muted">"Starting…"</p> }.into_any(),
                ModelState::Loading { stage, done, total, since_ms, now_ms, rate, eta_s } => {
                    let what = match stage {
                        sprig_protocol::LoadStage::Download => "Downloading the model",
                        sprig_protocol::LoadStage::Verify => "Checking the stored model",
                        sprig_protocol::LoadStage::Load => "Loading the model",
                    };
                    let pct = total.filter(|t| *t > 0).map(|t| (done as f64 / t as f64 * 100.0).min(100.0));
                    let label = match pct {
                        Some(p) => format!("{what}: {p:.0} % · {}", speed(done, rate, eta_s, now_ms - since_ms)),
                        None => format!("{what}: {}", bytes(done)),
                    };
                    let aria = label.clone();
                    view! {
                        <div class="progress" data-testid="model-progress" role="progressbar" aria-valuemin="0" aria-valuemax="100"
                            aria-valuenow=pct.map(|p| format!("{p:.0}")) aria-label=aria>
                            <div class="bar" style=format!("width: {:.1}%", pct.unwrap_or(0.0))></div>
                            <span>{label}</span>
                        </div>
                    }.into_any()
                }
                ModelState::Paused { .. } => {
                    let retry = retry.clone();
                    view! {
                        <p class="muted" data-testid="model-paused">"The download is paused. "
                            <button class="link" data-testid="download-resume" on:click=move |_| retry()>"Resume"</button></p>
                    }.into_any()
                }
                ModelState::Ready(m) => view! {
                    <p class="muted" data-testid="model-ready">{m.name} " · runs on this device"</p>
                }.into_any(),
                ModelState::Failed(reason) => {
                    let retry = retry.clone();
                    view! {
                        <p class="failed" data-testid="model-failed">"Could not load the model: " {reason} " "
                            <button class="link" data-testid="model-retry" on:click=move |_| retry()>"Try again"</button></p>
                    }.into_any()
                }
            }}
        </div>
    }
}

/// The widget: a title bar, the model's state, the conversation and the
/// composer; no sidebar, history, model picker or settings.
#[component]
pub fn EmbedApp(
    /// What the embedding page asked for.
    config: EmbedConfig,
) -> impl IntoView {
    let ctl = expect_context::<Controller>();
    ctl.update_settings(|s| {
        if let Some(p) = &config.system_prompt {
            s.system_prompt.clone_from(p);
        }
        if let Some(n) = config.max_tokens {
            s.generation.max_tokens = n;
        }
        if let Some(t) = config.temperature {
            s.generation.temperature = t;
        }
    });
    dress_document(&config);
    let (blocked, set_blocked) = signal(false);
    let start = Callback::new({
        let model = config.model.clone();
        move |()| {
            if let Some(url) = model.clone() {
                leptos::task::spawn_local(async move {
                    if storage_available().await {
                        ctl.load(url); // from the store when it is there; queued until the worker is up
                    } else {
                        set_blocked.set(true);
                        ctl.refuse_load(STORAGE_BLOCKED.into());
                        // the bridge tells the page
                    }
                });
            }
        }
    });
    // Framed by a page (embed.js), the widget loads its model at once. Opened
    // as a top-level page (a link from anywhere), it downloads nothing
    // before a click.
    if crate::app::framed() {
        start.run(());
    }
    let bridge = Bridge::connect(&config);
    let framed = bridge.is_some();
    if let Some(bridge) = bridge.clone() {
        start_bridge(ctl, bridge, config.model.is_some());
    }
    let close = move |_| {
        if let Some(b) = &bridge {
            b.post(&Outbound::Close);
        }
    };

    // Keep the newest text in view while the reader is at the bottom.
    let scroller = NodeRef::<leptos::html::Div>::new();
    let pinned = StoredValue::new(true);
    Effect::new(move |_| {
        ctl.conversation.track();
        ctl.reply.track();
        request_animation_frame(move || {
            if let Some(el) = scroller.get_untracked() {
                if pinned.get_value() {
                    el.set_scroll_top(el.scroll_height());
                }
            }
        });
    });
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            pinned.set_value(el.scroll_height() - el.scroll_top() - el.client_height() < 48);
        }
    };

    view! {
        <div class="embed" data-testid="embed">
            <header class="embed-bar">
                <h1 data-testid="embed-title">{config.title.clone()}</h1>
                <button class="link" data-testid="new-chat" on:click=move |_| ctl.new_chat()>"New chat"</button>
                {framed.then(|| view! {
                    <button class="embed-close" data-testid="embed-close" aria-label="Close the chat" title="Close (Esc)" on:click=close>"×"</button>
                })}
            </header>
            <EmbedModelStatus model=config.model.clone() blocked start />
            <Banners />
            <div class="embed-scroll" node_ref=scroller on:scroll=on_scroll>
                <ConversationView empty_hint="Ask anything. Enter sends, Shift+Enter starts a new line." />
            </div>
            <Composer />
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(query: &[(&str, &str)]) -> Option<EmbedConfig> {
        EmbedConfig::from_pairs(query.iter().copied())
    }

    #[test]
    fn only_embed_1_is_the_widget() {
        assert_eq!(config(&[]), None);
        assert_eq!(config(&[("embed", "0"), ("model", "m.json")]), None);
        let c = config(&[("embed", "1")]).unwrap();
        assert_eq!((c.title.as_str(), c.theme, c.model, c.parent), ("Sprig", Theme::Auto, None, None));
    }

    #[test]
    fn options_are_read_and_checked() {
        let c = config(&[
            ("embed", "1"),
            ("model", "https://sprig.example/models/m.manifest.json"),
            ("title", "Help"),
            ("theme", "dark"),
            ("parent", "https://shop.example:8443"),
            ("system", "Be brief."),
            ("max_tokens", "64"),
            ("temperature", "0"),
        ])
        .unwrap();
        assert_eq!(c.model.as_deref(), Some("https://sprig.example/models/m.manifest.json"));
        assert_eq!((c.title.as_str(), c.theme), ("Help", Theme::Dark));
        assert_eq!(c.parent.as_deref(), Some("https://shop.example:8443"));
        assert_eq!((c.system_prompt.as_deref(), c.max_tokens, c.temperature), (Some("Be brief."), Some(64), Some(0.0)));
        let c = config(&[("embed", "1"), ("theme", "purple"), ("max_tokens", "0"), ("temperature", "9"), ("parent", "*")]).unwrap();
        assert_eq!((c.theme, c.max_tokens, c.temperature, c.parent), (Theme::Auto, None, None, None));
        let nonce = |v: &str| config(&[("embed", "1"), ("nonce", v)]).unwrap().nonce;
        assert_eq!(nonce("0123456789abcdef0123").as_deref(), Some("0123456789abcdef0123"));
        for bad in ["short", "0123456789abcdef'><", &"a".repeat(65)] {
            assert_eq!(nonce(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_real_origins_are_parents() {
        for ok in ["https://a.example", "http://127.0.0.1:8080", "http://localhost", "https://[::1]:443", "http://[::1]"] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "null",
            "*",
            "",
            "https://",
            "https://a.example/",
            "https://a.example/x",
            "https://u@a.example",
            "file://",
            "javascript:x",
            "https://a.example:",
            "https://a.example:80x",
            "https://a b",
            "https://[::1",
            "https://[::1]x",
            "https://[]",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
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

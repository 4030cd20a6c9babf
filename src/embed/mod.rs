//! The widget: the same app in a compact layout, shown when the page is opened
//! as `/?embed=1&…` (by `www/embed.js`, in an iframe on Sprig's own origin),
//! and its `postMessage` bridge to the page that embeds it.
//!
//! The query carries what the embedding page chose: `model` (a catalog id
//! of `models.json`, or a manifest or GGUF URL only where the catalog
//! allows custom URLs; loaded at once once the catalog is read: from the
//! model store when it is there),
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
//! | widget → page | `{type: "sprig:ready", model, url}`: the model (its name, and the `data-model` it was asked for and loaded, a catalog id or URL, which embed.js checks is its own) is loaded |
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

mod bridge;
mod config;
mod dom;

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;

pub use bridge::{BridgeState, Inbound, ModelPhase, Outbound, BRIDGE_VERSION, STORAGE_BLOCKED};
pub use config::{is_origin, EmbedConfig, Theme};
use dom::Parent;

use crate::catalog::Touched;
use crate::components::banners::Banners;
use crate::components::composer::Composer;
use crate::components::conversation::ConversationView;
use crate::components::progress::LoadProgressBar;
use crate::controller::Controller;
use crate::state::ModelState;

/// Starts the bridge: listens to the parent, tells it about the model, and
/// answers its asks ([`BridgeState`] decides; this wires it to the
/// controller and the parent window).
fn start_bridge(ctl: Controller, parent: Rc<Parent>, requested: Option<String>, resolved: Memo<Option<Result<String, String>>>) {
    let has_model = requested.is_some();
    let state = Rc::new(RefCell::new(BridgeState::new(has_model)));
    // Sends the next queued ask when the model is ready and no reply runs.
    let pump = {
        let (state, parent) = (state.clone(), parent.clone());
        move || {
            let free = ctl.generating.get_untracked().is_none();
            let Some((id, text)) = state.borrow_mut().next(free) else { return };
            let result = ctl.send(text).ok_or_else(|| ctl.error.get_untracked().unwrap_or_else(|| "the message could not be sent".into()));
            parent.post_all(state.borrow_mut().sent(id, result));
        }
    };
    dom::listen(
        parent.clone(),
        {
            let (state, parent, pump) = (state.clone(), parent.clone(), pump.clone());
            move |Inbound::Ask { id, text }| {
                parent.post_all(state.borrow_mut().ask(id, text));
                pump();
            }
        },
        {
            let parent = parent.clone();
            move || parent.post(&Outbound::Close)
        },
    );
    ctl.on_reply_end({
        let (state, parent) = (state.clone(), parent.clone());
        move |turn, end| parent.post_all(state.borrow_mut().reply_ended(turn, end))
    });
    // Tell the page when the model becomes ready or fails, and send queued
    // asks whenever the model is free.
    Effect::new({
        let parent = parent.clone();
        move |_| {
            let phase = match ctl.model.get() {
                ModelState::Ready(m) => {
                    // The page is told the data-model it asked for (id or
                    // URL) when that is what loaded, else the URL loaded.
                    let url = ctl.active.get_untracked().and_then(|s| s.url().map(str::to_string)).unwrap_or_default();
                    let asked = resolved.get_untracked().and_then(Result::ok).is_some_and(|r| r == url);
                    let url = if asked { requested.clone().unwrap_or(url) } else { url };
                    ModelPhase::Ready { name: m.name, url }
                }
                ModelState::Failed(reason) => ModelPhase::Failed(reason),
                _ => ModelPhase::Waiting,
            };
            parent.post_all(state.borrow_mut().model(phase));
            ctl.generating.track();
            pump();
        }
    });
    parent.post(&Outbound::Hello { v: BRIDGE_VERSION });
}

/// The compact model line: progress while loading, the model's name once ready.
#[component]
fn EmbedModelStatus(
    /// Whether the page configured a model (`data-model`).
    has_model: bool,
    /// The configured model's URL, once the catalog says which (or why none).
    resolved: Memo<Option<Result<String, String>>>,
    /// Set when the browser denies this page storage.
    blocked: ReadSignal<bool>,
    /// Starts loading the model (opened as a top-level page, the widget
    /// waits for a click on it).
    start: Callback<()>,
) -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let retry = move || {
        if let Some(Ok(url)) = resolved.get_untracked() {
            ctl.load(url);
        }
    };
    view! {
        <div class="embed-model" aria-label="Model">
            {move || match ctl.model.get() {
                _ if blocked.get() => view! {
                    <p class="failed" data-testid="storage-blocked">
                        "This browser does not let Sprig keep its model inside this site's page. "
                        <a href=dom::standalone_url() target="_blank" rel="noopener" data-testid="open-in-tab">"Open the chat in a new tab"</a>
                    </p>
                }.into_any(),
                ModelState::Idle if !has_model => view! {
                    <p class="muted" data-testid="model-none">"No model is configured: the page embedding this chat sets one with data-model."</p>
                }.into_any(),
                ModelState::Idle if !crate::app::framed() && matches!(resolved.get(), Some(Ok(_))) => {
                    let url = resolved.get().and_then(Result::ok).unwrap_or_default();
                    view! {
                        <p class="muted" data-testid="model-consent">"This link asks Sprig to download the model at "
                            <code>{url}</code>" and run it on this device. "
                            <button data-testid="model-consent-load" on:click=move |_| start.run(())>"Download and load"</button></p>
                    }.into_any()
                }
                ModelState::Idle => view! { <p class="muted">"Starting…"</p> }.into_any(),
                ModelState::Loading(progress) => view! { <LoadProgressBar progress compact=true /> }.into_any(),
                ModelState::Paused { .. } => view! {
                    <p class="muted" data-testid="model-paused">"The download is paused. "
                        <button class="link" data-testid="download-resume" on:click=move |_| retry()>"Resume"</button></p>
                }.into_any(),
                ModelState::Ready(m) => view! {
                    <p class="muted" data-testid="model-ready">{m.name} " · runs on this device"</p>
                }.into_any(),
                ModelState::Failed(reason) => view! {
                    <p class="failed" data-testid="model-failed">"Could not load the model: " {reason} " "
                        <button class="link" data-testid="model-retry" on:click=move |_| retry()>"Try again"</button></p>
                }.into_any(),
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
    // The page's choices win over a catalog model's defaults.
    let pinned = Touched {
        system_prompt: config.system_prompt.is_some(),
        max_tokens: config.max_tokens.is_some(),
        temperature: config.temperature.is_some(),
        ..Touched::default()
    };
    ctl.set_host_settings(
        |s| {
            if let Some(p) = &config.system_prompt {
                s.system_prompt.clone_from(p);
            }
            if let Some(n) = config.max_tokens {
                s.generation.max_tokens = n;
            }
            if let Some(t) = config.temperature {
                s.generation.temperature = t;
            }
        },
        pinned,
    );
    dom::dress_document(&config);
    let (blocked, set_blocked) = signal(false);
    // The model data-model names, once the catalog says (an id's URL, or
    // the URL where the catalog allows it), or why none.
    let requested = config.model.clone();
    let resolved = Memo::new({
        let requested = requested.clone();
        move |_| requested.as_deref().and_then(|r| ctl.catalog.with(|c| c.widget_model(r)))
    });
    let start = Callback::new(move |()| match resolved.get_untracked() {
        Some(Ok(url)) => leptos::task::spawn_local(async move {
            if dom::storage_available().await {
                ctl.load(url); // from the store when it is there; queued until the worker is up
            } else {
                set_blocked.set(true);
                ctl.refuse_load(STORAGE_BLOCKED.into());
                // the bridge tells the page
            }
        }),
        Some(Err(reason)) => ctl.refuse_load(reason),
        None => {}
    });
    // Once the catalog is read: framed by a page (embed.js), the widget
    // loads its model at once; opened as a top-level page (a link from
    // anywhere), it downloads nothing before a click. A data-model the
    // catalog refuses fails at once, either way.
    let framed_page = crate::app::framed();
    let decided = StoredValue::new(false);
    Effect::new(move |_| {
        let Some(outcome) = resolved.get() else { return };
        if decided.get_value() {
            return;
        }
        decided.set_value(true);
        if framed_page || outcome.is_err() {
            start.run(());
        }
    });
    let parent = Parent::connect(&config).map(Rc::new);
    let framed = parent.is_some();
    if let Some(parent) = parent.clone() {
        start_bridge(ctl, parent, requested.clone(), resolved);
    }
    let close = move |_| {
        if let Some(b) = &parent {
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
            <EmbedModelStatus has_model=requested.is_some() resolved blocked start />
            <Banners />
            <div class="embed-scroll" node_ref=scroller on:scroll=on_scroll>
                <ConversationView empty_hint="Ask anything. Enter sends, Shift+Enter starts a new line." />
            </div>
            <Composer />
        </div>
    }
}

//! The widget's DOM glue: the parent window it talks to, the listeners, the
//! storage probe and the document's dressing. Everything that decides what
//! to say is in `bridge.rs`; this file only carries it.

use gloo_events::EventListener;
use leptos::prelude::{document, window};
use wasm_bindgen::JsCast;

use super::bridge::{Inbound, Outbound};
use super::config::{EmbedConfig, Theme};

/// The widget's end of the bridge: the parent window and its origin.
pub struct Parent {
    window: web_sys::Window,
    origin: String,
    /// embed.js's nonce, echoed in every message.
    nonce: Option<String>,
}

impl Parent {
    /// The parent window, when the widget is framed and its origin is known.
    pub fn connect(config: &EmbedConfig) -> Option<Self> {
        let origin = config.parent.clone()?;
        let parent = window().parent().ok().flatten()?;
        if js_sys::Object::is(parent.as_ref(), window().as_ref()) {
            return None; // not in a frame
        }
        Some(Self { window: parent, origin, nonce: config.nonce.clone() })
    }

    /// Posts `message` to the parent, at its origin only.
    pub fn post(&self, message: &Outbound) {
        let Ok(json) = serde_json::to_string(message) else { return };
        let Ok(value) = js_sys::JSON::parse(&json) else { return };
        // embed.js takes only messages carrying the nonce it put in this
        // frame's address, which another page framing the widget cannot know.
        if let Some(nonce) = &self.nonce {
            let _ = js_sys::Reflect::set(&value, &"nonce".into(), &nonce.into());
        }
        // Delivered only if the parent still shows a page of that origin.
        let _ = self.window.post_message(&value, &self.origin);
    }

    /// Posts each of `messages`.
    pub fn post_all(&self, messages: Vec<Outbound>) {
        for message in &messages {
            self.post(message);
        }
    }

    /// The bridge message in `event`, if it is one from the parent window at
    /// the parent's origin; anything else is ignored, silently.
    pub fn accept(&self, event: &web_sys::MessageEvent) -> Option<Inbound> {
        let from_parent = event.source().is_some_and(|s| js_sys::Object::is(s.as_ref(), self.window.as_ref()));
        if !from_parent || event.origin() != self.origin {
            return None;
        }
        let json = js_sys::JSON::stringify(&event.data()).ok()?.as_string()?;
        Inbound::parse(&json)
    }
}

/// Calls `on_message` with each bridge message and `on_escape` on each
/// Escape key not already handled, for as long as the page lives.
pub fn listen(parent: std::rc::Rc<Parent>, on_message: impl Fn(Inbound) + 'static, on_escape: impl Fn() + 'static) {
    let w = window();
    EventListener::new(&w, "message", move |event| {
        if let Some(message) = event.dyn_ref::<web_sys::MessageEvent>().and_then(|e| parent.accept(e)) {
            on_message(message);
        }
    })
    .forget();
    EventListener::new(&w, "keydown", move |event| {
        let escape = event.dyn_ref::<web_sys::KeyboardEvent>().is_some_and(|k| k.key() == "Escape");
        if escape && !event.default_prevented() {
            on_escape();
        }
    })
    .forget();
}

/// Whether the browser lets this page use its file storage (OPFS), where the
/// worker keeps models. Browsers that block third-party storage refuse it to
/// the widget on another site's page; those that partition it allow it.
pub async fn storage_available() -> bool {
    let promise = window().navigator().storage().get_directory();
    wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
}

/// This page's URL without the bridge (`parent`): the widget on its own, as a
/// top-level page of Sprig's origin, where its storage is Sprig's own.
pub fn standalone_url() -> Option<String> {
    let url = web_sys::Url::new(&window().location().href().ok()?).ok()?;
    url.search_params().delete("parent");
    Some(url.href())
}

/// Applies the configuration to the document: title, theme, links opening
/// outside the widget.
pub fn dress_document(config: &EmbedConfig) {
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

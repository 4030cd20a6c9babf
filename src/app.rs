//! The root component: lays out the panels and shares the [`Controller`];
//! opened as `/?embed=1&…` (by `www/embed.js`), the compact widget instead.

use leptos::prelude::*;

use crate::components::banners::Banners;
use crate::components::composer::Composer;
use crate::components::conversation::ConversationView;
use crate::components::history::History;
use crate::components::model_panel::ModelPanel;
use crate::components::models::ModelsPanel;
use crate::components::settings::SettingsPanel;
use crate::components::status::Status;
use crate::components::update_prompt::UpdatePrompt;
use crate::controller::Controller;
use crate::embed::{EmbedApp, EmbedConfig};

/// Whether this page runs inside another page's frame.
pub(crate) fn framed() -> bool {
    let w = window();
    match w.top() {
        Ok(Some(top)) => !js_sys::Object::is(top.as_ref(), w.as_ref()),
        // No top window to compare with: assume the worst.
        _ => true,
    }
}

/// The Sprig application.
#[component]
pub fn App() -> impl IntoView {
    if let Some(config) = EmbedConfig::from_location() {
        provide_context(Controller::ephemeral());
        return view! { <EmbedApp config /> }.into_any();
    }
    if framed() {
        // The full app (its store, conversations and settings) is not for
        // another site to frame: only the widget view may be.
        return view! {
            <div class="app framed" data-testid="framed">
                <p>"Sprig does not run inside another site's page. "
                    <a href="./" target="_top" rel="noopener">"Open Sprig in its own tab"</a>"."</p>
            </div>
        }
        .into_any();
    }
    let ctl = Controller::new();
    provide_context(ctl);
    view! {
        <div class="app">
            <aside class="sidebar" aria-label="Conversations">
                <header class="brand">
                    <h1>"Sprig"</h1>
                    <p class="tagline">"An LLM that runs entirely in your browser."</p>
                </header>
                <button class="primary" data-testid="new-chat" on:click=move |_| ctl.new_chat()>"New chat"</button>
                <History />
            </aside>
            <main class="chat">
                <UpdatePrompt />
                <ModelPanel />
                <ModelsPanel />
                <Banners />
                <ConversationView />
                <Composer />
                <SettingsPanel />
                <Status />
            </main>
        </div>
    }
    .into_any()
}

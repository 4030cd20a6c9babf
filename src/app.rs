//! The root component: lays out the panels and shares the [`Controller`].

use leptos::prelude::*;

use crate::components::composer::Composer;
use crate::components::conversation::ConversationView;
use crate::components::history::History;
use crate::components::model_panel::ModelPanel;
use crate::components::models::ModelsPanel;
use crate::components::settings::SettingsPanel;
use crate::components::status::Status;
use crate::controller::{Controller, WorkerStatus};

/// The Sprig application.
#[component]
pub fn App() -> impl IntoView {
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
                <ModelPanel />
                <ModelsPanel />
                <Show when=move || ctl.worker.get() == WorkerStatus::Crashed>
                    <p class="banner error" role="alert">
                        "The model worker stopped unexpectedly. "
                        <button data-testid="restart-worker" on:click=move |_| ctl.restart_worker()>"Restart it"</button>
                    </p>
                </Show>
                <Show when=move || ctl.error.get().is_some()>
                    <p class="banner error" role="alert" data-testid="error">
                        <span>{move || ctl.error.get()}</span>
                        <button class="dismiss" aria-label="Dismiss the error" on:click=move |_| ctl.error.set(None)>"×"</button>
                    </p>
                </Show>
                <Show when=move || ctl.notice.get().is_some()>
                    <p class="banner notice" role="status" data-testid="notice">{move || ctl.notice.get()}</p>
                </Show>
                <ConversationView />
                <Composer />
                <SettingsPanel />
                <Status />
            </main>
        </div>
    }
}

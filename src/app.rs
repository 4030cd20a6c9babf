//! The root component: starts the model worker and shows what it says.

use leptos::prelude::*;
use sprig_protocol::{Event, Request};

use crate::client::{Incoming, WorkerClient, WORKER_URL};
use crate::components::worker_status::{WorkerState, WorkerStatus};

/// The Sprig application.
#[component]
pub fn App() -> impl IntoView {
    let (state, set_state) = signal(WorkerState::Starting);
    let (error, set_error) = signal(None::<String>);

    let on_event = move |incoming: Incoming| match incoming {
        Ok(Event::Ready) => set_state.set(WorkerState::Ready),
        Ok(Event::Hello { info, .. }) => set_state.set(WorkerState::Answered(info)),
        Ok(Event::Error { kind, message }) => set_error.set(Some(format!("{kind:?}: {message}"))),
        Err(e) => set_error.set(Some(e.to_string())),
    };
    let client = match WorkerClient::spawn(WORKER_URL, on_event) {
        Ok(client) => Some(client),
        Err(e) => {
            set_error.set(Some(e.to_string()));
            None
        }
    };
    let client = StoredValue::new_local(client);
    let nonce = StoredValue::new(0u64);

    let say_hello = move || {
        nonce.update_value(|n| *n += 1);
        let request = Request::Hello { nonce: nonce.get_value() };
        client.with_value(|c| {
            if let Some(Err(e)) = c.as_ref().map(|c| c.send(request)) {
                set_error.set(Some(e.to_string()));
            }
        });
    };
    say_hello();

    view! {
        <header class="app-header">
            <h1>"Sprig"</h1>
            <p class="tagline">"Chat with an LLM that runs entirely in your browser."</p>
        </header>
        <main>
            <WorkerStatus state=state />
            <button data-testid="worker-ping" on:click=move |_| say_hello()>
                "Ask the worker again"
            </button>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert" data-testid="error">{move || error.get()}</p>
            </Show>
        </main>
    }
}

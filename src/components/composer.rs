//! Typing a message: Enter sends, Shift+Enter is a new line; Stop while a reply streams.

use leptos::prelude::*;

use crate::controller::Controller;
use crate::state::ModelState;

/// The message box with its Send and Stop buttons.
#[component]
pub fn Composer() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let (text, set_text) = signal(String::new());
    let ready = move || matches!(ctl.model.get(), ModelState::Ready(_));
    let busy = move || ctl.generating.get().is_some();
    let send = move || {
        let t = text.get_untracked();
        if !t.trim().is_empty() && ready() && !busy() {
            ctl.send(t);
            set_text.set(String::new());
        }
    };
    view! {
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
            <textarea
                data-testid="composer"
                aria-label="Your message"
                rows="2"
                placeholder=move || if ready() { "Message Sprig…" } else { "Load a model to start chatting" }
                disabled=move || !ready()
                prop:value=move || text.get()
                on:input=move |ev| set_text.set(event_target_value(&ev))
                on:keydown=move |ev: web_sys::KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <Show
                when=busy
                fallback=move || view! {
                    <button type="submit" class="primary" data-testid="send" disabled=move || !ready() || text.get().trim().is_empty()>"Send"</button>
                }
            >
                <button type="button" data-testid="stop" on:click=move |_| ctl.stop()>"Stop"</button>
            </Show>
        </form>
    }
}

//! The "new version — reload" prompt. It starts the service worker (see
//! [`crate::pwa`]), shows when a new version of the app is waiting, and
//! reloads only when asked, never while a reply is being written.

use leptos::prelude::*;

use crate::controller::Controller;
use crate::pwa::{Pwa, Update};

/// Registers the service worker and offers a waiting new version.
#[component]
pub fn UpdatePrompt() -> impl IntoView {
    let pwa = Pwa::start();
    let ctl = use_context::<Controller>();
    let busy = move || ctl.is_some_and(|c| c.generating.get().is_some());
    view! {
        <Show when=move || pwa.update.get() != Update::None>
            <p class="banner update" role="status" data-testid="update-prompt">
                <span>"A new version of Sprig is ready — reload to use it."</span>
                <Show when=busy>
                    <span class="muted" data-testid="update-wait">"Once this reply is done."</span>
                </Show>
                <button
                    class="primary"
                    data-testid="update-reload"
                    disabled=move || busy() || pwa.reloading.get()
                    on:click=move |_| {
                        if !busy() {
                            pwa.apply();
                        }
                    }
                >
                    {move || if pwa.reloading.get() { "Reloading…" } else { "Reload" }}
                </button>
            </p>
        </Show>
    }
}

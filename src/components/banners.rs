//! The banners above the conversation: a crashed worker (with Restart), the
//! last error (dismissable) and a notice.

use leptos::prelude::*;

use crate::controller::{Controller, WorkerStatus};

/// The crashed-worker, error and notice banners, each shown when it applies.
#[component]
pub fn Banners() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    view! {
        <Show when=move || ctl.worker.get() == WorkerStatus::Crashed>
            <p class="banner error" role="alert">
                "The model worker stopped unexpectedly. "
                <button data-testid="restart-worker" on:click=move |_| ctl.restart_worker()>"Restart it"</button>
            </p>
        </Show>
        <Show when=move || ctl.error.get().is_some()>
            <p class="banner error" role="alert" data-testid="error">
                <span>{move || ctl.error.get()}</span>
                <button class="dismiss" aria-label="Dismiss the error" on:click=move |_| ctl.dismiss_error()>"×"</button>
            </p>
        </Show>
        <Show when=move || ctl.notice.get().is_some()>
            <p class="banner notice" role="status" data-testid="notice">{move || ctl.notice.get()}</p>
        </Show>
    }
}

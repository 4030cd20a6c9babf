//! Shows whether the model worker is up and what it runs.

use leptos::prelude::*;
use sprig_protocol::WorkerInfo;

/// Where the model worker stands, as the UI knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerState {
    /// Spawned, not yet announced itself.
    Starting,
    /// Announced readiness, not yet answered.
    Ready,
    /// Answered a hello with its description.
    Answered(WorkerInfo),
}

/// A status panel for the model worker.
#[component]
pub fn WorkerStatus(
    /// The worker's current state.
    state: ReadSignal<WorkerState>,
) -> impl IntoView {
    view! {
        <section class="worker-status" aria-live="polite" data-testid="worker-status">
            {move || match state.get() {
                WorkerState::Starting => view! { <p>"Starting the model worker…"</p> }.into_any(),
                WorkerState::Ready => view! { <p>"Model worker ready."</p> }.into_any(),
                WorkerState::Answered(info) => view! {
                    <p data-testid="worker-hello">
                        "Model worker answered: sprig-worker " {info.worker_version.clone()}
                        ", sprig-engine " {info.engine_version.clone()}
                        ", wasm SIMD " {if info.simd128 { "on" } else { "off" }}
                        ", self-test " <code data-testid="worker-self-test">{info.self_test.clone()}</code>
                    </p>
                }.into_any(),
            }}
        </section>
    }
}

//! A footer line saying what the model worker runs.

use leptos::prelude::*;

use crate::controller::{Controller, WorkerStatus};

/// The engine status line.
#[component]
pub fn Status() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    view! {
        <footer class="status muted" data-testid="worker-status">
            {move || match (ctl.worker.get(), ctl.info.get()) {
                (WorkerStatus::Crashed, _) => view! { <span>"Model worker stopped."</span> }.into_any(),
                (_, Some(info)) => view! {
                    <span data-testid="worker-hello">
                        "sprig-worker " {info.worker_version.clone()} " · sprig-engine " {info.engine_version.clone()}
                        " · wasm SIMD " {if info.simd128 { "on" } else { "off" }}
                        " · self-test " <code data-testid="worker-self-test">{info.self_test.clone()}</code>
                    </span>
                }.into_any(),
                (WorkerStatus::Ready, None) => view! { <span>"Model worker ready."</span> }.into_any(),
                (WorkerStatus::Starting, None) => view! { <span>"Starting the model worker…"</span> }.into_any(),
            }}
        </footer>
    }
}

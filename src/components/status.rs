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
                        " · kernels " <span data-testid="worker-kernels">{kernels_label(&info.kernels, info.simd128)}</span>
                        " · self-test " <code data-testid="worker-self-test">{info.self_test.clone()}</code>
                    </span>
                }.into_any(),
                (WorkerStatus::Ready, None) => view! { <span>"Model worker ready."</span> }.into_any(),
                (WorkerStatus::Starting, None) => view! { <span>"Starting the model worker…"</span> }.into_any(),
            }}
        </footer>
    }
}

/// How a worker's kernel build is named in the page.
pub fn kernels_label(kernels: &str, simd128: bool) -> String {
    match kernels {
        "relaxed-simd" => "wasm relaxed SIMD".into(),
        "simd128" => "wasm SIMD".into(),
        "" if simd128 => "wasm SIMD".into(),
        "" => "portable".into(),
        other => other.into(),
    }
}

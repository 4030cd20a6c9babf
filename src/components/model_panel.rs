//! Choosing a model, loading it, and watching the download and load progress.

use leptos::prelude::*;
use sprig_protocol::LoadStage;

use crate::components::progress::LoadProgressBar;
use crate::controller::Controller;
use crate::state::{bytes, ModelState, CATALOG};

/// The model picker, load button, progress bar and model badge.
#[component]
pub fn ModelPanel() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let (choice, set_choice) = signal(CATALOG[0].key.to_string());
    let (custom_url, set_custom_url) = signal(String::new());
    let loading = move || matches!(ctl.model.get(), ModelState::Loading(_));
    let url = move || {
        let key = choice.get();
        CATALOG.iter().find(|m| m.key == key).map_or_else(|| custom_url.get(), |m| m.url.to_string())
    };
    view! {
        <section class="model-panel" aria-label="Model">
            <div class="model-row">
                <label for="model-select">"Model"</label>
                <select
                    id="model-select"
                    data-testid="model-select"
                    prop:value=move || choice.get()
                    on:change=move |ev| set_choice.set(event_target_value(&ev))
                    disabled=loading
                >
                    {CATALOG
                        .iter()
                        .map(|m| view! { <option value=m.key>{format!("{} — {}", m.label, bytes(m.size))}</option> })
                        .collect_view()}
                    <option value="custom">"Another model (GGUF or manifest URL)…"</option>
                </select>
                <Show when=move || choice.get() == "custom">
                    <input
                        type="url"
                        data-testid="model-url"
                        aria-label="URL of a GGUF model or shard manifest"
                        placeholder="https://…/model.gguf or …/manifest.json"
                        prop:value=move || custom_url.get()
                        on:input=move |ev| set_custom_url.set(event_target_value(&ev))
                    />
                </Show>
                <button class="primary" data-testid="model-load" disabled=loading on:click=move |_| ctl.load(url())>
                    "Load"
                </button>
                <label class="file-pick" title="Open a GGUF file from this device; it is read in place, never uploaded">
                    "Open file…"
                    <input
                        type="file"
                        accept=".gguf"
                        data-testid="model-file"
                        disabled=loading
                        on:change=move |ev| {
                            let input: web_sys::HtmlInputElement = event_target(&ev);
                            if let Some(file) = input.files().and_then(|f| f.get(0)) {
                                ctl.load_file(file);
                            }
                            input.set_value("");
                        }
                    />
                </label>
            </div>
            {move || match ctl.model.get() {
                ModelState::Idle => view! { <p class="muted">"No model loaded. Models run on this device; nothing is sent to a server."</p> }.into_any(),
                ModelState::Loading(progress) => {
                    let downloading = progress.stage != LoadStage::Load;
                    view! {
                        <LoadProgressBar progress />
                        <Show when=move || downloading>
                            <div class="download-actions">
                                <button data-testid="download-pause" on:click=move |_| ctl.pause()>"Pause"</button>
                                <button data-testid="download-cancel" on:click=move |_| ctl.cancel()>"Cancel"</button>
                            </div>
                        </Show>
                    }.into_any()
                }
                ModelState::Paused { done, total } => {
                    let pct = total.filter(|t| *t > 0).map_or(0.0, |t| done as f64 / t as f64 * 100.0);
                    view! {
                        <div class="paused" data-testid="model-paused">
                            <span>{format!("Download paused at {pct:.0} % ({} stored). ", bytes(done))}</span>
                            <button class="primary" data-testid="download-resume" on:click=move |_| ctl.resume()>"Resume"</button>
                            <button data-testid="download-cancel" on:click=move |_| ctl.cancel()>"Cancel"</button>
                        </div>
                    }.into_any()
                }
                ModelState::Ready(m) => view! {
                    <p class="ready" data-testid="model-ready">
                        <strong>{m.name.clone()}</strong>
                        {format!(" · {} · {} · {:.0} M parameters · {} tokens of context · {}",
                            m.architecture, m.quantization, m.parameter_count as f64 / 1e6, m.context_length, bytes(m.size_bytes))}
                        <span class="muted" data-testid="model-timings">
                            {if m.fetch_ms >= 1000.0 {
                                format!(" · downloaded in {:.1} s, loaded in {:.1} s", m.fetch_ms / 1000.0, m.load_ms / 1000.0)
                            } else {
                                format!(" · loaded from this device in {:.1} s", (m.fetch_ms + m.load_ms) / 1000.0)
                            }}
                            {(!m.kernels.is_empty()).then(|| view! {
                                " · " <span data-testid="model-kernels">{crate::components::status::kernels_label(&m.kernels, true)}</span> " kernels"
                            })}
                            {(m.memory_bytes > 0 && m.worker_memory_bytes.len() <= 1).then(|| format!(" · worker memory {}", bytes(m.memory_bytes)))}
                            {(m.worker_memory_bytes.len() > 1).then(|| format!(
                                " · {} workers, memory {}",
                                m.worker_memory_bytes.len(),
                                m.worker_memory_bytes.iter().map(|b| bytes(*b)).collect::<Vec<_>>().join(" + ")
                            ))}
                        </span>
                    </p>
                }.into_any(),
                ModelState::Failed(reason) => view! { <p class="failed" data-testid="model-failed">"Could not load the model: " {reason}</p> }.into_any(),
            }}
        </section>
    }
}

//! Choosing a model, loading it, and watching the download and load progress.

use leptos::prelude::*;
use sprig_protocol::LoadStage;

use crate::catalog::CatalogState;
use crate::components::progress::LoadProgressBar;
use crate::controller::Controller;
use crate::state::{bytes, ModelState};

/// The picker's value for a URL of the user's own.
const CUSTOM: &str = "custom";

/// The picker's choice: the one made, while the catalog still offers it,
/// else the catalog's first model, else a custom URL (where allowed);
/// nothing while the catalog is being read.
fn effective_choice(chosen: &str, catalog: &CatalogState) -> Option<String> {
    if *catalog == CatalogState::Loading {
        return None;
    }
    let offered = |c: &str| catalog.models().iter().any(|m| m.id == c) || (c == CUSTOM && catalog.allows_custom_urls());
    if offered(chosen) {
        return Some(chosen.to_string());
    }
    catalog.models().first().map(|m| m.id.clone()).or_else(|| catalog.allows_custom_urls().then(|| CUSTOM.to_string()))
}

/// The model picker (the catalog's models and, unless it forbids them, a
/// URL of the user's own), load button, progress bar and model badge.
#[component]
pub fn ModelPanel() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let (chosen, set_choice) = signal(String::new());
    let (custom_url, set_custom_url) = signal(String::new());
    let loading = move || matches!(ctl.model.get(), ModelState::Loading(_));
    let choice = Memo::new(move |_| effective_choice(&chosen.get(), &ctl.catalog.get()));
    let selected = move || {
        let id = choice.get()?;
        ctl.catalog.with(|c| c.models().iter().find(|m| m.id == id).cloned())
    };
    let url = move || match choice.get() {
        Some(c) if c == CUSTOM => Some(custom_url.get()),
        Some(_) => selected().map(|m| m.url),
        None => None,
    };
    view! {
        <section class="model-panel" aria-label="Model">
            {move || match ctl.catalog.get() {
                CatalogState::Failed(reason) => view! {
                    <p class="failed" role="alert" data-testid="catalog-error">{reason} ". You can still load a model from its URL."</p>
                }.into_any(),
                _ => ().into_any(),
            }}
            <div class="model-row">
                <label for="model-select">"Model"</label>
                <select
                    id="model-select"
                    data-testid="model-select"
                    prop:value=move || choice.get().unwrap_or_default()
                    on:change=move |ev| set_choice.set(event_target_value(&ev))
                    disabled=move || loading() || choice.get().is_none()
                >
                    {move || {
                        let catalog = ctl.catalog.get();
                        let models = catalog
                            .models()
                            .iter()
                            .map(|m| view! { <option value=m.id.clone()>{format!("{} — {}", m.label, bytes(m.size))}</option> })
                            .collect_view();
                        let custom = catalog.allows_custom_urls().then(|| view! {
                            <option value=CUSTOM>"Another model (GGUF or manifest URL)…"</option>
                        });
                        let reading = matches!(catalog, CatalogState::Loading).then(|| view! {
                            <option value="" disabled=true>"Reading the model list…"</option>
                        });
                        (models, reading, custom)
                    }}
                </select>
                <Show when=move || choice.get().as_deref() == Some(CUSTOM)>
                    <input
                        type="url"
                        data-testid="model-url"
                        aria-label="URL of a GGUF model or shard manifest"
                        placeholder="https://…/model.gguf or …/manifest.json"
                        prop:value=move || custom_url.get()
                        on:input=move |ev| set_custom_url.set(event_target_value(&ev))
                    />
                </Show>
                <button
                    class="primary"
                    data-testid="model-load"
                    disabled=move || loading() || choice.get().is_none()
                    on:click=move |_| {
                        if let Some(url) = url() {
                            ctl.load(url);
                        }
                    }
                >
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
            {move || selected().map(|m| view! {
                <p class="muted model-about" data-testid="model-about">
                    {m.description.clone().map(|d| format!("{d} "))}
                    {format!("Licence: {}.", m.license)}
                </p>
            })}
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

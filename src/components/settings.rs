//! The settings panel: system prompt, sampling, downloads, workers and
//! context, each bounded by the ranges of [`sprig_protocol::limits`]. A
//! setting changed here stays as set when a catalog model with defaults
//! loads (`crate::catalog`).

use leptos::prelude::*;
use sprig_protocol::limits;

use crate::controller::Controller;

/// A numeric field bound to one setting.
#[component]
fn NumberField(
    /// The label.
    label: &'static str,
    /// `data-testid` of the input.
    testid: &'static str,
    /// Smallest value.
    min: f64,
    /// Largest value.
    max: f64,
    /// Step of the spinner.
    step: f64,
    /// Reads the setting.
    get: Signal<f64>,
    /// Writes the setting (receives a value within `min..=max`).
    set: Callback<f64>,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <input type="number" data-testid=testid min=min max=max step=step
                prop:value=move || get.get().to_string()
                on:change=move |ev| {
                    if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                        if v.is_finite() { set.run(v.clamp(min, max)); }
                    }
                }
            />
        </label>
    }
}

/// The collapsible settings panel.
#[component]
pub fn SettingsPanel() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let s = ctl.settings;
    view! {
        <details class="settings">
            <summary data-testid="settings">"Settings"</summary>
            <label class="field wide">
                <span>"System prompt"</span>
                <textarea data-testid="system-prompt" rows="2"
                    prop:value=move || s.with(|s| s.system_prompt.clone())
                    on:change=move |ev| ctl.update_settings(|s| s.system_prompt = event_target_value(&ev))></textarea>
            </label>
            <div class="grid">
                <NumberField label="Temperature" testid="temperature"
                    min=*limits::TEMPERATURE.start() max=*limits::TEMPERATURE.end() step=0.05
                    get=Signal::derive(move || s.with(|s| s.generation.temperature))
                    set=Callback::new(move |v| ctl.update_settings(|s| s.generation.temperature = v)) />
                <NumberField label="Top-p" testid="top-p" min=*limits::TOP_P.start() max=*limits::TOP_P.end() step=0.05
                    get=Signal::derive(move || s.with(|s| s.generation.top_p))
                    set=Callback::new(move |v| ctl.update_settings(|s| s.generation.top_p = v)) />
                <NumberField label="Top-k (0 = off)" testid="top-k" min=whole(*limits::TOP_K.start()) max=whole(*limits::TOP_K.end()) step=1.0
                    get=Signal::derive(move || s.with(|s| s.generation.top_k as f64))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.generation.top_k = v as usize)) />
                <NumberField label="Repeat penalty" testid="repeat-penalty"
                    min=*limits::REPEAT_PENALTY.start() max=*limits::REPEAT_PENALTY.end() step=0.05
                    get=Signal::derive(move || s.with(|s| f64::from(s.generation.repeat_penalty)))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.generation.repeat_penalty = v as f32)) />
                <NumberField label="Max new tokens" testid="max-tokens"
                    min=whole(*limits::MAX_TOKENS.start()) max=whole(*limits::MAX_TOKENS.end()) step=1.0
                    get=Signal::derive(move || s.with(|s| s.generation.max_tokens as f64))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.generation.max_tokens = v as usize)) />
                <NumberField label="Seed" testid="seed" min=0.0 max=4_294_967_295.0 step=1.0
                    get=Signal::derive(move || s.with(|s| s.generation.seed as f64))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.generation.seed = v as u64)) />
                <NumberField label="Download connections" testid="connections"
                    min=whole(*limits::CONNECTIONS.start()) max=whole(*limits::CONNECTIONS.end()) step=1.0
                    get=Signal::derive(move || s.with(|s| s.connections as f64))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.connections = v as usize)) />
                <NumberField label="Model workers (0 = by model size)" testid="workers"
                    min=whole(*limits::WORKERS.start()) max=whole(*limits::WORKERS.end()) step=1.0
                    get=Signal::derive(move || s.with(|s| s.workers as f64))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.workers = v as usize)) />
                <NumberField label="Context, tokens (0 = as memory allows; on next load)" testid="context"
                    min=0.0 max=whole(*limits::CONTEXT.end()) step=256.0
                    get=Signal::derive(move || s.with(|s| s.context as f64))
                    set=Callback::new(move |v: f64| ctl.update_settings(|s| s.context = context(v))) />
            </div>
        </details>
    }
}

/// A whole-number limit as the field's bound.
fn whole(n: usize) -> f64 {
    n as f64
}

/// A typed context limit: 0 (no limit), else within [`limits::CONTEXT`].
fn context(v: f64) -> usize {
    match v as usize {
        0 => 0,
        n => n.clamp(*limits::CONTEXT.start(), *limits::CONTEXT.end()),
    }
}

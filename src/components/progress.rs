//! The progress bar of a model load, shared by the model panel and the widget.

use leptos::prelude::*;
use sprig_protocol::LoadStage;

use crate::state::{bytes, LoadProgress};

/// What the bar says: in full (the model panel: bytes, percent, speed) or
/// compact (the widget: percent and speed).
pub fn progress_label(p: &LoadProgress, compact: bool) -> String {
    let what = match (p.stage, compact) {
        (LoadStage::Download, false) => "Downloading",
        (LoadStage::Verify, false) => "Verifying what is stored",
        (LoadStage::Load, false) => "Loading into the engine",
        (LoadStage::Download, true) => "Downloading the model",
        (LoadStage::Verify, true) => "Checking the stored model",
        (LoadStage::Load, true) => "Loading the model",
    };
    match (p.percent(), p.total, compact) {
        (Some(pct), Some(total), false) => format!("{what}: {} of {} ({pct:.0} %), {}", bytes(p.done), bytes(total), p.speed()),
        (_, _, false) => format!("{what}: {}, {}", bytes(p.done), p.speed()),
        (Some(pct), _, true) => format!("{what}: {pct:.0} % · {}", p.speed()),
        (None, _, true) => format!("{what}: {}", bytes(p.done)),
    }
}

/// A load's progress bar (`role="progressbar"`, `data-testid="model-progress"`).
#[component]
pub fn LoadProgressBar(
    /// How far the load has come.
    progress: LoadProgress,
    /// The widget's short label.
    #[prop(optional)]
    compact: bool,
) -> impl IntoView {
    let pct = progress.percent();
    let label = progress_label(&progress, compact);
    let aria = label.clone();
    view! {
        <div class="progress" data-testid="model-progress" role="progressbar"
            aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.map(|p| format!("{p:.0}")) aria-label=aria>
            <div class="bar" style=format!("width: {:.1}%", pct.unwrap_or(0.0))></div>
            <span>{label}</span>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_the_stage_the_share_and_the_speed() {
        let p = LoadProgress {
            stage: LoadStage::Download,
            done: 50 << 20,
            total: Some(100 << 20),
            since_ms: 0.0,
            now_ms: 1.0,
            rate: Some(f64::from(10 << 20)),
            eta_s: Some(65.0),
        };
        assert_eq!(progress_label(&p, false), "Downloading: 50.0 MiB of 100.0 MiB (50 %), 10.0 MiB/s, about 1:05 left");
        assert_eq!(progress_label(&p, true), "Downloading the model: 50 % · 10.0 MiB/s, about 1:05 left");
        // The load stage has no rate from the worker: the speed since it began.
        let load = LoadProgress { stage: LoadStage::Load, total: None, since_ms: 0.0, now_ms: 5_000.0, rate: None, eta_s: None, ..p };
        assert_eq!(progress_label(&load, false), "Loading into the engine: 50.0 MiB, 10.0 MiB/s");
        assert_eq!(progress_label(&load, true), "Loading the model: 50.0 MiB");
    }
}

//! The Models panel: every model the app knows (the catalog's, from
//! `models.json`, and whatever the store holds), its download state, size, and actions (load, resume, pause,
//! cancel, delete), plus the site's storage figures.

use leptos::prelude::*;
use sprig_protocol::{ModelSource, StoreStatus, StoredModel};

use crate::catalog::CatalogState;
use crate::controller::{stored_for, Controller};
use crate::remembered;
use crate::state::{bytes, download_state, DownloadState, ModelState};

/// One row: a model's name, URL and what the store knows of it.
#[derive(Clone, PartialEq)]
struct Row {
    name: String,
    url: String,
    size: u64,
    stored: Option<StoredModel>,
}

fn rows(catalog: &CatalogState, stored: &[StoredModel]) -> Vec<Row> {
    let mut rows: Vec<Row> = catalog
        .models()
        .iter()
        .map(|c| {
            let s = stored_for(stored, &c.url).cloned();
            Row { name: c.label.clone(), size: s.as_ref().map_or(c.size, |s| s.total_size), url: c.url.clone(), stored: s }
        })
        .collect();
    for m in stored {
        if let Some(url) = m.source.url() {
            // A damaged entry may have no source left: each has its own row.
            let shown = rows.iter().any(|r| r.stored.as_ref().is_some_and(|s| s.id == m.id));
            if !shown && (m.status == StoreStatus::Damaged || !rows.iter().any(|r| r.url == *url)) {
                rows.push(Row { name: m.name.clone(), url: url.to_string(), size: m.total_size, stored: Some(m.clone()) });
            }
        }
    }
    rows
}

fn source_url(s: &Option<ModelSource>) -> Option<String> {
    s.as_ref().and_then(ModelSource::url).map(str::to_string)
}

/// The Models panel.
#[component]
pub fn ModelsPanel() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let row_view = move |row: Row| {
        let url = row.url.clone();
        let source = row.stored.as_ref().map_or_else(|| ModelSource::for_url(&url), |m| m.source.clone());
        let id = row.stored.as_ref().map(|m| m.id.clone());
        let stored_bytes = row.stored.as_ref().map_or(0, |m| m.stored_bytes);
        let (row_url, row_stored) = (row.url.clone(), row.stored.clone());
        let state = Memo::new(move |_| {
            let model = ctl.model.get();
            let active = source_url(&ctl.active.get()).is_some_and(|u| u == row_url);
            let loaded = active && matches!(model, ModelState::Ready(_)) && source_url(&ctl.loaded.get()).is_some_and(|u| u == row_url);
            let was_complete = remembered::complete().contains(&row_url);
            let live = active.then_some(&model).filter(|m| !matches!(m, ModelState::Ready(_) | ModelState::Idle));
            download_state(row_stored.as_ref(), live, loaded, was_complete)
        });
        let busy = move || matches!(ctl.model.get(), ModelState::Loading(_));
        view! {
            <li class="stored-model" data-testid="stored-model" data-url=row.url.clone() data-state=move || state.get().key()>
                <div class="stored-name">
                    <strong>{row.name.clone()}</strong>
                    <span class="muted">{format!(" · {} · {} stored", bytes(row.size), bytes(stored_bytes))}</span>
                </div>
                <div class="stored-state" data-testid="model-state">{move || state.get().label()}</div>
                <div class="stored-actions">
                    {move || match state.get() {
                        DownloadState::Downloading { .. } => view! {
                            <button data-testid="models-pause" on:click=move |_| ctl.pause()>"Pause"</button>
                            <button data-testid="models-cancel" on:click=move |_| ctl.cancel()>"Cancel"</button>
                        }.into_any(),
                        DownloadState::Ready { loaded: true } | DownloadState::Loading | DownloadState::Damaged(_) => ().into_any(),
                        st => {
                            let source = source.clone();
                            let label = match st {
                                DownloadState::Paused { .. } => "Resume",
                                DownloadState::Ready { .. } => "Load",
                                _ => "Download",
                            };
                            view! { <button data-testid="models-load" disabled=busy on:click=move |_| ctl.load_stored(source.clone())>{label}</button> }.into_any()
                        }
                    }}
                    {id.map(|id| view! {
                        <button class="danger" data-testid="model-delete" disabled=busy
                            aria-label="Delete this model from the device"
                            on:click=move |_| ctl.delete_model(id.clone())>"Delete"</button>
                    })}
                </div>
            </li>
        }
    };
    view! {
        <details class="models-panel" data-testid="models-panel" on:toggle=move |_| ctl.refresh_models()>
            <summary>"Models on this device"</summary>
            <ul class="stored-list">
                {move || rows(&ctl.catalog.get(), &ctl.stored.get()).into_iter().map(row_view).collect_view()}
            </ul>
            <p class="muted" data-testid="storage-usage">
                {move || match ctl.storage.get() {
                    Some((usage, quota)) => format!("This site uses {} of the {} the browser allows.", bytes(usage), bytes(quota)),
                    None => "The browser does not report storage use.".to_string(),
                }}
                {move || match ctl.persisted.get() {
                    Some(true) => " Storage is persistent: the browser keeps models until you delete them.",
                    Some(false) => " The browser may clear stored models when the disk runs low.",
                    None => "",
                }}
            </p>
        </details>
    }
}

//! Requests from the UI, dispatched to the coordinator and its parts: each
//! is answered by events (an error event when refused or failed) and never
//! by a panic.

use std::rc::Rc;

use sprig_protocol::{limits, Event, ModelSource, Request};
use wasm_bindgen_futures::spawn_local;
use web_sys::File;

use crate::coordinator::Shared;
use crate::download::Control;
use crate::failure;
use crate::host::{memory_bytes, worker_info, HostError};
use crate::js;
use crate::load::{self, LoadError, Outcome};
use crate::model_store::ModelStore;
use crate::reply;

/// Handles one request (`file`: the picked file a local model's request carries).
pub fn on_request(shared: &Shared, request: Request, file: Option<File>) {
    match request {
        Request::Hello { nonce } => js::post(match worker_info() {
            Ok(info) => Event::Hello { nonce, info },
            Err(message) => failure::event(&HostError::Engine(message)),
        }),
        Request::Load { source, connections, workers, context } => {
            if let Err(refused) = shared.borrow_mut().begin_load() {
                return js::post(failure::event(&refused));
            }
            let connections = connections.clamp(*limits::CONNECTIONS.start(), *limits::CONNECTIONS.end());
            let team = load::TeamPlan { workers: workers.min(*limits::WORKERS.end()), context };
            spawn_local(run_load(shared.clone(), source, file, connections, team));
        }
        Request::StopDownload { discard } => {
            if let Err(refused) = shared.borrow().stop_download(discard) {
                js::post(failure::event(&refused));
            }
        }
        Request::ListModels => spawn_local(async { js::post(list_models().await) }),
        Request::DeleteModel { id } => {
            if let Err(refused) = shared.borrow().may_delete() {
                return js::post(failure::event(&refused));
            }
            spawn_local(delete_model(id));
        }
        Request::Generate { turn, messages, settings } => {
            if let Err(refused) = shared.borrow().may_reply() {
                return js::post(failure::event(&refused));
            }
            let received = js::now_ms();
            let prepared = shared.borrow_mut().host_mut().prepare(turn, &messages, &settings);
            match prepared {
                Ok(prepared) => spawn_local(reply::run(shared.clone(), prepared, received)),
                Err(e) => js::post(failure::event(&e)),
            }
        }
        Request::Stop => shared.borrow_mut().host_mut().cancel(),
        // Five timed reads of a buffer the memory keeps (wasm memory never shrinks).
        #[cfg(feature = "bench")]
        Request::ProbeBandwidth { bytes } => {
            let gb_per_s = sprig_engine::bandwidth::read_bandwidth(usize::try_from(bytes).unwrap_or(usize::MAX), 5);
            js::post(Event::Bandwidth { bytes, gb_per_s });
        }
    }
}

/// Loads `source` (the coordinator is already loading) and installs it.
async fn run_load(shared: Shared, source: ModelSource, file: Option<File>, connections: usize, plan: load::TeamPlan) {
    let result = match &source {
        ModelSource::File { .. } => load::from_file(&source, file, plan).await.map(|l| Outcome::Loaded(Box::new(l))),
        _ => match Control::new() {
            Err(message) => Err(LoadError::Control(message)),
            Ok(control) => {
                let control = Rc::new(control);
                shared.borrow_mut().downloading(control.clone());
                load::from_store(&source, connections, plan, &control, || shared.borrow_mut().downloaded()).await
            }
        },
    };
    let event = match result {
        Ok(Outcome::Loaded(loaded)) => {
            let mut model = loaded.model.clone();
            model.memory_bytes = memory_bytes();
            if model.worker_memory_bytes.is_empty() {
                model.worker_memory_bytes = vec![model.memory_bytes];
            }
            shared.borrow_mut().finish_load(Some(*loaded));
            Event::Loaded { model }
        }
        Ok(Outcome::Stopped { discarded }) => {
            shared.borrow_mut().finish_load(None);
            Event::DownloadStopped { discarded }
        }
        Err(e) => {
            shared.borrow_mut().finish_load(None);
            failure::event(&e)
        }
    };
    js::post(event);
}

async fn list_models() -> Event {
    let store = match ModelStore::open().await {
        Ok(s) => s,
        Err(e) => return failure::event(&e),
    };
    match store.list().await {
        Ok(models) => {
            let (usage, quota) = js::estimate().await.map_or((None, None), |(u, q)| (Some(u), Some(q)));
            Event::Models { models, usage, quota }
        }
        Err(e) => failure::event(&e),
    }
}

async fn delete_model(id: String) {
    let deleted = match ModelStore::open().await {
        Ok(store) => store.delete(&id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        js::post(failure::event(&e));
    }
    js::post(list_models().await);
}

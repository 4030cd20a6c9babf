//! A worker holding one slice of a model split across several workers (rank
//! 1 and up): loads its slice, then runs every forward pass rank 0 asks for,
//! exchanging partial sums with the others (see [`crate::team`]).

use std::io::{BufReader, Read, Seek};

use js_sys::{Array, Uint32Array};
use sprig_engine::gguf::{GgufFile, SourceReader};
use sprig_engine::model::{Model, Partition};
use sprig_protocol::ModelSource;
use wasm_bindgen::prelude::*;
use web_sys::{File, MessagePort};

use crate::file_source::FileSource;
use crate::global::{open_stored, READ_BUFFER};
use crate::host::memory_bytes;
use crate::team::{field, js_text, kind, message, Inbox, Link, Mesh};

fn load<R: Read + Seek>(readers: Vec<R>, partition: Partition) -> Result<Model, String> {
    let mut file = GgufFile::open_split(readers).map_err(|e| format!("not a usable GGUF model: {e}"))?;
    let mut model = Model::load_partition(&mut file, partition, &mut |_| {}).map_err(|e| format!("cannot load its slice of the model: {e}"))?;
    // As the coordinating worker does (`Host::load_file`).
    model.reserve_cache(crate::host::RESERVED_CONTEXT).map_err(|e| format!("cannot load its slice of the model: {e}"))?;
    Ok(model)
}

async fn load_slice(init: &JsValue, partition: Partition) -> Result<Model, String> {
    let files: Vec<File> = field(init, "files").dyn_into::<Array>().map(|a| a.iter().filter_map(|f| f.dyn_into().ok()).collect()).unwrap_or_default();
    if !files.is_empty() {
        let readers = files
            .into_iter()
            .map(|f| FileSource::new(f).map(|s| BufReader::with_capacity(READ_BUFFER, SourceReader::new(s))))
            .collect::<Result<Vec<_>, _>>()?;
        return load(readers, partition);
    }
    let source = field(init, "source").as_string().ok_or("no model source given")?;
    let source: ModelSource = serde_json::from_str(&source).map_err(|e| format!("bad model source: {e}"))?;
    let readers = open_stored(&source).await?;
    load(readers, partition)
}

/// Runs this worker as rank `init.rank` of `init.count`, until rank 0 goes.
pub async fn run(init: JsValue) {
    let rank = field(&init, "rank").as_f64().unwrap_or(0.0) as usize;
    let count = field(&init, "count").as_f64().unwrap_or(0.0) as usize;
    let ports: Vec<Option<MessagePort>> =
        field(&init, "ports").dyn_into::<Array>().map(|a| a.iter().map(|p| p.dyn_into().ok()).collect()).unwrap_or_default();
    let links: Vec<Option<Link>> = ports.into_iter().map(|p| p.map(|p| Link::new(p, Inbox::default()))).collect();
    let mut mesh = Mesh::new(rank, links);
    let Some(coordinator) = mesh.link(0) else {
        web_sys::console::error_1(&"sprig-worker: a peer without a channel to rank 0".into());
        return;
    };
    let loaded = match Partition::new(rank, count).map_err(|e| e.to_string()) {
        Ok(partition) if count == mesh_len(&init) => load_slice(&init, partition).await,
        Ok(_) => Err(format!("{count} workers, but ports for a different number")),
        Err(e) => Err(e),
    };
    let mut model = match loaded {
        Ok(m) => m,
        Err(e) => {
            let _ = coordinator.send(&message("error", &[("message", &e.into())]), &[]);
            return;
        }
    };
    // How far this worker's cache can grow: rank 0 fits the conversation to
    // the smallest of the workers'.
    let reserved = crate::host::RESERVED_CONTEXT.min(model.config().context_length);
    let positions = crate::host::usable_positions(reserved, model.cache_bytes() as u64, memory_bytes());
    let _ = coordinator.send(
        &message("loaded", &[("memory", &JsValue::from(memory_bytes() as f64)), ("positions", &JsValue::from(positions.min(1 << 40) as f64))]),
        &[],
    );
    loop {
        let Some(coordinator) = mesh.link(0) else { return };
        let m = coordinator.recv().await;
        match kind(&m).as_str() {
            "run" => {
                let pos = field(&m, "pos").as_f64().unwrap_or(0.0) as usize;
                let tokens = field(&m, "tokens").dyn_into::<Uint32Array>().map(|t| t.to_vec()).unwrap_or_default();
                model.truncate_cache(pos);
                if let Err(e) = model.forward_with(&tokens, &mut mesh).await {
                    mesh.broadcast_error(&format!("worker {rank}: {e}"));
                }
            }
            "error" => return,
            _ => mesh.broadcast_error(&format!("worker {rank} got an unexpected message: {}", js_text(&m))),
        }
    }
}

fn mesh_len(init: &JsValue) -> usize {
    field(init, "ports").dyn_into::<Array>().map_or(0, |a| a.length() as usize)
}

//! A worker holding one slice of a model split across several workers (rank
//! 1 and up): loads its slice, then runs every forward pass rank 0 asks for,
//! exchanging partial sums with the others (see [`crate::team`]).

use std::io::{BufReader, Read, Seek};

use sprig_engine::gguf::{GgufFile, SourceReader};
use sprig_engine::model::{Model, Partition};
use sprig_protocol::ModelSource;
use web_sys::{File, MessagePort};

use crate::acquire::{open_stored, READ_BUFFER};
use crate::file_source::FileSource;
use crate::host::{memory_bytes, usable_positions, RESERVED_CONTEXT};
use crate::peer_message::PeerMessage;
use crate::team::{Inbox, Link, Mesh};

fn load<R: Read + Seek>(readers: Vec<R>, partition: Partition) -> Result<Model, String> {
    let mut file = GgufFile::open_split(readers).map_err(|e| format!("not a usable GGUF model: {e}"))?;
    let mut model =
        Model::load_partition(&mut file, partition, &mut |_| {}).map_err(|e| format!("cannot load its slice of the model: {e}"))?;
    // As the coordinating worker does (`Host::load_file`).
    model.reserve_cache(RESERVED_CONTEXT).map_err(|e| format!("cannot load its slice of the model: {e}"))?;
    Ok(model)
}

async fn load_slice(source: &ModelSource, files: Vec<File>, partition: Partition) -> Result<Model, String> {
    if !files.is_empty() {
        let readers = files
            .into_iter()
            .map(|f| FileSource::new(f).map(|s| BufReader::with_capacity(READ_BUFFER, SourceReader::new(s))))
            .collect::<Result<Vec<_>, _>>()?;
        return load(readers, partition);
    }
    let readers = open_stored(source).await.map_err(|e| e.to_string())?;
    load(readers, partition)
}

/// Runs this worker as `rank` of `count` (what its [`PeerMessage::Init`]
/// says), until rank 0 goes.
pub async fn run(rank: usize, count: usize, source: ModelSource, files: Vec<File>, ports: Vec<Option<MessagePort>>) {
    let port_count = ports.len();
    let links: Vec<Option<Link>> = ports.into_iter().map(|p| p.map(|p| Link::new(p, Inbox::default()))).collect();
    let mut mesh = Mesh::new(rank, links);
    let Some(coordinator) = mesh.link(0) else {
        web_sys::console::error_1(&"sprig-worker: a peer without a channel to rank 0".into());
        return;
    };
    let loaded = match Partition::new(rank, count).map_err(|e| e.to_string()) {
        Ok(partition) if count == port_count => load_slice(&source, files, partition).await,
        Ok(_) => Err(format!("{count} workers, but ports for {port_count}")),
        Err(e) => Err(e),
    };
    let mut model = match loaded {
        Ok(m) => m,
        Err(message) => {
            let _ = coordinator.send(&PeerMessage::Error { message });
            return;
        }
    };
    // How far this worker's cache can grow: rank 0 fits the conversation to
    // the smallest of the workers'.
    let (reserved, memory) = (RESERVED_CONTEXT.min(model.config().context_length), memory_bytes());
    let positions = usable_positions(reserved, model.cache_bytes() as u64, memory);
    // In u64: on wasm32 a usize cannot hold the cap (`1 << 40` would wrap to 256).
    let positions = u64::try_from(positions).unwrap_or(u64::MAX).min(1 << 40);
    let _ = coordinator.send(&PeerMessage::Loaded { memory, positions });
    loop {
        let Some(coordinator) = mesh.link(0) else { return };
        match coordinator.recv().await {
            Ok(PeerMessage::Run { pos, tokens }) => {
                model.truncate_cache(pos);
                if let Err(e) = model.forward_with(&tokens, &mut mesh).await {
                    mesh.broadcast_error(&format!("worker {rank}: {e}"));
                }
            }
            Ok(PeerMessage::Error { .. }) => return,
            Ok(other) => mesh.broadcast_error(&format!("worker {rank} got an unexpected {other:?}")),
            Err(e) => mesh.broadcast_error(&format!("worker {rank} got {e}")),
        }
    }
}

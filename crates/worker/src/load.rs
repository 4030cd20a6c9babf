//! Loading a model into a fresh [`Host`]: from the store (acquired first) or
//! from a picked file, split across a team of workers when it needs more
//! than one wasm memory (or the user asked), its usable context fitted to
//! the memory left, and its kernels run once. The coordinator installs the
//! result; nothing here touches its state.

use std::io::{BufReader, Read, Seek};

use sprig_engine::gguf::{ByteSource, SourceReader};
use sprig_engine::model::{split_parts, Alone, Collective, Partition};
use sprig_protocol::{ErrorKind, LoadedModel, ModelSource};
use web_sys::File;

use crate::acquire::{self, AcquireError, Acquired, READ_BUFFER};
use crate::download::Control;
use crate::failure::Failure;
use crate::file_source::FileSource;
use crate::host::{self, memory_bytes, team_size, Host, HostError};
use crate::js;
use crate::model_store::ModelStore;
use crate::opfs::StoreError;
use crate::team::{Team, TeamError};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The model could not be brought into the store.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This worker could not load the model (or its slice).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The other workers could not be started.
    #[error("cannot start {count} workers for the model: {source}")]
    TeamStart {
        /// Workers asked for.
        count: usize,
        /// Why.
        source: TeamError,
    },
    /// Another worker could not load its slice.
    #[error("cannot load the model across {count} workers: {source}")]
    Team {
        /// Workers in the team.
        count: usize,
        /// Why.
        source: TeamError,
    },
    /// The model cannot be split that way.
    #[error("{0}")]
    Partition(String),
    /// The model's kernels failed their first run.
    #[error("the model failed its first run: {0}")]
    WarmUp(String),
    /// A picked file cannot be read.
    #[error("{name}: {message}")]
    File {
        /// The file's name.
        name: String,
        /// Why.
        message: String,
    },
    /// A local model's message came without its file.
    #[error("{name}: the message carries no file")]
    NoFile {
        /// The file's name.
        name: String,
    },
    /// A download cannot be controlled here.
    #[error("{0}")]
    Control(String),
}

impl Failure for LoadError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Acquire(e) => e.kind(),
            Self::Store(_) => ErrorKind::Storage,
            Self::Host(e) => e.kind(),
            Self::Team { .. } | Self::File { .. } => ErrorKind::BadModel,
            Self::TeamStart { .. } | Self::WarmUp(_) | Self::Control(_) => ErrorKind::Engine,
            Self::Partition(_) | Self::NoFile { .. } => ErrorKind::BadMessage,
        }
    }
}

/// How the user asked a model to be run: across how many workers, and with
/// how much context at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamPlan {
    /// Workers to split it across (0: chosen from its size and the cores).
    pub workers: usize,
    /// The most context positions a conversation uses (0: as the memory allows).
    pub context: usize,
}

impl TeamPlan {
    /// The limits on the context beside this worker's own memory: the
    /// other workers' (`others`) and the user's, if set.
    fn cap(self, mut others: Vec<usize>) -> Vec<usize> {
        if self.context > 0 {
            others.push(self.context);
        }
        others
    }
}

/// A loaded model, ready to install in the coordinator.
#[derive(Debug)]
pub struct Loaded {
    /// The host holding this worker's session.
    pub host: Host,
    /// The other workers, for a split model.
    pub team: Option<Team>,
    /// What the UI is told.
    pub model: LoadedModel,
}

/// What a load gave: a model, or a download stopped on request.
#[derive(Debug)]
pub enum Outcome {
    /// Loaded.
    Loaded(Box<Loaded>),
    /// The download was paused or cancelled.
    Stopped {
        /// Whether what was stored was deleted.
        discarded: bool,
    },
}

/// Loads a picked file, read in place.
///
/// # Errors
/// [`LoadError`].
pub async fn from_file(source: &ModelSource, file: Option<File>, plan: TeamPlan) -> Result<Loaded, LoadError> {
    let name = match source {
        ModelSource::File { name, .. } => name.clone(),
        _ => String::new(),
    };
    let file = file.ok_or_else(|| LoadError::NoFile { name: name.clone() })?;
    let reader = FileSource::new(file.clone()).map_err(|message| LoadError::File { name, message })?;
    let size = reader.len();
    let reader = BufReader::with_capacity(READ_BUFFER, SourceReader::new(reader));
    split(vec![reader], size, source, &[file], plan).await
}

/// Acquires a manifest or URL model into the store (stopped through `ctl`;
/// `downloaded` is called once that part is over), then loads it. Stored
/// bytes that are not a usable model, and a cancelled or failed download,
/// are not kept.
///
/// # Errors
/// [`LoadError`]; a stop on request is [`Outcome::Stopped`].
pub async fn from_store(
    source: &ModelSource,
    connections: usize,
    plan: TeamPlan,
    ctl: &Control,
    downloaded: impl FnOnce(),
) -> Result<Outcome, LoadError> {
    let store = ModelStore::open().await?;
    let started = js::now_ms();
    let acquired = acquire::acquire(&store, source, connections, ctl).await;
    let fetch_ms = js::now_ms() - started;
    downloaded();
    let (readers, size) = match acquired {
        Ok(Acquired::Stored { readers, size }) => (readers, size),
        Ok(Acquired::Stopped { discarded }) => {
            acquire::tidy(&store, source, discarded).await;
            return Ok(Outcome::Stopped { discarded });
        }
        Err(e) => {
            acquire::tidy(&store, source, false).await;
            return Err(e.into());
        }
    };
    match split(readers, size, source, &[], plan).await {
        Ok(mut loaded) => {
            loaded.model.fetch_ms = fetch_ms;
            Ok(Outcome::Loaded(Box::new(loaded)))
        }
        Err(e) => {
            if e.kind() == ErrorKind::BadModel {
                acquire::tidy(&store, source, true).await;
            }
            Err(e)
        }
    }
}

/// Loads the model from `readers`, split across workers when it needs more
/// than one (or the user asked): starts the others and loads this worker's
/// slice while they load theirs.
async fn split<R: Read + Seek>(
    readers: Vec<R>,
    size: u64,
    source: &ModelSource,
    files: &[File],
    plan: TeamPlan,
) -> Result<Loaded, LoadError> {
    let gguf = host::open(readers)?;
    // A model whose parts cannot be told fails in the load below, which says why.
    let parts = split_parts(&gguf).unwrap_or(1);
    let count = team_size(plan.workers, size, parts, js::cores());
    let mut host = Host::new();
    if count == 1 {
        let mut model = host.load_file(gguf, size, Partition::WHOLE, &mut js::post)?;
        fit_context(&mut host, &mut model, &plan.cap(Vec::new()));
        warm_up(&mut host, &mut model, &mut Alone).await?;
        return Ok(Loaded { host, team: None, model });
    }
    let partition = Partition::new(0, count).map_err(|e| LoadError::Partition(e.to_string()))?;
    let script = js::scope().location().href();
    let mut team = Team::start(&script, count, source, files).await.map_err(|source| LoadError::TeamStart { count, source })?;
    let mut model = host.load_file(gguf, size, partition, &mut js::post)?;
    team.loaded().await.map_err(|source| LoadError::Team { count, source })?;
    model.worker_memory_bytes = std::iter::once(memory_bytes()).chain(team.memory.iter().copied()).collect();
    let positions = plan.cap(team.positions.clone());
    fit_context(&mut host, &mut model, &positions);
    warm_up(&mut host, &mut model, &mut team.mesh).await?;
    Ok(Loaded { host, team: Some(team), model })
}

/// Fits the usable context to this worker's memory and `others` (the other
/// workers' [`host::usable_positions`]), and says it in `model`.
fn fit_context(host: &mut Host, model: &mut LoadedModel, others: &[usize]) {
    if let Some(context) = host.fit_context(memory_bytes(), others) {
        model.context_length = context as u64;
    }
}

/// Runs the model's kernels once (see `Session::warm_up_with`), counting
/// the time in its load time.
async fn warm_up<C: Collective>(host: &mut Host, model: &mut LoadedModel, collective: &mut C) -> Result<(), LoadError> {
    let Some(mut session) = host.take_session() else { return Ok(()) };
    let started = js::now_ms();
    let result = session.warm_up_with(collective).await;
    session.take_profile();
    model.load_ms += js::now_ms() - started;
    host.restore_session(session);
    result.map_err(|e| LoadError::WarmUp(e.to_string()))
}

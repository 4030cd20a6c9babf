//! The coordinator: this worker's state, owned by one struct. It is idle,
//! downloading a model (with the control that pauses or cancels it),
//! loading one, or ready with one loaded (in its [`Host`], and across its
//! [`Team`] when the model is split). `dispatch.rs` turns requests into
//! transitions; `load.rs` and `reply.rs` do the long work in tasks that
//! borrow the state only between their steps.

use std::cell::RefCell;
use std::rc::Rc;

use sprig_protocol::ErrorKind;

use crate::download::Control;
use crate::failure::Failure;
use crate::host::Host;
use crate::load::Loaded;
use crate::team::Team;

/// What the worker is doing about its model.
#[derive(Debug, Default)]
pub enum Phase {
    /// No model, nothing under way.
    #[default]
    Idle,
    /// Downloading a model into the store.
    Downloading(Rc<Control>),
    /// Loading a model (after its download, if any).
    Loading,
    /// A model is loaded.
    Ready,
}

/// A request the coordinator refuses in its current phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A load while another is under way.
    #[error("a model is already loading")]
    Loading,
    /// A load, a delete or a reply while a reply runs or a model loads.
    #[error("a reply is being generated; stop it first")]
    Replying,
    /// A reply while the model loads.
    #[error("the model is still loading")]
    NotReady,
    /// A delete while a model downloads or loads.
    #[error("a model is downloading or loading; stop it before deleting models")]
    Deleting,
    /// A stop with no download under way.
    #[error("no download is in progress")]
    NoDownload,
}

impl Failure for Refusal {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoDownload => ErrorKind::NotLoaded,
            _ => ErrorKind::Busy,
        }
    }
}

/// The worker's state.
#[derive(Debug, Default)]
pub struct Coordinator {
    phase: Phase,
    host: Host,
    /// The other workers holding slices of the loaded model, if it is
    /// split (lent to a reply while it runs).
    team: Option<Team>,
}

/// The coordinator, shared by the message handler and the tasks it starts.
pub type Shared = Rc<RefCell<Coordinator>>;

impl Coordinator {
    /// An idle coordinator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The host of the loaded model.
    pub fn host_mut(&mut self) -> &mut Host {
        &mut self.host
    }

    /// Starts a load: refused while one is under way or a reply runs;
    /// otherwise the current model (and the workers holding it) goes.
    ///
    /// # Errors
    /// [`Refusal::Loading`] or [`Refusal::Replying`].
    pub fn begin_load(&mut self) -> Result<(), Refusal> {
        match self.phase {
            Phase::Downloading(_) | Phase::Loading => return Err(Refusal::Loading),
            _ if self.host.generating() => return Err(Refusal::Replying),
            _ => {}
        }
        self.unload();
        self.phase = Phase::Loading;
        Ok(())
    }

    /// The load is downloading, stopped through `control`.
    pub fn downloading(&mut self, control: Rc<Control>) {
        self.phase = Phase::Downloading(control);
    }

    /// The download is over; the load goes on.
    pub fn downloaded(&mut self) {
        if matches!(self.phase, Phase::Downloading(_)) {
            self.phase = Phase::Loading;
        }
    }

    /// Ends a load: installs what it loaded, or goes back to idle.
    pub fn finish_load(&mut self, loaded: Option<Loaded>) {
        match loaded {
            Some(Loaded { host, team, .. }) => {
                self.host = host;
                self.team = team;
                self.phase = Phase::Ready;
            }
            None => self.phase = Phase::Idle,
        }
    }

    /// Pauses (or, `discard`, cancels) the download under way.
    ///
    /// # Errors
    /// [`Refusal::NoDownload`].
    pub fn stop_download(&self, discard: bool) -> Result<(), Refusal> {
        match &self.phase {
            Phase::Downloading(control) => {
                control.stop(discard);
                Ok(())
            }
            _ => Err(Refusal::NoDownload),
        }
    }

    /// Checks that models may be deleted now.
    ///
    /// # Errors
    /// [`Refusal::Deleting`] while a model downloads or loads.
    pub fn may_delete(&self) -> Result<(), Refusal> {
        match self.phase {
            Phase::Downloading(_) | Phase::Loading => Err(Refusal::Deleting),
            _ => Ok(()),
        }
    }

    /// Checks that a reply may start now.
    ///
    /// # Errors
    /// [`Refusal::NotReady`] while a model downloads or loads.
    pub fn may_reply(&self) -> Result<(), Refusal> {
        match self.phase {
            Phase::Downloading(_) | Phase::Loading => Err(Refusal::NotReady),
            _ => Ok(()),
        }
    }

    /// Forgets the model and the workers holding it.
    pub fn unload(&mut self) {
        self.team = None;
        self.host.unload();
        if matches!(self.phase, Phase::Ready) {
            self.phase = Phase::Idle;
        }
    }

    /// Lends the team to a reply.
    pub fn take_team(&mut self) -> Option<Team> {
        self.team.take()
    }

    /// Takes the team back after a reply.
    pub fn restore_team(&mut self, team: Team) {
        self.team = Some(team);
    }
}

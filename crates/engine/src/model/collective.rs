//! How the workers holding the slices of one model meet at the reduction
//! points of a forward pass.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// A failure of the workers' exchange (a worker failed, a channel closed, a
/// malformed message), as the transport describes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CollectiveError(pub String);

/// The exchange between the workers that hold the slices of one model.
///
/// Every worker runs the same forward passes; the model calls [`Collective::begin`]
/// once at the start of each and [`Collective::all_gather`] at each exchange
/// point, in the same order on every worker.
pub trait Collective {
    /// A forward pass of `tokens` starts at position `pos` (positions from
    /// `pos` on are dropped from the cache first). The coordinating worker
    /// tells the others what to run; the others have nothing to do.
    fn begin(&mut self, pos: usize, tokens: &[u32]) -> impl Future<Output = Result<(), CollectiveError>>;

    /// Sets `all` to every worker's `mine` one after the other, in rank order
    /// (the workers' blocks may differ in length).
    fn all_gather(&mut self, mine: &[f32], all: &mut Vec<f32>) -> impl Future<Output = Result<(), CollectiveError>>;
}

/// The whole model in one worker: nothing to exchange.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl Collective for Alone {
    async fn begin(&mut self, _pos: usize, _tokens: &[u32]) -> Result<(), CollectiveError> {
        Ok(())
    }

    async fn all_gather(&mut self, mine: &[f32], all: &mut Vec<f32>) -> Result<(), CollectiveError> {
        all.clear();
        all.extend_from_slice(mine);
        Ok(())
    }
}

/// Runs a future that never waits (one whose collective answers at once, like
/// [`Alone`] or one that blocks its thread) to completion on this thread.
///
/// # Errors
/// [`CollectiveError`] when the future does wait: it needs an executor.
pub fn run_to_completion<T>(f: impl Future<Output = T>) -> Result<T, CollectiveError> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(CollectiveError("this exchange waits for other workers: run it on an executor".into())),
    }
}

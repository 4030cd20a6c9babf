//! Running a reply: the uncached part of the prompt, then a token at a time,
//! posting each event and yielding between tokens so that a Stop can arrive.
//! The session is lent out of the coordinator's host while a step runs (with
//! a model split across workers each step waits for the others), so the
//! coordinator stays free to take a Stop, which acts at the next token.

use sprig_engine::model::{Alone, Collective};

use crate::coordinator::Shared;
use crate::host::{memory_bytes, start_reply, step_reply, Prepared};
use crate::js::{self, Yielder};
use sprig_protocol::Event;

/// Runs a prepared reply to its end. `received`: when the request arrived
/// (`Date.now()`), for the timings logged for benchmarks and tuning.
pub async fn run(shared: Shared, prepared: Prepared, received: f64) {
    let team = shared.borrow_mut().take_team();
    let mut yielder = Yielder::default();
    match team {
        None => {
            drive(&shared, &prepared, &mut Alone, &mut yielder, received).await;
        }
        Some(mut team) => {
            if drive(&shared, &prepared, &mut team.mesh, &mut yielder, received).await {
                // A failed exchange leaves the workers out of step: unload,
                // so the next attempt starts from a fresh load.
                team.mesh.broadcast_error("rank 0 gave up on this model");
                shared.borrow_mut().unload();
            } else {
                shared.borrow_mut().restore_team(team);
            }
        }
    }
}

/// Posts a reply's events until it ends; returns whether it ended in an error.
async fn drive<C: Collective>(shared: &Shared, prepared: &Prepared, collective: &mut C, yielder: &mut Yielder, received: f64) -> bool {
    let Some((mut session, _, _)) = shared.borrow_mut().host_mut().lend() else { return false };
    let prefill_start = js::now_ms();
    let event = start_reply(&mut session, prepared, collective).await;
    let prefill_end = js::now_ms();
    // For benchmarks and tuning: where the forward passes went.
    web_sys::console::debug_1(&format!("sprig profile: prefill {}", session.take_profile()).into());
    let started = matches!(event, Event::Started { .. });
    shared.borrow_mut().host_mut().give_back(session, !started);
    js::post(event);
    if !started {
        return true;
    }
    let mut first_token = true;
    loop {
        let Some((mut session, turn, dropped)) = shared.borrow_mut().host_mut().lend() else { return false };
        let (mut events, finished) = step_reply(&mut session, turn, dropped, collective).await;
        for event in &mut events {
            if let Event::Done { stats, .. } = event {
                stats.memory_bytes = memory_bytes();
            }
        }
        if finished {
            web_sys::console::debug_1(&format!("sprig profile: decode {}", session.take_profile()).into());
        }
        shared.borrow_mut().host_mut().give_back(session, finished);
        let failed = events.iter().any(|e| matches!(e, Event::Error { .. }));
        let first = std::mem::replace(&mut first_token, false) && !events.is_empty();
        events.into_iter().for_each(js::post);
        if first {
            let now = js::now_ms();
            web_sys::console::debug_1(
                &format!(
                    "sprig timing: prompt ready {:.0} ms, prefill {:.0} ms, first token posted {:.0} ms after the request",
                    prefill_start - received,
                    prefill_end - prefill_start,
                    now - received
                )
                .into(),
            );
        }
        if finished {
            return failed;
        }
        yielder.yield_now().await;
    }
}

//! The scheduling-delay probe of one worker: the signal of its adaptive handshake limit
//! (see [`super::adaptive`]). It sleeps [`PROBE_EVERY`], measures how late it woke, and
//! hands that to the worker's gate; it parks while the worker has had no handshake for
//! [`IDLE_AFTER`] (or runs on a fixed `max_handshakes_in_flight`), so an idle worker keeps
//! no timer.

use std::rc::Rc;
use std::time::Instant;

use super::HandshakeGate;
use super::adaptive::{IDLE_AFTER, PROBE_EVERY};

/// Runs the probe of `gate`'s worker until the task is aborted.
pub async fn run(gate: Rc<HandshakeGate>) {
    loop {
        if !gate.probe_wanted(Instant::now(), IDLE_AFTER) {
            gate.park_probe().await;
            continue;
        }
        let asleep = Instant::now();
        tokio::time::sleep(PROBE_EVERY).await;
        let woke = Instant::now();
        let late = woke
            .saturating_duration_since(asleep)
            .saturating_sub(PROBE_EVERY);
        gate.observe_delay(woke, late);
    }
}

//! A keep-alive client: one address, one TLS connection reused for `GET /` at a fixed rate,
//! reopened (a full handshake) when the server closed it or a request failed. It stops at the
//! end of the run; each request is bounded by the attempt timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::client::{self, Conn};
use super::ctx::Ctx;
use super::record::{Failure, Kind};

/// One keep-alive client of `country`, claiming `client`, at `rate` requests per second,
/// first request after `phase`.
pub async fn run(ctx: Arc<Ctx>, country: usize, client: SocketAddr, rate: f64, phase: Duration) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let first = tokio::time::Instant::from_std(ctx.start + phase);
    let mut tick = tokio::time::interval_at(first, period);
    // A slow request delays the next ones rather than bunching them up afterwards.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let end = tokio::time::Instant::from_std(ctx.end);
    let mut conn: Option<Conn> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end) => return,
        }
        let started = Instant::now();
        if started >= ctx.end {
            return;
        }
        let at = started.saturating_duration_since(ctx.start);
        let result = tokio::time::timeout(ctx.timeout, request(&ctx, &mut conn, country, client))
            .await
            .unwrap_or(Err(Failure::Timeout));
        if result.is_err() {
            conn = None;
        }
        ctx.rec.record(
            country,
            Kind::KeepAlive,
            at,
            result.map(|()| started.elapsed()),
        );
    }
}

/// One request on the kept connection, (re)opening it first when needed.
async fn request(
    ctx: &Ctx,
    conn: &mut Option<Conn>,
    country: usize,
    client: SocketAddr,
) -> Result<(), Failure> {
    if conn.as_ref().is_none_or(Conn::is_closed) {
        *conn = Some(client::open(&ctx.target, client, &ctx.rec, country).await?);
    }
    match conn.as_mut() {
        Some(c) => c.get(&ctx.target, false).await,
        None => Err(Failure::Other),
    }
}

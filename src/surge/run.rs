//! Running a plan: the open-loop run (new-connection arrivals on their own schedule, however
//! slow the server, plus keep-alive clients) and the closed-loop capacity run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::ctx::Ctx;
use super::keepalive;
use super::plan::{Arrivals, MAX_ATTEMPTS, Plan, Stream};
use super::record::{Failure, Kind};
use crate::demo::traffic::Rng;

/// The open-loop run: keep-alive clients and new-connection streams until the end, then the
/// in-flight attempts finish (bounded by their timeout).
pub async fn open_loop(plan: &Plan, ctx: Arc<Ctx>) -> anyhow::Result<()> {
    let mut rng = Rng(plan.seed);
    let mut tasks = Vec::new();
    for (i, c) in plan.countries.iter().enumerate() {
        for _ in 0..c.keepalive_clients {
            let permit = Arc::clone(&ctx.slots[0])
                .try_acquire_owned()
                .context("no connection slot left for the keep-alive clients")?;
            let client = ctx.client(i, &mut rng);
            let phase = Duration::from_secs_f64(rng.unit() / plan.keepalive_rate);
            let (ctx, rate) = (Arc::clone(&ctx), plan.keepalive_rate);
            tasks.push(tokio::spawn(async move {
                keepalive::run(ctx, i, client, rate, phase).await;
                drop(permit);
            }));
        }
    }
    for (j, s) in plan.streams.iter().enumerate() {
        let seed = plan.seed ^ (j as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (ctx, s, poisson, until) = (Arc::clone(&ctx), *s, plan.poisson, plan.duration);
        tasks.push(tokio::spawn(stream(ctx, s, poisson, until, seed)));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.drain().await;
    Ok(())
}

/// One stream's arrivals, each a new-connection attempt of its own (or skipped when
/// `--max-in-flight` connections are open).
async fn stream(ctx: Arc<Ctx>, s: Stream, poisson: bool, until: Duration, seed: u64) {
    let mut rng = Rng(seed.rotate_left(17));
    for at in Arrivals::new(&s, poisson, until, seed) {
        let due = ctx.start + at;
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        ctx.note_start(due);
        let Ok(permit) = Arc::clone(&ctx.slots[usize::from(s.surge)]).try_acquire_owned() else {
            ctx.rec
                .record(s.country, Kind::New, at, Err(Failure::Skipped));
            continue;
        };
        let visitor = ctx.visitor(s.country, s.hello, &mut rng);
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let r = ctx.attempt(s.country, visitor).await;
            drop(permit);
            ctx.rec.record(s.country, Kind::New, at, r);
        });
    }
}

/// The closed-loop capacity run: `concurrency` clients, each doing new-connection attempts
/// (hello-mode ones with `--capacity-mode hello`) back to back (countries in turn) until the
/// end; returns the wall time until the last one finished.
pub async fn closed_loop(plan: &Plan, ctx: Arc<Ctx>, concurrency: usize) -> Duration {
    let countries = plan.countries.len().max(1);
    let per_client = (MAX_ATTEMPTS as usize) / concurrency.max(1);
    let hello = plan.capacity_hello;
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let ctx = Arc::clone(&ctx);
        let mut rng = Rng(plan.seed ^ (w as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client {
                let now = Instant::now();
                if now >= ctx.end {
                    break;
                }
                let country = (w + n) % countries;
                let visitor = ctx.visitor(country, hello, &mut rng);
                let r = ctx.attempt(country, visitor).await;
                ctx.rec.record(country, Kind::New, now - ctx.start, r);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ctx.start.elapsed()
}

//! `levee bench surge`: a surge-replay load tool. Baseline clients from several countries
//! (new connections at a steady rate, plus keep-alive clients) and, after a warm-up, a surge
//! of new TLS connections from one country, against a levee TLS listener that trusts PROXY v2
//! from 127.0.0.1. Every connection starts with a PROXY v2 header whose source address the
//! bundled GeoIP database places in the client's country (many addresses per country), so
//! levee tags, counts and admits it as coming from there, while every packet stays on
//! loopback.
//!
//! What it measures, per country and kind (new connection, keep-alive request), over the
//! surge window (from `--surge-after` to the end, for every country, surge or not): arrivals,
//! successes, success rate, p50/p99/max latency of the successes (connect to the last
//! response byte for a new connection: TCP, PROXY header, full TLS handshake, `GET /`), and
//! failures by kind (refused/reset, timeout, TLS, non-2xx status, skipped). Printed as a table
//! or as JSON ([`report::Report`]).
//!
//! Open loop: new connections arrive on their own schedule (Poisson or evenly spaced), each
//! attempt on its own task, so a slow server does not slow the offered rate; at most
//! `--max-in-flight` connections are open, and arrivals beyond that are counted as skipped
//! (the baseline has a share of its own, so a surge cannot take the client-side slots of
//! the other countries). Latency is measured from an attempt's actual start.
//! `--capacity` is the closed-loop opposite: `--concurrency` clients doing new connections
//! back to back, which measures the connections (full handshakes) per second the server
//! completes, the "capacity" a surge is sized against.
//!
//! **Hello mode** (`--surge-mode hello` and `--capacity-mode hello`, the defaults; see
//! [`hello`]). A full client handshake costs the client about what it costs the server (key
//! exchange, certificate signature check), so on a small machine the tool, not levee, set
//! the limit: a "capacity" run measured the client, and a surge of 3x that could not be
//! offered. But a TLS 1.3 server does all of its expensive work (ephemeral key exchange,
//! CertificateVerify signature) as soon as it has the ClientHello, in its first flight. A
//! hello-mode connection therefore sends the PROXY header and a pre-built ClientHello (a pool
//! of [`hello::POOL`], sent in turn: without early data a server cannot tell a replay),
//! reads until the server's first flight has arrived, and resets the connection: the
//! server did a full handshake's work, the client a few system calls and no cryptography,
//! so one client core offers many thousands per second. Success = the flight arrived;
//! latency = connect to the flight. What it does not measure: the rest of the visit (the
//! client's Finished, the request, the backend), and levee counts these handshakes as
//! *failed* (the client never finishes), not full. So hello mode is for the surge (the
//! load) and the capacity run (the server's handshake capacity, the denominator of "3x");
//! the baseline countries always make full connections and keep-alive requests, which is
//! what the report's verdict is about. The report marks hello-mode rows with kind `hello`.
//!
//! What it cannot do: the client shares the machine with levee. In `full` mode each new
//! connection costs the client a TLS handshake, so the offered rate is limited by the
//! client's own cores; in hello mode by its system calls, much later. When it cannot keep
//! up, starts fall behind schedule (`client_lag` in the report) and a "3x" surge offers less
//! than 3x. Pin the tool and levee to different cores (`--threads 1` and `taskset`) and
//! check the lag.
//!
//! **One side per process.** Even in hello mode a surge saturates the tool's core, and the
//! baseline latencies then measure the client (lag up to 700 ms), not levee. So either side
//! can run alone: `--no-baseline` (the surge generator, only the surge row) and
//! `--surge-rate 0` (the baseline clients), each with the same `--duration` and
//! `--surge-after` so the windows line up; `benches/surge/run.sh` runs both on one core, the
//! baseline at a higher CFS priority (`nice`), so its few full connections run first and the
//! surge gets the rest. `client_lag.last_start_s` shows whether the surge kept its schedule.
//!
//! Bounded: `--duration` at most 600 s, each attempt within `--timeout`, arrivals per run
//! capped, target a loopback address only.
//!
//! - [`args`]: the command line; [`plan`]: its checks and the arrival schedule.
//! - [`addresses`]: client addresses per country from the bundled GeoIP database.
//! - [`tls`]: client TLS settings (no resumption; `--ca` or any certificate, bench only;
//!   TLS 1.3 only for the hello pool).
//! - [`client`]: one connection and one new-connection attempt.
//! - [`hello`]: hello-mode attempts, the ClientHello pool, reading the server's flight.
//! - [`keepalive`]: a keep-alive client.
//! - [`ctx`]: what the clients of one run share (target, record, slots, the lag).
//! - [`mod@run`]: the open-loop and closed-loop runs; [`record`]: what they record.
//! - [`report`]: the report, table and JSON.
//! - [`backends`]: `levee bench backends`, demo backends for a benchmark script.

pub mod addresses;
pub mod args;
pub mod backends;
pub mod client;
pub mod ctx;
pub mod hello;
pub mod keepalive;
pub mod plan;
pub mod record;
pub mod report;
pub mod run;
pub mod tls;

use std::sync::Arc;

use anyhow::Context;

pub use args::SurgeArgs;
pub use report::Report;

use plan::Plan;

/// Runs the tool as the command line asked, on its own runtime of `--threads` threads;
/// prints the table (or JSON) and returns the exit code.
pub fn main(args: &SurgeArgs) -> anyhow::Result<i32> {
    let plan = Plan::new(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()?;
    let report = rt.block_on(run_plan(plan))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("--json-out {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report::table(&report));
    }
    Ok(0)
}

/// Runs the tool on the current runtime and returns its report (the library entry point).
pub async fn run(args: &SurgeArgs) -> anyhow::Result<Report> {
    run_plan(Plan::new(args)?).await
}

async fn run_plan(plan: Plan) -> anyhow::Result<Report> {
    let db = crate::geo::GeoDb::bundled().context("bundled GeoIP database")?;
    let addrs = plan
        .countries
        .iter()
        .map(|c| addresses::for_country(&db, &c.code))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = client::Target {
        addr: plan.target,
        sni: plan.sni.clone(),
        tls: tls::client_config(plan.ca.as_deref())?,
    };
    let hello = if plan.hello {
        Some(ctx::HelloKit::build(&target, &addrs)?)
    } else {
        None
    };
    let ctx = Arc::new(ctx::Ctx::new(&plan, target, addrs, hello));
    let capacity = match plan.capacity {
        Some(concurrency) => {
            let elapsed = run::closed_loop(&plan, Arc::clone(&ctx), concurrency).await;
            let ok: u64 = (0..plan.countries.len())
                .map(|i| ctx.rec.row(i, record::Kind::New).ok)
                .sum();
            let secs = elapsed.as_secs_f64().max(1e-9);
            Some(report::Capacity {
                kind: if plan.capacity_hello { "hello" } else { "full" },
                concurrency,
                ok,
                elapsed_s: secs,
                connections_per_s: ok as f64 / secs,
            })
        }
        None => {
            run::open_loop(&plan, Arc::clone(&ctx)).await?;
            None
        }
    };
    Ok(report::build(
        &plan,
        &ctx.rec,
        ctx.lag(),
        ctx.started_unix_s,
        capacity,
    ))
}

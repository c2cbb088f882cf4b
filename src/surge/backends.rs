//! `levee bench backends`: the demo backends on fixed loopback addresses, for a benchmark
//! script to put behind levee; they run until SIGINT or SIGTERM, or `--max-time` at most.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;

use crate::demo::backends::spawn_backends_at;

/// Serves a demo backend on each of `listen` (loopback only) until a signal or `max_time`.
pub fn serve(listen: &[SocketAddr], max_time: Duration) -> anyhow::Result<i32> {
    if let Some(a) = listen.iter().find(|a| !a.ip().is_loopback()) {
        bail!("--listen {a}: not a loopback address");
    }
    if listen.is_empty() {
        bail!("--listen ADDR: at least one");
    }
    let addrs = spawn_backends_at(listen)?;
    for a in &addrs {
        println!("demo backend on {a}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = tokio::time::sleep(max_time) => {}
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

//! Hot reload of the real binary: SIGHUP, `levee reload` (the admin API client), and the
//! config file watch (`[server] watch_config = true`).
//!
//! Each test starts `levee run --config FILE` with a plain listener and the admin API on
//! loopback ports picked with `free_port`, rewrites the file to move the pool to another
//! backend, and checks where requests land and what `GET /stats` says. Every wait is bounded;
//! the child is stopped by its PID when its guard drops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// How long a reload may take to show on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_secs(10);

/// A levee process: its plain listener, its admin API, and its config file.
struct Proc {
    child: ChildGuard,
    listen: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `levee run --config FILE` serving pool `web` = [`backend`], retrying with new
    /// ports if one was taken in between; waits (bounded) until the admin API answers.
    async fn start(backend: SocketAddr, watch: bool) -> Self {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let config = write_file(
                dir.path(),
                "levee.toml",
                &toml(listen, admin, backend, watch),
            );
            let mut child =
                spawn_levee_with_config(&["run", "--log-level", "info"], &config, dir.path());
            match wait_accepting(&mut child, admin).await {
                Ok(()) => {
                    return Self {
                        child,
                        listen,
                        admin,
                        config,
                        _dir: dir,
                    };
                }
                Err(e) => last_err = e,
            }
        }
        panic!("could not start levee: {last_err}");
    }

    /// The config of this process with pool `web` = [`backend`].
    fn toml(&self, backend: SocketAddr, watch: bool) -> String {
        toml(self.listen, self.admin, backend, watch)
    }

    /// Rewrites the config file in place (truncate, write).
    fn write(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Replaces the config file as editors do: write a temporary file, rename it over.
    fn replace(&self, text: &str) {
        let tmp = self.config.with_extension("toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Sends SIGHUP to this child only (by PID).
    fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed: {status}");
    }

    /// The backend that answers a GET on a new connection.
    async fn backend(&self) -> String {
        let reply = Conn::plain(self.listen, Proto::H1).await.get("/").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.backend().unwrap_or_default().to_string()
    }

    /// Polls until requests land on backend `name`; returns how long that took.
    async fn wait_backend(&self, name: &str) -> Duration {
        let started = Instant::now();
        loop {
            let got = self.backend().await;
            if got == name {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < WITHIN,
                "still served by {got}, not {name}, after {WITHIN:?}; stderr:\n{}",
                self.child.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `GET /stats`, parsed.
    async fn stats(&self) -> Value {
        let reply = Conn::plain(self.admin, Proto::H1).await.get("/stats").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        serde_json::from_slice(&reply.body).expect("/stats is JSON")
    }

    /// `config.generation`, `config.reloads.ok` and `config.reloads.failed` from `/stats`.
    async fn generation_and_reloads(&self) -> (u64, u64, u64) {
        let s = self.stats().await;
        let c = &s["config"];
        let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a number in {s}"));
        (
            n(&c["generation"]),
            n(&c["reloads"]["ok"]),
            n(&c["reloads"]["failed"]),
        )
    }

    /// SIGTERM, then the exit must be 0 within 10 s.
    async fn stop(mut self) {
        self.child.sigterm();
        let status = self
            .child
            .wait_exit_async(Duration::from_secs(10))
            .await
            .expect("levee still running 10 s after SIGTERM");
        assert!(status.success(), "exit {status}: {}", self.child.stderr());
    }
}

/// A config: plain listener, admin API, pool `web` = [`backend`].
fn toml(listen: SocketAddr, admin: SocketAddr, backend: SocketAddr, watch: bool) -> String {
    format!(
        "[server]\nworkers = 2\nshutdown_timeout = \"2s\"\naccess_log = false\n\
         watch_config = {watch}\n\n\
         [admin]\nlisten = \"{admin}\"\n\n\
         [[listeners]]\nname = \"plain\"\nlisten = \"{listen}\"\ndefault_pool = \"web\"\n\n{}",
        pool_toml("web", &[backend], "")
    )
}

/// `levee ARGS` to completion, off the async runtime.
async fn levee(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_levee(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_real_binary_and_can_turn_the_watch_on() {
    let one = Backend::start("one");
    let two = Backend::start("two");
    let p = Proc::start(one.addr, false).await;
    assert_eq!(p.backend().await, "one");
    assert_eq!(p.generation_and_reloads().await, (1, 0, 0));

    // The new file alone changes nothing: watch_config is off.
    p.write(&p.toml(two.addr, true));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(p.backend().await, "one");
    assert_eq!(p.generation_and_reloads().await, (1, 0, 0));

    p.sighup();
    let took = p.wait_backend("two").await;
    eprintln!("SIGHUP: new pool serving after {took:?}");
    assert_eq!(p.generation_and_reloads().await, (2, 1, 0));

    // That config turned the watch on: a change of the file now reloads by itself.
    p.replace(&p.toml(one.addr, true));
    let took = p.wait_backend("one").await;
    eprintln!("watch turned on by the reload: change served after {took:?}");
    assert_eq!(p.generation_and_reloads().await, (3, 2, 0));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levee_reload_cli_reports_success_and_refusal() {
    let one = Backend::start("one");
    let two = Backend::start("two");
    let p = Proc::start(one.addr, false).await;
    let admin = p.admin.to_string();
    assert_eq!(p.backend().await, "one");

    p.write(&p.toml(two.addr, false));
    let out = levee(&["reload", "--admin", &admin]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with("reloaded: generation 2 (source "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.trim_end().ends_with(" ms"), "{}", out.stdout);
    // The store happened before the answer: the very next request uses the new pool.
    assert_eq!(p.backend().await, "two");
    assert_eq!(p.generation_and_reloads().await, (2, 1, 0));

    // --json prints the admin API's report; the address comes from --config here.
    let config = p.config.to_str().unwrap().to_string();
    let out = levee(&["reload", "--json", "--config", &config]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_str(out.stdout.trim()).expect("--json prints JSON");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["generation"], 3, "{doc}");
    assert!(doc["took_ms"].as_f64().is_some(), "{doc}");

    // A broken config: refused, exit 1, each error as KEY: REASON; the old config serves on.
    let broken = p
        .toml(one.addr, false)
        .replace(&one.addr.to_string(), "not-an-address");
    p.write(&broken);
    for args in [
        vec!["reload", "--admin", admin.as_str()],
        vec!["reload", "--config", config.as_str()],
    ] {
        let out = levee(&args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("reload refused: generation 3"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with("pools.web.backends[0].address: ")),
            "no KEY: REASON line for the bad address:\n{}",
            out.stderr
        );
    }
    let out = levee(&["reload", "--json", "--admin", &admin]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: Value = serde_json::from_str(out.stdout.trim()).expect("--json prints JSON");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["errors"][0]["key"], "pools.web.backends[0].address");
    assert_eq!(p.backend().await, "two");
    assert_eq!(p.generation_and_reloads().await, (3, 2, 3));
    p.stop().await;
}

#[test]
fn levee_reload_exits_2_when_the_admin_api_is_unreachable() {
    let addr = closed_addr().to_string();
    let out = run_levee(&["reload", "--admin", &addr]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("cannot connect to the admin API"),
        "{out:?}"
    );

    // A config whose admin API is off: nothing to call.
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "levee.toml", "[admin]\nlisten = \"off\"\n");
    let out = run_levee(&["reload", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("admin API is off"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_on_change_and_once_per_burst() {
    let one = Backend::start("one");
    let two = Backend::start("two");
    let p = Proc::start(one.addr, true).await;
    assert_eq!(p.backend().await, "one");

    // An editor's save (write a temporary file, rename it over the config).
    p.replace(&p.toml(two.addr, true));
    let took = p.wait_backend("two").await;
    eprintln!("watch: new pool serving {took:?} after the rename");
    assert_eq!(p.generation_and_reloads().await, (2, 1, 0));

    // A burst of 5 quick in-place writes, each a different text, the last one back to `one`.
    let last = p.toml(one.addr, true);
    for i in 0..5 {
        let text = if i == 4 {
            last.clone()
        } else {
            format!("# write {i}\n{}", p.toml(two.addr, true))
        };
        p.write(&text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = p.wait_backend("one").await;
    eprintln!("watch: burst served {took:?} after its last write");
    // Give a stray second reload the time to happen before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (generation, ok, failed) = p.generation_and_reloads().await;
    eprintln!("watch: the burst of 5 writes gave {} reload(s)", ok - 1);
    assert!(
        (2..=3).contains(&ok),
        "{} reloads for one burst of 5 writes; stderr:\n{}",
        ok - 1,
        p.child.stderr()
    );
    assert_eq!(
        (generation, failed),
        (ok + 1, 0),
        "a half-written file was read"
    );

    // Saving the same text again (or touching the file) is no change: no reload.
    p.write(&last);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(p.generation_and_reloads().await, (generation, ok, 0));
    p.stop().await;
}

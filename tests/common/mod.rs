//! Test harness: levee started from the library on 127.0.0.1:0, in-process backends that
//! identify themselves, a throwaway CA, a rustls client, and a guard for child processes.
//!
//! Every socket is on 127.0.0.1 with an ephemeral port; every wait is bounded.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod admission;
pub mod backend;
pub mod body;
pub mod client;
pub mod flood;
pub mod logs;
pub mod mmdb;
pub mod pki;
pub mod prom;
pub mod reload;
pub mod resetter;
pub mod split_backend;
pub mod stats;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use levee::app::Running;
use levee::stats::CountersSnapshot;
use tempfile::TempDir;

pub use admin::{SLACK, backend_entry, pools, server_with_admin, wait_state};
pub use backend::Backend;
pub use body::{empty, full, pattern, pattern_chunked, pattern_sha256, sha256};
pub use client::{Conn, Proto, Reply, TlsOpts, client_config, client_config_insecure, tls_get};
pub use pki::{Leaf, TestCa};
pub use reload::{
    Load, LoadResult, STYLES, Sample, StreamConn, Style, admin_call, assert_reloaded, chunk,
    fed_body, feed, generation_of, next_data, read_to_end, refused, reload_to, wait_refused,
};
pub use resetter::Resetter;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends levee's logs to the test output when RUST_LOG is set (quiet otherwise).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A levee started in this process; stopped (gracefully, bounded by its shutdown_timeout)
/// when dropped.
pub struct Levee {
    running: Option<Running>,
    /// Base directory for relative paths in the config.
    pub dir: TempDir,
}

impl Levee {
    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.running()
            .listener_addr(name)
            .unwrap_or_else(|| panic!("no listener called {name}"))
    }

    /// The running instance.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("levee is running")
    }

    /// Stats summed over every worker.
    pub fn totals(&self) -> CountersSnapshot {
        self.running().totals()
    }

    /// Polls `totals()` until `pred` holds or `within` passes; returns the last totals.
    pub async fn wait_totals(
        &self,
        within: Duration,
        pred: impl Fn(&CountersSnapshot) -> bool,
    ) -> CountersSnapshot {
        let deadline = Instant::now() + within;
        loop {
            let t = self.totals();
            if pred(&t) || Instant::now() >= deadline {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The config file reloads read.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_FILE)
    }

    /// Replaces the config file with `toml` (atomically: write, then rename).
    pub fn write_config(&self, toml: &str) {
        let tmp = write_file(self.dir.path(), "levee.toml.tmp", toml);
        std::fs::rename(tmp, self.config_path()).expect("replace config file");
    }

    /// Writes `toml` and reloads it (blocking, as `POST /reload` does).
    pub fn reload_with(&self, toml: &str) -> levee::reload::ReloadReport {
        self.write_config(toml);
        self.running().reload()
    }

    /// The access log written so far to `ACCESS_LOG_FILE` in the config's directory (for a
    /// config with `access_log_path = "access.log"`); empty when there is none yet.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(ACCESS_LOG_FILE)).unwrap_or_default()
    }

    /// Polls the access log until a line contains `needle` (lines reach the file within the
    /// workers' ship delay); panics after `within`.
    pub async fn access_log_line(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.access_log();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no access log line with {needle:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops levee, then returns its whole access log (stopping writes out every line).
    pub fn stop_then_access_log(mut self) -> String {
        if let Some(r) = self.running.take() {
            r.stop();
        }
        self.access_log()
    }

    /// Stops levee now and waits for its workers.
    pub fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

impl Drop for Levee {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

/// The access-log file of test configs that keep one (`access_log_path = "access.log"`).
pub const ACCESS_LOG_FILE: &str = "access.log";

/// Name of the config file `start_levee` writes into the Levee's tempdir.
pub const CONFIG_FILE: &str = "levee.toml";

/// Writes `toml` to `levee.toml` in a fresh tempdir (relative paths resolve against it),
/// validates it and starts levee on it; reloads read that file.
pub fn start_levee(toml: &str) -> Levee {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    start_levee_in(dir, toml)
}

/// Like `start_levee`, in an existing directory (which may already hold certificates).
pub fn start_levee_in(dir: TempDir, toml: &str) -> Levee {
    init_logs();
    let path = write_file(dir.path(), CONFIG_FILE, toml);
    let (snapshot, source) = levee::app::load(&path)
        .unwrap_or_else(|e| panic!("test config rejected:\n{e:#}\n--- config ---\n{toml}"));
    let running = levee::app::start_with(snapshot, Some(source)).expect("levee start");
    Levee {
        running: Some(running),
        dir,
    }
}

/// `[server]` and `[admin]` for tests: `workers`, short shutdown, no access log, no admin.
pub fn server_toml(workers: usize) -> String {
    format!(
        "[server]\nworkers = {workers}\nshutdown_timeout = \"2s\"\naccess_log = false\n\n\
         [admin]\nlisten = \"off\"\n\n"
    )
}

/// A `[[listeners]]` entry. `tls`: None for plain HTTP, Some(certificates) for TLS (empty:
/// generated certificate). `extra_tls` goes into `[listeners.tls]`, `http` into
/// `[listeners.http]`.
pub fn listener_toml(
    name: &str,
    pool: &str,
    tls: Option<&[&Leaf]>,
    extra_tls: &str,
    http: &str,
) -> String {
    let mut s = format!(
        "[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"{pool}\"\n"
    );
    if let Some(certs) = tls {
        let list: Vec<String> = certs.iter().map(|c| c.toml()).collect();
        s += &format!(
            "[listeners.tls]\ncertificates = [{}]\n{extra_tls}\n",
            list.join(", ")
        );
    }
    if !http.is_empty() {
        s += &format!("[listeners.http]\n{http}\n");
    }
    s + "\n"
}

/// A `[pools.NAME]` table with `extra` settings and round-robin backends.
pub fn pool_toml(name: &str, backends: &[SocketAddr], extra: &str) -> String {
    let mut s = format!("[pools.{name}]\nalgorithm = \"round_robin\"\n{extra}\n");
    for b in backends {
        s += &format!("[[pools.{name}.backends]]\naddress = \"{b}\"\n");
    }
    s + "\n"
}

/// A port on 127.0.0.1 that was free a moment ago (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An address on 127.0.0.1 where nothing listens (bound, then closed).
pub fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// The levee binary built for these tests.
pub fn levee_bin() -> &'static str {
    env!("CARGO_BIN_EXE_levee")
}

/// The output of a finished `levee` run.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// Runs the levee binary to completion (bounded: killed after 60 s).
pub fn run_levee(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let child = Command::new(levee_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn levee");
    let mut guard = ChildGuard::new(child, err_path.clone());
    let status = guard
        .wait_exit(Duration::from_secs(60))
        .expect("levee did not exit within 60 s");
    Output {
        status,
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
    }
}

/// Spawns `levee <args> --config CONFIG` in the background, its stderr in `dir/stderr`.
pub fn spawn_levee_with_config(args: &[&str], config: &Path, dir: &Path) -> ChildGuard {
    let stderr_path = dir.join("stderr");
    let child = Command::new(levee_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn levee");
    ChildGuard::new(child, stderr_path)
}

/// Waits until something accepts connections on `addr`; `Err` with levee's stderr when the
/// child exits first. Panics when nothing accepts within 20 s.
pub async fn wait_accepting(child: &mut ChildGuard, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_exit() {
            return Err(format!("levee exited early ({status}): {}", child.stderr()));
        }
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            drop(c);
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "levee did not listen within 20 s: {}",
            child.stderr()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Owns a child process: killed (by its PID, via `Child::kill`) and reaped when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    /// Where its stderr goes, for diagnostics.
    pub stderr_path: PathBuf,
}

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: Child, stderr_path: PathBuf) -> Self {
        Self {
            child: Some(child),
            stderr_path,
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls until the child exits or `within` passes.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like `wait_exit`, without blocking an async runtime thread.
    pub async fn wait_exit_async(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM to this child only (by PID).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write file");
    p
}

//! The config file watch: `[server] watch_config = true` reloads the config when its file
//! changes.
//!
//! `run` is one task on the control thread, started for every levee that has a config file.
//! It follows the running config: once a second it reads `server.watch_config` from the
//! current snapshot, and starts or stops a `notify` watcher to match, so a reload can turn
//! the watch on or off (it takes effect within a second). While it is off there is no
//! watcher at all.
//!
//! - **Directory, not file.** The watcher watches the file's directory and keeps the events
//!   that name the file. Editors and deploy tools that write a temporary file and rename it
//!   over the config replace its inode; a watch on the file itself would lose track then.
//!   Events that only read the file (open, read, close without writing) are ignored: the
//!   reload itself reads the file.
//! - **Debounced.** A reload starts once no event has come for `DEBOUNCE`, so a burst of
//!   writes (an editor's save, a script writing in several steps) gives one reload, of the
//!   finished file.
//! - **Only real changes.** Before reloading, the file is read and its source hash compared
//!   with the running snapshot's: the same text does not reload (a `touch`, or an editor
//!   saving an unchanged buffer). To re-read certificates whose files changed while the
//!   config did not, send SIGHUP or run `levee reload`. A file that is gone is not reloaded
//!   (the running config keeps serving); the watch picks it up when it is back.
//! - When the watcher starts it checks the file once, so a change made while the watch was
//!   off, or between the first load and the watch, is not missed.
//!
//! Not covered: a config file reached through a symlink whose target changes (a Kubernetes
//! ConfigMap volume swaps a `..data` symlink; the file's own name never appears in an
//! event). Send SIGHUP there.

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Reloader;
use crate::config::Snapshot;
use crate::config::validate::source_hash;

/// Quiet time after the last change of the file before it is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(400);
/// How often the running config's `server.watch_config` is looked at.
pub const FLAG_POLL: Duration = Duration::from_secs(1);

/// Watches the config file of `reloader` while the running config in `config` has
/// `server.watch_config`, reloading on changes; returns when `shutdown` is cancelled (at
/// once when levee has no config file).
pub async fn run(
    reloader: Arc<Reloader>,
    config: Arc<ArcSwap<Snapshot>>,
    shutdown: CancellationToken,
) {
    let Some(path) = reloader.path().map(Path::to_path_buf) else {
        return;
    };
    let Some(target) = Target::new(&path) else {
        warn!(path = %path.display(), "config watch: the path names no file; not watching");
        return;
    };
    let changed = Arc::new(Notify::new());
    let mut watcher: Option<RecommendedWatcher> = None;
    let mut warned = false;
    let mut poll = tokio::time::interval(FLAG_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll.tick() => {
                let wanted = config.load().server.watch_config;
                if wanted && watcher.is_none() {
                    match target.watch(&changed) {
                        Ok(w) => {
                            info!(path = %path.display(), "watching the config file");
                            watcher = Some(w);
                            warned = false;
                            // Catch up on changes made before the watch began.
                            changed.notify_one();
                        }
                        Err(e) if !warned => {
                            warn!(path = %path.display(), error = %e, "config watch unavailable; retrying every second");
                            warned = true;
                        }
                        Err(_) => {}
                    }
                } else if !wanted && watcher.take().is_some() {
                    info!(path = %path.display(), "stopped watching the config file (watch_config = false)");
                }
            }
            _ = changed.notified(), if watcher.is_some() => {
                if !settle(&changed, DEBOUNCE, &shutdown).await {
                    return;
                }
                reload_if_changed(&reloader, &config, &path).await;
            }
        }
    }
}

/// The watched directory and the file name events must carry.
#[derive(Debug, Clone)]
struct Target {
    dir: PathBuf,
    name: OsString,
}

impl Target {
    fn new(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_os_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Some(Self { dir, name })
    }

    /// A watcher of the directory that wakes `changed` for each event concerning the file.
    fn watch(&self, changed: &Arc<Notify>) -> notify::Result<RecommendedWatcher> {
        let name = self.name.clone();
        let changed = Arc::clone(changed);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<Event>| match event {
                Ok(event) if concerns(&event, &name) => changed.notify_one(),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "config watch error"),
            })?;
        watcher.watch(&self.dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}

/// Whether `event` may have changed the file called `name`: it names the file (or the
/// watcher lost events and asks for a rescan) and it is not a mere read.
fn concerns(event: &Event, name: &OsStr) -> bool {
    let writes = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    let names_it = event.paths.iter().any(|p| p.file_name() == Some(name));
    event.need_rescan() || (writes && names_it)
}

/// Waits until `changed` has been quiet for `quiet`; `false` when `shutdown` came first.
async fn settle(changed: &Notify, quiet: Duration, shutdown: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            more = tokio::time::timeout(quiet, changed.notified()) => {
                if more.is_err() {
                    return true;
                }
            }
        }
    }
}

/// Reloads (off this runtime: it blocks) when the watch is still on and the file's text
/// differs from the running config's.
async fn reload_if_changed(reloader: &Arc<Reloader>, config: &ArcSwap<Snapshot>, path: &Path) {
    let running = config.load_full();
    if !running.server.watch_config {
        return;
    }
    let reloader = Arc::clone(reloader);
    let path = path.to_path_buf();
    let done = tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            warn!(path = %path.display(), "config file is gone; the running config keeps serving");
        }
        Ok(text) if source_hash(&text) == running.source_hash => {
            debug!(path = %path.display(), "config file unchanged; no reload");
        }
        // Unreadable files too: the reload names the error, logs and counts it.
        _ => {
            info!(path = %path.display(), "config file changed: reloading");
            // The reload logs its own outcome.
            let _ = reloader.reload();
        }
    })
    .await;
    if done.is_err() {
        warn!("config watch: the reload stopped unexpectedly");
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, Flag, ModifyKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn only_writes_that_name_the_file_count() {
        let name = OsStr::new("levee.toml");
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(concerns(&event(data, &["/etc/levee/levee.toml"]), name));
        assert!(!concerns(&event(data, &["/etc/levee/other.toml"]), name));
        // An editor's save: write a temporary file, rename it over the config.
        let create = EventKind::Create(CreateKind::File);
        assert!(!concerns(
            &event(create, &["/etc/levee/.levee.toml.swp"]),
            name
        ));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(concerns(
            &event(
                renamed,
                &["/etc/levee/levee.toml.tmp", "/etc/levee/levee.toml"]
            ),
            name
        ));
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(concerns(&event(to, &["/etc/levee/levee.toml"]), name));
        let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(concerns(
            &event(close_write, &["/etc/levee/levee.toml"]),
            name
        ));
        // The reload's own read of the file.
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!concerns(&event(read, &["/etc/levee/levee.toml"]), name));
        }
        // Lost events: look at the file.
        let rescan = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(concerns(&rescan, name));
    }

    #[test]
    fn a_bare_file_name_watches_the_current_directory() {
        let t = Target::new(Path::new("levee.toml")).unwrap();
        assert_eq!(
            (t.dir.as_path(), t.name.as_os_str()),
            (Path::new("."), OsStr::new("levee.toml"))
        );
        let t = Target::new(Path::new("/etc/levee/levee.toml")).unwrap();
        assert_eq!(t.dir, Path::new("/etc/levee"));
        assert!(Target::new(Path::new("/")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_once_after_the_last_change() {
        let changed = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let burst = {
            let changed = Arc::clone(&changed);
            tokio::spawn(async move {
                for _ in 0..5 {
                    changed.notify_one();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        changed.notified().await;
        assert!(settle(&changed, DEBOUNCE, &shutdown).await);
        // The last change came at 400 ms; quiet for DEBOUNCE after it.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(400) + DEBOUNCE && took < Duration::from_millis(1000),
            "{took:?}"
        );
        burst.await.unwrap();
        shutdown.cancel();
        assert!(!settle(&changed, DEBOUNCE, &shutdown).await);
    }
}

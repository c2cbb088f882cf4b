//! What a reload adds to validation: the new snapshot is built against the running one (so
//! state carries over by identity), and settings that only a restart can change are refused.
//!
//! This module only builds and checks; it never stores. Binding new listeners and the single
//! `store` happen in `crate::reload`, after everything here has passed.

use std::sync::Arc;

use super::{BuildContext, ConfigError, ConfigErrors, Snapshot, load_str};

/// Builds the snapshot that would replace `running`, from `source`.
///
/// Every check of a first load runs (syntax, keys, references, certificates and keys read
/// from disk, addresses), plus `restart_only`. The result has generation
/// `running.generation + 1`, and its pools and backends carry over `running`'s state.
pub fn rebuild(
    source: &str,
    ctx: &BuildContext,
    running: &Arc<Snapshot>,
) -> Result<Snapshot, ConfigErrors> {
    let ctx = BuildContext {
        generation: running.generation + 1,
        previous: Some(Arc::clone(running)),
        ..ctx.clone()
    };
    let snapshot = load_str(source, &ctx)?;
    let errors = restart_only(running, &snapshot);
    if errors.is_empty() {
        Ok(snapshot)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Settings a running process cannot change: refusing them keeps the snapshot truthful
/// (a snapshot saying 4 workers while 2 run would be a half-applied config).
pub fn restart_only(running: &Snapshot, new: &Snapshot) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let (old_s, new_s) = (&running.server, &new.server);
    if old_s.workers != new_s.workers {
        errors.push(needs_restart(
            "server.workers",
            old_s.workers.get(),
            new_s.workers.get(),
        ));
    }
    if old_s.tls_session_cache != new_s.tls_session_cache {
        errors.push(needs_restart(
            "server.tls_session_cache",
            old_s.tls_session_cache,
            new_s.tls_session_cache,
        ));
    }
    if running.admin.listen != new.admin.listen {
        let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        errors.push(needs_restart(
            "admin.listen",
            show(running.admin.listen),
            show(new.admin.listen),
        ));
    }
    errors
}

fn needs_restart(
    key: &str,
    running: impl std::fmt::Display,
    new: impl std::fmt::Display,
) -> ConfigError {
    ConfigError::new(
        key,
        format!("cannot change from {running} to {new} by a reload (restart levee to apply it)"),
    )
}

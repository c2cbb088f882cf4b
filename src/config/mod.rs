//! Configuration: the TOML file (`file`), its validation into a typed `Snapshot` (`validate`),
//! and what a reload checks beyond that (`reload`).
//!
//! Loading reads and checks everything (certificates, keys, addresses, references) so a
//! `Snapshot` that exists is usable as is. Errors name the key path and the reason.

pub mod file;
pub mod local;
pub mod reload;
pub mod snapshot;
pub mod validate;
pub mod warnings;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub use local::{LocalSnapshot, SnapshotHandle};
pub use snapshot::*;
pub use warnings::{ConfigWarning, warnings};

use crate::tls::{CertError, NamedKey, Resumption};

/// What building a snapshot needs beyond the TOML text.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Process-wide TLS resumption state the new server configs will share.
    pub resumption: Resumption,
    /// Directory that relative file paths (certificates, keys) are resolved against.
    pub base_dir: PathBuf,
    /// Generation number the new snapshot gets.
    pub generation: u64,
    /// The running snapshot when this is a reload: backends (pool name + address) and pools
    /// found in it keep their runtime state (health, counters, in-flight, retry budget, queue).
    pub previous: Option<Arc<Snapshot>>,
    /// The self-signed certificate served by TLS listeners that name none: generated once
    /// per process, on first use, and kept across reloads (clients see one certificate).
    pub generated_cert: Arc<Mutex<Option<NamedKey>>>,
}

impl BuildContext {
    /// The process's generated self-signed certificate (made on the first call).
    pub fn generated_certificate(&self) -> Result<NamedKey, CertError> {
        let mut slot = self
            .generated_cert
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = crate::tls::generate_self_signed(&self.resumption.provider)?;
        *slot = Some(key.clone());
        Ok(key)
    }
}

/// One configuration problem: the key path (`pools.api.backends[1].address`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, with `[i]` for array elements; empty for whole-file problems.
    pub key: String,
    /// Human-readable reason.
    pub reason: String,
}

impl ConfigError {
    /// A new error for `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

/// All problems found in one configuration (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// Reads, parses and validates a config file. Relative paths inside resolve against its directory.
pub fn load_file(path: &Path, ctx: &BuildContext) -> Result<Snapshot, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "",
            format!("cannot read config file {}: {e}", path.display()),
        )
    })?;
    let mut ctx = ctx.clone();
    if let Some(dir) = path.parent() {
        ctx.base_dir = ctx.base_dir.join(dir);
    }
    load_str(&source, &ctx)
}

/// Parses and validates TOML source text.
pub fn load_str(source: &str, ctx: &BuildContext) -> Result<Snapshot, ConfigErrors> {
    let raw = file::parse(source)?;
    validate::build(raw, source, ctx)
}

//! What a valid config may still get wrong: settings that work but expose more than an
//! operator likely meant. `levee check` prints them, `levee run` logs them at start and on
//! every reload; none refuses the config.

use super::Snapshot;

/// One warning: the key it is about and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Dotted key path.
    pub key: &'static str,
    /// What is risky about it.
    pub reason: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The warnings `snapshot` deserves.
pub fn warnings(snapshot: &Snapshot) -> Vec<ConfigWarning> {
    let mut found = Vec::new();
    let admin = &snapshot.admin;
    if let Some(addr) = admin.listen
        && !addr.ip().is_loopback()
        && admin.token.is_none()
    {
        found.push(ConfigWarning {
            key: "admin.listen",
            reason: format!(
                "{addr} is reachable beyond loopback and admin.token is not set: anyone \
                     who can reach it can read /stats and /metrics and trigger /reload"
            ),
        });
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;
    use crate::config::validate::test_support::{MINIMAL, context};

    fn warned(admin: &str) -> Vec<ConfigWarning> {
        let source = format!("[admin]\n{admin}\n{MINIMAL}");
        warnings(&load_str(&source, &context(Path::new("."))).unwrap())
    }

    #[test]
    fn an_open_admin_api_without_a_token_is_warned_about() {
        let open = warned("listen = \"0.0.0.0:9901\"");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].key, "admin.listen");
        assert!(open[0].to_string().contains("0.0.0.0:9901"), "{}", open[0]);
        assert_eq!(warned("listen = \"[::]:9901\"").len(), 1);
        assert!(warned("listen = \"0.0.0.0:9901\"\ntoken = \"s3cret-token-value\"").is_empty());
        assert!(warned("listen = \"127.0.0.1:9901\"").is_empty());
        assert!(warned("listen = \"[::1]:9901\"").is_empty());
        assert!(warned("listen = \"off\"").is_empty());
    }
}

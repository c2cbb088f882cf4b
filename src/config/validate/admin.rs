//! `[admin] token`: the bearer token of the admin API, checked so that it can be sent in an
//! `Authorization` header as it is.

use super::Scope;

/// Shortest token accepted: a guessable token is no protection.
const MIN_TOKEN_LEN: usize = 16;

/// The token, if configured: `Some(None)` when absent, `None` when invalid (reported).
pub(super) fn token(raw: Option<&str>, s: &mut Scope<'_>) -> Option<Option<String>> {
    let Some(token) = raw else {
        return Some(None);
    };
    // RFC 6750 `b64token`: what a bearer credential may contain.
    let b64token = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    let reason = if token.is_empty() {
        "must not be empty (leave the key out for no token)".to_string()
    } else if !b64token {
        "may only hold letters, digits and - . _ ~ + / =".to_string()
    } else if token.len() < MIN_TOKEN_LEN {
        format!(
            "must be at least {MIN_TOKEN_LEN} characters (got {})",
            token.len()
        )
    } else {
        return Some(Some(token.to_string()));
    };
    s.add("token", reason);
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn check(raw: Option<&str>) -> (Option<Option<String>>, Vec<ConfigError>) {
        let mut errs = Vec::new();
        let t = token(raw, &mut Scope::new(&mut errs, "admin"));
        (t, errs)
    }

    #[test]
    fn tokens() {
        assert_eq!(check(None).0, Some(None));
        let good = "s3cr3t-t0ken_for.levee~admin";
        assert_eq!(check(Some(good)).0, Some(Some(good.to_string())));
        for (bad, needle) in [
            ("", "must not be empty"),
            ("has space in it ok", "may only hold"),
            ("quote\"inside-is-bad", "may only hold"),
            ("short", "at least 16"),
        ] {
            let (t, errs) = check(Some(bad));
            assert_eq!(t, None, "{bad:?}");
            assert!(
                errs[0].key == "admin.token" && errs[0].reason.contains(needle),
                "{bad:?}: {errs:?}"
            );
        }
    }
}

//! A listener's client-address keys: `proxy_protocol`, `trusted_proxies`,
//! `proxy_protocol_timeout` and `trust_forwarded_for`, checked into a `ClientAddressPolicy`.
//!
//! The rule worth stating: a PROXY header or `X-Forwarded-For` is believed only from listed
//! proxies, so turning either on with an empty `trusted_proxies` is an error (it would refuse
//! every connection, or do nothing), never a silent "trust everyone".

use super::Scope;
use crate::config::file::RawListener;
use crate::net::{Accept, ClientAddressPolicy, DEFAULT_PROXY_PROTOCOL_TIMEOUT, TrustedProxies};

/// Checks the keys of one `[[listeners]]` entry; errors go to `s` under their key.
pub(super) fn client_address(s: &mut Scope<'_>, raw: &RawListener) -> Option<ClientAddressPolicy> {
    let proxy_protocol = match raw.proxy_protocol.as_deref().map(str::trim) {
        None | Some("off") => Some(None),
        Some("v1") => Some(Some(Accept::V1)),
        Some("v2") => Some(Some(Accept::V2)),
        Some("any") => Some(Some(Accept::Any)),
        Some(other) => {
            let reason =
                format!("unknown value \"{other}\" (expected \"off\", \"v1\", \"v2\" or \"any\")");
            s.add("proxy_protocol", reason);
            None
        }
    };
    let listed = raw.trusted_proxies.as_deref().unwrap_or_default();
    let nets: Vec<Option<ipnet::IpNet>> = listed
        .iter()
        .enumerate()
        .map(|(j, text)| {
            crate::net::parse_cidr(text)
                .map_err(|e| s.add(&format!("trusted_proxies[{j}]"), e.to_string()))
                .ok()
        })
        .collect();
    let timeout = raw.proxy_protocol_timeout.as_deref();
    let proxy_protocol_timeout = s.timeout(
        "proxy_protocol_timeout",
        timeout,
        DEFAULT_PROXY_PROTOCOL_TIMEOUT,
    );
    let trust_forwarded_for = raw.trust_forwarded_for.unwrap_or(false);
    if listed.is_empty() {
        if let Some(Some(accept)) = proxy_protocol {
            let reason = format!(
                "\"{accept}\" needs trusted_proxies: a PROXY header is only accepted from the \
                 proxies listed there (e.g. trusted_proxies = [\"10.0.0.0/8\"])"
            );
            s.add("proxy_protocol", reason);
        }
        if trust_forwarded_for {
            let reason = "needs trusted_proxies: X-Forwarded-For is only believed from the \
                          proxies listed there (e.g. trusted_proxies = [\"10.0.0.0/8\"])";
            s.add("trust_forwarded_for", reason);
        }
    }
    let nets: Option<Vec<ipnet::IpNet>> = nets.into_iter().collect();
    let policy = ClientAddressPolicy {
        proxy_protocol: proxy_protocol?,
        proxy_protocol_timeout: proxy_protocol_timeout?,
        trusted_proxies: TrustedProxies::new(nets?),
        trust_forwarded_for,
    };
    let needs_trust = policy.proxy_protocol.is_some() || policy.trust_forwarded_for;
    (!needs_trust || !policy.trusted_proxies.is_empty()).then_some(policy)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::test_support::context;
    use crate::config::{ConfigErrors, Snapshot, load_str};
    use crate::net::Accept;

    const POOL: &str = "[pools.api]\n[[pools.api.backends]]\naddress = \"127.0.0.1:9001\"\n";

    fn load(keys: &str) -> Result<Snapshot, ConfigErrors> {
        let ctx = context(Path::new("."));
        let source = format!(
            "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"api\"\n\
             {keys}\n{POOL}"
        );
        load_str(&source, &ctx)
    }

    fn errors(keys: &str) -> Vec<String> {
        match load(keys) {
            Ok(_) => panic!("accepted: {keys}"),
            Err(ConfigErrors(errs)) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_are_off() {
        let snap = load("").unwrap();
        let p = &snap.listeners[0].client_address;
        assert_eq!(p.proxy_protocol, None);
        assert_eq!(p.proxy_protocol_timeout, Duration::from_secs(5));
        assert!(p.trusted_proxies.is_empty());
        assert!(!p.trust_forwarded_for);
    }

    #[test]
    fn every_key() {
        let keys = "proxy_protocol = \"any\"\nproxy_protocol_timeout = \"250ms\"\n\
                    trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"::1/128\", \"192.0.2.7\"]\n\
                    trust_forwarded_for = true\n";
        let snap = load(keys).unwrap();
        let p = &snap.listeners[0].client_address;
        assert_eq!(p.proxy_protocol, Some(Accept::Any));
        assert_eq!(p.proxy_protocol_timeout, Duration::from_millis(250));
        assert_eq!(
            p.trusted_proxies.to_string(),
            "127.0.0.1/32, 10.0.0.0/8, ::1/128, 192.0.2.7/32"
        );
        assert!(p.trust_forwarded_for);
        for (v, want) in [("v1", Accept::V1), ("v2", Accept::V2)] {
            let keys = format!("proxy_protocol = \"{v}\"\ntrusted_proxies = [\"::1\"]\n");
            let snap = load(&keys).unwrap();
            assert_eq!(snap.listeners[0].client_address.proxy_protocol, Some(want));
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = errors("trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("listeners[0].trusted_proxies[1]: invalid CIDR \"10.0.0.0/33\""),
            "{e:?}"
        );
        let e = errors("proxy_protocol = \"v3\"\ntrusted_proxies = [\"::1\"]\n");
        assert!(
            e[0].starts_with("listeners[0].proxy_protocol: unknown value \"v3\""),
            "{e:?}"
        );
        let e = errors("proxy_protocol_timeout = \"0s\"\n");
        assert!(
            e[0].starts_with("listeners[0].proxy_protocol_timeout: must be greater"),
            "{e:?}"
        );
        let e = errors("proxy_protocol_timeout = \"soon\"\n");
        assert!(e[0].contains("invalid duration"), "{e:?}");
    }

    #[test]
    fn trust_without_trusted_proxies_is_an_error() {
        let e = errors("proxy_protocol = \"v2\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("listeners[0].proxy_protocol: \"v2\" needs trusted_proxies"));
        let e =
            errors("proxy_protocol = \"v1\"\ntrusted_proxies = []\ntrust_forwarded_for = true\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].starts_with("listeners[0].trust_forwarded_for: needs trusted_proxies"));
        // Listing proxies without using them is harmless (and ready for a later switch-on).
        load("trusted_proxies = [\"10.0.0.0/8\"]\n").unwrap();
    }
}

//! TLS termination: certificates and SNI, shared resumption state, the timed handshake.
//!
//! Every listener gets its own rustls `ServerConfig`, but all of them share ONE ticketer and ONE
//! session-ID store (`Resumption`), so a client resumes whichever worker accepts it and across
//! config reloads.

pub mod accept;
pub mod certs;
pub mod client_trust;
pub mod hello;
pub mod resumption;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

pub use accept::{HandshakeError, HandshakeOutcome, HandshakeSlot, accept_tls, accept_tls_gated};
pub use certs::{CertError, NamedKey, SniResolver, generate_self_signed, load_certified_key};
pub use resumption::Resumption;

/// ALPN protocols offered, in preference order.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider used everywhere (aws-lc-rs), shared by rustls and rcgen.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a listener's server config: TLS 1.3 + 1.2, ALPN h2/http1.1, SNI over `certs`
/// (the first is the default), and the process-wide resumption state.
pub fn server_config(
    certs: Vec<(Arc<CertifiedKey>, Vec<String>)>,
    resumption: &Resumption,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let resolver = SniResolver::new(certs)?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&resumption.provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ticketer = Arc::clone(&resumption.ticketer);
    config.session_storage = Arc::clone(&resumption.session_store) as _;
    config.send_tls13_tickets = resumption.tls13_tickets;
    Ok(Arc::new(config))
}

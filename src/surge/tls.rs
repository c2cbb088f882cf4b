//! The surge clients' TLS settings: no session resumption (every new connection is a full
//! handshake), ALPN `http/1.1`, and trust in `--ca FILE` or, without it, any certificate.
//!
//! "Any certificate" is for benchmarking a loopback levee with a generated certificate
//! only: the server is not authenticated. Handshake signatures are still checked with the
//! provider's algorithms, so the client does the same work as a real one.
//!
//! [`hello_config`] is the hello mode's ([`super::hello`]): TLS 1.3 only, the same ALPN and
//! no resumption; it only ever writes ClientHellos, so it verifies nothing.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::tls::client_trust::{LoopbackVerifier, Trust};

/// Client config trusting the certificates of `ca` (PEM), or any certificate without it;
/// resumption disabled.
pub fn client_config(ca: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    config(ca, rustls::DEFAULT_VERSIONS)
}

/// The hello mode's client config: TLS 1.3 only (its server does the whole handshake's work
/// in its first flight), ALPN `http/1.1`, resumption disabled, any certificate.
pub fn hello_config() -> anyhow::Result<Arc<ClientConfig>> {
    config(None, &[&rustls::version::TLS13])
}

fn config(
    ca: Option<&Path>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)?;
    let mut config = match ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("--ca {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("--ca {}", path.display()))?)
                    .with_context(|| format!("--ca {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("--ca {}: no certificate", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(LoopbackVerifier::new(Trust::Any, provider))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

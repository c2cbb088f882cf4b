//! Trust for levee's own TLS clients on loopback (`levee demo`'s visitors, `levee bench
//! surge`): a verifier that accepts exactly one certificate, byte for byte, or (bench only)
//! any certificate. Either way the handshake signatures are checked with the provider's
//! algorithms, so the client does a real client's work.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Which server certificate a [`LoopbackVerifier`] accepts.
#[derive(Debug)]
pub enum Trust {
    /// Exactly this certificate.
    Pinned(CertificateDer<'static>),
    /// Any certificate: the server is not authenticated (benchmarks of a loopback levee).
    Any,
}

/// A server certificate verifier for loopback clients (see the module docs).
#[derive(Debug)]
pub struct LoopbackVerifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl LoopbackVerifier {
    /// A verifier accepting `trust`, checking signatures with `provider`.
    pub fn new(trust: Trust, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(Self { trust, provider })
    }
}

impl ServerCertVerifier for LoopbackVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Pinned(cert) if end_entity.as_ref() != cert.as_ref() => Err(
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
            Trust::Pinned(_) | Trust::Any => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tls::{generate_self_signed, provider};

    #[test]
    fn pinned_accepts_only_its_certificate_and_any_accepts_all() {
        let ours = generate_self_signed(&provider()).unwrap().0.cert[0].clone();
        let other = generate_self_signed(&provider()).unwrap().0.cert[0].clone();
        let name = ServerName::try_from("localhost").unwrap();
        let check = |v: &LoopbackVerifier, cert: &CertificateDer<'_>| {
            v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
                .is_ok()
        };
        let pinned = LoopbackVerifier::new(Trust::Pinned(ours.clone()), provider());
        assert!(check(&pinned, &ours));
        assert!(!check(&pinned, &other));
        let any = LoopbackVerifier::new(Trust::Any, provider());
        assert!(check(&any, &ours) && check(&any, &other));
    }
}

//! Certificates: loading PEM chains and keys, generating a self-signed one, and SNI selection.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot read certificate {path}: {reason}")]
    Cert {
        /// File path.
        path: String,
        /// Reason.
        reason: String,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error("cannot read private key {path}: {reason}")]
    Key {
        /// File path.
        path: String,
        /// Reason.
        reason: String,
    },
    /// The key is not usable or does not belong to the certificate.
    #[error("{0}")]
    Mismatch(String),
    /// Generating a certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// A certified key with the DNS names its leaf certificate is valid for.
pub type NamedKey = (Arc<CertifiedKey>, Vec<String>);

/// Loads a PEM certificate chain and private key and checks that they match.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<NamedKey, CertError> {
    let cert_err = |reason: String| CertError::Cert {
        path: cert_path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| CertError::Key {
        path: key_path.display().to_string(),
        reason: e.to_string(),
    })?;
    certified_key(chain, key, provider)
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<NamedKey, CertError> {
    let names = dns_names(&chain[0]);
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::Mismatch(format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing_key);
    ck.keys_match()
        .map_err(|e| CertError::Mismatch(format!("private key does not match certificate: {e}")))?;
    Ok((Arc::new(ck), names))
}

/// The lower-case DNS names (SANs) a leaf certificate is valid for.
fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(leaf)
        .map(|c| c.valid_dns_names().map(str::to_ascii_lowercase).collect())
        .unwrap_or_default()
}

/// Generates a self-signed certificate for `localhost`, 127.0.0.1 and ::1.
pub fn generate_self_signed(provider: &CryptoProvider) -> Result<NamedKey, CertError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
    certified_key(vec![generated.cert.der().clone()], key, provider)
}

/// Chooses a certificate by SNI: exact name, then `*.parent` wildcard, else the default (first).
#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Builds a resolver; the first certificate is the default. Earlier certificates win names.
    pub fn new(certs: Vec<NamedKey>) -> Result<Self, rustls::Error> {
        let default = certs
            .first()
            .map(|(ck, _)| Arc::clone(ck))
            .ok_or_else(|| rustls::Error::General("no certificate".into()))?;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (ck, names) in &certs {
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| Arc::clone(ck));
            }
        }
        Ok(Self {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for a server name (already lower-case, as rustls provides it).
    pub fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return Arc::clone(&self.default);
        };
        if let Some(ck) = self.exact.get(name) {
            return Arc::clone(ck);
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .map_or_else(|| Arc::clone(&self.default), Arc::clone)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cert_names_localhost_and_resolves_default() {
        let provider = crate::tls::provider();
        let (ck, names) = generate_self_signed(&provider).unwrap();
        assert!(names.contains(&"localhost".to_string()));
        let r = SniResolver::new(vec![(ck.clone(), names)]).unwrap();
        assert!(Arc::ptr_eq(&r.lookup(None), &ck));
        assert!(Arc::ptr_eq(&r.lookup(Some("unknown.example")), &ck));
    }
}

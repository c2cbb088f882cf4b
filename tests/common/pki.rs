//! A throwaway certificate authority and leaf certificates written as PEM into a tempdir.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use tempfile::TempDir;

/// A test CA; leaf certificates it signs are written under its own tempdir.
pub struct TestCa {
    dir: TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and key on disk.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// PEM chain file (leaf then CA).
    pub cert_path: PathBuf,
    /// PEM PKCS#8 private key file.
    pub key_path: PathBuf,
    /// DER of the leaf certificate, to compare with what a server presents.
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// The TOML inline table `{ cert = '...', key = '...' }` for this leaf.
    pub fn toml(&self) -> String {
        format!(
            "{{ cert = '{}', key = '{}' }}",
            self.cert_path.display(),
            self.key_path.display()
        )
    }
}

impl TestCa {
    /// A fresh CA ("levee test CA").
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "levee test CA");
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA self-sign");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write CA");
        Self { dir, cert, key }
    }

    /// The CA certificate in DER, for client trust stores.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Directory holding every file this CA wrote.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Signs a leaf for `names` (DNS names or IP addresses) and writes it as `<file>.pem` /
    /// `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf sign");
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.cert.pem())).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Leaf {
            cert_path,
            key_path,
            der: cert.der().clone(),
        }
    }

    /// Writes an arbitrary file into the CA's directory and returns its path.
    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

//! TLS 1.3 between peers, both sides authenticated by pinned certificates.
//!
//! Each server has a self-signed certificate (`sync/cert.pem`, key in
//! `sync/key.pem`, made by `keysync --init`); a peer is known by the
//! SHA-256 of its certificate's DER, its pin, in the configuration. No CA,
//! name or date is looked at: a certificate is accepted exactly when its
//! pin is configured (the dialler wants the one peer it dialled, the
//! listener any configured peer, and so learns which one it is), and the
//! handshake signatures are checked with the ring provider as usual, so
//! only the holder of the pinned key gets in. Anything else fails the
//! handshake before a KX byte is read.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ripem_core::config::CertPin;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use crate::error::SyncError;

/// This server's key and certificate.
pub struct Identity {
    key: PrivateKeyDer<'static>,
    cert: CertificateDer<'static>,
}

/// The pin of a certificate.
pub fn pin_of(cert: &[u8]) -> CertPin {
    CertPin(Sha256::digest(cert).into())
}

fn tls_error(path: &Path) -> impl FnOnce(String) -> SyncError + '_ {
    move |problem| SyncError::Tls {
        path: path.to_path_buf(),
        problem,
    }
}

/// Writes `text` to `path` through a temp file with `mode`, fsynced.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), SyncError> {
    let temp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .map_err(SyncError::io(&temp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(SyncError::io(&temp))?;
    std::fs::rename(&temp, path).map_err(SyncError::io(path))?;
    ripem_core::atomic::sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(SyncError::io(path))
}

/// Makes `key.pem` and `cert.pem` in `dir` where missing (a kept key gets
/// a new certificate only if its certificate is missing); returns the pin.
pub fn init(dir: &Path, server_id: &str) -> Result<CertPin, SyncError> {
    let key_path = dir.join("key.pem");
    let cert_path = dir.join("cert.pem");
    std::fs::create_dir_all(dir).map_err(SyncError::io(dir))?;
    let key = match std::fs::read_to_string(&key_path) {
        Ok(text) => rcgen::KeyPair::from_pem(&text).map_err(|err| tls_error(&key_path)(err.to_string()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = rcgen::KeyPair::generate().map_err(|err| tls_error(&key_path)(err.to_string()))?;
            write_new(&key_path, &key.serialize_pem(), 0o600)?;
            // A new key makes any old certificate useless.
            let _ = std::fs::remove_file(&cert_path);
            key
        }
        Err(source) => return Err(SyncError::Io { path: key_path, source }),
    };
    if !cert_path.exists() {
        let name = if server_id.parse::<std::net::IpAddr>().is_ok() || server_id.contains('.') {
            server_id.to_string()
        } else {
            "keysync.invalid".to_string()
        };
        let params = rcgen::CertificateParams::new(vec![name]).map_err(|err| tls_error(&cert_path)(err.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|err| tls_error(&cert_path)(err.to_string()))?;
        write_new(&cert_path, &cert.pem(), 0o644)?;
    }
    Ok(Identity::load(dir)?.pin())
}

impl Identity {
    /// Reads `key.pem` and `cert.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<Identity, SyncError> {
        let read = |path: PathBuf| {
            std::fs::read(&path)
                .map_err(SyncError::io(&path))
                .map(|bytes| (path, bytes))
        };
        let (key_path, key) = read(dir.join("key.pem"))?;
        let (cert_path, cert) = read(dir.join("cert.pem"))?;
        let hint = " (run keysync --init)";
        Ok(Identity {
            key: PrivateKeyDer::from_pem_slice(&key).map_err(|err| tls_error(&key_path)(format!("{err}{hint}")))?,
            cert: CertificateDer::from_pem_slice(&cert).map_err(|err| tls_error(&cert_path)(format!("{err}{hint}")))?,
        })
    }

    /// This server's pin.
    pub fn pin(&self) -> CertPin {
        pin_of(&self.cert)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Accepts the certificates whose pins are known, checking signatures.
#[derive(Debug)]
struct Pinned {
    pins: HashMap<CertPin, String>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if intermediates.is_empty() && self.pins.contains_key(&pin_of(cert)) {
            Ok(())
        } else {
            Err(rustls::Error::General("certificate not pinned".into()))
        }
    }

    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        cert: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(cert, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        cert: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(cert, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

fn config_error(err: rustls::Error) -> SyncError {
    SyncError::Tls {
        path: PathBuf::from("sync/key.pem"),
        problem: err.to_string(),
    }
}

/// The listener's configuration: any of `pins` (pin → peer name) may connect.
pub fn server_config(identity: &Identity, pins: HashMap<CertPin, String>) -> Result<Arc<ServerConfig>, SyncError> {
    let verifier = Pinned {
        pins,
        provider: provider(),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The dialler's configuration for the peer with `pin`.
pub fn client_config(identity: &Identity, pin: CertPin) -> Result<Arc<ClientConfig>, SyncError> {
    let verifier = Pinned {
        pins: HashMap::from([(pin, String::new())]),
        provider: provider(),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

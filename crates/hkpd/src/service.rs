//! What hkpd answers with: the settings a request is answered under, the
//! database, the spool, the rate table, the connection bound and the TLS
//! acceptor, built from the configuration as one [`Service`] that SIGHUP
//! replaces whole (the routes read it; the server holds it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ripem_core::config::Config;
use ripem_core::ratelimit::{Limits, RateLimiter};
use ripem_core::spool::Spool;
use ripem_openpgp::KeyPolicy;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::error::HkpdError;
use crate::keys::Database;

/// What answers read of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Domains whose WKD is served.
    pub wkd_domains: Vec<String>,
    /// The WKD `submission-address` (the register address).
    pub submission_address: String,
    /// Largest request body.
    pub max_request_bytes: u64,
    /// Header, body and TLS handshake timeout.
    pub timeout: Duration,
    /// keyreg's key rules, to refuse junk at once.
    pub policy: KeyPolicy,
    /// Most keys one HKP submission may carry.
    pub max_keys: usize,
    /// Log requests with the client's address.
    pub log_requests: bool,
}

/// Everything one request is answered with; replaced whole on SIGHUP.
pub struct Service {
    /// The configuration's part for answers.
    pub settings: Settings,
    /// The key database.
    pub db: Database,
    /// The spool submissions go to.
    pub spool: Spool,
    /// Requests per source network.
    pub limiter: Option<RateLimiter>,
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) tls: Option<TlsAcceptor>,
}

impl Service {
    /// The service for `config`; fails if its TLS files can't be used.
    pub fn new(config: &Config) -> Result<Service, HkpdError> {
        let hkpd = &config.hkpd;
        let tls = match (&hkpd.tls_cert, &hkpd.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        Ok(Service {
            settings: Settings {
                wkd_domains: hkpd.wkd_domains.clone(),
                submission_address: config.addresses.register.clone(),
                max_request_bytes: hkpd.max_request_bytes,
                timeout: hkpd.timeout,
                policy: KeyPolicy::configured(&config.keyreg),
                max_keys: config.keyreg.max_keys_per_request,
                log_requests: hkpd.log_requests,
            },
            db: Database::new(
                &config.paths.database,
                &config.paths.database_lock(),
                KeyPolicy::configured(&config.keyreg),
            ),
            spool: Spool::new(&config.paths.spool_dir),
            limiter: RateLimiter::new(Limits {
                rate: hkpd.rate_limit,
                burst: hkpd.rate_burst,
                byte_rate: 0,
                byte_burst: 0,
            }),
            connections: Arc::new(Semaphore::new(hkpd.max_connections)),
            tls,
        })
    }
}

/// The TLS acceptor for a PEM certificate chain and key.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, HkpdError> {
    let tls_error = |path: &Path, message: String| HkpdError::Tls {
        path: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| tls_error(cert, err.to_string()))?;
    if chain.is_empty() {
        return Err(tls_error(cert, "no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|err| tls_error(key, err.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|err| tls_error(key, err.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

//! TLS to Redis (`rediss://` URLs): which CA to trust and, for mutual TLS, which client
//! certificate to present. redis-rs does the handshake with rustls on the `ring`
//! provider; without a CA file the system's trust store is used.

use crate::ConnectError;
use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use std::path::{Path, PathBuf};

/// PEM files for TLS connections. All empty (the default) means: plain `redis://`
/// as given, or `rediss://` checked against the system's trust store.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// CA certificate(s) that signed the server certificate. When set, only these are
    /// trusted (not the system store).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for servers that require one (`tls-auth-clients yes`).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub client_key: Option<PathBuf>,
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// Builds the redis-rs client for `url` with `tls`, for the RESP `protocol` given.
pub(crate) fn client(
    url: &str,
    tls: &RedisTls,
    protocol: redis::ProtocolVersion,
) -> Result<redis::Client, ConnectError> {
    // rustls picks the provider compiled in (ring); installing it explicitly keeps that
    // true even if another crate in the binary enables a second provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let info = url
        .into_connection_info()
        .map_err(ConnectError::InvalidUrl)?;
    let settings = info.redis_settings().clone().set_protocol(protocol);
    let info = info.set_redis_settings(settings);
    let is_tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    if tls.is_empty() {
        return redis::Client::open(info).map_err(ConnectError::InvalidUrl);
    }
    if !is_tls {
        return Err(ConnectError::TlsNeedsRediss);
    }
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert, "client certificate")?,
            client_key: read(key, "client key")?,
        }),
        (None, None) => None,
        _ => return Err(ConnectError::IncompleteClientCert),
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read(path, "CA file")?),
        None => None,
    };
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(ConnectError::TlsConfig)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// True when `e` is a TLS failure: an untrusted or misnamed server certificate, a
/// refused client certificate, a protocol mismatch. (redis-rs keeps the I/O error
/// behind an `Arc`, and the I/O error hides the rustls error from `source()`.)
pub(crate) fn is_tls_failure(e: &redis::RedisError) -> bool {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let is_rustls = |err: &(dyn std::error::Error + 'static)| {
        err.is::<rustls::Error>()
            || err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>())
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if is_rustls(err) {
            return true;
        }
        if let Some(shared) = err.downcast_ref::<Shared>() {
            if is_rustls(shared.as_ref()) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

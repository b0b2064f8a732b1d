//! SIP over TLS (RFC 3261 §26.2.1, RFC 5922, RFC 5630): the rustls configurations built from
//! `[tls]`, the handshakes of `tls:` listeners and next hops, and their swap on reload.
//!
//! TLS is a layer under the stream transport: once a handshake is done, a TLS connection is
//! framed, limited and timed exactly like a TCP one (see `tcp.rs`), and counts in the same
//! `max_tcp_connections`. A next hop's certificate must name the address it was reached at
//! (an IP address SAN for an IP next hop, RFC 5922 §7.2 done by webpki); a client's
//! certificate is asked for, and checked against `client_ca`, only under `verify_client`.
//!
//! The crypto provider is *ring*: it builds from a few C and assembly files with the C
//! compiler alone, where aws-lc-rs needs CMake and a much longer build.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The certificates and keys of `[tls]`, read and made into rustls configurations.
pub struct TlsSettings {
    /// What `tls:` listeners present and whom they accept; `None` without a certificate.
    server: Option<Arc<ServerConfig>>,
    /// What sipscreen trusts towards `tls:` next hops, and the client certificate it shows
    /// them (mutual TLS), if any.
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listens", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

/// The PEM files of `[tls]`, already read; see [`TlsSettings::new`].
pub struct TlsFiles {
    /// The listeners' certificate chain and key.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Roots that next hops' certificates must chain to; the system's when `None`.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// The certificate and key shown to next hops that ask for one.
    pub client_identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Roots that clients' certificates must chain to: given when clients must show one.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
}

/// Which part of [`TlsFiles`] rustls refused, and why.
#[derive(Debug)]
pub enum TlsError {
    /// The listeners' certificate and key (a key that does not match, say).
    Identity(String),
    /// The client certificate and key.
    ClientIdentity(String),
    /// A trust root that cannot be used.
    Ca(String),
    /// Client roots that cannot be used.
    ClientCa(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; an error when there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in the file (PEM `BEGIN CERTIFICATE` expected)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: no private key in the file: {e}", path.display()))
}

fn roots(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .map_err(|e| format!("not a usable trust root: {e}"))?;
    }
    Ok(store)
}

/// The system's trust roots (`/etc/ssl/certs` on Debian), for next hops when `ca` is not
/// given; those it cannot parse are left out, as browsers do.
fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    store.add_parsable_certificates(found.certs);
    store
}

impl TlsSettings {
    /// The rustls configurations for `files`; what rustls refuses is named by its part.
    pub fn new(files: TlsFiles) -> Result<TlsSettings, TlsError> {
        let server = match files.identity {
            None => None,
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TlsError::Identity(e.to_string()))?;
                let builder = match files.client_ca {
                    Some(ca) => {
                        let roots = roots(ca).map_err(TlsError::ClientCa)?;
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots),
                            provider(),
                        )
                        .build()
                        .map_err(|e| TlsError::ClientCa(e.to_string()))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    None => builder.with_no_client_auth(),
                };
                let config = builder
                    .with_single_cert(chain, key)
                    .map_err(|e| TlsError::Identity(e.to_string()))?;
                Some(Arc::new(config))
            }
        };
        let roots = match files.ca {
            Some(ca) => roots(ca).map_err(TlsError::Ca)?,
            None => system_roots(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Ca(e.to_string()))?
            .with_root_certificates(roots);
        let client = match files.client_identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::ClientIdentity(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsSettings {
            server,
            client: Arc::new(client),
        })
    }
}

/// The TLS settings in force, shared by the listeners and the connector, and replaced as a
/// whole on reload: a handshake under way keeps the configuration it started with.
pub(super) type TlsState = Arc<RwLock<Option<Arc<TlsSettings>>>>;

fn current(state: &TlsState) -> Option<Arc<TlsSettings>> {
    state
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// How long a handshake may take, at most: it is the connection's first message, and a
/// peer must not hold a connection slot by starting one and never finishing it.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

fn handshake_limit(idle: Duration) -> Duration {
    idle.min(HANDSHAKE_LIMIT)
}

/// The server side of a handshake on an accepted connection.
pub(super) async fn accept(
    state: &TlsState,
    stream: TcpStream,
    idle: Duration,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let config = current(state)
        .and_then(|t| t.server.clone())
        .ok_or_else(|| io::Error::other("no TLS certificate configured"))?;
    tokio::time::timeout(
        handshake_limit(idle),
        TlsAcceptor::from(config).accept(stream),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// The client side of a handshake towards a next hop at `ip`, whose certificate must name
/// that address.
pub(super) async fn connect(
    state: &TlsState,
    stream: TcpStream,
    ip: IpAddr,
    idle: Duration,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = current(state)
        .map(|t| t.client.clone())
        .ok_or_else(|| io::Error::other("no TLS settings"))?;
    tokio::time::timeout(
        handshake_limit(idle),
        TlsConnector::from(config).connect(ServerName::IpAddress(ip.into()), stream),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Failed handshakes, logged once a second at most with their count (SPEC §7): anyone can
/// open connections that fail.
#[derive(Default)]
pub(super) struct Failures(Mutex<(u64, Option<Instant>)>);

impl Failures {
    /// Counts one; how many to report when it is time to log.
    pub(super) fn hit(&self) -> Option<u64> {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 += 1;
        let now = Instant::now();
        if g.1
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return None;
        }
        g.1 = Some(now);
        Some(std::mem::take(&mut g.0))
    }
}

//! TLS of the suite's gRPC, written once for every binary.
//!
//! - **Servers** serve TLS when given a certificate and its key (`--tls-cert-file`,
//!   `--tls-key-file`, PEM). The files are re-read when they change (checked every
//!   `--tls-reload-interval`), so a certificate renewed by cert-manager in a mounted Secret
//!   needs no restart; a renewal that cannot be read is logged and the previous certificate
//!   kept. With `--tls-client-ca-file` a server requires a client certificate signed by that
//!   CA (mTLS): a caller without one fails the handshake.
//! - **Clients** call `https://` service URLs trusting the CA of `--tls-ca-file`, presenting
//!   `--tls-client-cert-file` and `--tls-client-key-file` when given (to services that
//!   require mTLS). An `https://` URL without `--tls-ca-file` fails at start in one line.
//!
//! The client settings are the process's: [`install_client`] sets them once at start (the
//! [`crate::bootstrap::Binary`] does), and every channel of [`crate::client`] reads them, as
//! rustls reads its process-wide crypto provider. The crypto is rustls with *ring*. The
//! flags are [`crate::config::TlsArgs`]; this module depends on no other of the crate's.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use futures::Stream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::shutdown::Shutdown;

/// Longest a client gets to finish its TLS handshake; a stalled one is dropped without
/// holding up the others.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of a client's TLS: the CA of the servers it calls, and its own certificate
/// and key for servers that require mTLS.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFiles {
    /// PEM CA certificates of the servers (`--tls-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (`--tls-client-cert-file`).
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key (`--tls-client-key-file`).
    pub key_file: Option<PathBuf>,
}

/// The files of a server's TLS and how often they are checked for a change.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    /// PEM certificate chain (`--tls-cert-file`).
    pub cert_file: PathBuf,
    /// Its PEM private key (`--tls-key-file`).
    pub key_file: PathBuf,
    /// PEM CA whose client certificates are required (`--tls-client-ca-file`).
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change.
    pub reload_interval: Duration,
}

/// What a client needs to call `https://` URLs.
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca: Certificate,
    identity: Option<Identity>,
}

impl ClientTls {
    /// The client settings of `files`: `None` without a CA file. Fails, naming the setting
    /// and the file, when a file cannot be read or holds no PEM certificate.
    pub fn load(files: &ClientTlsFiles) -> anyhow::Result<Option<Self>> {
        let Some(ca_file) = &files.ca_file else {
            if files.cert_file.is_some() {
                bail!("--tls-client-cert-file needs --tls-ca-file (the CA of the services)");
            }
            return Ok(None);
        };
        let ca = read_pem("--tls-ca-file", ca_file)?;
        certificates("--tls-ca-file", ca_file)?;
        let identity = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => {
                certificates("--tls-client-cert-file", cert)?;
                private_key("--tls-client-key-file", key)?;
                Some(Identity::from_pem(
                    read_pem("--tls-client-cert-file", cert)?,
                    read_pem("--tls-client-key-file", key)?,
                ))
            }
            _ => None,
        };
        Ok(Some(Self {
            ca: Certificate::from_pem(ca),
            identity,
        }))
    }

    /// The tonic settings for a channel to `host` (the name its certificate must carry,
    /// whatever address the channel dials).
    pub fn for_host(&self, host: &str) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
        match &self.identity {
            Some(identity) => config.identity(identity.clone()),
            None => config,
        }
    }
}

/// The process's client settings, set once by [`install_client`].
static CLIENT_TLS: OnceLock<Option<ClientTls>> = OnceLock::new();

/// Sets the process's client TLS settings from `files` (once: later calls keep the first).
pub fn install_client(files: &ClientTlsFiles) -> anyhow::Result<()> {
    let loaded = ClientTls::load(files)?;
    let _ = CLIENT_TLS.set(loaded);
    Ok(())
}

/// The TLS settings of a channel to `url` under `setting`: `None` for `http://`; for
/// `https://` the installed client settings, or an error naming the setting when none are.
pub fn client_config(setting: &str, url: &http::Uri) -> anyhow::Result<Option<ClientTlsConfig>> {
    if url.scheme_str() != Some("https") {
        return Ok(None);
    }
    match CLIENT_TLS.get().and_then(Option::as_ref) {
        Some(tls) => Ok(Some(tls.for_host(url.host().unwrap_or_default()))),
        None => bail!("{setting}: `{url}` is https:// but no --tls-ca-file is given"),
    }
}

/// A server's TLS: the configuration handshakes use, with its reloading certificate.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    certificate: Arc<ReloadingCertificate>,
    reload_interval: Duration,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The server settings of `files`. `http1` also offers HTTP/1.1 in ALPN (gRPC-Web).
    /// Fails at start, naming the setting and the file, when a file cannot be read or holds
    /// no certificate or key.
    pub fn load(files: &ServerTlsFiles, http1: bool) -> anyhow::Result<Self> {
        let (cert_file, key_file) = (&files.cert_file, &files.key_file);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(ReloadingCertificate::load(
            cert_file.clone(),
            key_file.clone(),
            Arc::clone(&provider),
        )?);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("tls: protocol versions")?;
        let builder = match &files.client_ca_file {
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates("--tls-client-ca-file", ca_file)? {
                    roots
                        .add(ca)
                        .with_context(|| format!("--tls-client-ca-file {}", ca_file.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .with_context(|| format!("--tls-client-ca-file {}", ca_file.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = if http1 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec()]
        };
        Ok(Self {
            config: Arc::new(config),
            certificate,
            reload_interval: files.reload_interval,
        })
    }

    /// The TLS connections accepted on `listener`, handshakes done concurrently, until the
    /// stream is dropped; meanwhile the certificate is re-read when its files change, until
    /// `shutdown`.
    pub fn incoming(
        &self,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let acceptor = TlsAcceptor::from(Arc::clone(&self.config));
        let (connections, incoming) = tokio::sync::mpsc::channel(64);
        tokio::spawn(watch_files(
            Arc::clone(&self.certificate),
            self.reload_interval,
            shutdown,
        ));
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = connections.closed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Out of file descriptors, say: back off instead of spinning.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, connections) = (acceptor.clone(), connections.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = connections.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                        Err(_) => tracing::debug!("tls handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(incoming)
    }
}

/// Re-reads the certificate every `interval` while it runs.
async fn watch_files(certificate: Arc<ReloadingCertificate>, interval: Duration, stop: Shutdown) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.wait() => return,
            _ = ticks.tick() => certificate.reload_if_changed(),
        }
    }
}

/// The server's certificate and key, re-read when either file's modification time changes.
#[derive(Debug)]
struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Loaded>,
}

/// A loaded certificate with the modification times of its files.
#[derive(Debug)]
struct Loaded {
    modified: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

impl ReloadingCertificate {
    fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let modified = (modified(&cert_file), modified(&key_file));
        let key = certified_key(&cert_file, &key_file, &provider)?;
        Ok(Self {
            cert_file,
            key_file,
            provider,
            current: RwLock::new(Loaded { modified, key }),
        })
    }

    fn reload_if_changed(&self) {
        let modified = (modified(&self.cert_file), modified(&self.key_file));
        if self.read().modified == modified {
            return;
        }
        match certified_key(&self.cert_file, &self.key_file, &self.provider) {
            Ok(key) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Loaded { modified, key };
                tracing::info!(cert_file = %self.cert_file.display(), "tls certificate reloaded");
            }
            // Half-written files (a Secret being updated) or a bad renewal: keep serving
            // the last good certificate, and try again at the next check.
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "tls certificate not reloaded; keeping the previous one");
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.read().key))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// The certificate chain and key of the two files, checked to belong together.
fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = certificates("--tls-cert-file", cert_file)?;
    let key = private_key("--tls-key-file", key_file)?;
    let certified = CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "--tls-key-file {}: not the key of --tls-cert-file",
            key_file.display()
        )
    })?;
    Ok(Arc::new(certified))
}

fn read_pem(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{setting} {}: cannot read it", path.display()))
}

/// The PEM certificates of `path`, at least one.
fn certificates(setting: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(&read_pem(setting, path)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{setting} {}: not PEM certificates", path.display()))?;
    if certificates.is_empty() {
        bail!("{setting} {}: no PEM certificate in it", path.display());
    }
    Ok(certificates)
}

/// The PEM private key of `path` (PKCS#8, PKCS#1 or SEC1).
fn private_key(setting: &str, path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&read_pem(setting, path)?)
        .with_context(|| format!("{setting} {}: no PEM private key in it", path.display()))
}

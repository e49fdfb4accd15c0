//! All TLS code: the crypto provider, the self-signed certificate kept in the data directory or
//! the operator's PEM files, the rustls server configuration, and the client configuration of
//! HTTPS probes (which, as in Kubernetes, verifies no certificate).
//!
//! The server certificate is re-read without a restart: [`watch`] checks the two files every
//! [`RELOAD_CHECK`] and on SIGHUP, and new handshakes get the new pair once it loads and its key
//! matches; until then (a renewal half written, a typo) the old pair keeps serving, so a renewal
//! by an ACME client or cert-manager-style tooling needs no downtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::sync::RwLockExt;

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Self-signed, generated on first start and kept in the data directory.
    Generated,
    /// The operator's PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// File names of the generated certificate inside the data directory.
pub const GENERATED_CERT: &str = "tls/cert.pem";
pub const GENERATED_KEY: &str = "tls/key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} contains no certificate")]
    NoCertificate { path: PathBuf },
    #[error("certificate and key do not work together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Installs ring as the process-wide rustls provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // Only the first call can succeed; later calls find ring already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How often [`watch`] looks at the certificate files.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Builds the server config, generating a self-signed certificate on first start if needed.
/// Its certificate comes from the returned [`ReloadingCert`]; hand that to [`watch`].
pub fn server_config(
    source: &TlsSource,
    data_dir: &Path,
) -> Result<(ServerConfig, Arc<ReloadingCert>), TlsError> {
    let (cert_path, key_path) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::Generated => {
            let cert = data_dir.join(GENERATED_CERT);
            let key = data_dir.join(GENERATED_KEY);
            if !cert.is_file() || !key.is_file() {
                generate_self_signed(&cert, &key)?;
            }
            (cert, key)
        }
    };
    let stamp = Stamp::of(&cert_path, &key_path);
    let certified = load_pair(&cert_path, &key_path)?;
    let resolver = Arc::new(ReloadingCert {
        cert_path,
        key_path,
        current: RwLock::new(Loaded {
            certified: Arc::new(certified),
            stamp,
        }),
    });
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Session resumption for returning clients: stateless tickets (TLS 1.2 and 1.3; keys
    // rotate every 6 hours and die with the process) on top of the default 256-entry
    // session cache, so a client reconnecting skips the certificate signature, the
    // costliest part of a handshake, however many clients there are.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok((config, resolver))
}

/// Reads a certificate chain and its private key, checking that they belong together.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            path: cert_path.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Read {
        path: key_path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(CertifiedKey::from_der(
        chain,
        key,
        &rustls::crypto::ring::default_provider(),
    )?)
}

/// What identifies a version of the two files (modification time, size and inode of each),
/// so a rename over them counts as a change as much as a rewrite in place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamp {
    fn of(cert: &Path, key: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            [cert, key]
                .iter()
                .map(|path| {
                    let meta = std::fs::metadata(path).ok()?;
                    Some((meta.modified().ok()?, meta.len(), meta.ino()))
                })
                .collect(),
        )
    }
}

#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    /// The files' stamp when `certified` was read (or last failed to load).
    stamp: Stamp,
}

/// The server certificate, replaced in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

/// What a reload check did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded,
    /// The files changed but do not load; the previous pair keeps serving.
    Failed(String),
}

impl ReloadingCert {
    /// Re-reads the pair when the files changed since the last look (always when `force`).
    pub fn check(&self, force: bool) -> Reload {
        let stamp = Stamp::of(&self.cert_path, &self.key_path);
        {
            let current = self.current.reading();
            if !force && current.stamp == stamp {
                return Reload::Unchanged;
            }
        }
        let result = load_pair(&self.cert_path, &self.key_path);
        let mut current = self.current.writing();
        // A failed pair is not retried until the files change again (no log line every check).
        current.stamp = stamp;
        match result {
            Ok(certified) => {
                current.certified = Arc::new(certified);
                Reload::Loaded
            }
            Err(e) => Reload::Failed(e.to_string()),
        }
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let current = self.current.reading();
        Arc::clone(&current.certified)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reloads the certificate when its files change or the process gets SIGHUP; runs until the
/// runtime stops. Call inside the Tokio runtime.
pub async fn watch(resolver: Arc<ReloadingCert>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!("no SIGHUP handler ({e}); certificate files are still watched");
            None
        }
    };
    let mut ticks = tokio::time::interval(RELOAD_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = ticks.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let checker = Arc::clone(&resolver);
        let outcome = tokio::task::spawn_blocking(move || checker.check(force)).await;
        let path = resolver.cert_path.display();
        match outcome {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Loaded) => tracing::info!("TLS certificate reloaded from {path}"),
            Ok(Reload::Failed(e)) => tracing::error!(
                "TLS certificate {path} changed but cannot be used, still serving the previous one: {e}"
            ),
            Err(e) => tracing::error!("TLS certificate reload check failed: {e}"),
        }
    }
}

/// Writes a self-signed certificate for localhost and the loopback addresses. The key is
/// written 0600 and first, so a crash never leaves a certificate without its key.
fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    crate::secrets::write_private_file(key_path, certified.signing_key.serialize_pem().as_bytes())
        .map_err(|source| TlsError::Write {
            path: key_path.to_owned(),
            source,
        })?;
    crate::secrets::write_atomically(cert_path, certified.cert.pem().as_bytes(), 0o644).map_err(
        |source| TlsError::Write {
            path: cert_path.to_owned(),
            source,
        },
    )?;
    Ok(())
}

/// The client configuration of `httpGet` probes with `scheme: HTTPS`. Kubernetes probes HTTPS
/// without verifying the certificate: a container's certificate is usually self-signed or names
/// a host other than the container IP the probe connects to, and the probe asks only "does the
/// service answer", not "is it who it claims to be"; nothing secret is sent. So this one client
/// accepts any certificate. The handshake signatures are still checked against the certificate's
/// key, so the connection is real TLS.
pub fn probe_client_config() -> Arc<ClientConfig> {
    static CONFIG: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map(|builder| {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            });
        // ring's default provider supports the safe default versions; this cannot fail.
        Arc::new(config.unwrap_or_else(|e| panic!("probe TLS client config: {e}")))
    });
    Arc::clone(&CONFIG)
}

/// Accepts every server certificate (see [`probe_client_config`]); only for probes.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, cert_name: &str, key_name: &str) -> Vec<u8> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join(key_name), certified.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join(cert_name), certified.cert.pem()).unwrap();
        certified.cert.der().to_vec()
    }

    /// One TLS handshake in memory between a new client and server connection; what kind it was.
    fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> rustls::HandshakeKind {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
        // A few round trips: TLS 1.3 sends its tickets after the handshake.
        for _ in 0..6 {
            let mut flight = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut flight).unwrap();
            }
            let mut unread = &flight[..];
            while !unread.is_empty() {
                server.read_tls(&mut unread).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut flight = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut flight).unwrap();
            }
            let mut unread = &flight[..];
            while !unread.is_empty() {
                client.read_tls(&mut unread).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        client.handshake_kind().unwrap()
    }

    #[test]
    fn a_returning_client_resumes_its_session_on_both_versions() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "cert.pem", "key.pem");
        let source = TlsSource::Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let (server, _resolver) = server_config(&source, dir.path()).unwrap();
        assert!(server.ticketer.enabled());
        let server = Arc::new(server);
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            });
            // One config per client: it holds the client's remembered sessions.
            let client = Arc::new(
                ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth(),
            );
            let kinds = [handshake(&client, &server), handshake(&client, &server)];
            assert_eq!(
                kinds,
                [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed],
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_is_not() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), "cert.pem", "key.pem");
        let source = TlsSource::Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let (_config, resolver) = server_config(&source, dir.path()).unwrap();
        let served = |r: &ReloadingCert| r.current().cert[0].to_vec();
        assert_eq!(served(&resolver), first);
        assert_eq!(resolver.check(false), Reload::Unchanged);

        // A renewal renamed over the old files (as ACME clients do).
        let second = write_pair(dir.path(), "new-cert.pem", "new-key.pem");
        std::fs::rename(dir.path().join("new-key.pem"), dir.path().join("key.pem")).unwrap();
        std::fs::rename(dir.path().join("new-cert.pem"), dir.path().join("cert.pem")).unwrap();
        assert_eq!(resolver.check(false), Reload::Loaded);
        assert_eq!(served(&resolver), second);

        // Half a renewal: a new certificate whose key is not there yet keeps the old pair.
        write_pair(dir.path(), "cert.pem", "other-key.pem");
        assert!(matches!(resolver.check(false), Reload::Failed(_)));
        assert_eq!(served(&resolver), second);
        // Not retried until the files change again; SIGHUP forces a look.
        assert_eq!(resolver.check(false), Reload::Unchanged);
        assert!(matches!(resolver.check(true), Reload::Failed(_)));
        std::fs::rename(dir.path().join("other-key.pem"), dir.path().join("key.pem")).unwrap();
        assert_eq!(resolver.check(false), Reload::Loaded);
        assert_ne!(served(&resolver), second);
    }
}

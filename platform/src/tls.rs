//! All TLS code: the crypto provider, the self-signed certificate kept in the data directory or
//! the operator's PEM files, the rustls server configuration, and the client configuration of
//! HTTPS probes (which, as in Kubernetes, verifies no certificate).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::TlsSource;

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

/// Builds the server config, generating a self-signed certificate on first start if needed.
pub fn server_config(source: &TlsSource, data_dir: &Path) -> Result<ServerConfig, TlsError> {
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
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            path: cert_path.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Read {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
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

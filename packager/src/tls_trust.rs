//! Which TLS certificates `deploy`/`subscribe` trust: the built-in web PKI roots, a CA
//! certificate file, or (loudly) nothing. All TLS setup of the platform client is here; the
//! crypto provider is ring, through ureq's `rustls` feature.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The Mozilla root set bundled with the client (webpki-roots).
    WebPkiRoots,
    /// Only the certificates in this PEM file (e.g. a self-signed platform certificate).
    CaFile(PathBuf),
    /// No verification at all (`--insecure`).
    Insecure,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("--ca-cert {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ca-cert {}: not a PEM certificate file: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error(
        "--ca-cert {}: no certificate found (expected a -----BEGIN CERTIFICATE----- block)",
        path.display()
    )]
    Empty { path: PathBuf },
}

/// The client TLS configuration for `trust`.
pub fn tls_config(trust: &Trust) -> Result<TlsConfig, TrustError> {
    let builder = TlsConfig::builder().provider(TlsProvider::Rustls);
    let config = match trust {
        Trust::WebPkiRoots => builder.root_certs(RootCerts::WebPki).build(),
        Trust::CaFile(path) => builder
            .root_certs(RootCerts::new_with_certs(&read_certificates(path)?))
            .build(),
        Trust::Insecure => builder.disable_verification(true).build(),
    };
    Ok(config)
}

fn read_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, TrustError> {
    // Read first so a missing file and a malformed one get different messages.
    let pem = std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut certificates = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let der = certificate.map_err(|error| TrustError::Pem {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        certificates.push(Certificate::from_der(der.as_ref()).to_owned());
    }
    if certificates.is_empty() {
        return Err(TrustError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

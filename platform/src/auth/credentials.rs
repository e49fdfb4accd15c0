//! Parsing of the `Authorization` header: Basic `tenant/user:password` or `user:password`, and
//! Bearer tokens.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Credentials as sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        tenant: Option<String>,
        user: String,
        password: String,
    },
    Bearer(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("unsupported authorization scheme (use Basic or Bearer)")]
    Scheme,
    #[error("malformed Basic credentials")]
    Malformed,
}

/// Parses an `Authorization` header value.
pub fn parse(header: &str) -> Result<Credentials, CredentialsError> {
    let (scheme, rest) = header
        .trim()
        .split_once(' ')
        .ok_or(CredentialsError::Scheme)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        return if token.is_empty() {
            Err(CredentialsError::Malformed)
        } else {
            Ok(Credentials::Bearer(token.to_owned()))
        };
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(CredentialsError::Scheme);
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .map_err(|_| CredentialsError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialsError::Malformed)?;
    let (login, password) = text.split_once(':').ok_or(CredentialsError::Malformed)?;
    let (tenant, user) = match login.split_once('/') {
        Some((tenant, user)) => (Some(tenant.to_owned()), user.to_owned()),
        None => (None, login.to_owned()),
    };
    if user.is_empty() || tenant.as_deref() == Some("") {
        return Err(CredentialsError::Malformed);
    }
    Ok(Credentials::Basic {
        tenant,
        user,
        password: password.to_owned(),
    })
}

/// The credential cache's key of a credential: SHA-256 over its parts (kind, header value,
/// host), separated so they cannot run together. Here rather than in the cache, which holds
/// principals, so the extractor that fills the cache and the cache do not import each other.
pub fn cache_key(parts: &[&str]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        format!("Basic {}", STANDARD.encode(text))
    }

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            (
                basic("t1/jane:pw:with:colons"),
                Ok(Credentials::Basic {
                    tenant: Some("t1".into()),
                    user: "jane".into(),
                    password: "pw:with:colons".into(),
                }),
            ),
            (
                basic("jane:pw"),
                Ok(Credentials::Basic {
                    tenant: None,
                    user: "jane".into(),
                    password: "pw".into(),
                }),
            ),
            (
                "Bearer abc.def.ghi".into(),
                Ok(Credentials::Bearer("abc.def.ghi".into())),
            ),
            (basic("nocolon"), Err(CredentialsError::Malformed)),
            (basic("/jane:pw"), Err(CredentialsError::Malformed)),
            ("Basic %%%".into(), Err(CredentialsError::Malformed)),
            ("Digest x".into(), Err(CredentialsError::Scheme)),
        ];
        for (header, expected) in cases {
            assert_eq!(parse(&header), expected, "{header}");
        }
    }
}

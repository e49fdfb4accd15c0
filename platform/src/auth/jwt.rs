//! OAI-Secure login tokens: HS256 JWTs signed with the data directory's key. Validation is
//! pinned to HS256, so `none` and other algorithms are rejected; `exp`/`nbf` are enforced.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `iss` of every token Berth issues.
pub const ISSUER: &str = "berth";

/// Token claims (names as in Cumulocity tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Where the token was issued, as real Cumulocity tokens carry it: the host for HTTPS on
    /// port 443, the full base URL otherwise ([`audience`]). Token-only clients (pyc8y, c8y-api's
    /// token helper) take their base URL from it, prefixing `https://` when it has no scheme.
    /// Not checked on the way in: the tenant is `ten`, and the signature binds both.
    pub aud: String,
    pub sub: String,
    pub ten: String,
    #[serde(rename = "xsrfToken")]
    pub xsrf_token: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// The user's credential generation when the token was issued; tokens of an older one are
    /// refused (tokens from before generations existed carry none and match generation 0).
    #[serde(rename = "gen", default)]
    pub generation: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid token: {0}")]
pub struct TokenError(String);

/// Signs `claims` with HS256.
pub fn issue(key: &[u8], claims: &Claims) -> Result<String, TokenError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| TokenError(e.to_string()))
}

/// Verifies signature, algorithm, issuer, `exp` and `nbf`, and returns the claims.
pub fn verify(key: &[u8], token: &str) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .map_err(|e| TokenError(e.to_string()))?;
    Ok(data.claims)
}

/// The `aud` of a token issued to a client that addressed `host` (see [`Claims::aud`]): the bare
/// host, as real tokens carry it, only where prefixing `https://` gives the address back. pyc8y
/// prefixes only when `urlparse` finds no scheme, and it reads `localhost:8443` as scheme
/// `localhost`: with a port other than 443 the audience is the whole base URL.
pub fn audience(https: bool, host: &str) -> String {
    let default_port = match host.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port == "443",
        _ => true,
    };
    match (https, default_port) {
        (true, true) => host.to_owned(),
        (true, false) => format!("https://{host}"),
        (false, _) => format!("http://{host}"),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims(exp: u64) -> Claims {
        let now = now();
        Claims {
            iss: ISSUER.into(),
            aud: "t1".into(),
            sub: "jane".into(),
            ten: "t1".into(),
            xsrf_token: "x".into(),
            jti: "j".into(),
            iat: now,
            nbf: now,
            exp,
            generation: 0,
        }
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_fail() {
        let key = b"0123456789abcdef0123456789abcdef";
        let good = issue(key, &claims(now() + 60)).unwrap();
        assert_eq!(verify(key, &good).unwrap().sub, "jane");
        assert!(verify(b"another key of the right length!", &good).is_err());
        let expired = issue(key, &claims(now() - 10)).unwrap();
        assert!(verify(key, &expired).is_err());
        let body = good.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            body
        );
        assert!(verify(key, &none).is_err());
    }

    #[test]
    fn the_audience_leads_token_only_clients_to_the_platform() {
        // pyc8y prefixes `https://` to an audience without a scheme (by `urlparse`), as real
        // tokens have on port 443.
        let cases = [
            (true, "t1.example.com", "t1.example.com"),
            (true, "t1.example.com:443", "t1.example.com:443"),
            (true, "[::1]", "[::1]"),
            (true, "localhost:8443", "https://localhost:8443"),
            (true, "127.0.0.1:8443", "https://127.0.0.1:8443"),
            (true, "[::1]:8443", "https://[::1]:8443"),
            (false, "berth-platform:8111", "http://berth-platform:8111"),
            (false, "berth-platform", "http://berth-platform"),
        ];
        for (https, host, expected) in cases {
            assert_eq!(audience(https, host), expected, "{https} {host}");
        }
    }
}

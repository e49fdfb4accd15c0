//! What every HTTP listener shares (the API, the console, the proxy, the authentication
//! extractor): the Cumulocity error body ([`error`]), media types and `Location` ([`media`]), and
//! the scheme, host and client a request came from ([`origin`]). It knows no handler, so `auth`
//! and `proxy` use it without importing `api`.

pub mod error;
pub mod media;
pub mod origin;

/// `Strict-Transport-Security` over HTTPS, from the API and the proxy alike: one year, the value
/// HSTS preload lists ask for; no `includeSubDomains`: other services of the operator's domain
/// may not be on HTTPS.
pub const HSTS: &str = "max-age=31536000";

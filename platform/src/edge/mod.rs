//! What every HTTP listener shares (the API, the console, the proxy, the authentication
//! extractor): the Cumulocity error body ([`error`]), media types and `Location` ([`media`]), and
//! the scheme, host and client a request came from ([`origin`]), and which requests a browser
//! made for another site's page ([`cross_site`]). It knows no handler, so `auth` and `proxy` use
//! it without importing `api`.

pub mod cross_site;
pub mod error;
pub mod media;
pub mod origin;

/// `Strict-Transport-Security` over HTTPS, from the API and the proxy alike: one year, the value
/// HSTS preload lists ask for; no `includeSubDomains`: other services of the operator's domain
/// may not be on HTTPS.
pub const HSTS: &str = "max-age=31536000";

/// Headers whose effect reaches the whole origin, which a microservice shares with the platform
/// and every other service: `Clear-Site-Data` (signs the caller out, clears the console's
/// storage). Dropped from proxied responses on both proxy paths (HSTS is Berth's alone too).
pub const ORIGIN_WIDE: [&str; 1] = ["clear-site-data"];

//! What every HTTP listener shares (the API, the console, the proxy, the authentication
//! extractor): the Cumulocity error body ([`error`]), media types and `Location` ([`media`]), and
//! the scheme, host and client a request came from ([`origin`]). It knows no handler, so `auth`
//! and `proxy` use it without importing `api`.

pub mod error;
pub mod media;
pub mod origin;

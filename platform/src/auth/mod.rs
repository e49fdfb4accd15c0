//! Authentication and authorization: password hashing, Basic credentials, login tokens, the
//! verified-credential cache, password-guessing throttling, the role catalogue and the [`principal::Principal`] extractor.

pub mod cache;
pub mod credentials;
pub mod grants;
pub mod jwt;
pub mod password;
pub mod principal;
pub mod roles;
pub mod throttle;

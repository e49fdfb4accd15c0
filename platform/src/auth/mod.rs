//! Authentication and authorization: password hashing, Basic credentials, login tokens, the
//! verified-credential cache, password-guessing throttling, the role catalogue and the [`principal::Principal`] extractor.

pub mod cache;
pub mod credentials;
pub mod grants;
pub mod jwt;
pub mod machine_secret;
pub mod password;
pub mod principal;
pub mod roles;
pub mod session_cookie;
pub mod throttle;

use crate::secrets::Secrets;
use crate::store::Store;

/// What authenticating a request needs of the server's state. The API's state implements it and
/// registers itself as `web::Data<dyn AuthContext>` ([`crate::api::configure`]), so the extractor
/// finds it without `auth` importing `api`.
pub trait AuthContext: Send + Sync {
    fn store(&self) -> &Store;
    fn secrets(&self) -> &Secrets;
    fn cache(&self) -> &cache::CredentialCache;
    fn throttle(&self) -> &throttle::Throttle;
}

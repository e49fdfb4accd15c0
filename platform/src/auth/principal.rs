//! The authenticated caller: resolved from Basic credentials, a Bearer token or the OAI-Secure
//! cookie (with its XSRF header), cached, and checked with [`Principal::require`].

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, COOKIE};
use actix_web::{FromRequest, HttpRequest, web};

use super::AuthContext;
use super::credentials::{self, Credentials};
use super::session_cookie::{self, SessionCookie};
use super::throttle::{self, Key as ThrottleKey};
use super::{jwt, machine_secret, password};
use crate::edge::error::ApiError;
use crate::store::tenants;
use crate::store::users::{self, UserKind};

/// Name of the OAI-Secure token cookie and of the XSRF cookie/header.
pub const TOKEN_COOKIE: &str = session_cookie::NAME;
pub const XSRF_COOKIE: &str = "XSRF-TOKEN";
pub const XSRF_HEADER: &str = "X-XSRF-TOKEN";

/// The token a caller authenticated with, if any.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub jti: String,
    pub xsrf_token: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub user: String,
    pub kind: UserKind,
    pub roles: BTreeSet<String>,
    pub token: Option<TokenInfo>,
    /// The user's credential generation when authenticated (tokens issued now carry it).
    pub generation: i64,
}

impl Principal {
    /// 403 unless the caller holds `role`.
    pub fn require(&self, role: &str) -> Result<(), ApiError> {
        self.require_any(&[role])
    }

    /// 403 unless the caller holds at least one of `roles`.
    pub fn require_any(&self, roles: &[&str]) -> Result<(), ApiError> {
        if self.holds_any(roles) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// 403 unless `tenant` is the caller's own tenant (objects of other tenants are invisible).
    pub fn require_own_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.tenant == tenant {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// Whether the caller holds at least one of `roles` (the check behind [`Self::require_any`],
    /// for callers that render their own refusal).
    pub fn holds_any(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.roles.contains(*r))
    }

    pub fn is_management(&self) -> bool {
        self.tenant == tenants::MANAGEMENT
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await.map(|p| (*p).clone()) })
    }
}

/// The host the client addressed (see [`crate::edge::origin`]), without its port.
pub fn request_host(req: &HttpRequest) -> String {
    host_without_port(&crate::edge::origin::of(req).host)
}

/// `host[:port]` without the port, lower case (part of the credential cache key).
pub fn host_without_port(host: &str) -> String {
    let without_port = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned()
    };
    without_port.to_ascii_lowercase()
}

/// The tenant named by the request's host (first label = a tenant domain), else management.
pub async fn tenant_for_host(state: &dyn AuthContext, host: String) -> Result<String, ApiError> {
    let found = state
        .store()
        .run(move |conn| tenants::find_by_host(conn, &host))
        .await
        .map_err(ApiError::store("tenants"))?;
    Ok(found.unwrap_or_else(|| tenants::MANAGEMENT.to_owned()))
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("Invalid credentials! : Bad credentials")
}

/// Authenticates the request's caller (cached); the `Principal` extractor and the proxy use it.
pub async fn authenticate(req: &HttpRequest) -> Result<Arc<Principal>, ApiError> {
    let state: &dyn AuthContext = req
        .app_data::<web::Data<dyn AuthContext>>()
        .map(|data| &***data)
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let header = value.to_str().map_err(|_| invalid_credentials())?;
        let host = request_host(req);
        let key = credentials::cache_key(&["authorization", header, &host]);
        if let Some(principal) = state.cache().get(&key) {
            return Ok(principal);
        }
        let _turn = state.cache().turn(key).await;
        if let Some(principal) = state.cache().get(&key) {
            return Ok(principal);
        }
        // Before anything is read: a change committed while this verification runs makes the
        // insert below a no-op instead of caching what was read before it.
        let read = state.cache().stamp();
        let principal =
            match credentials::parse(header).map_err(|e| ApiError::unauthorized(&e.to_string()))? {
                Credentials::Basic {
                    tenant,
                    user,
                    password,
                } => {
                    let tenant = match tenant {
                        Some(t) => t,
                        None => tenant_for_host(state, host).await?,
                    };
                    check_password(state, request_source(req), tenant, user, password).await?
                }
                Credentials::Bearer(token) => check_token(state, &token).await?,
            };
        let principal = Arc::new(principal);
        crate::fault::point(crate::fault::AUTH_VERIFIED).await;
        state.cache().insert(
            read,
            key,
            Arc::clone(&principal),
            token_deadline(&principal),
        );
        return Ok(principal);
    }
    if let Some(token) = session_token(req)? {
        let key = credentials::cache_key(&["cookie", token]);
        let principal = match state.cache().get(&key) {
            Some(p) => p,
            None => {
                let read = state.cache().stamp();
                let p = Arc::new(check_token(state, token).await?);
                crate::fault::point(crate::fault::AUTH_VERIFIED).await;
                state
                    .cache()
                    .insert(read, key, Arc::clone(&p), token_deadline(&p));
                p
            }
        };
        // Cookies are sent by browsers automatically; the XSRF header proves the caller could
        // read the XSRF cookie, i.e. is not a cross-site request.
        let sent = req.headers().get(XSRF_HEADER).and_then(|v| v.to_str().ok());
        let expected = principal.token.as_ref().map(|t| t.xsrf_token.as_str());
        if sent.is_none() || sent != expected {
            return Err(ApiError::unauthorized(
                "Missing or wrong X-XSRF-TOKEN header for cookie authentication",
            ));
        }
        return Ok(principal);
    }
    Err(ApiError::unauthorized(
        "Full authentication is required to access this resource",
    ))
}

/// The request's session cookie (`authorization`, its name as sent: see
/// [`session_cookie`](super::session_cookie)); 401 when it carries two different ones.
pub fn session_token(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let cookies = req.headers().get_all(COOKIE).map(|v| v.as_bytes());
    match session_cookie::session_cookie(cookies) {
        SessionCookie::None => Ok(None),
        SessionCookie::One(token) => std::str::from_utf8(token)
            .map(Some)
            .map_err(|_| invalid_credentials()),
        SessionCookie::Several => Err(ApiError::unauthorized(
            "The request carries two different authorization cookies, and one was not set by \
             the platform: delete this site's cookies in the browser and sign in again",
        )),
    }
}

fn token_deadline(principal: &Principal) -> Option<Instant> {
    principal
        .token
        .as_ref()
        .map(|t| Instant::now() + Duration::from_secs(t.expires_at.saturating_sub(jwt::now())))
}

/// Verifies a user's password, throttled: a locked-out source or user gets 429 before any
/// hash is spent; an unknown user is verified against a dummy hash, so it takes the same path
/// and time as a wrong password; failures are counted per user and per source.
pub async fn check_password(
    state: &dyn AuthContext,
    source: Option<IpAddr>,
    tenant: String,
    user: String,
    password: String,
) -> Result<Principal, ApiError> {
    let throttle = state.throttle();
    if let Some(ip) = source
        && let Err(left) = throttle.check(ThrottleKey::Source(ip), Instant::now())
    {
        return Err(locked_out("this address", left));
    }
    let (t, u) = (tenant.clone(), user.clone());
    let record = state
        .store()
        .run(move |conn| users::auth_record(conn, &t, &u))
        .await
        .map_err(ApiError::store("users"))?;
    let user_key = ThrottleKey::User {
        tenant: &tenant,
        user: &user,
    };
    let how = how_to_check(&user, record.as_ref());
    let lockable = how == HowToCheck::Argon2 { lockable: true };
    let check = || {
        let now = Instant::now();
        if let Some(ip) = source
            && let Err(left) = throttle.check(ThrottleKey::Source(ip), now)
        {
            return Err(locked_out("this address", left));
        }
        match throttle.check(user_key, now) {
            Err(left) if lockable => Err(locked_out("this user", left)),
            _ => Ok(()),
        }
    };
    check()?;
    let pool_error = |e| match e {
        password::PoolError::Busy => ApiError::shedding(
            "security",
            "Too many logins are being checked right now; retry shortly",
        ),
        password::PoolError::Share { share, .. } => ApiError::too_many_requests(
            "security",
            &format!(
                "This client has {share} logins being checked, as many as one address may; retry once they are answered"
            ),
            1,
        ),
        other => ApiError::internal(&other.to_string()),
    };
    // A machine-made secret's hash costs microseconds: no hashing slot to wait for. A missing
    // user of that shape is compared with a dummy alike, so the answer (status, time, lock-out)
    // does not tell whether a tenant owns or subscribes to a microservice of that name.
    if how == HowToCheck::MachineSecret {
        let verified = match &record {
            Some(found) => machine_secret::verify(&password, &found.password_hash),
            None => machine_secret::verify_dummy(&password),
        };
        if verified
            && let Some(record) = record
            && record.enabled
        {
            throttle.success(user_key);
            return Ok(principal_of(tenant, user, record));
        }
        let now = Instant::now();
        if let Some(ip) = source {
            throttle.failure(ThrottleKey::Source(ip), now);
        }
        return Err(invalid_credentials());
    }
    let stored = record.as_ref().map(|r| r.password_hash.clone());
    let party = source.map_or(password::Party::Platform, password::Party::client);
    let slot = password::reserve(party).await.map_err(pool_error)?;
    // Again right before the hash: attempts that queued while the lock began are refused too.
    check()?;
    let matches = slot.verify(password, stored).await.map_err(pool_error)?;
    let record = match record {
        Some(record) if matches && record.enabled => record,
        _ => {
            let now = Instant::now();
            if let Some(ip) = source {
                throttle.failure(ThrottleKey::Source(ip), now);
            }
            if lockable {
                throttle.failure(user_key, now);
            }
            // The slot is released only now, so the next queued attempt sees this failure.
            drop(slot);
            return Err(invalid_credentials());
        }
    };
    throttle.success(user_key);
    drop(slot);
    Ok(principal_of(tenant, user, record))
}

/// How a login's password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HowToCheck {
    /// Against a machine-made secret's SHA-256 ([`machine_secret`]), or a dummy when the user
    /// is missing; the user is never locked out.
    MachineSecret,
    /// With argon2 in a hashing slot (against a dummy hash when the user is missing); failures
    /// lock the user out when `lockable`.
    Argon2 { lockable: bool },
}

/// Decided by the name's shape ([`users::is_machine_name`]), not by whether the user exists:
/// otherwise the speed of a 401, or a 429 after repeated failures, would tell anyone which
/// tenants own (`servicebootstrap_<app>`) or subscribe to (`service_<app>`) which microservice.
/// Bootstrap and service users have long random passwords that cannot be guessed; locking them
/// would only let anyone who knows their (predictable) names stop a microservice. Rows of that
/// shape holding an argon2 hash are older than machine-made hashes (service users) or than the
/// reserved names (people): they keep argon2, and people keep their lock-out.
fn how_to_check(user: &str, record: Option<&users::AuthRecord>) -> HowToCheck {
    if !users::is_machine_name(user) {
        return HowToCheck::Argon2 { lockable: true };
    }
    match record {
        Some(found) if !machine_secret::is_hash(&found.password_hash) => HowToCheck::Argon2 {
            lockable: found.kind == UserKind::Person,
        },
        _ => HowToCheck::MachineSecret,
    }
}

fn principal_of(tenant: String, user: String, record: users::AuthRecord) -> Principal {
    Principal {
        tenant,
        user,
        kind: record.kind,
        roles: record.roles,
        token: None,
        generation: record.generation,
    }
}

fn locked_out(what: &str, left: Duration) -> ApiError {
    let seconds = throttle::retry_after_secs(left);
    ApiError::too_many_requests(
        "security",
        &format!(
            "Too many failed logins for {what}; the login is locked, retry in {seconds} seconds"
        ),
        seconds,
    )
}

/// The address a request came from, for throttling: the TCP peer, or the client a trusted
/// proxy forwarded for (counting the proxy would lock out everyone behind it). Forwarding
/// headers from any other peer are ignored, so they cannot dodge the count.
pub fn request_source(req: &HttpRequest) -> Option<IpAddr> {
    crate::edge::origin::of(req).client
}

/// Verifies a login token (signature, HS256, expiry, not logged out, its user's current
/// credential generation) and loads the user's roles.
pub async fn check_token(state: &dyn AuthContext, token: &str) -> Result<Principal, ApiError> {
    let claims = jwt::verify(state.secrets().jwt_key(), token)
        .map_err(|e| ApiError::unauthorized(&e.to_string()))?;
    let (tenant, user, jti) = (claims.ten.clone(), claims.sub.clone(), claims.jti.clone());
    let record = state
        .store()
        .run(move |conn| {
            if crate::store::tokens::token_revoked(conn, &jti)? {
                return Ok(None);
            }
            users::auth_record(conn, &tenant, &user)
        })
        .await
        .map_err(ApiError::store("users"))?;
    // A token is bound to the credential generation of its user: a password change, disable,
    // deletion and re-creation, or logging out all users of the tenant moves it on.
    match record {
        Some(record) if record.enabled && record.generation == claims.generation => Ok(Principal {
            tenant: claims.ten,
            user: claims.sub,
            kind: record.kind,
            roles: record.roles,
            generation: record.generation,
            token: Some(TokenInfo {
                jti: claims.jti,
                xsrf_token: claims.xsrf_token,
                expires_at: claims.exp,
            }),
        }),
        _ => Err(ApiError::unauthorized("User has been logged out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: UserKind, password_hash: &str) -> users::AuthRecord {
        users::AuthRecord {
            password_hash: password_hash.to_owned(),
            enabled: true,
            kind,
            roles: BTreeSet::new(),
            generation: 0,
        }
    }

    /// The name's shape chooses the check; whether the user exists changes nothing, except for
    /// rows older than the machine hashes or the reserved names.
    #[test]
    fn the_names_shape_chooses_how_a_password_is_checked() {
        use HowToCheck::*;
        let machine = machine_secret::hash("Zq3v9XkP0aLm2Rt7Yb4Nc8Wd1Ef6Gh5J");
        let argon = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let service = record(UserKind::Service, &machine);
        let bootstrap = record(UserKind::Bootstrap, &machine);
        let person = record(UserKind::Person, argon);
        let old_service = record(UserKind::Service, argon);
        let cases: [(&str, Option<&users::AuthRecord>, HowToCheck); 9] = [
            ("jane", Some(&person), Argon2 { lockable: true }),
            ("jane", None, Argon2 { lockable: true }),
            ("service_x", Some(&service), MachineSecret),
            ("service_x", None, MachineSecret),
            ("servicebootstrap_x", Some(&bootstrap), MachineSecret),
            ("servicebootstrap_x", None, MachineSecret),
            ("service_x", Some(&old_service), Argon2 { lockable: false }),
            ("service_x", Some(&person), Argon2 { lockable: true }),
            ("Service_x", None, Argon2 { lockable: true }),
        ];
        for (user, found, expected) in cases {
            assert_eq!(
                how_to_check(user, found),
                expected,
                "{user} {:?}",
                found.map(|r| r.kind)
            );
        }
    }
}

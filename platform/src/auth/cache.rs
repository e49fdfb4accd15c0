//! A short-lived cache of verified credentials: key = SHA-256 of the credential (header value
//! plus host), value = the principal. Spares argon2 on every request; entries of a user are
//! dropped when their password, roles or groups change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::principal::Principal;

/// Default time a verified credential stays trusted.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Above this many entries, expired ones are swept on insert.
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    expires: Instant,
}

#[derive(Debug)]
pub struct CredentialCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> CredentialCache {
        CredentialCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Principal>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|e| e.expires > Instant::now())
            .map(|e| Arc::clone(&e.principal))
    }

    /// Caches `principal` for the TTL, or until `not_after` if that is sooner (token expiry).
    pub fn insert(&self, key: [u8; 32], principal: Arc<Principal>, not_after: Option<Instant>) {
        let mut expires = Instant::now() + self.ttl;
        if let Some(limit) = not_after {
            expires = expires.min(limit);
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_THRESHOLD {
            let now = Instant::now();
            entries.retain(|_, e| e.expires > now);
        }
        entries.insert(key, Entry { principal, expires });
    }

    /// Forgets every credential of one user.
    pub fn invalidate_user(&self, tenant: &str, user: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| !(e.principal.tenant == tenant && e.principal.user == user));
    }

    /// Forgets every credential of a tenant (a group's roles changed, or the tenant is gone).
    pub fn invalidate_tenant(&self, tenant: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| e.principal.tenant != tenant);
    }
}

//! A short-lived cache of verified credentials: key = SHA-256 of the credential (header value
//! plus host), value = the principal. Spares argon2 on every request; entries of a user are
//! dropped when their password, roles or groups change. Concurrent misses of one credential
//! take turns ([`CredentialCache::turn`]), so an entry's expiry under load costs one hash,
//! not one per request in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::principal::Principal;

/// Default time a verified credential stays trusted.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Most credentials kept. A client holding one valid credential can make new entries at
/// request rate (each Host it names is another key), so the map is bounded: at the bound,
/// expired entries are swept and, if too few were, arbitrary ones go until a quarter is free
/// (a credential dropped is verified again on its next use). Sweeping only then keeps an insert
/// O(1) on average.
const MAX_ENTRIES: usize = 50_000;

#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    expires: Instant,
}

#[derive(Debug)]
pub struct CredentialCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    /// One lock per credential being verified; an entry goes when its last holder does.
    verifying: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

/// Past this many credentials being verified at once, entries nobody holds are swept.
const SWEEP_VERIFYING_AT: usize = 1024;

/// The right to verify one credential, held until dropped.
pub struct Turn<'a> {
    cache: &'a CredentialCache,
    key: [u8; 32],
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let lock = Arc::clone(tokio::sync::OwnedMutexGuard::mutex(&guard));
        drop(guard);
        let mut verifying = self
            .cache
            .verifying
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody waits for this credential any more.
        if Arc::strong_count(&lock) == 2 {
            verifying.remove(&self.key);
        }
    }
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> CredentialCache {
        CredentialCache::bounded(ttl, MAX_ENTRIES)
    }

    fn bounded(ttl: Duration, max_entries: usize) -> CredentialCache {
        CredentialCache {
            ttl,
            max_entries: max_entries.max(4),
            entries: Mutex::new(HashMap::new()),
            verifying: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until no one else verifies `key`: the caller then looks in the cache again (the
    /// one before it may have filled it) and verifies only if it is still missing. A
    /// credential that fails is verified once per caller, in turn, as before.
    pub async fn turn(&self, key: [u8; 32]) -> Turn<'_> {
        let lock = {
            let mut verifying = self.verifying.lock().unwrap_or_else(|p| p.into_inner());
            // A waiter dropped (its client gone) just as the lock passed to it holds no
            // `Turn` to remove the entry: such entries, held by the map alone, go now and then.
            if verifying.len() >= SWEEP_VERIFYING_AT && verifying.len().is_multiple_of(64) {
                verifying.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            Arc::clone(verifying.entry(key).or_default())
        };
        Turn {
            cache: self,
            key,
            guard: Some(lock.lock_owned().await),
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
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            let now = Instant::now();
            entries.retain(|_, e| e.expires > now);
            let keep = self.max_entries - self.max_entries / 4;
            if entries.len() > keep {
                let excess: Vec<[u8; 32]> =
                    entries.keys().take(entries.len() - keep).copied().collect();
                for old in excess {
                    entries.remove(&old);
                }
            }
        }
        entries.insert(key, Entry { principal, expires });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Arc<Principal> {
        Arc::new(Principal {
            tenant: "t1".into(),
            user: "u".into(),
            kind: crate::store::users::UserKind::Person,
            roles: Default::default(),
            token: None,
            generation: 0,
        })
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_and_sweeps_expired_entries_first() {
        let cache = CredentialCache::bounded(DEFAULT_TTL, 8);
        let soon = Some(Instant::now());
        // Eight entries, three already expired.
        for i in 0..8u8 {
            cache.insert([i; 32], principal(), (i < 3).then_some(soon).flatten());
        }
        assert_eq!(cache.len(), 8);
        // The ninth sweeps the three expired ones; nothing else had to go.
        cache.insert([8; 32], principal(), None);
        assert_eq!(cache.len(), 6);
        assert!((3..=8).all(|i| cache.get(&[i; 32]).is_some()));
        // Filled with live entries, the bound drops arbitrary ones down to three quarters.
        for i in 9..=100u8 {
            cache.insert([i; 32], principal(), None);
            assert!(cache.len() <= 8, "{}", cache.len());
        }
        assert!(cache.get(&[100; 32]).is_some(), "the new entry is kept");
        // A key already held is replaced, never a reason to sweep.
        let before = cache.len();
        cache.insert([100; 32], principal(), None);
        assert_eq!(cache.len(), before);
    }

    /// A second caller for the same credential waits for the first's turn to end, another
    /// credential does not, and nothing is left behind once both are done.
    #[tokio::test]
    async fn callers_of_one_credential_take_turns() {
        let cache = CredentialCache::new(DEFAULT_TTL);
        let first = cache.turn([1; 32]).await;
        let other = tokio::time::timeout(Duration::from_secs(1), cache.turn([2; 32]))
            .await
            .expect("another credential does not wait");
        let mut second = std::pin::pin!(cache.turn([1; 32]));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err(),
            "waits while the first verifies"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("its turn once the first is done");
        drop((second, other));
        assert!(cache.verifying.lock().unwrap().is_empty());
    }

    /// A waiter dropped just as the lock passes to it leaves an entry only the map holds; such
    /// entries do not pile up.
    #[tokio::test]
    async fn entries_of_waiters_who_went_away_are_swept() {
        use futures_util::FutureExt;
        let cache = CredentialCache::new(DEFAULT_TTL);
        for i in 0..SWEEP_VERIFYING_AT as u32 * 2 {
            let key: [u8; 32] = std::array::from_fn(|b| (i >> (8 * (b % 4))) as u8);
            let first = cache.turn(key).await;
            let mut waiting = Box::pin(cache.turn(key));
            assert!((&mut waiting).now_or_never().is_none());
            // The lock passes to the waiter, which goes away before it takes its turn.
            drop(first);
            drop(waiting);
        }
        let left = cache.verifying.lock().unwrap().len();
        assert!(left <= SWEEP_VERIFYING_AT, "{left} entries left");
    }
}

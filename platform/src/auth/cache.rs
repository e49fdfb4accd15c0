//! A short-lived cache of verified credentials: key = SHA-256 of the credential (header value
//! plus host), value = the principal. Spares argon2 on every request; entries of a user are
//! dropped when their password, roles or groups change. Concurrent misses of one credential
//! take turns ([`CredentialCache::turn`]), so an entry's expiry under load costs one hash,
//! not one per request in flight.
//!
//! A verification reads the user's record, then hashes (which can take long), then caches what
//! it read. A change committed meanwhile (roles removed, user disabled, password changed) is
//! followed by an invalidation that finds nothing to drop yet; without more, the verification
//! would then cache the old roles for the whole TTL. So every invalidation takes a number from
//! one sequence and marks it on the user's (or tenant's) stripe; a verification takes a
//! [`Stamp`] of the sequence before it reads, and its insert is dropped when a stripe of its
//! principal was marked after the stamp. Stripes (a keyed hash of the name into a fixed table)
//! keep this bounded whatever the number of users; two users sharing one only cost a dropped
//! insert, i.e. one more verification later. A cache hit touches none of it.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::principal::Principal;
use crate::sync::MutexExt;

/// Default time a verified credential stays trusted.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Most credentials kept. A client holding one valid credential can make new entries at
/// request rate (each Host it names is another key), so the map is bounded: at the bound,
/// expired entries are swept and, if too few were, arbitrary ones go until a quarter is free
/// (a credential dropped is verified again on its next use). Sweeping only then keeps an insert
/// O(1) on average.
const MAX_ENTRIES: usize = 50_000;
/// Stripes of users and of tenants that invalidations mark (8 bytes each).
const USER_STRIPES: usize = 4096;
const TENANT_STRIPES: usize = 1024;

#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    expires: Instant,
}

/// The cached credentials and the marks of the invalidations, under one lock: an insert
/// checks the marks and adds its entry in one step, so no invalidation falls between.
#[derive(Debug)]
struct Entries {
    map: HashMap<[u8; 32], Entry>,
    /// Per stripe of `(tenant, user)`: the sequence number of its last invalidation.
    user_marks: Box<[u64]>,
    /// Per stripe of tenants: the sequence number of its last invalidation.
    tenant_marks: Box<[u64]>,
}

/// The invalidation sequence as a verification found it before reading the store; see the
/// module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Stamp(u64);

#[derive(Debug)]
pub struct CredentialCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<Entries>,
    /// The last invalidation's number; advanced only while `entries` is locked.
    invalidations: AtomicU64,
    /// Keys the stripes' hash (per process, so nobody picks names sharing a victim's stripe).
    stripes: RandomState,
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
        let mut verifying = self.cache.verifying.locked();
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
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                user_marks: vec![0; USER_STRIPES].into_boxed_slice(),
                tenant_marks: vec![0; TENANT_STRIPES].into_boxed_slice(),
            }),
            invalidations: AtomicU64::new(0),
            stripes: RandomState::new(),
            verifying: Mutex::new(HashMap::new()),
        }
    }

    fn user_stripe(&self, tenant: &str, user: &str) -> usize {
        (self.stripes.hash_one((tenant, user)) % USER_STRIPES as u64) as usize
    }

    fn tenant_stripe(&self, tenant: &str) -> usize {
        (self.stripes.hash_one(tenant) % TENANT_STRIPES as u64) as usize
    }

    /// Taken by a verification before it reads the user's record from the store, and given
    /// to [`Self::insert`]. The store change an invalidation follows is committed before the
    /// invalidation takes its number, so a read that missed the change always has an older
    /// stamp than that number.
    pub fn stamp(&self) -> Stamp {
        Stamp(self.invalidations.load(Ordering::SeqCst))
    }

    /// Takes the next invalidation number (`entries` locked by the caller).
    fn next_invalidation(&self) -> u64 {
        self.invalidations.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Waits until no one else verifies `key`: the caller then looks in the cache again (the
    /// one before it may have filled it) and verifies only if it is still missing. A
    /// credential that fails is verified once per caller, in turn, as before.
    pub async fn turn(&self, key: [u8; 32]) -> Turn<'_> {
        let lock = {
            let mut verifying = self.verifying.locked();
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
        let entries = self.entries.locked();
        entries
            .map
            .get(key)
            .filter(|e| e.expires > Instant::now())
            .map(|e| Arc::clone(&e.principal))
    }

    /// Caches `principal` for the TTL, or until `not_after` if that is sooner (token expiry),
    /// unless its user or tenant was invalidated after `read` was stamped: then what it was
    /// verified from may be out of date, and nothing is cached (the next request verifies
    /// again). Returns whether it was cached.
    pub fn insert(
        &self,
        read: Stamp,
        key: [u8; 32],
        principal: Arc<Principal>,
        not_after: Option<Instant>,
    ) -> bool {
        let mut expires = Instant::now() + self.ttl;
        if let Some(limit) = not_after {
            expires = expires.min(limit);
        }
        let (user, tenant) = (
            self.user_stripe(&principal.tenant, &principal.user),
            self.tenant_stripe(&principal.tenant),
        );
        let mut guard = self.entries.locked();
        let Entries {
            map: entries,
            user_marks,
            tenant_marks,
        } = &mut *guard;
        if user_marks[user] > read.0 || tenant_marks[tenant] > read.0 {
            return false;
        }
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
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.locked().map.len()
    }

    /// Forgets every credential of one user, and any a verification in progress would cache
    /// from what it read before (call after the change is committed).
    pub fn invalidate_user(&self, tenant: &str, user: &str) {
        let stripe = self.user_stripe(tenant, user);
        let mut entries = self.entries.locked();
        entries.user_marks[stripe] = self.next_invalidation();
        entries
            .map
            .retain(|_, e| !(e.principal.tenant == tenant && e.principal.user == user));
    }

    /// Forgets every credential of a tenant (a group's roles changed, or the tenant is gone),
    /// and any a verification in progress would cache (call after the change is committed).
    pub fn invalidate_tenant(&self, tenant: &str) {
        let stripe = self.tenant_stripe(tenant);
        let mut entries = self.entries.locked();
        entries.tenant_marks[stripe] = self.next_invalidation();
        entries.map.retain(|_, e| e.principal.tenant != tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Arc<Principal> {
        principal_of("t1", "u")
    }

    fn principal_of(tenant: &str, user: &str) -> Arc<Principal> {
        Arc::new(Principal {
            tenant: tenant.into(),
            user: user.into(),
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
            cache.insert(
                cache.stamp(),
                [i; 32],
                principal(),
                (i < 3).then_some(soon).flatten(),
            );
        }
        assert_eq!(cache.len(), 8);
        // The ninth sweeps the three expired ones; nothing else had to go.
        cache.insert(cache.stamp(), [8; 32], principal(), None);
        assert_eq!(cache.len(), 6);
        assert!((3..=8).all(|i| cache.get(&[i; 32]).is_some()));
        // Filled with live entries, the bound drops arbitrary ones down to three quarters.
        for i in 9..=100u8 {
            cache.insert(cache.stamp(), [i; 32], principal(), None);
            assert!(cache.len() <= 8, "{}", cache.len());
        }
        assert!(cache.get(&[100; 32]).is_some(), "the new entry is kept");
        // A key already held is replaced, never a reason to sweep.
        let before = cache.len();
        cache.insert(cache.stamp(), [100; 32], principal(), None);
        assert_eq!(cache.len(), before);
    }

    /// The race of a verification with a revocation, step by step: the verification reads the
    /// user's record (stamp), the change commits and invalidates, then the verification ends
    /// and inserts what it read. That insert must not be kept, for the user's own
    /// invalidation or the tenant's; one started after the invalidation is.
    #[test]
    fn a_verification_that_read_before_an_invalidation_caches_nothing() {
        type Revoke = fn(&CredentialCache);
        let cases: [(&str, Revoke); 2] = [
            ("user", |c| c.invalidate_user("t1", "u")),
            ("tenant", |c| c.invalidate_tenant("t1")),
        ];
        for (what, revoke) in cases {
            let cache = CredentialCache::new(DEFAULT_TTL);
            let read = cache.stamp();
            revoke(&cache);
            assert!(!cache.insert(read, [1; 32], principal(), None), "{what}");
            assert!(cache.get(&[1; 32]).is_none(), "{what}: old roles cached");
            // Read after the invalidation: current, so cached.
            let read = cache.stamp();
            assert!(cache.insert(read, [1; 32], principal(), None), "{what}");
            assert!(cache.get(&[1; 32]).is_some(), "{what}");
        }
    }

    /// Invalidations of other users and tenants do not stop a verification from caching (else
    /// any tenant's changes would make every other tenant's logins hash again).
    #[test]
    fn invalidating_someone_else_does_not_stop_caching() {
        let cache = CredentialCache::new(DEFAULT_TTL);
        // Names whose stripes differ from t1/u's (stripes are keyed per cache).
        let other_user = (0..)
            .map(|i| format!("v{i}"))
            .find(|v| cache.user_stripe("t1", v) != cache.user_stripe("t1", "u"))
            .unwrap();
        let other_tenant = (0..)
            .map(|i| format!("t{i}x"))
            .find(|t| {
                cache.tenant_stripe(t) != cache.tenant_stripe("t1")
                    && cache.user_stripe(t, "u") != cache.user_stripe("t1", "u")
            })
            .unwrap();
        let read = cache.stamp();
        cache.invalidate_user("t1", &other_user);
        cache.invalidate_user(&other_tenant, "u");
        cache.invalidate_tenant(&other_tenant);
        assert!(cache.insert(read, [1; 32], principal(), None));
        assert!(cache.get(&[1; 32]).is_some());
        // And each invalidation still drops only its own entries.
        assert!(cache.insert(
            cache.stamp(),
            [2; 32],
            principal_of("t1", &other_user),
            None
        ));
        cache.invalidate_user("t1", &other_user);
        assert!(cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[1; 32]).is_some());
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

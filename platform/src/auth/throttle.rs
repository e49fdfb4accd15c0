//! Throttling of password guessing: failed password checks are counted per user and per
//! source address within a window; a key that reaches its limit is locked out for a while and
//! its password checks get 429 with `Retry-After` before any hash is spent. A success clears the
//! user's count, never the source's (one valid account must not reset a guessing source).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::sync::MutexExt;

/// Above this many tracked keys, expired ones are swept; if none is, the oldest unlocked one
/// goes, so a flood of made-up names costs bounded memory (32-byte keys).
const MAX_ENTRIES: usize = 100_000;

/// Limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures of one user (any source) that lock that user.
    pub user_failures: u32,
    /// Failures from one source address (any user) that lock that source.
    pub source_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// How long a lock lasts.
    pub lockout: Duration,
}

/// What is being throttled.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    User { tenant: &'a str, user: &'a str },
    Source(IpAddr),
}

impl Key<'_> {
    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        match self {
            Key::User { tenant, user } => {
                hasher.update(b"user\0");
                hasher.update(tenant.as_bytes());
                hasher.update([0u8]);
                hasher.update(user.as_bytes());
            }
            Key::Source(ip) => {
                hasher.update(b"source\0");
                hasher.update(source_prefix(*ip).as_bytes());
            }
        }
        hasher.finalize().into()
    }

    fn limit(&self, limits: &Limits) -> u32 {
        match self {
            Key::User { .. } => limits.user_failures,
            Key::Source(_) => limits.source_failures,
        }
    }
}

/// The part of an address one party controls: an IPv6 client usually holds a whole /64.
fn source_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Failures of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    /// Time left on the lock at `now`, if locked.
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Counts a failure at `now`; the one that reaches `limit` starts a lock.
    fn fail(&mut self, now: Instant, limit: u32, limits: &Limits) {
        if self.locked(now).is_none() && now.duration_since(self.window_start) >= limits.window {
            self.failures = 0;
            self.window_start = now;
            self.locked_until = None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= limit && self.locked(now).is_none() {
            self.locked_until = Some(now + limits.lockout);
            self.failures = 0;
            self.window_start = now;
        }
    }

    fn expired(&self, now: Instant, limits: &Limits) -> bool {
        self.locked(now).is_none() && now.duration_since(self.window_start) >= limits.window
    }
}

#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Err(time until the lock ends) when `key` is locked out.
    pub fn check(&self, key: Key<'_>, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.locked();
        match entries.get(&key.digest()).and_then(|e| e.locked(now)) {
            Some(left) => Err(left),
            None => Ok(()),
        }
    }

    /// Counts a failed password check for `key`.
    pub fn failure(&self, key: Key<'_>, now: Instant) {
        let limit = key.limit(&self.limits);
        let digest = key.digest();
        let mut entries = self.entries.locked();
        if !entries.contains_key(&digest) && entries.len() >= MAX_ENTRIES {
            let limits = self.limits;
            entries.retain(|_, e| !e.expired(now, &limits));
            if entries.len() >= MAX_ENTRIES {
                // Still full, even of locked keys (a guesser with a whole IPv6 block locks a
                // /64 at a time): a sixteenth goes, the unlocked ones first, then those whose
                // lock ends soonest, so the map never outgrows its bound and the next
                // thousands of new keys need no scan.
                let mut by_end: Vec<([u8; 32], Instant)> = entries
                    .iter()
                    .map(|(k, e)| {
                        (
                            *k,
                            e.locked_until
                                .filter(|_| e.locked(now).is_some())
                                .unwrap_or(e.window_start),
                        )
                    })
                    .collect();
                let evict = MAX_ENTRIES / 16;
                by_end.select_nth_unstable_by_key(evict, |(_, end)| *end);
                for (key, _) in &by_end[..evict] {
                    entries.remove(key);
                }
            }
        }
        entries
            .entry(digest)
            .or_insert(Entry {
                failures: 0,
                window_start: now,
                locked_until: None,
            })
            .fail(now, limit, &self.limits);
    }

    /// Forgets the failures of `key` (a user who just gave the right password).
    pub fn success(&self, key: Key<'_>) {
        let mut entries = self.entries.locked();
        entries.remove(&key.digest());
    }
}

/// Seconds for `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(left: Duration) -> u64 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        user_failures: 3,
        source_failures: 5,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(30),
    };

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Fail(&'static str, u8),
        Succeed(&'static str),
        Wait(u64),
        /// Expect the user / source (user, source octet) locked (Some seconds left) or open.
        Expect(&'static str, u8, Option<u64>),
    }
    use Step::*;

    fn run(steps: &[Step]) {
        let throttle = Throttle::new(LIMITS);
        let start = Instant::now();
        let mut now = start;
        let key = |user: &'static str| Key::User { tenant: "t1", user };
        let source = |o: u8| Key::Source(IpAddr::from([10, 0, 0, o]));
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Fail(user, o) => {
                    throttle.failure(key(user), now);
                    throttle.failure(source(o), now);
                }
                Succeed(user) => throttle.success(key(user)),
                Wait(secs) => now += Duration::from_secs(secs),
                Expect(user, o, left) => {
                    let user_state = throttle.check(key(user), now).err();
                    let source_state = throttle.check(source(o), now).err();
                    let locked = user_state.or(source_state).map(|d| d.as_secs());
                    assert_eq!(locked, left, "step {i}: {step:?} in {steps:?}");
                }
            }
        }
    }

    #[test]
    fn failures_lock_users_and_sources_for_a_while() {
        let tables: &[&[Step]] = &[
            // The third failure of a user locks it; another user from the source is open.
            &[
                Fail("a", 1),
                Fail("a", 1),
                Expect("a", 9, None),
                Fail("a", 1),
                Expect("a", 9, Some(30)),
                Expect("b", 1, None),
                Wait(10),
                Expect("a", 2, Some(20)),
                Wait(20),
                Expect("a", 2, None),
            ],
            // Failures outside the window are forgotten.
            &[
                Fail("a", 1),
                Fail("a", 2),
                Wait(61),
                Fail("a", 3),
                Expect("a", 9, None),
            ],
            // A success clears the user's count but not the source's.
            &[
                Fail("a", 1),
                Fail("b", 1),
                Succeed("a"),
                Fail("a", 1),
                Fail("a", 1),
                Expect("a", 9, None),
                Fail("c", 1),
                Expect("z", 1, Some(30)),
                Expect("z", 2, None),
            ],
            // Unknown and known names count alike: the key is just the name.
            &[
                Fail("nobody", 1),
                Fail("nobody", 2),
                Fail("nobody", 3),
                Expect("nobody", 9, Some(30)),
            ],
        ];
        for steps in tables {
            run(steps);
        }
    }

    #[test]
    fn a_full_map_of_locked_sources_stays_within_its_bound() {
        let throttle = Throttle::new(Limits {
            user_failures: 3,
            source_failures: 1,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(600),
        });
        let now = Instant::now();
        // One failure locks each /64 of a guesser's block: every entry is locked.
        let source = |i: usize| {
            let i = i as u64;
            let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1);
            Key::Source(IpAddr::V6(ip))
        };
        let last = MAX_ENTRIES + MAX_ENTRIES / 8 - 1;
        let at = |i: usize| now + Duration::from_micros(i as u64);
        for i in 0..=last {
            throttle.failure(source(i), at(i));
        }
        let held = throttle.entries.lock().unwrap().len();
        assert!(held <= MAX_ENTRIES, "{held} entries");
        // The newest guesser is locked; the one whose lock ended soonest went to make room.
        assert!(throttle.check(source(last), at(last)).is_err());
        assert!(throttle.check(source(0), at(last)).is_ok());
    }

    #[test]
    fn ipv6_sources_are_grouped_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_prefix(a), source_prefix(b));
        assert_ne!(source_prefix(a), source_prefix(c));
        assert_eq!(
            source_prefix("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1"
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        for (ms, secs) in [(1, 1), (1000, 1), (1001, 2), (29_500, 30)] {
            assert_eq!(retry_after_secs(Duration::from_millis(ms)), secs, "{ms}");
        }
    }
}

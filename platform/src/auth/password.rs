//! Password hashing (argon2id, PHC strings), the process-wide bound on concurrent hashes, and
//! the password policy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, mpsc};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};

/// Minimum and maximum password length (characters). The documented tenant default minimum is 8.
pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;
/// Fewest different characters a password may have (`aaaaaaaa`, `abababab` are refused).
pub const MIN_DISTINCT: usize = 4;

/// Prometheus counter of password verifications (every login attempt that reaches a hash,
/// whether or not the user exists) and gauges of hashes running now and at most so far.
pub const VERIFICATIONS: &str = "berth_password_verifications_total";
pub const IN_FLIGHT: &str = "berth_password_hashes_in_flight";
pub const IN_FLIGHT_PEAK: &str = "berth_password_hashes_in_flight_peak";

/// Passwords seen first in every guessing list (length ≥ 8, lower case); compared ignoring case.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "password!",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "pa$$w0rd",
    "12345678",
    "123456789",
    "1234567890",
    "12341234",
    "87654321",
    "11223344",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "zaq12wsx",
    "1qaz2wsx",
    "qazwsxedc",
    "asdfghjk",
    "asdfghjkl",
    "zxcvbnm1",
    "abcdefgh",
    "abcd1234",
    "abc12345",
    "abcdef123",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "starwars",
    "trustno1",
    "whatever",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein123",
    "computer",
    "internet",
    "michelle",
    "jennifer",
    "corvette",
    "mercedes",
    "liverpool",
    "chocolate",
    "changeme",
    "changeme1",
    "changeme123",
    "administrator",
    "admin123",
    "admin1234",
    "adminadmin",
    "administrator1",
    "root1234",
    "rootroot",
    "default1",
    "secret123",
    "master123",
    "dragon123",
    "monkey123",
    "test1234",
    "testtest",
    "guest123",
    "cumulocity",
    "cumulocity1",
    "management",
    "berth123",
    "berthberth",
    "1234qwer",
    "qwer1234",
    "q1w2e3r4t5",
    "a1b2c3d4",
    "aa123456",
    "password2",
    "summer2024",
    "winter2024",
    "spring2024",
    "autumn2024",
];

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Why a hash could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many password checks are waiting")]
    Busy,
    /// The party already has its share of the pool waiting or running.
    #[error("{share} password checks of this {party} are in progress, as many as one may have")]
    Share { party: &'static str, share: usize },
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("password hashing task failed: {0}")]
    Task(String),
}

/// Every hash in the process shares the same cores and argon2 takes ~19 MiB each, so one
/// bound serves the whole process: at most `permits` hashes run, at most `queue` wait. They
/// run on `permits` threads of their own: hashed on ever-changing blocking threads, each
/// thread's malloc arena kept its own argon2 block, and RSS grew by hundreds of MiB.
struct Pool {
    semaphore: Semaphore,
    /// One per hashing thread, held by each job until it has run: a caller that goes away
    /// gives its slot back but not the thread its hash still occupies, so abandoned hashes
    /// cannot pile up in the channel ahead of everyone else's.
    threads: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
    queue: usize,
    /// The most hashes one [`Party`] may have waiting or running, so one client (or tenant)
    /// cannot take the whole queue and leave every other one refused.
    share: usize,
    held: Mutex<HashMap<Party, usize>>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

type Job = Box<dyn FnOnce() + Send>;

static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets the bound on concurrent hashes (once, at start; later calls are ignored) and computes
/// the dummy hash, so the first login does not pay for it.
pub fn configure(permits: usize, queue: usize) {
    let _ = POOL.set(Pool::new(permits, queue));
    LazyLock::force(&DUMMY_HASH);
}

impl Pool {
    fn new(permits: usize, queue: usize) -> Pool {
        let permits = permits.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..permits {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("berth-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            // The pool is gone.
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Pool {
            semaphore: Semaphore::new(permits),
            threads: Arc::new(Semaphore::new(permits)),
            jobs: Mutex::new(jobs),
            queue,
            share: (queue / 4).max(permits),
            held: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn get() -> &'static Pool {
        POOL.get_or_init(|| Pool::new(default_concurrency(), default_concurrency() * 16))
    }

    /// Reserves a hashing slot for `party`, waiting for one if the queue has room and the
    /// party is within its share; Busy or Share otherwise.
    async fn reserve(&self, party: Party) -> Result<Slot<'_>, PoolError> {
        let claim = self.claim(party)?;
        let permit = match self.semaphore.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(PoolError::Busy);
                }
                // Given back however the wait ends: a request dropped while it waits (its
                // client went away) must not keep its place in the queue for ever.
                let _queued = Queued(&self.waiting);
                let permit = self.semaphore.acquire().await;
                permit.map_err(|e| PoolError::Task(e.to_string()))?
            }
        };
        Ok(Slot {
            pool: self,
            _claim: claim,
            _permit: permit,
        })
    }

    /// Counts a hash of `party` against its share (given back when the claim drops).
    fn claim(&self, party: Party) -> Result<Claim<'_>, PoolError> {
        if party == Party::Platform {
            return Ok(Claim { pool: self, party });
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(party.clone()).or_insert(0);
        if *count >= self.share {
            return Err(PoolError::Share {
                party: party.kind(),
                share: self.share,
            });
        }
        *count += 1;
        Ok(Claim { pool: self, party })
    }
}

/// A hash counted as running (the gauges) until dropped, however its caller's wait ends.
struct Running<'a>(&'a Pool);

impl<'a> Running<'a> {
    fn new(pool: &'a Pool) -> Running<'a> {
        let now = pool.running.fetch_add(1, Ordering::SeqCst) + 1;
        let peak = pool.peak.fetch_max(now, Ordering::SeqCst).max(now);
        metrics::gauge!(IN_FLIGHT).set(now as f64);
        metrics::gauge!(IN_FLIGHT_PEAK).set(peak as f64);
        Running(pool)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let now = self.0.running.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!(IN_FLIGHT).set(now as f64);
    }
}

/// A place in the pool's queue, given back when dropped.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whose hash it is, for the pool's share per party.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Party {
    /// A login attempt, by the address it came from (whatever tenant it names: an attacker
    /// naming another tenant would otherwise use up that tenant's share).
    Client(std::net::IpAddr),
    /// A new password set by a user of the tenant.
    Tenant(String),
    /// The platform itself (start-up, tests): no share.
    Platform,
}

impl Party {
    /// A login from `ip`; IPv6 clients by their /64, as the login throttle counts them (one
    /// host holds a whole /64 and could take a share per address).
    pub fn client(ip: std::net::IpAddr) -> Party {
        match ip {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Party::Client(std::net::Ipv6Addr::from(prefix).into())
            }
            other => Party::Client(other),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Party::Client(_) => "client",
            Party::Tenant(_) => "tenant",
            Party::Platform => "platform",
        }
    }
}

/// A party's place in the pool, given back when dropped.
struct Claim<'a> {
    pool: &'a Pool,
    party: Party,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.party == Party::Platform {
            return;
        }
        let mut held = self.pool.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.party) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.party);
            }
        }
    }
}

/// A reserved hashing slot, held until dropped (a caller keeps it until it has recorded the
/// outcome, so the next waiter sees it). The permits keep at most `permits`
/// jobs in the channel, so a hashing thread is always free for it.
pub struct Slot<'a> {
    pool: &'a Pool,
    _claim: Claim<'a>,
    _permit: SemaphorePermit<'a>,
}

impl Slot<'_> {
    /// Runs `work` on a hashing thread.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolError> {
        let pool = self.pool;
        let thread = Arc::clone(&pool.threads)
            .acquire_owned()
            .await
            .map_err(|e| PoolError::Task(e.to_string()))?;
        let _running = Running::new(pool);
        let (sender, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = sender.send(work());
            drop(thread);
        });
        let sent = pool
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| PoolError::Task("no password hashing thread".into()));
        match sent {
            Ok(()) => result
                .await
                .map_err(|_| PoolError::Task("password hashing thread failed".into())),
            Err(e) => Err(e),
        }
    }

    /// [`verify`] in this slot; `None` (unknown user) verifies against the dummy hash and
    /// never matches, so it takes the same path and time as a wrong password.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PoolError> {
        metrics::counter!(VERIFICATIONS).increment(1);
        self.run(move || match stored {
            Some(stored) => verify(&password, &stored),
            None => {
                verify(&password, &DUMMY_HASH);
                false
            }
        })
        .await
    }

    /// [`hash`] in this slot.
    pub async fn hash(&self, password: String) -> Result<String, PoolError> {
        Ok(self.run(move || hash(&password)).await??)
    }
}

/// Nice value of the hashing threads. A burst of logins (hundreds of new tenants' first
/// requests) would otherwise hold every core for seconds while the API and the proxy wait;
/// below normal priority the hashes take the cycles nothing else wants, and no slower when the
/// machine is idle.
const HASHING_NICE: i32 = 10;

/// Moves the calling thread to [`HASHING_NICE`] (on Linux a thread id names one thread).
/// Failing (a seccomp filter, another OS) changes nothing but priority, so it is only logged.
/// A thread already below it (Berth started under `nice`) stays where it is.
fn lower_priority() {
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
    if current >= HASHING_NICE {
        return;
    }
    if let Err(e) = rustix::process::setpriority_process(Some(thread), HASHING_NICE) {
        tracing::warn!(error = %e, "cannot lower the password hashing thread's priority");
    }
}

/// Reserves a slot of the process-wide bound on concurrent hashes (Busy when its queue is
/// full). Callers check whatever may refuse the attempt after this, right before hashing.
pub async fn reserve(party: Party) -> Result<Slot<'static>, PoolError> {
    Pool::get().reserve(party).await
}

/// The default bound: one hash per core.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the stored hash: an argon2 PHC string, or a machine-made
/// secret's hash ([`super::machine_secret`]). A corrupt hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if super::machine_secret::is_hash(stored) {
        return super::machine_secret::verify(password, stored);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, with the same parameters as real ones: an unknown user
/// is verified against it so the answer takes the same path and time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash("berth: no such user").unwrap_or_default());

/// [`hash`] within the process-wide bound, counted against `party`'s share.
pub async fn hash_bounded(password: String, party: Party) -> Result<String, PoolError> {
    reserve(party).await?.hash(password).await
}

/// The password policy for any password: 8 to 128 characters, no control characters, at
/// least [`MIN_DISTINCT`] different characters, not one of the most common passwords.
pub fn check_strength(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "password must have at least {MIN_LENGTH} characters"
        ));
    }
    if length > MAX_LENGTH {
        return Err(format!(
            "password must have at most {MAX_LENGTH} characters"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("password must not contain control characters".into());
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Err(format!(
            "password must contain at least {MIN_DISTINCT} different characters"
        ));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(
            "password is one of the most common passwords; choose one that is hard to guess".into(),
        );
    }
    Ok(())
}

/// [`check_strength`], and the password must not be the user's name or e-mail address (or
/// its part before `@`), ignoring case.
pub fn check_for_user(password: &str, user_name: &str, email: Option<&str>) -> Result<(), String> {
    check_strength(password)?;
    let lower = password.to_lowercase();
    let mut identities = vec![user_name.to_lowercase()];
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        identities.push(email.to_lowercase());
        if let Some((local, _)) = email.split_once('@') {
            identities.push(local.to_lowercase());
        }
    }
    if identities.iter().any(|i| !i.is_empty() && *i == lower) {
        return Err("password must not be the user name or e-mail address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn hashing_threads_run_below_normal_priority() {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            lower_priority();
            let me = rustix::thread::gettid();
            sender
                .send(rustix::process::getpriority_process(Some(me)))
                .unwrap();
        });
        assert!(receiver.recv().unwrap().unwrap() >= HASHING_NICE);
    }

    #[test]
    fn hashes_verify_only_the_right_password() {
        let stored = hash("correct horse").unwrap();
        assert!(verify("correct horse", &stored));
        assert!(!verify("wrong horse", &stored));
        assert!(!verify("correct horse", "not-a-hash"));
    }

    #[test]
    fn policy_rejects_weak_passwords_and_says_why() {
        let cases = [
            ("short", Some("at least 8 characters")),
            ("longenough", None),
            ("with\nnewline", Some("control characters")),
            ("aaaaaaaa", Some("different characters")),
            ("abababab", Some("different characters")),
            ("password", Some("most common")),
            ("PassWord1", Some("most common")),
            ("12345678", Some("most common")),
            ("Admin-Passw0rd", None),
            (&"x1y2".repeat(40), Some("at most 128")),
        ];
        for (pw, expected) in cases {
            let result = check_strength(pw);
            match expected {
                None => assert!(result.is_ok(), "{pw:?}: {result:?}"),
                Some(text) => assert!(
                    result.as_ref().is_err_and(|m| m.contains(text)),
                    "{pw:?}: {result:?}"
                ),
            }
        }
    }

    #[test]
    fn policy_rejects_the_users_own_name_and_address() {
        let cases = [
            ("jane.doe1", "jane.doe1", None, false),
            ("JANE.DOE1", "jane.doe1", None, false),
            ("jane@example.com", "jane", Some("jane@example.com"), false),
            ("jane.smith", "jane", Some("jane.smith@example.com"), false),
            ("Jane-Pass-1", "jane", Some("jane@example.com"), true),
        ];
        for (pw, user, email, ok) in cases {
            assert_eq!(
                check_for_user(pw, user, email).is_ok(),
                ok,
                "{pw:?} for {user}"
            );
        }
    }

    #[tokio::test]
    async fn one_party_cannot_take_the_whole_queue() {
        // 1 running, 8 waiting: a party may hold 2.
        let pool = Pool::new(1, 8);
        assert_eq!(pool.share, 2);
        let ip = |n: u8| Party::Client(std::net::IpAddr::from([10, 0, 0, n]));
        let tenant = || Party::Tenant("t1".into());
        let first = pool.reserve(ip(1)).await.unwrap();
        // (party, refused at once; else it waits for the running hash)
        let cases = [
            (ip(1), false),
            (ip(1), true),
            (tenant(), false),
            (tenant(), false),
            (tenant(), true),
            (ip(2), false),
            (Party::Platform, false),
        ];
        let mut waiting = Vec::new();
        for (party, refused) in cases {
            let what = format!("{party:?}");
            let mut reserving = Box::pin(pool.reserve(party));
            match (&mut reserving).now_or_never() {
                Some(Err(PoolError::Share { .. })) => assert!(refused, "{what} refused"),
                Some(other) => panic!("{what}: {:?}", other.map(|_| ())),
                None => {
                    assert!(!refused, "{what} waits");
                    waiting.push(reserving);
                }
            }
        }
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 5);
        // One host's /64 is one client.
        let v6 = |s: &str| Party::client(s.parse().unwrap());
        assert_eq!(v6("2001:db8:1:2::7"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::7"), v6("2001:db8:1:3::7"));
        // Clients that went away while waiting give their places and shares back.
        drop(waiting);
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
        drop(first);
        assert!(pool.held.lock().unwrap().is_empty());
        assert!(pool.reserve(ip(1)).await.is_ok());
    }

    #[tokio::test]
    async fn a_wait_given_up_frees_its_place_in_the_queue() {
        let pool = Pool::new(1, 1);
        let _running = pool.reserve(Party::Platform).await.unwrap();
        for _ in 0..3 {
            let mut waiting = Box::pin(pool.reserve(Party::Platform));
            assert!((&mut waiting).now_or_never().is_none(), "it waits");
            drop(waiting);
        }
        let mut waiting = Box::pin(pool.reserve(Party::Platform));
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "the queue has room again"
        );
    }

    #[tokio::test]
    async fn an_abandoned_hash_keeps_its_thread_until_it_has_run() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(1, 4)));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let slot = pool.reserve(Party::Platform).await.unwrap();
        // A hash that takes until released, whose caller goes away.
        let mut abandoned =
            Box::pin(async move { slot.run(move || hold.recv().ok()).await.map(|_| ()) });
        assert!((&mut abandoned).now_or_never().is_none());
        drop(abandoned);
        assert_eq!(
            pool.running.load(Ordering::SeqCst),
            0,
            "not counted as running"
        );
        assert_eq!(
            pool.threads.available_permits(),
            0,
            "its thread is still taken"
        );
        // Its slot is free, its thread is not: the next hash waits for it instead of queueing
        // behind it in the channel.
        let next = pool.reserve(Party::Platform).await.unwrap();
        let mut running = Box::pin(next.run(|| 7));
        assert!(
            (&mut running).now_or_never().is_none(),
            "waits for the thread"
        );
        release.send(()).unwrap();
        assert_eq!(running.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_pool_refuses_beyond_its_queue() {
        let pool = Pool::new(1, 0);
        let first = pool.reserve(Party::Platform).await.unwrap();
        assert!(matches!(
            pool.reserve(Party::Platform).await,
            Err(PoolError::Busy)
        ));
        assert_eq!(first.run(|| 7).await.unwrap(), 7);
        // The slot is free again once its hash is done.
        drop(first);
        let again = pool.reserve(Party::Platform).await.unwrap();
        assert!(!again.verify("x".into(), None).await.unwrap());
        assert_eq!(pool.peak.load(Ordering::SeqCst), 1);
    }
}

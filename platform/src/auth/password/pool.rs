//! The process-wide bound on concurrent password hashes: a few threads of their own, below
//! normal priority, a queue, and each party's share of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, mpsc};

use tokio::sync::{Semaphore, SemaphorePermit, oneshot};

use super::{DUMMY_HASH, HashError, hash, verify};
use crate::sync::MutexExt;

/// Prometheus counter of password verifications (every login attempt that reaches a hash,
/// whether or not the user exists) and gauges of hashes running now and at most so far.
pub const VERIFICATIONS: &str = "berth_password_verifications_total";
pub const IN_FLIGHT: &str = "berth_password_hashes_in_flight";
pub const IN_FLIGHT_PEAK: &str = "berth_password_hashes_in_flight_peak";

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
                        let job = receiver.locked().recv();
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
        let mut held = self.held.locked();
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
        let mut held = self.pool.held.locked();
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
            .locked()
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

/// [`hash`] within the process-wide bound, counted against `party`'s share.
pub async fn hash_bounded(password: String, party: Party) -> Result<String, PoolError> {
    reserve(party).await?.hash(password).await
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

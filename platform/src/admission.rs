//! Which connections a listener takes: a bound on the total and one per peer address. The
//! HTTPS listener takes at most `max_connections`, `max_client_connections` from one client
//! (trusted proxies excepted: every client behind one shares its address); the internal API a
//! quarter of that, `max_container_connections` from one container (microservice code is as
//! untrusted as any client). Each connection costs a file descriptor and buffers, and a proxied
//! one a second descriptor upstream: without a bound, one peer holding connections runs Berth
//! out of descriptors, and then nothing (the database, Docker, the containers) can be opened.
//! A refused connection is closed at once, unread.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::counts::Counts;
use crate::edge::origin::Cidr;
use crate::sync::MutexExt;

/// Descriptors kept for everything but client connections (the database, Docker's socket, the
/// log, upstream pools beyond one per connection, package files).
const RESERVED_FDS: u64 = 256;
/// The default cap however many descriptors there are: each connection also holds about
/// 40 KiB of TLS and HTTP buffers.
const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;

/// The limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_client_connections: usize,
    /// Peers not counted per address (`trusted_proxies`).
    pub exempt: Vec<Cidr>,
}

/// Why a connection was not taken (the listener's log line names its setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{max} connections are open")]
    Full { max: usize },
    #[error("this address has {max} connections open")]
    Client { max: usize },
}

impl Refusal {
    /// Which of a listener's two settings bounds this refusal.
    pub fn setting(self, total: &'static str, per_address: &'static str) -> &'static str {
        match self {
            Refusal::Full { .. } => total,
            Refusal::Client { .. } => per_address,
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: Counts<IpAddr>,
}

/// The count of open connections, shared by the accepting loop and the connections.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    open: Mutex<Open>,
}

/// One admitted connection; dropping it (the connection ended) frees its place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    /// `None` for an exempt peer, which is counted in the total only.
    client: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: Mutex::default(),
        })
    }

    /// A place for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let exempt = self.limits.exempt.iter().any(|c| c.contains(ip));
        let mut open = self.open.locked();
        if open.total >= self.limits.max_connections {
            return Err(Refusal::Full {
                max: self.limits.max_connections,
            });
        }
        let client = (!exempt).then_some(ip);
        if let Some(ip) = client
            && !open
                .by_client
                .enter(&ip, self.limits.max_client_connections)
        {
            return Err(Refusal::Client {
                max: self.limits.max_client_connections,
            });
        }
        open.total += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.locked().total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open.locked();
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.client {
            open.by_client.leave(&ip);
        }
    }
}

/// Why the connection limit cannot be kept.
#[derive(Debug, thiserror::Error)]
#[error(
    "max_connections = {asked} needs about {needed} file descriptors (the internal API's quarter included), and this process may open {limit}; raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections"
)]
pub struct OverFdLimit {
    pub asked: usize,
    pub needed: u64,
    pub limit: u64,
}

/// How many connections each listener may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The HTTPS listener's `max_connections`.
    pub public: usize,
    /// The internal API's: a quarter of `public`, so containers can never take the clients'
    /// descriptors, nor clients the containers'.
    pub internal: usize,
}

impl Budget {
    fn of(public: usize) -> Budget {
        Budget {
            public,
            internal: public.div_ceil(4),
        }
    }

    /// Two descriptors per connection (the peer's and one upstream) beside the reserved ones.
    fn descriptors(self) -> u64 {
        ((self.public as u64).saturating_add(self.internal as u64))
            .saturating_mul(2)
            .saturating_add(RESERVED_FDS)
    }
}

/// Raises this process's descriptor limit to its hard limit (as nginx's
/// `worker_rlimit_nofile` and Go's runtime do) and decides `max_connections`: `asked`, if the
/// descriptors allow it, or by default what they allow, at most [`DEFAULT_MAX_CONNECTIONS`].
pub fn connection_budget(asked: Option<usize>) -> Result<Budget, OverFdLimit> {
    budget(asked, raise_fd_limit())
}

/// The soft descriptor limit after raising it as far as allowed.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    // Unlimited (None) is capped by the kernel anyway; count it as plenty.
    limit.current.unwrap_or(u64::MAX)
}

fn budget(asked: Option<usize>, fd_limit: u64) -> Result<Budget, OverFdLimit> {
    match asked {
        Some(asked) => {
            let budget = Budget::of(asked);
            let needed = budget.descriptors();
            if needed > fd_limit {
                return Err(OverFdLimit {
                    asked,
                    needed,
                    limit: fd_limit,
                });
            }
            Ok(budget)
        }
        None => {
            // public + public / 4, two descriptors each: 2.5 per public connection.
            let allowed = fd_limit.saturating_sub(RESERVED_FDS).saturating_mul(2) / 5;
            let mut public = allowed.clamp(1, DEFAULT_MAX_CONNECTIONS);
            // Rounding the quarter up may need a descriptor or two more than the limit has.
            while public > 1 && Budget::of(public as usize).descriptors() > fd_limit {
                public -= 1;
            }
            Ok(Budget::of(usize::try_from(public).unwrap_or(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_total_and_each_client_are_bounded_and_places_come_back() {
        let admission = Admission::new(Limits {
            max_connections: 4,
            max_client_connections: 2,
            exempt: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        });
        let a1 = admission.admit(ip("192.0.2.1")).unwrap();
        let _a2 = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::Client { max: 2 }
        );
        // Another client, and a trusted proxy beyond the per-client bound.
        let _b = admission.admit(ip("192.0.2.2")).unwrap();
        let _proxy = admission.admit(ip("10.1.1.1")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.3")).unwrap_err(),
            Refusal::Full { max: 4 }
        );
        assert_eq!(admission.open(), 4);
        drop(a1);
        assert_eq!(admission.open(), 3);
        let _again = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(admission.open(), 4);
    }

    #[test]
    fn an_exempt_peer_is_still_counted_in_the_total() {
        let admission = Admission::new(Limits {
            max_connections: 2,
            max_client_connections: 1,
            exempt: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        });
        let _p1 = admission.admit(ip("10.0.0.1")).unwrap();
        let _p2 = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::Full { max: 2 }
        );
    }

    #[test]
    fn the_budget_follows_the_descriptor_limit() {
        let cases = [
            // (asked, fd limit, outcome: (public, internal) or the descriptors needed)
            (None, 1024, Ok((307, 77))),
            (None, 20_000, Ok((7_897, 1_975))),
            (None, 1 << 20, Ok((16_384, 4_096))),
            (None, 100, Ok((1, 1))),
            (Some(307), 1024, Ok((307, 77))),
            (Some(308), 1024, Err(1026)),
            (Some(100_000), 1 << 20, Ok((100_000, 25_000))),
        ];
        for (asked, limit, expected) in cases {
            let got = budget(asked, limit)
                .map(|b| (b.public, b.internal))
                .map_err(|e| e.needed);
            assert_eq!(got, expected.map_err(|n: u64| n), "{asked:?} {limit}");
            if let Ok(b) = budget(asked, limit)
                && limit > RESERVED_FDS
            {
                assert!(b.descriptors() <= limit, "{asked:?} {limit}");
            }
        }
    }
}

//! Which connections the relay takes. Every relay publishes its port on every node, so any
//! tenant's container can connect to another tenant's relay. A connection that has not yet sent
//! its request line (only a token holder, Berth, gets further) is bounded per peer address: over
//! the bound the peer's oldest such connection is closed, rather than the newest refused, so a
//! container idling on a relay only pushes out its own, even from the address Berth connects
//! from (Berth on a node running tenants' tasks), as Berth sends its line at once. After its
//! line a connection counts in the total only, which bounds the relay's threads.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once, both listeners together.
    pub total: usize,
    /// Connections of one peer address that have not sent their line yet.
    pub reading_per_peer: usize,
}

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Take,
    /// Take it and close the peer's oldest connection still before its line.
    TakeClosingOldest,
    Refuse,
}

/// The decision, from the counts: `open` in all, `reading` of the peer's still before their
/// line.
pub fn decide(limits: Limits, open: usize, reading: usize) -> Decision {
    if reading >= limits.reading_per_peer.max(1) {
        // The place given up is the new one's: the total does not change.
        Decision::TakeClosingOldest
    } else if open >= limits.total {
        Decision::Refuse
    } else {
        Decision::Take
    }
}

#[derive(Debug, Default)]
struct Open {
    /// Connections counted, an evicted one not any more (its thread ends at once).
    total: usize,
    next: u64,
    /// Oldest first, each with a handle to close it; only peers with one.
    reading: HashMap<IpAddr, VecDeque<(u64, TcpStream)>>,
}

/// The counts, shared by both listeners and the connections.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    open: Mutex<Open>,
}

/// One admitted connection; dropping it gives its places back.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    /// The peer and the connection's number there, while its line is still to come.
    reading: Option<(IpAddr, u64)>,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: Mutex::default(),
        })
    }

    /// A place for `stream` from `peer`, or `None` (then it is closed, unread).
    pub fn admit(self: &Arc<Self>, peer: IpAddr, stream: &TcpStream) -> Option<Ticket> {
        let handle = stream.try_clone().ok()?;
        let mut open = self.lock();
        let reading = open.reading.get(&peer).map_or(0, VecDeque::len);
        match decide(self.limits, open.total, reading) {
            Decision::Refuse => return None,
            Decision::TakeClosingOldest => {
                if let Some((_, oldest)) = open.reading.get_mut(&peer).and_then(VecDeque::pop_front)
                {
                    // Its read returns at once; its ticket finds itself gone.
                    let _ = oldest.shutdown(Shutdown::Both);
                }
            }
            Decision::Take => open.total += 1,
        }
        open.next += 1;
        let id = open.next;
        open.reading
            .entry(peer)
            .or_default()
            .push_back((id, handle));
        Some(Ticket {
            admission: Arc::clone(self),
            reading: Some((peer, id)),
        })
    }

    /// A place for a connection that sends no line (the platform listener's, from the
    /// deployment's own replicas): counted in the total only.
    pub fn admit_without_line(self: &Arc<Self>) -> Option<Ticket> {
        let mut open = self.lock();
        if decide(self.limits, open.total, 0) == Decision::Refuse {
            return None;
        }
        open.total += 1;
        Some(Ticket {
            admission: Arc::clone(self),
            reading: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Open {
    /// Takes the connection out of its peer's queue; whether it was there (not evicted).
    fn read(&mut self, peer: IpAddr, id: u64) -> bool {
        let Some(queue) = self.reading.get_mut(&peer) else {
            return false;
        };
        let before = queue.len();
        queue.retain(|(other, _)| *other != id);
        let found = queue.len() < before;
        if queue.is_empty() {
            self.reading.remove(&peer);
        }
        found
    }
}

impl Ticket {
    /// The line is in: the peer's place is given back (the connection stays in the total).
    /// False if the connection was closed to make room and must end.
    pub fn line_read(&mut self) -> bool {
        match self.reading.take() {
            Some((peer, id)) if !self.admission.lock().read(peer, id) => {
                // Evicted: its place in the total went with it.
                self.reading = Some((peer, id));
                false
            }
            _ => true,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        let counted = match self.reading {
            Some((peer, id)) => open.read(peer, id),
            None => true,
        };
        if counted {
            open.total = open.total.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn the_total_is_bounded_and_a_peers_unread_lines_push_out_their_oldest() {
        let limits = Limits {
            total: 4,
            reading_per_peer: 2,
        };
        // (open in all, the peer's before their line, decision)
        let cases = [
            (0, 0, Decision::Take),
            (3, 1, Decision::Take),
            (3, 2, Decision::TakeClosingOldest),
            (4, 0, Decision::Refuse),
            (4, 2, Decision::TakeClosingOldest),
        ];
        for (open, reading, want) in cases {
            assert_eq!(decide(limits, open, reading), want, "{open} {reading}");
        }
    }

    #[test]
    fn past_its_line_a_connection_counts_in_the_total_only_and_places_come_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let admission = Admission::new(Limits {
            total: 4,
            reading_per_peer: 2,
        });
        let [a, b, c, d]: [IpAddr; 4] =
            [1, 2, 3, 4].map(|i| format!("192.0.2.{i}").parse().unwrap());
        let mut a1 = admission.admit(a, &stream).unwrap();
        let mut a2 = admission.admit(a, &stream).unwrap();
        // a3 takes a1's place, in a's and in the total.
        let mut a3 = admission.admit(a, &stream).unwrap();
        assert!(!a1.line_read(), "a1 was pushed out");
        assert!(a2.line_read());
        let _b = admission.admit(b, &stream).unwrap();
        let _c = admission.admit(c, &stream).unwrap();
        assert!(admission.admit(d, &stream).is_none(), "the total is full");
        drop(a1);
        assert!(
            admission.admit(d, &stream).is_none(),
            "a1's place went with a3"
        );
        drop(a2);
        let _d = admission.admit(d, &stream).unwrap();
        assert!(a3.line_read());
        drop(a3);
        assert_eq!(admission.lock().total, 3);
        assert_eq!(
            admission.lock().reading.len(),
            3,
            "b, c and d are before their line"
        );
        let platform = admission.admit_without_line().unwrap();
        assert!(
            admission.admit_without_line().is_none(),
            "the total is full"
        );
        drop(platform);
        assert_eq!(admission.lock().total, 3);
    }
}

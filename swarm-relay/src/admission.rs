//! Which connections the relay takes. Every relay publishes its port on every node, so any
//! tenant's container can connect to another tenant's relay: a connection that has not yet sent
//! its request line (only a token holder, Berth, gets further) is bounded per peer address, so
//! one peer holding idle connections cannot take the places Berth needs. After its line a
//! connection counts only in the total, which bounds the relay's threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once, both listeners together.
    pub total: usize,
    /// Connections of one peer address that have not sent their line yet.
    pub reading_per_peer: usize,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Full,
    Peer,
}

/// The decision, from the counts: `open` in all, `reading` of the peer's still before their line.
pub fn decide(limits: Limits, open: usize, reading: usize) -> Result<(), Refusal> {
    if open >= limits.total {
        Err(Refusal::Full)
    } else if reading >= limits.reading_per_peer {
        Err(Refusal::Peer)
    } else {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Only peers with a count above zero.
    reading: HashMap<IpAddr, usize>,
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
    /// The peer, while its line is still to come.
    reading: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: Mutex::default(),
        })
    }

    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let mut open = self.lock();
        let reading = open.reading.get(&peer).copied().unwrap_or(0);
        decide(self.limits, open.total, reading)?;
        open.total += 1;
        *open.reading.entry(peer).or_default() += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            reading: Some(peer),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Open {
    fn read(&mut self, peer: IpAddr) {
        if let Some(count) = self.reading.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.reading.remove(&peer);
            }
        }
    }
}

impl Ticket {
    /// The line is in: the peer's place is given back (the connection stays in the total).
    pub fn line_read(&mut self) {
        if let Some(peer) = self.reading.take() {
            self.admission.lock().read(peer);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(peer) = self.reading.take() {
            open.read(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_and_each_peers_unread_lines_are_bounded() {
        let limits = Limits {
            total: 4,
            reading_per_peer: 2,
        };
        // (open in all, the peer's before their line, decision)
        let cases = [
            (0, 0, Ok(())),
            (3, 1, Ok(())),
            (3, 2, Err(Refusal::Peer)),
            (4, 0, Err(Refusal::Full)),
            (4, 2, Err(Refusal::Full)),
        ];
        for (open, reading, want) in cases {
            assert_eq!(decide(limits, open, reading), want, "{open} {reading}");
        }
    }

    #[test]
    fn a_peer_past_its_line_counts_in_the_total_only_and_places_come_back() {
        let admission = Admission::new(Limits {
            total: 4,
            reading_per_peer: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut a1 = admission.admit(a).unwrap();
        let a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::Peer);
        a1.line_read();
        let _a3 = admission.admit(a).unwrap();
        let _b = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Full);
        drop(a2);
        drop(a1);
        let _b2 = admission.admit(b).unwrap();
        assert_eq!(admission.lock().reading.len(), 2);
    }
}

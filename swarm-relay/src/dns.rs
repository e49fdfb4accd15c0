//! One IPv4 lookup against Docker's embedded DNS server (127.0.0.11 in every container on a
//! user-defined network), which answers each Swarm task's name (`<service>.<slot>.<task id>`)
//! with its address on the network. A static binary in a FROM-scratch image has no resolver
//! library to call, and the relay needs nothing but this one question.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const SERVER: &str = "127.0.0.11:53";
/// How long a lookup may take in all.
const BUDGET: Duration = Duration::from_secs(2);
/// The query is sent again this often until an address comes back: a reply lost on a busy
/// node, or a task's name that the node's DNS learns a moment later (a task that has just
/// started, or one on another node, known once the overlay's gossip brings it), costs one
/// interval, not the whole budget.
const RESEND: Duration = Duration::from_millis(250);

/// The first A record of `name`, or None (no address within the budget, malformed replies).
pub fn resolve(name: &str) -> Option<Ipv4Addr> {
    resolve_at(SERVER.parse().ok()?, name, BUDGET)
}

fn resolve_at(server: SocketAddr, name: &str, budget: Duration) -> Option<Ipv4Addr> {
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(7);
    let query = query(id, name)?;
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    let give_up = Instant::now() + budget;
    let mut reply = [0u8; 1500];
    while Instant::now() < give_up {
        socket.send_to(&query, server).ok()?;
        let resend = (Instant::now() + RESEND).min(give_up);
        // Replies without an address (no such name yet, another query's) are read past
        // until it is time to ask again.
        loop {
            let left = resend.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left)).ok()?;
            let Ok(n) = socket.recv(&mut reply) else {
                break;
            };
            if let Some(ip) = first_a(id, &reply[..n]) {
                return Some(ip);
            }
        }
    }
    None
}

/// A recursive query for `name`'s A record; None for a name DNS cannot carry.
pub fn query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]);
    (q.len() <= 512).then_some(q)
}

/// The first A record in a reply to query `id`.
pub fn first_a(id: u16, reply: &[u8]) -> Option<Ipv4Addr> {
    if reply.len() < 12 || reply[..2] != id.to_be_bytes() || reply[2] & 0x80 == 0 {
        return None;
    }
    let questions = u16::from_be_bytes([reply[4], reply[5]]);
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(reply, at)? + 4;
    }
    for _ in 0..answers {
        at = skip_name(reply, at)?;
        let head = reply.get(at..at + 10)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[8], head[9]]));
        let data = reply.get(at + 10..at + 10 + len)?;
        if kind == 1 && len == 4 {
            return Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    None
}

fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_a_record_of_a_reply() {
        let q = query(0x1234, "svc.1.abc").unwrap();
        let mut reply = q.clone();
        reply[2] = 0x81;
        reply[3] = 0x80;
        reply[7] = 1; // one answer
        // name pointer to the question, type A, class IN, ttl 600, 4 bytes
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 2, 88, 0, 4, 10, 214, 0, 7]);
        assert_eq!(first_a(0x1234, &reply), Some(Ipv4Addr::new(10, 214, 0, 7)));
        assert_eq!(first_a(0x4321, &reply), None, "another query's reply");
        assert_eq!(
            first_a(0x1234, &reply[..reply.len() - 2]),
            None,
            "truncated"
        );
        assert_eq!(first_a(0x1234, &q), None, "a query, not a reply");
    }

    #[test]
    fn refuses_names_dns_cannot_carry() {
        assert!(query(1, "a..b").is_none());
        assert!(query(1, &"x".repeat(64)).is_none());
        assert!(query(1, "ok.name").is_some());
    }

    /// A real UDP server that drops the first query and answers the second with no address
    /// (the name not known yet): the third, sent a resend interval later, gets the address.
    #[test]
    fn asks_again_until_the_name_is_known() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for round in 0.. {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let mut reply = buf[..n].to_vec();
                reply[2] = 0x81;
                match round {
                    0 => continue,
                    1 => reply[3] = 0x83, // NXDOMAIN
                    _ => {
                        reply[3] = 0x80;
                        reply[7] = 1;
                        reply.extend_from_slice(&[
                            0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 214, 0, 9,
                        ]);
                    }
                }
                server.send_to(&reply, from).unwrap();
                if round == 2 {
                    return round;
                }
            }
            unreachable!()
        });
        let got = resolve_at(addr, "svc.1.new", Duration::from_secs(5));
        assert_eq!(got, Some(Ipv4Addr::new(10, 214, 0, 9)));
        assert_eq!(answering.join().unwrap(), 2);

        // Nobody answering: None once the budget is spent.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let got = resolve_at(
            silent.local_addr().unwrap(),
            "svc.1.gone",
            Duration::from_millis(600),
        );
        assert_eq!(got, None);
        let mut buf = [0u8; 512];
        silent.set_nonblocking(true).unwrap();
        let mut queries = 0;
        while silent.recv(&mut buf).is_ok() {
            queries += 1;
        }
        assert_eq!(queries, 3, "asked every 250 ms within 600 ms");
    }
}

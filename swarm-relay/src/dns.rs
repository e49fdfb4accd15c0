//! One IPv4 lookup against Docker's embedded DNS server (127.0.0.11 in every container on a
//! user-defined network), which answers each Swarm task's name (`<service>.<slot>.<task id>`)
//! with its address on the network. A static binary in a FROM-scratch image has no resolver
//! library to call, and the relay needs nothing but this one question.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

const SERVER: &str = "127.0.0.11:53";

/// The first A record of `name`, or None (no answer, timeout, malformed reply).
pub fn resolve(name: &str) -> Option<Ipv4Addr> {
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(7);
    let query = query(id, name)?;
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    socket.send_to(&query, SERVER).ok()?;
    let mut reply = [0u8; 1500];
    let n = socket.recv(&mut reply).ok()?;
    first_a(id, &reply[..n])
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
}

//! The relay's decision on a request line, a pure function of the line and the policy.

use std::net::{Ipv4Addr, SocketAddrV4};

/// An IPv4 block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: u32,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Cidr {
            addr: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.addr
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// What the relay lets through.
#[derive(Debug)]
pub struct Policy {
    pub token: String,
    pub allow: Vec<Cidr>,
    pub ports: Vec<u16>,
}

impl Policy {
    /// The target of a request line, or why it is refused. The target is `<ipv4>:<port>` or
    /// `<task name>:<port>`; `resolve` turns a name into an address (the embedded DNS in the
    /// relay, a table in tests), and the address decides.
    pub fn check(
        &self,
        line: &str,
        resolve: impl Fn(&str) -> Option<Ipv4Addr>,
    ) -> Result<SocketAddrV4, &'static str> {
        let mut parts = line.split(' ');
        if parts.next() != Some("BERTH-RELAY/1") {
            return Err("protocol");
        }
        let token = parts.next().ok_or("token")?;
        if !constant_time_eq(token.as_bytes(), self.token.as_bytes()) {
            return Err("token");
        }
        let (host, port) = parts
            .next()
            .and_then(|t| t.rsplit_once(':'))
            .ok_or("target")?;
        let port: u16 = port.parse().map_err(|_| "target")?;
        let ip = match host.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) if valid_name(host) => resolve(host).ok_or("unknown task")?,
            Err(_) => return Err("target"),
        };
        let target = SocketAddrV4::new(ip, port);
        if parts.next().is_some() {
            return Err("protocol");
        }
        if !self.allow.iter().any(|c| c.contains(*target.ip())) {
            return Err("target not in this deployment's network");
        }
        if !self.ports.contains(&target.port()) {
            return Err("port not allowed");
        }
        Ok(target)
    }
}

/// A DNS name of letters, digits, `-`, `_` and dots (task names are `<service>.<slot>.<id>`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Equality whose time depends only on the lengths, so the token cannot be guessed byte by byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn policy() -> Policy {
        Policy {
            token: TOKEN.into(),
            allow: vec![Cidr::parse("10.214.0.16/28").unwrap()],
            ports: vec![80],
        }
    }

    #[test]
    fn decides_each_request_line() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef 10.214.0.18:80",
                Ok("10.214.0.18:80"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdeX 10.214.0.18:80",
                Err("token"),
            ),
            ("BERTH-RELAY/1 short 10.214.0.18:80", Err("token")),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef 10.214.0.33:80",
                Err("target not in this deployment's network"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef 10.214.0.18:22",
                Err("port not allowed"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef svc.1.abc:80",
                Ok("10.214.0.20:80"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef other.1.abc:80",
                Err("target not in this deployment's network"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef gone.1.abc:80",
                Err("unknown task"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef a/b:80",
                Err("target"),
            ),
            (
                "BERTH-RELAY/1 0123456789abcdef0123456789abcdef 10.214.0.18:80 x",
                Err("protocol"),
            ),
            ("GET / HTTP/1.1", Err("protocol")),
            ("", Err("protocol")),
        ];
        for (line, want) in cases {
            let resolve = |name: &str| match name {
                "svc.1.abc" => Some(Ipv4Addr::new(10, 214, 0, 20)),
                "other.1.abc" => Some(Ipv4Addr::new(10, 214, 1, 20)),
                _ => None,
            };
            let got = policy().check(line, resolve).map(|t| t.to_string());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{line}");
        }
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c = Cidr::parse("10.214.0.17/28").unwrap();
        assert!(c.contains("10.214.0.16".parse().unwrap()));
        assert!(c.contains("10.214.0.31".parse().unwrap()));
        assert!(!c.contains("10.214.0.32".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("::1/128"), None);
    }
}

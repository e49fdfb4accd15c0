//! Berth's end of the way from Swarm tasks to the internal API. A task reaches `berth-platform`
//! on its own overlay network, which is its deployment's relay ([`super::services::relay_spec`]);
//! the relay carries the connection here and opens it with `BERTH-PLATFORM/1 <network>
//! <token>`, the token being the network's relay token (an HMAC under Berth's key). A valid
//! line lets the rest of the bytes through to the internal API, connected from a loopback
//! address of the network's own in [`SOURCES`], the one block the internal API admits besides
//! the local container networks; every request then authenticates as from a local container.
//! One address per network, because the internal API throttles failed logins per source
//! address: one tenant's bad logins must not lock out every other tenant's services. Anyone
//! else on the nodes' network (without a token) is closed after at most one line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// The loopback block the gateway connects to the internal API from, one address per network
/// (outside the tunnels' `127.214.0.0/16`).
pub const SOURCES: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 215, 0, 0), 16);

/// Whether `ip` is one of the gateway's source addresses.
pub fn is_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            u32::from(v4) >> (32 - SOURCES.1) == u32::from(SOURCES.0) >> (32 - SOURCES.1)
        }
        IpAddr::V6(_) => false,
    }
}

/// Each network's source address, handed out in order on first use (65534 networks; after
/// that they share, which only shares a login throttle).
#[derive(Debug, Default)]
struct Sources(Mutex<HashMap<String, Ipv4Addr>>);

impl Sources {
    fn of(&self, network: &str) -> Ipv4Addr {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = u32::try_from(all.len()).unwrap_or(u32::MAX) % 65534 + 1;
        *all.entry(network.to_owned())
            .or_insert_with(|| Ipv4Addr::from(u32::from(SOURCES.0) + next))
    }
}
/// Connections carried at once; more are closed (the relays bound theirs, this bounds all).
const MAX_CONNECTIONS: usize = 4096;
const LINE_TIMEOUT: Duration = Duration::from_secs(5);
const LINE_MAX: usize = 256;

/// Serves the gateway until the listener fails: each connection that presents a valid token
/// for its network goes on to `internal` (the internal API's listening address).
pub async fn serve(listener: TcpListener, key: Vec<u8>, internal: SocketAddr) {
    let key = Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
    let internal = reachable(internal);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Arc::new(Sources::default());
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let (key, sources) = (Arc::clone(&key), Arc::clone(&sources));
        tokio::spawn(async move {
            if let Err(reason) = carry(client, &key, &sources, internal).await {
                tracing::debug!(%peer, reason, "swarm gateway: connection refused or broken");
            }
            drop(permit);
        });
    }
}

/// An unspecified listening address is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    addr
}

async fn carry(
    mut client: TcpStream,
    key: &ring::hmac::Key,
    sources: &Sources,
    internal: SocketAddr,
) -> Result<(), &'static str> {
    let line = tokio::time::timeout(LINE_TIMEOUT, read_line(&mut client))
        .await
        .map_err(|_| "no request line in time")?
        .ok_or("no request line")?;
    let network = check(&line, key)?;
    let socket = TcpSocket::new_v4().map_err(|_| "socket")?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(sources.of(network)), 0))
        .map_err(|_| "bind the gateway's source address")?;
    let mut upstream = socket
        .connect(internal)
        .await
        .map_err(|_| "connect to the internal API")?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut client, &mut upstream)
        .await
        .map_err(|_| "connection broken")?;
    Ok(())
}

/// The network `line` names, if it is a gateway request with that network's token.
pub fn check<'a>(line: &'a str, key: &ring::hmac::Key) -> Result<&'a str, &'static str> {
    let mut parts = line.split(' ');
    if parts.next() != Some("BERTH-PLATFORM/1") {
        return Err("protocol");
    }
    let network = parts.next().filter(|n| !n.is_empty()).ok_or("network")?;
    let token = parts.next().ok_or("token")?;
    if parts.next().is_some() {
        return Err("protocol");
    }
    let tag = hex::decode(token).map_err(|_| "token")?;
    ring::hmac::verify(key, network.as_bytes(), &tag).map_err(|_| "token")?;
    Ok(network)
}

/// One line, byte by byte: what follows it belongs to the internal API.
async fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    while line.len() < LINE_MAX {
        let b = stream.read_u8().await.ok()?;
        if b == b'\n' {
            return String::from_utf8(line).ok();
        }
        line.push(b);
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::super::services::relay_token;
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_networks_own_token_opens_the_gateway() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY);
        let good = relay_token(KEY, "net-a");
        let cases = [
            (format!("BERTH-PLATFORM/1 net-a {good}"), Ok("net-a")),
            (format!("BERTH-PLATFORM/1 net-b {good}"), Err("token")),
            (
                format!("BERTH-PLATFORM/1 net-a {}", relay_token(b"other", "net-a")),
                Err("token"),
            ),
            (format!("BERTH-PLATFORM/1 net-a {good} x"), Err("protocol")),
            ("BERTH-PLATFORM/1 net-a zz".to_owned(), Err("token")),
            (format!("BERTH-RELAY/1 {good} net-a:80"), Err("protocol")),
            ("GET / HTTP/1.1".to_owned(), Err("protocol")),
        ];
        for (line, want) in cases {
            assert_eq!(check(&line, &key), want, "{line}");
        }
    }

    /// Real sockets: a valid line is followed by the client's bytes arriving at the internal
    /// listener from the network's own source address; another network's connection comes
    /// from another one; a wrong token gets the connection closed with nothing carried.
    #[tokio::test]
    async fn a_valid_line_carries_bytes_from_the_source_address() {
        let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal_addr = internal.local_addr().unwrap();
        let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = gateway.local_addr().unwrap();
        tokio::spawn(serve(gateway, KEY.to_vec(), internal_addr));

        let mut c = TcpStream::connect(gateway_addr).await.unwrap();
        let line = format!("BERTH-PLATFORM/1 net-a {}\nping", relay_token(KEY, "net-a"));
        c.write_all(line.as_bytes()).await.unwrap();
        let (mut s, peer) = internal.accept().await.unwrap();
        assert!(is_source(peer.ip()), "{peer}");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        s.write_all(b"pong").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        let mut other = TcpStream::connect(gateway_addr).await.unwrap();
        let line = format!("BERTH-PLATFORM/1 net-b {}\n", relay_token(KEY, "net-b"));
        other.write_all(line.as_bytes()).await.unwrap();
        let (_s, other_peer) = internal.accept().await.unwrap();
        assert!(is_source(other_peer.ip()), "{other_peer}");
        assert_ne!(other_peer.ip(), peer.ip(), "one source address per network");
        assert!(!is_source("127.214.0.1".parse().unwrap()));

        let mut bad = TcpStream::connect(gateway_addr).await.unwrap();
        let line = format!("BERTH-PLATFORM/1 net-b {}\nping", relay_token(KEY, "net-a"));
        bad.write_all(line.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(bad.read_to_end(&mut rest).await.unwrap_or(0), 0);
    }
}

//! Berth's end of the way from Swarm tasks to the internal API. A task reaches `berth-platform`
//! on its own overlay network, which is its deployment's relay ([`super::services::relay_spec`]);
//! the relay carries the connection here and opens it with `BERTH-PLATFORM/1 <network>
//! <token>`, the token being the network's relay token (an HMAC under Berth's key). A valid
//! line lets the rest of the bytes through to the internal API, connected from a loopback
//! address of the network's own in [`SOURCES`], the one block the internal API admits besides
//! the local container networks; every request then authenticates as from a local container.
//! One address per network, because the internal API throttles failed logins per source
//! address: one tenant's bad logins must not lock out every other tenant's services. Anyone
//! else on the nodes' network (without a token) is closed after at most one line, which must
//! come whole within 5 s; and as every container on a node reaches the gateway from the
//! node's address, one address may have only so many connections waiting for their line
//! (`LIMITS`, `waiting.rs`), so one tenant's idle connections cannot take the way of every
//! tenant.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

mod sources;
mod waiting;

use sources::{SOURCE_ADDRESSES, Sources};
pub use sources::{SOURCES, is_source};
use waiting::{Wait, Waiting};

/// What the gateway holds at once. A connection takes one of `connections` when accepted,
/// and until its line is read also one of `waiting_per_source` places of its source address
/// ([`waiting`]: over that the source's oldest waiting connection is closed), so one
/// container's idle connections cannot take them all. A relay sends its line at once, so its
/// connections wait for moments; one carried on is bounded by the internal API
/// (`max_container_connections` per network), not here.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connections: usize,
    waiting_per_source: usize,
    /// For the whole line, however it is split.
    line_timeout: Duration,
}

const LIMITS: Limits = Limits {
    // Connections carried at once; more are closed (the relays bound theirs, this bounds all).
    connections: 4096,
    // A sixteenth: at least 16 nodes' sources must wait at once to fill the gateway.
    waiting_per_source: 256,
    line_timeout: Duration::from_secs(5),
};
const LINE_MAX: usize = 256;

/// Serves the gateway until the listener fails: each connection that presents a valid token
/// for its network goes on to `internal` (the internal API's listening address).
pub async fn serve(listener: TcpListener, key: Vec<u8>, internal: SocketAddr) {
    serve_with(listener, key, internal, LIMITS).await;
}

async fn serve_with(listener: TcpListener, key: Vec<u8>, internal: SocketAddr, limits: Limits) {
    let key = Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
    let internal = reachable(internal);
    let slots = Arc::new(Semaphore::new(limits.connections));
    let waiting = Waiting::new(limits.waiting_per_source);
    let sources = Arc::new(Sources::new(SOURCE_ADDRESSES));
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let wait = waiting.enter(peer.ip());
        let (key, sources) = (Arc::clone(&key), Arc::clone(&sources));
        tokio::spawn(async move {
            let carried = match read_line(client, limits.line_timeout, wait).await {
                Ok((client, line)) => carry(client, &line, &key, &sources, internal).await,
                Err(reason) => Err(reason),
            };
            if let Err(reason) = carried {
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
    line: &str,
    key: &ring::hmac::Key,
    sources: &Sources,
    internal: SocketAddr,
) -> Result<(), &'static str> {
    let network = check(line, key)?;
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

/// One line, byte by byte (what follows it belongs to the internal API), all of it within
/// `timeout` and before a newer connection of the source evicts it; the source's waiting
/// place is given back with it.
async fn read_line(
    mut stream: TcpStream,
    timeout: Duration,
    mut wait: Wait,
) -> Result<(TcpStream, String), &'static str> {
    let read = tokio::time::timeout(timeout, async {
        let mut line = Vec::new();
        while line.len() < LINE_MAX {
            let b = stream.read_u8().await.ok()?;
            if b == b'\n' {
                return String::from_utf8(line).ok();
            }
            line.push(b);
        }
        None
    });
    let line = tokio::select! {
        line = read => line.map_err(|_| "no request line in time")?.ok_or("no request line")?,
        _ = &mut wait.evicted => return Err("evicted by a newer connection from its source"),
    };
    drop(wait);
    Ok((stream, line))
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

    /// A client socket bound to `source` (any of 127.0.0.0/8 is this host's).
    async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Whether the peer closed `stream` (rather than leaving it open) within a generous bound.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// Write a valid line for `network` and `ping` on `client`; whether the ping reaches the
    /// internal API.
    async fn carried(client: &mut TcpStream, internal: &TcpListener, network: &str) -> bool {
        let line = format!(
            "BERTH-PLATFORM/1 {network} {}\nping",
            relay_token(KEY, network)
        );
        client.write_all(line.as_bytes()).await.unwrap();
        let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_secs(20), internal.accept()).await
        else {
            return false;
        };
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.is_ok() && &buf == b"ping"
    }

    /// One source holding more idle connections than the gateway takes in all shuts out no
    /// one: each one over the bound closes the source's oldest waiting one, and a relay on the
    /// same node, as on another, still gets its line read and its bytes carried.
    #[tokio::test]
    async fn idle_connections_from_one_source_shut_no_one_out() {
        let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal_addr = internal.local_addr().unwrap();
        let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = gateway.local_addr().unwrap();
        let limits = Limits {
            connections: 6,
            waiting_per_source: 2,
            // Longer than the test: idle connections are not closed by it.
            line_timeout: Duration::from_secs(60),
        };
        tokio::spawn(serve_with(gateway, KEY.to_vec(), internal_addr, limits));

        let mut idle = Vec::new();
        for i in 0..limits.connections + 2 {
            idle.push(connect_from("127.0.0.3", gateway_addr).await);
            if let Some(oldest) = i.checked_sub(limits.waiting_per_source) {
                assert!(closed(&mut idle[oldest]).await, "idle connection {oldest}");
            }
        }
        let mut same_node = connect_from("127.0.0.3", gateway_addr).await;
        assert!(
            carried(&mut same_node, &internal, "net-a").await,
            "same source"
        );
        let mut other_node = connect_from("127.0.0.4", gateway_addr).await;
        assert!(
            carried(&mut other_node, &internal, "net-b").await,
            "another source"
        );
    }

    /// The line has one deadline in all: a client sending a byte at a time, each well within
    /// the timeout, is closed anyway.
    #[tokio::test]
    async fn a_line_trickled_byte_by_byte_is_cut_at_the_deadline() {
        let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = gateway.local_addr().unwrap();
        let limits = Limits {
            line_timeout: Duration::from_secs(1),
            ..LIMITS
        };
        let internal_addr = internal.local_addr().unwrap();
        tokio::spawn(serve_with(gateway, KEY.to_vec(), internal_addr, limits));

        let client = TcpStream::connect(gateway_addr).await.unwrap();
        let (mut read, mut write) = client.into_split();
        // Short of LINE_MAX, and longer than the bound below if each byte reset the timeout.
        let trickle = tokio::spawn(async move {
            for _ in 0..LINE_MAX - 1 {
                if write.write_all(b"B").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = [0u8; 1];
        let cut = tokio::time::timeout(Duration::from_secs(15), read.read(&mut buf)).await;
        assert!(matches!(cut, Ok(Ok(0) | Err(_))), "{cut:?}");
        trickle.abort();
    }
}

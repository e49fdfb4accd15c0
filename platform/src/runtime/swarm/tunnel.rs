//! The host side of the way into a deployment's overlay network. Each Swarm instance (a replica
//! slot) gets an address of its own on the loopback network, `127.214.x.y`, port 80: what the
//! supervisor probes and the proxy forwards to, exactly like a local container's bridge address.
//! A connection accepted there is carried to the relay on the node that runs the slot's current
//! task, which connects it to the task by name. When the slot's task moves (restart, node lost),
//! only the route behind the address changes.
//!
//! A slot can run before any relay does (Swarm starts the deployment's relay tasks and its
//! replicas independently): its way is then pending, and a connection waits for the route
//! (within [`WAY_DEADLINE`]) instead of being closed unanswered.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sync::MutexExt;

/// The loopback block instance addresses come from (127.0.0.0/8 is all local on Linux).
const BASE: u32 = u32::from_be_bytes([127, 214, 0, 0]);
const BLOCK: u32 = 1 << 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a slot's connections go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The relay on the node that runs the task: the node's address and the relay's host port.
    pub relay: SocketAddr,
    pub token: String,
    /// The task's name on the overlay network.
    pub task: String,
    pub port: u16,
}

/// What a slot's connections meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// The slot's task is not running: connections are closed at once, which the proxy counts
    /// as a broken upstream (and ejects the replica).
    Closed,
    /// The task runs but no relay is known to run yet: connections wait for a route.
    Pending,
    Open(Route),
}

/// The request line the relay expects.
pub fn request_line(route: &Route) -> String {
    format!(
        "BERTH-RELAY/1 {} {}:{}\n",
        route.token, route.task, route.port
    )
}

#[derive(Debug)]
struct Entry {
    addr: Ipv4Addr,
    way: watch::Sender<Way>,
    listener: JoinHandle<()>,
}

/// Every instance's local address and listener.
#[derive(Debug)]
pub struct Tunnels {
    entries: Mutex<HashMap<String, Entry>>,
    next: Mutex<u32>,
    /// How long a connection may wait for its way.
    deadline: Duration,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self::with_deadline(WAY_DEADLINE)
    }
}

impl Drop for Tunnels {
    fn drop(&mut self) {
        let entries = self.entries.get_mut().unwrap_or_else(|p| p.into_inner());
        for e in entries.values() {
            e.listener.abort();
        }
    }
}

impl Tunnels {
    pub fn with_deadline(deadline: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            next: Mutex::default(),
            deadline,
        }
    }

    /// The local address of instance `id`, its listener opened on first use; its connections
    /// meet `way` from now on (those waiting for a route included).
    pub async fn address(&self, id: &str, way: Way) -> std::io::Result<Ipv4Addr> {
        {
            let entries = self.entries.locked();
            if let Some(e) = entries.get(id) {
                e.way.send_replace(way);
                return Ok(e.addr);
            }
        }
        let (addr, listener) = self.bind().await?;
        let (sender, receiver) = watch::channel(way);
        let task = tokio::spawn(serve(listener, receiver, self.deadline));
        let mut entries = self.entries.locked();
        if let Some(e) = entries.get(id) {
            // Another caller opened it meanwhile: keep theirs.
            task.abort();
            e.way.send_replace(sender.borrow().clone());
            return Ok(e.addr);
        }
        entries.insert(
            id.to_owned(),
            Entry {
                addr,
                way: sender,
                listener: task,
            },
        );
        Ok(addr)
    }

    /// A tcpSocket probe of `id`'s task: the listener here accepts every connection, so the
    /// probe is a way through the relay, whose `OK` says it connected to the task. One attempt.
    pub async fn probe(&self, id: &str, timeout: Duration) -> std::io::Result<()> {
        let way = {
            let entries = self.entries.locked();
            entries.get(id).map(|e| e.way.borrow().clone())
        };
        let route = match way {
            Some(Way::Open(route)) => route,
            Some(Way::Pending) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "no relay runs for the task yet",
                ));
            }
            Some(Way::Closed) | None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the task is not running",
                ));
            }
        };
        match tokio::time::timeout(timeout, handshake(&route)).await {
            Ok(way) => way.map(drop),
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// The address of `id` if it has one.
    pub fn existing(&self, id: &str) -> Option<Ipv4Addr> {
        let entries = self.entries.locked();
        entries.get(id).map(|e| e.addr)
    }

    /// Closes the listeners of every instance `keep` rejects.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut entries = self.entries.locked();
        entries.retain(|id, e| {
            let kept = keep(id);
            if !kept {
                e.listener.abort();
            }
            kept
        });
    }

    async fn bind(&self) -> std::io::Result<(Ipv4Addr, TcpListener)> {
        let mut last = None;
        // Another process (another installation on this host) may hold an address: try on.
        for _ in 0..64 {
            let offset = {
                let mut next = self.next.locked();
                *next = (*next % (BLOCK - 2)) + 1;
                *next
            };
            let addr = Ipv4Addr::from(BASE + offset);
            match TcpListener::bind(SocketAddrV4::new(addr, super::services::SERVICE_PORT)).await {
                Ok(l) => return Ok((addr, l)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no loopback address free")))
    }
}

async fn serve(listener: TcpListener, way: watch::Receiver<Way>, deadline: Duration) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let way = way.clone();
        tokio::spawn(async move {
            if let Err(e) = carry(client, way, deadline).await {
                tracing::debug!(error = %e, "tunnel connection ended");
            }
        });
    }
}

/// The first pause between attempts at the relay's way to the task; each next is twice as
/// long, up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How long a connection may wait for its way: a pending route, and attempts that each may
/// cost a relay's DNS lookup (2 s while the task's name is not yet known on the relay's node).
const WAY_DEADLINE: Duration = Duration::from_secs(10);

/// Opens the relay's way to the task and then relays bytes both ways.
async fn carry(
    mut client: TcpStream,
    way: watch::Receiver<Way>,
    deadline: Duration,
) -> std::io::Result<()> {
    let mut relay = open_way(way, deadline).await?;
    client.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut relay).await?;
    Ok(())
}

/// The relay answers `OK` only once it is connected to the task, so until then nothing of
/// the client's has reached the service: a failed attempt (relay busy or restarting, the
/// task's name not yet known on that node, the task just moved) is tried again, on the route
/// as it is then, for any request. Failing here closes the client's connection unanswered,
/// which the proxy can only report as a broken upstream (502 for a POST), so it is the last
/// resort, and is logged. A pending way is waited for first.
async fn open_way(mut way: watch::Receiver<Way>, deadline: Duration) -> std::io::Result<TcpStream> {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    let mut last: Option<(Route, std::io::Error)> = None;
    loop {
        if *way.borrow() == Way::Pending {
            tracing::debug!("the slot runs before any relay: waiting for its route");
        }
        let opened = tokio::time::timeout_at(give_up, async {
            let current = match way.wait_for(|w| *w != Way::Pending).await.as_deref() {
                Ok(Way::Open(route)) => route.clone(),
                // Closed, or the slot's listener is going away.
                _ => return Err(None),
            };
            handshake(&current).await.map_err(|e| Some((current, e)))
        })
        .await;
        let failed = match opened {
            Ok(Ok(relay)) => return Ok(relay),
            Ok(Err(None)) => return Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
            Ok(Err(Some(failed))) => failed,
            Err(_) => {
                let (task, error) = match &last {
                    Some((route, e)) => (Some(route.task.clone()), Some(e.to_string())),
                    None => (None, None),
                };
                tracing::warn!(
                    ?task,
                    ?error,
                    ?deadline,
                    "no way to the task through its relay in time"
                );
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
            }
        };
        if tokio::time::Instant::now() + pause >= give_up {
            let (route, e) = failed;
            tracing::warn!(task = %route.task, relay = %route.relay, error = %e, "no way to the task through its relay");
            return Err(e);
        }
        tracing::debug!(task = %failed.0.task, error = %failed.1, "relay way failed: trying again");
        last = Some(failed);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn handshake(route: &Route) -> std::io::Result<TcpStream> {
    let mut relay = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(route.relay))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    relay.set_nodelay(true)?;
    relay.write_all(request_line(route).as_bytes()).await?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_line(&mut relay))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if answer != "OK" {
        return Err(std::io::Error::other(format!("relay: {answer}")));
    }
    Ok(relay)
}

/// One line, byte by byte: nothing after it may be consumed (it belongs to the client).
async fn read_line(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    while line.len() < 256 {
        let b = stream.read_u8().await?;
        if b == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(b);
    }
    Err(std::io::Error::other("relay answer too long"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A fake relay (a real socket): a way whose target ends with `good` (any, for None) gets
    /// `OK` and an echo, any other a refusal.
    async fn fake_relay(good: Option<&'static str>) -> SocketAddr {
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = relay.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = relay.accept().await.unwrap();
                tokio::spawn(async move {
                    let line = read_line(&mut s).await.unwrap();
                    if good.is_none_or(|g| line.ends_with(&format!(" {g}"))) {
                        s.write_all(b"OK\n").await.unwrap();
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    } else {
                        let _ = s.write_all(b"ERR connect: connection refused\n").await;
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn the_request_line_names_token_task_and_port() {
        let r = Route {
            relay: "10.0.0.1:31000".parse().unwrap(),
            token: "t0k".into(),
            task: "svc.1.abc".into(),
            port: 80,
        };
        assert_eq!(request_line(&r), "BERTH-RELAY/1 t0k svc.1.abc:80\n");
    }

    /// The tunnel carries bytes both ways after the relay's OK, and a route change applies to
    /// the next connection.
    #[tokio::test]
    async fn a_slot_address_carries_bytes_through_the_relay() {
        let relay_addr = fake_relay(Some("good.1.x:80")).await;
        let tunnels = Tunnels::with_deadline(Duration::from_millis(500));
        let route = |task: &str| Route {
            relay: relay_addr,
            token: "t".into(),
            task: task.into(),
            port: 80,
        };
        let addr = tunnels
            .address("s/0", Way::Open(route("good.1.x")))
            .await
            .unwrap();
        assert_eq!(addr.octets()[..2], [127, 214]);
        let mut c = TcpStream::connect((addr, 80)).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // Same slot, new route: same address, and a refused task closes the connection.
        let again = tunnels
            .address("s/0", Way::Open(route("gone.1.y")))
            .await
            .unwrap();
        assert_eq!(again, addr);
        let mut c = TcpStream::connect((addr, 80)).await.unwrap();
        let _ = c.write_all(b"ping").await;
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");

        tunnels.retain(|_| false);
        assert_eq!(tunnels.existing("s/0"), None);
    }

    /// Until the relay says OK nothing reached the task: a way refused twice (the task's name
    /// not yet known on its node) is tried again, and the client's bytes arrive whole.
    #[tokio::test]
    async fn a_refused_way_is_tried_again_before_the_client_is_given_up() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&attempts);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = relay.accept().await.unwrap();
                let n = seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    read_line(&mut s).await.unwrap();
                    if n < 2 {
                        s.write_all(b"ERR connect: ConnectionRefused\n")
                            .await
                            .unwrap();
                        return;
                    }
                    s.write_all(b"OK\n").await.unwrap();
                    let (mut r, mut w) = s.split();
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                });
            }
        });
        let tunnels = Tunnels::default();
        let route = Route {
            relay: relay_addr,
            token: "t".into(),
            task: "flaky.1.z".into(),
            port: 80,
        };
        let addr = tunnels.address("f/0", Way::Open(route)).await.unwrap();
        let mut c = TcpStream::connect((addr, 80)).await.unwrap();
        c.write_all(b"POST").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"POST");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    /// A slot that runs before any relay does: its connection waits for the route and is
    /// carried once the route is known; a closed way closes at once.
    #[tokio::test]
    async fn a_pending_way_waits_for_its_route_and_a_closed_one_does_not() {
        let relay = fake_relay(None).await;
        let tunnels = Tunnels::default();
        let addr = tunnels.address("p/0", Way::Pending).await.unwrap();
        let mut c = TcpStream::connect((addr, 80)).await.unwrap();
        c.write_all(b"POST").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let route = Route {
            relay,
            token: "t".into(),
            task: "late.1.r".into(),
            port: 80,
        };
        tunnels.address("p/0", Way::Open(route)).await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"POST");

        // A way still pending at the deadline closes the connection unanswered.
        let short = Tunnels::with_deadline(Duration::from_millis(200));
        let never = short.address("n/0", Way::Pending).await.unwrap();
        closed_unanswered(never, Duration::from_secs(2), "closed at the deadline").await;

        tunnels.address("p/0", Way::Closed).await.unwrap();
        closed_unanswered(addr, Duration::from_secs(1), "a closed way closes at once").await;
    }

    /// A connection to `addr` is closed within `within` without a byte.
    async fn closed_unanswered(addr: Ipv4Addr, within: Duration, why: &str) {
        let mut c = TcpStream::connect((addr, 80)).await.unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(within, c.read_to_end(&mut rest))
            .await
            .expect(why)
            .unwrap_or(0);
        assert_eq!(n, 0, "{why}");
    }

    /// A probe asks the relay: OK passes, a refused way fails, and so do a pending and a
    /// closed way, though the local listener would accept all of them.
    #[tokio::test]
    async fn a_probe_passes_only_when_the_relay_reaches_the_task() {
        let relay_addr = fake_relay(Some("up.1.a:80")).await;
        let route = |task: &str| Route {
            relay: relay_addr,
            token: "t".into(),
            task: task.into(),
            port: 80,
        };
        let tunnels = Tunnels::default();
        let second = Duration::from_secs(1);
        tunnels
            .address("u/0", Way::Open(route("up.1.a")))
            .await
            .unwrap();
        tunnels
            .probe("u/0", second)
            .await
            .expect("the relay reached it");
        tunnels
            .address("u/0", Way::Open(route("down.1.b")))
            .await
            .unwrap();
        let refused = tunnels.probe("u/0", second).await.unwrap_err();
        assert!(
            refused.to_string().contains("connection refused"),
            "{refused}"
        );
        for way in [Way::Pending, Way::Closed] {
            tunnels.address("u/0", way.clone()).await.unwrap();
            let e = tunnels.probe("u/0", second).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{way:?}");
        }
        assert!(tunnels.probe("unknown/0", second).await.is_err());
    }
}

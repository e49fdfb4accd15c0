//! The relay over real sockets on loopback: its bounds against clients that idle or trickle,
//! and a connection whose way back has no thread.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::admission::{Admission, Limits};
use crate::request::{Cidr, Policy};
use crate::{accept, serve, splice_with};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// An upstream answering `pong` to every `ping`, the address a relay of `limits` with
/// `handshake` listens on, and a valid request line to the upstream.
fn relay(limits: Limits, handshake: Duration) -> (SocketAddr, String) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = upstream.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let mut stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4];
                while stream.read_exact(&mut buf).is_ok() && stream.write_all(b"pong").is_ok() {}
            });
        }
    });
    let policy = Arc::new(Policy {
        token: TOKEN.to_owned(),
        allow: vec![Cidr::parse("127.0.0.0/8").unwrap()],
        ports: vec![target.port()],
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let admission = Admission::new(limits);
    std::thread::spawn(move || {
        accept(&listener, &admission, true, move |stream, ticket| {
            serve(stream, ticket, &policy, handshake);
        });
    });
    (addr, format!("BERTH-RELAY/1 {TOKEN} {target}\n"))
}

/// A connection to `to` from the loopback address `source` (all of 127.0.0.0/8 is this host's).
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Whether the peer closed `stream` (rather than leaving it open) within a generous bound.
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An ERR line before the close.
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// Asks for the way through with `line` and sends a ping through it.
fn relayed(stream: &mut TcpStream, line: &str) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = [0u8; 7];
    stream.write_all(line.as_bytes()).is_ok()
        && stream.read_exact(&mut answer[..3]).is_ok()
        && &answer[..3] == b"OK\n"
        && stream.write_all(b"ping").is_ok()
        && stream.read_exact(&mut answer[3..]).is_ok()
        && &answer[3..] == b"pong"
}

/// One peer holding more idle connections than the relay takes in all shuts no one out: each
/// one over its bound closes its oldest, a request from that same address (Berth on a node
/// with tenants' tasks) or another one is relayed, and relayed connections no longer count
/// against their peer's bound.
#[test]
fn idle_connections_of_one_peer_shut_no_one_out() {
    let limits = Limits {
        total: 6,
        reading_per_peer: 2,
    };
    // Longer than the test: idle connections are not closed by it.
    let (addr, line) = relay(limits, Duration::from_secs(60));
    let idler = Ipv4Addr::new(127, 0, 0, 5);
    let mut idle = Vec::new();
    for i in 0..limits.total + 2 {
        idle.push(connect_from(idler, addr));
        if let Some(oldest) = i.checked_sub(limits.reading_per_peer) {
            assert!(closed(&mut idle[oldest]), "idle connection {oldest}");
        }
    }
    let mut same_address = connect_from(idler, addr);
    assert!(relayed(&mut same_address, &line), "the same address");
    // One after another, more than the per-peer bound.
    let mut carried = Vec::new();
    for i in 0..=limits.reading_per_peer {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 6), addr);
        assert!(
            relayed(&mut stream, &line),
            "another address, connection {i}"
        );
        carried.push(stream);
    }
}

/// The request line has one deadline in all: a client sending a byte at a time, each well
/// within the deadline, is closed anyway.
#[test]
fn a_line_trickled_byte_by_byte_is_cut_at_the_deadline() {
    let limits = Limits {
        total: 4,
        reading_per_peer: 4,
    };
    let (addr, _) = relay(limits, Duration::from_secs(1));
    let mut client = TcpStream::connect(addr).unwrap();
    let mut writer = client.try_clone().unwrap();
    // Short of the longest line, and longer than `closed`'s bound if each byte reset the
    // timeout.
    std::thread::spawn(move || {
        for _ in 0..crate::line::LINE_MAX - 1 {
            if writer.write_all(b"B").is_err() {
                break;
            }
            #[allow(clippy::disallowed_methods)] // a thread of its own
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(
        closed(&mut client),
        "the trickling client is still connected"
    );
}

/// Without a thread for the way back, the connection is closed rather than left open one way.
#[test]
fn a_connection_without_its_second_thread_is_closed() {
    let pair = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (near, listener.accept().unwrap().0)
    };
    let (mut client, client_end) = pair();
    let (mut upstream, upstream_end) = pair();
    std::thread::spawn(move || {
        splice_with(client_end, upstream_end, |_, _| {
            Err(std::io::Error::other("no thread"))
        });
    });
    assert!(closed(&mut client), "the client is left waiting");
    assert!(closed(&mut upstream), "the upstream is left open");
}

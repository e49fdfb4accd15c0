//! Berth's relay on a Swarm node. A microservice's port is never published: its replicas listen
//! only on their deployment's overlay network, which Berth's host is not part of. One relay
//! service per deployment (one task per node, on that deployment's overlay only) publishes a
//! host port on each node and forwards a connection to one replica of its own deployment after
//! the client proved it is Berth: the first line must carry the deployment's token (derived by
//! Berth from its master key), and the target must be inside the deployment's overlay subnet on
//! an allowed port. Anyone else on the nodes' network, tenants' containers included, gets
//! `ERR` and a closed connection.
//!
//! Protocol: the client sends `BERTH-RELAY/1 <token> <target>:<port>\n`, the target an IPv4
//! address or a task's name (resolved by Docker's embedded DNS); the relay answers `OK\n`
//! and then relays bytes both ways, or `ERR <reason>\n` and closes.
//!
//! The other way, replicas to Berth's internal API, is [`platform`]: with `BERTH_RELAY_PLATFORM`
//! set, a second listener takes connections from the overlay subnet only and carries them to
//! Berth's gateway, presenting the network's token.
//!
//! Settings (environment): `BERTH_RELAY_TOKEN` (required), `BERTH_RELAY_ALLOW` (comma-separated
//! IPv4 CIDRs the targets must be in, required), `BERTH_RELAY_PORTS` (comma-separated allowed
//! target ports, default 80), `BERTH_RELAY_LISTEN` (default `0.0.0.0:7070`);
//! `BERTH_RELAY_PLATFORM` (Berth's gateway, `host:port`), `BERTH_RELAY_NETWORK` (the network's
//! name, needed with it), `BERTH_RELAY_PLATFORM_LISTEN` (default `0.0.0.0:8111`).
//!
//! Standard library only, threads rather than an async runtime: the relay carries one
//! deployment's traffic and is bounded by `MAX_CONNECTIONS`.

mod dns;
mod platform;
mod request;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use request::{Cidr, Policy};

/// Connections relayed at once; more are refused (a flood costs the node a bounded number of
/// threads).
const MAX_CONNECTIONS: usize = 1024;
/// How long a client has to send its request line.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a replica (or to Berth's gateway) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn main() {
    let (policy, platform) = match settings().and_then(|p| Ok((p, platform_settings()?))) {
        Ok((p, platform)) => (Arc::new(p), platform),
        Err(message) => {
            eprintln!("swarm-relay: {message}");
            std::process::exit(2);
        }
    };
    let listen = std::env::var("BERTH_RELAY_LISTEN").unwrap_or_else(|_| "0.0.0.0:7070".into());
    let listener = bind(&listen);
    let active = Arc::new(AtomicUsize::new(0));
    if let Some(platform) = platform {
        let platform_listen =
            std::env::var("BERTH_RELAY_PLATFORM_LISTEN").unwrap_or_else(|_| "0.0.0.0:8111".into());
        let platform_listener = bind(&platform_listen);
        let (policy, active) = (Arc::clone(&policy), Arc::clone(&active));
        let platform = Arc::new(platform);
        std::thread::spawn(move || {
            accept(&platform_listener, &active, move |stream| {
                platform::serve(stream, &platform, &policy.token, &policy.allow);
            });
        });
    }
    accept(&listener, &active, move |stream| serve(stream, &policy));
}

fn bind(listen: &str) -> TcpListener {
    match TcpListener::bind(listen) {
        Ok(l) => {
            eprintln!("swarm-relay: listening on {listen}");
            l
        }
        Err(e) => {
            eprintln!("swarm-relay: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    }
}

/// Serves each connection on a thread of its own, at most `MAX_CONNECTIONS` at once over
/// both listeners.
fn accept(
    listener: &TcpListener,
    active: &Arc<AtomicUsize>,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let held = Arc::clone(active);
        let handle = Arc::clone(&handle);
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                handle(stream);
                held.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The closure (and its counter decrement) was dropped with the failed spawn.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn platform_settings() -> Result<Option<platform::Platform>, String> {
    let Ok(gateway) = std::env::var("BERTH_RELAY_PLATFORM") else {
        return Ok(None);
    };
    let network = std::env::var("BERTH_RELAY_NETWORK")
        .ok()
        .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
        .ok_or("BERTH_RELAY_PLATFORM needs BERTH_RELAY_NETWORK (the network's name)")?;
    Ok(Some(platform::Platform { gateway, network }))
}

fn settings() -> Result<Policy, String> {
    let token = std::env::var("BERTH_RELAY_TOKEN")
        .ok()
        .filter(|t| t.len() >= 32)
        .ok_or("BERTH_RELAY_TOKEN must be set (at least 32 characters)")?;
    let allow = std::env::var("BERTH_RELAY_ALLOW").map_err(|_| "BERTH_RELAY_ALLOW must be set")?;
    let allow = allow
        .split(',')
        .map(|c| Cidr::parse(c).ok_or(format!("BERTH_RELAY_ALLOW: {c:?} is not an IPv4 CIDR")))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = std::env::var("BERTH_RELAY_PORTS").unwrap_or_else(|_| "80".into());
    let ports = ports
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("BERTH_RELAY_PORTS: {p:?} is not a port"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        token,
        allow,
        ports,
    })
}

fn serve(client: TcpStream, policy: &Policy) {
    let _ = client.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = client.set_nodelay(true);
    let Ok(reader) = client.try_clone() else {
        return;
    };
    // At most 256 bytes: a request line is far shorter, and a client must not make the relay
    // buffer more.
    let mut line = String::new();
    let mut limited = BufReader::new(std::io::Read::take(reader, 256));
    if limited.read_line(&mut line).is_err() || !line.ends_with('\n') {
        return;
    }
    // Anything the client sent after the request line (it should wait for OK) is refused:
    // a BufReader could hold it and it would be lost.
    if !limited.buffer().is_empty() {
        refuse(&client, "send nothing before OK");
        return;
    }
    let target = match policy.check(line.trim_end(), dns::resolve) {
        Ok(target) => target,
        Err(reason) => {
            refuse(&client, reason);
            return;
        }
    };
    let upstream = match TcpStream::connect_timeout(&SocketAddr::V4(target), CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            refuse(&client, &format!("connect: {}", e.kind()));
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_read_timeout(None);
    let mut writer = &client;
    if writer.write_all(b"OK\n").is_err() {
        return;
    }
    splice(client, upstream);
}

fn refuse(mut client: &TcpStream, reason: &str) {
    let _ = client.write_all(format!("ERR {reason}\n").as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies both ways until both sides are done, passing each side's end of stream on.
pub(crate) fn splice(client: TcpStream, upstream: TcpStream) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || copy_half(upstream2, client2));
    copy_half(client, upstream);
    if let Ok(handle) = back {
        let _ = handle.join();
    }
}

fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

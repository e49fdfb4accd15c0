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
//! deployment's traffic and is bounded by [`LIMITS`].

mod admission;
mod dns;
mod line;
mod platform;
mod request;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use admission::{Admission, Limits, Ticket};
use request::{Cidr, Policy};

/// Connections relayed at once, more are refused: two threads each, plus the two listeners',
/// well under the relay service's pids limit of 2048
/// (`relay_spec` in Berth), so a connection never lacks its second thread. Of those, one peer
/// address may have 64 whose request line has not come yet (over that its oldest is closed),
/// so a tenant's container idling on another tenant's relay leaves Berth its way in.
const LIMITS: Limits = Limits {
    total: 960,
    reading_per_peer: 64,
};
/// How long a client has to send its whole request line.
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
    let admission = Admission::new(LIMITS);
    if let Some(platform) = platform {
        let platform_listen =
            std::env::var("BERTH_RELAY_PLATFORM_LISTEN").unwrap_or_else(|_| "0.0.0.0:8111".into());
        let platform_listener = bind(&platform_listen);
        let (policy, admission) = (Arc::clone(&policy), Arc::clone(&admission));
        let platform = Arc::new(platform);
        std::thread::spawn(move || {
            accept(
                &platform_listener,
                &admission,
                false,
                move |stream, ticket| {
                    platform::serve(stream, ticket, &platform, &policy.token, &policy.allow);
                },
            );
        });
    }
    accept(&listener, &admission, true, move |stream, ticket| {
        serve(stream, ticket, &policy, HANDSHAKE_TIMEOUT);
    });
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

/// Serves each connection admitted by `admission` (shared by both listeners) on a thread of
/// its own; a refused one is closed unread. `line`: whether clients send a request line, and
/// are bounded per peer until then.
fn accept(
    listener: &TcpListener,
    admission: &Arc<Admission>,
    line: bool,
    handle: impl Fn(TcpStream, Ticket) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let ticket = if line {
            let Ok(peer) = stream.peer_addr() else {
                continue;
            };
            admission.admit(peer.ip(), &stream)
        } else {
            admission.admit_without_line()
        };
        let Some(ticket) = ticket else {
            continue;
        };
        let handle = Arc::clone(&handle);
        // A failed spawn drops the closure, and the ticket with it.
        let _ = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || handle(stream, ticket));
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

/// Relays one client of the published port: its request line within `handshake`, then bytes.
fn serve(client: TcpStream, mut ticket: Ticket, policy: &Policy, handshake: Duration) {
    let _ = client.set_nodelay(true);
    let line = match line::read(&client, Instant::now() + handshake) {
        Ok(line) => line,
        Err(reason) => {
            refuse(&client, reason);
            return;
        }
    };
    if !ticket.line_read() {
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
    splice_with(client, upstream, |from, to| {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || copy_half(from, to))
    });
}

/// [`splice`], the way back copied on a thread from `spawn`. Without that thread nothing
/// would come back while the client waits: both sockets are closed instead.
fn splice_with(
    client: TcpStream,
    upstream: TcpStream,
    spawn: impl FnOnce(TcpStream, TcpStream) -> std::io::Result<JoinHandle<()>>,
) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = match spawn(upstream2, client2) {
        Ok(back) => back,
        Err(e) => {
            eprintln!("swarm-relay: no thread for a connection's way back ({e}); closed it");
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
    };
    copy_half(client, upstream);
    let _ = back.join();
}

fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

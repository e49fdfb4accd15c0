//! The way from a deployment's replicas to Berth's internal API (`C8Y_BASEURL`). The relay's
//! task answers `berth-platform` on its overlay network (a network alias), listens on the
//! platform port there, and carries each connection from its own network's subnet to Berth's
//! gateway, opened by a line that names the network and carries its token: Berth lets the
//! bytes through to its internal API, which authenticates every request as for a local
//! container. A client outside the overlay (another node's container, the node's network) is
//! closed at once; without the token nobody gets past Berth's gateway.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::admission::Ticket;
use crate::request::Cidr;

/// Where the platform path leads and what it presents.
#[derive(Debug)]
pub struct Platform {
    /// Berth's gateway, `host:port`.
    pub gateway: String,
    /// The deployment network this relay serves (its token is derived from the name).
    pub network: String,
}

/// The line that opens Berth's gateway.
pub fn request_line(network: &str, token: &str) -> String {
    format!("BERTH-PLATFORM/1 {network} {token}\n")
}

/// Connects a replica's connection to Berth's gateway, or closes it.
pub fn serve(
    client: TcpStream,
    // Held until the connection ends: its place in the relay's total.
    _ticket: Ticket,
    platform: &Platform,
    token: &str,
    allow: &[Cidr],
) {
    let from_overlay = match client.peer_addr() {
        Ok(SocketAddr::V4(peer)) => allow.iter().any(|c| c.contains(*peer.ip())),
        _ => false,
    };
    if !from_overlay {
        return;
    }
    let Some(addr) = platform
        .gateway
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return;
    };
    let Ok(mut upstream) = TcpStream::connect_timeout(&addr, crate::CONNECT_TIMEOUT) else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_write_timeout(Some(Duration::from_secs(5)));
    if upstream
        .write_all(request_line(&platform.network, token).as_bytes())
        .is_err()
    {
        return;
    }
    let _ = upstream.set_write_timeout(None);
    crate::splice(client, upstream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_line_names_network_and_token() {
        assert_eq!(
            request_line("berth-abc-7-t1", "tok"),
            "BERTH-PLATFORM/1 berth-abc-7-t1 tok\n"
        );
    }
}

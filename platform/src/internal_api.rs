//! The internal API's listener: the containers' plain-HTTP way to the API and to other
//! services' `/service/…` paths (`C8Y_BASEURL`). Only Berth's containers may use it (on Swarm
//! through the gateway, which admitted only its relays), and microservice code is as untrusted
//! as any client: each container address holds at most `max_container_connections`, all of
//! them together a quarter of `max_connections` ([`crate::admission`]).

use std::any::Any;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::{Extensions, Server, Service};
use actix_web::{App, HttpServer, web};

use crate::admission::Admission;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::{StartupError, proxy, runtime, secrets};

/// File in the data directory remembering the internal API port picked for port 0.
pub const INTERNAL_PORT_FILE: &str = "internal-port";

/// Binds the internal API. With port 0 the port picked is remembered in the data directory
/// and reused after a restart: it is part of every container's C8Y_BASEURL, so a new port
/// would force every adopted container to be replaced.
pub fn bind(config: &Config) -> Result<std::net::TcpListener, StartupError> {
    bind_remembered(
        config.internal_api,
        &config.data_dir.join(INTERNAL_PORT_FILE),
    )
}

/// Binds `addr`; with port 0 the port picked first is remembered in `remembered` and taken
/// again at the next start when it is still free.
pub fn bind_remembered(
    configured: SocketAddr,
    remembered: &Path,
) -> Result<std::net::TcpListener, StartupError> {
    let mut addr = configured;
    if addr.port() == 0
        && let Some(port) = std::fs::read_to_string(remembered)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    {
        addr.set_port(port);
        if let Ok(listener) = std::net::TcpListener::bind(addr) {
            return Ok(listener);
        }
        addr.set_port(0);
    }
    let listener = std::net::TcpListener::bind(addr).map_err(|source| StartupError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    if configured.port() == 0 {
        let port = listener.local_addr().map_err(StartupError::Server)?.port();
        secrets::write_atomically(remembered, port.to_string().as_bytes(), 0o600).map_err(
            |source| StartupError::DataDir {
                path: remembered.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(listener)
}

/// What the internal server is made of.
pub struct Parts {
    pub listener: std::net::TcpListener,
    pub state: web::Data<AppState>,
    pub proxy: proxy::Proxy,
    pub platform: Arc<dyn proxy::Platform>,
    /// Whether the Swarm gateway's source addresses are container peers too.
    pub gateway_peer: bool,
    pub admission: Arc<Admission>,
    pub shutdown_grace_secs: u64,
}

/// The internal API's server on its bound listener (run it to serve).
pub fn server(parts: Parts) -> Result<Server, StartupError> {
    let Parts {
        listener,
        state,
        proxy,
        platform,
        gateway_peer,
        admission,
        shutdown_grace_secs,
    } = parts;
    let addr = listener.local_addr().map_err(StartupError::Server)?;
    let server = HttpServer::new(move || {
        let peers = state.supervisor.clone();
        App::new()
            .wrap(proxy.invalidate_on_write())
            // A container's client that goes away must not cut off what follows a store change
            // (cached credentials dropped, routes invalidated, the audit record), as on the public
            // listener.
            .wrap_fn(api::hygiene::run_writes_to_end)
            .wrap_fn(api::hygiene::request_span)
            .wrap_fn(move |req, srv| {
                let allowed = req.peer_addr().is_some_and(|peer| {
                    peers.is_container_peer(peer.ip())
                        || (gateway_peer && runtime::swarm::gateway::is_source(peer.ip()))
                });
                let response = if allowed {
                    Some(srv.call(req))
                } else {
                    tracing::warn!(target: crate::client_noise::OUTSIDER_TARGET, peer = ?req.peer_addr(), "internal API: refused a peer outside the container networks");
                    None
                };
                async move {
                    match response {
                        Some(r) => r.await,
                        None => Err(api::error::ApiError::forbidden().into()),
                    }
                }
            })
            .wrap_fn(api::hygiene::edge_hygiene)
            .configure(proxy.configure(platform.clone()))
            .configure(api::configure(state.clone(), api::Listener::Internal))
    })
    .on_connect(move |connection, extensions| admit(&admission, connection, extensions))
    .shutdown_timeout(shutdown_grace_secs)
    // As on the public app: a container that closed its side has left (lib.rs).
    .h1_allow_half_closed(false)
    .listen(listener)
    .map_err(|source| StartupError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok(server.run())
}

/// Takes a new connection's place, kept in the connection's data until it and its requests
/// end; without one the connection is shut at once, so actix reads its end and drops it
/// before parsing a byte.
fn admit(admission: &Arc<Admission>, connection: &dyn Any, extensions: &mut Extensions) {
    let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    let Ok(peer) = tcp.peer_addr() else {
        let _ = rustix::net::shutdown(tcp, rustix::net::Shutdown::Both);
        return;
    };
    match admission.admit(peer.ip()) {
        Ok(ticket) => {
            extensions.insert(ticket);
        }
        Err(refusal) => {
            let setting =
                refusal.setting("a quarter of max_connections", "max_container_connections");
            // A container can cause this at will: counted, not logged per connection.
            tracing::warn!(target: crate::client_noise::REFUSED_TARGET, %peer, "internal API: connection refused: {refusal} ({setting})");
            let _ = rustix::net::shutdown(tcp, rustix::net::Shutdown::Both);
        }
    }
}

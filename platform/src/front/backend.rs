//! The front's way to the actix-web app: HTTP/1.1 over a Unix socket in the data directory
//! (mode 0600 in a 0700 directory, so only Berth's user can connect), with the client's address
//! in [`PEER_HEADER`]. The actix side believes that header only on the socket ([`adopt`]):
//! its connections have no peer address, every TCP connection has one. WebSocket upgrades
//! are joined into a byte tunnel once the app answered `101`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::HttpMessage;
use actix_web::dev::ServiceRequest;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyperlocal::UnixConnector;

use crate::admission::{Admission, Refusal, Ticket};
use crate::edge::error::ApiError;
use crate::proxy::direct::{FrontBody, full};

use super::idle::Guarded;

/// The client's address (`ip:port`) as the front saw it.
pub const PEER_HEADER: &str = "x-berth-front-peer";
/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "front.sock";

pub use crate::edge::origin::ViaFront;

/// Makes a request that came over the socket look like the client's own: its peer address
/// and the [`ViaFront`] mark. On any other connection the header is dropped, never believed.
pub fn adopt(req: &mut ServiceRequest) {
    let sent = req
        .headers_mut()
        .remove(PEER_HEADER)
        .next()
        .and_then(|v| v.to_str().ok().and_then(|t| t.parse::<SocketAddr>().ok()));
    if req.peer_addr().is_some() {
        return;
    }
    if let Some(peer) = sent {
        req.head_mut().peer_addr = Some(peer);
        req.extensions_mut().insert(ViaFront);
    }
}

/// Binds the socket (a leftover file of an earlier run is replaced).
pub fn bind(data_dir: &Path) -> std::io::Result<(std::os::unix::net::UnixListener, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, path))
}

/// The client of the socket (a keep-alive pool, like any upstream).
pub struct Backend {
    client: Client<UnixConnector, Incoming>,
    socket: PathBuf,
    /// The requests in progress at the app, per client address: each holds a socket
    /// connection (two descriptors) until its answer is sent, and an HTTP/2 client multiplexes
    /// many on one connection, so the connection bounds alone do not bound them.
    in_progress: Arc<Admission>,
}

impl Backend {
    pub fn new(socket: PathBuf, in_progress: Arc<Admission>) -> Backend {
        Backend {
            client: Client::builder(TokioExecutor::new()).build(UnixConnector),
            socket,
            in_progress,
        }
    }

    /// A client of the same socket with a pool of its own (one per front thread), counting
    /// requests with the others.
    pub fn with_own_client(&self) -> Backend {
        Backend::new(self.socket.clone(), Arc::clone(&self.in_progress))
    }

    /// Passes `req` to the actix app and relays its answer; a WebSocket it becomes holds the
    /// connection's `ticket` until it ends.
    pub async fn pass(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        ticket: &Arc<Ticket>,
    ) -> Response<FrontBody> {
        let place = match self.in_progress.admit(peer.ip()) {
            Ok(place) => place,
            Err(refusal) => return too_busy(refusal),
        };
        let upgrade = req.headers().contains_key(http::header::UPGRADE)
            && req.version() <= http::Version::HTTP_11;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // HTTP/2 names the host in the authority only; the app reads the Host header first.
        if !parts.headers.contains_key(http::header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(http::header::HOST, host);
        }
        if !upgrade {
            // The front keeps or closes the client's connection itself; the socket's stay pooled.
            drop_connection_headers(&mut parts.headers);
            parts.headers.remove("keep-alive");
        }
        if let Ok(value) = HeaderValue::from_str(&peer.to_string()) {
            parts.headers.insert(PEER_HEADER, value);
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = hyperlocal::Uri::new(&self.socket, &path).into();
        parts.version = http::Version::HTTP_11;
        let mut response = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(%peer, "front: the app did not answer ({e})");
                return unavailable();
            }
        };
        if let Some(client_upgrade) = client_upgrade
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let app_upgrade = hyper::upgrade::on(&mut response);
            let ticket = Arc::clone(ticket);
            tokio::spawn(async move {
                let (_ticket, _place) = (ticket, place);
                let (Ok(client), Ok(app)) = tokio::join!(client_upgrade, app_upgrade) else {
                    return;
                };
                let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut app).await;
            });
        } else {
            response.headers_mut().remove(http::header::CONNECTION);
            response.headers_mut().remove("keep-alive");
            // The place is the answer's until its body is sent.
            return response.map(|body| Guarded::new(boxed(body), place).boxed_unsync());
        }
        response.map(boxed)
    }
}

fn boxed(body: Incoming) -> FrontBody {
    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync()
}

/// The answer to a request over a bound of [`Backend::in_progress`]: 429 when it is the
/// client's own, 503 when the whole app's.
fn too_busy(refusal: Refusal) -> Response<FrontBody> {
    let refused = match refusal {
        Refusal::Client { max } => ApiError::too_many_requests(
            "general",
            &format!(
                "This client has {max} requests in progress, as many as one address may (max_client_connections); retry once some are answered"
            ),
            1,
        ),
        Refusal::Full { max } => ApiError::unavailable(
            "general",
            &format!("Berth has {max} requests in progress, as many as it takes (max_connections); retry shortly"),
            "the app's requests in progress are at max_connections",
        )
        .with_retry_after(1),
    };
    refused.to_http().map(|body| full(body.into()))
}

/// The answer when the app cannot be reached (it is shutting down, or failed).
fn unavailable() -> Response<FrontBody> {
    ApiError::unavailable(
        "general",
        "Berth is not answering; retry shortly",
        "the app behind the front does not answer",
    )
    .to_http()
    .map(|body| full(body.into()))
}

/// Drops `Connection` and the headers it names (RFC 9110 §7.6.1: they were for this hop).
/// Without the `Connection` header the app could not tell them from end-to-end headers, and its
/// proxy would pass them to a service.
fn drop_connection_headers(headers: &mut http::HeaderMap) {
    if !headers.contains_key(http::header::CONNECTION) {
        return;
    }
    let values: Vec<HeaderValue> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    headers.remove(http::header::CONNECTION);
    for value in &values {
        let Ok(text) = value.to_str() else { continue };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_connection_names_stay_with_the_front() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Hop"),
            ("connection", "x-other , ,bad name"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        drop_connection_headers(&mut headers);
        let left: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }
}

//! The public HTTPS listener: TLS (rustls through tokio-rustls) and HTTP/1.1 + HTTP/2 on
//! hyper's server, on the multi-threaded runtime. A `/service/…` request whose caller's
//! credentials are cached is forwarded by the proxy's direct path ([`proxy::direct`]); every
//! other request (the API, the console, first use of a credential, WebSocket upgrades,
//! refusals) is passed to the actix-web app over a Unix socket ([`backend`]), with the
//! client's address in a header that only the front can set.
//!
//! Why: the proxy is the hot path, and parsing and encoding every request twice (actix-http
//! in, hyper out) cost more than nginx spends in all; and actix-http's HTTP/2 server lost
//! answers to browsers' POSTs (see ARCHITECTURE.md), which no longer reach it.

pub mod backend;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::request_head::{MAX_HEADER_BYTES, MAX_URI_BYTES};
use crate::config::Cidr;
use crate::proxy::direct::{Caller, Direct, FrontBody};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client must send a request head within this long (hyper's default is 30 s).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the front needs to answer a request.
pub struct Front {
    pub direct: Direct,
    pub backend: backend::Backend,
    /// Peers whose forwarding headers count (`trusted_proxies`): their requests take the
    /// actix path, which reads those headers.
    pub trusted: Vec<Cidr>,
}

impl Front {
    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<FrontBody> {
        // Only the front says who the client is.
        req.headers_mut().remove(backend::PEER_HEADER);
        if let Some(host) = self.direct_host(&req, peer) {
            let caller = Caller {
                ip: peer.ip(),
                host: &host,
            };
            match self.direct.serve(req, caller).await {
                Ok(response) => return response,
                Err(given_back) => req = given_back,
            }
        }
        self.backend.pass(req, peer).await
    }

    /// The host a request addressed when the direct path may take it: a `/service/…` request,
    /// not an upgrade, from a peer that is not a trusted proxy, within the API's head limits.
    fn direct_host(&self, req: &Request<Incoming>, peer: SocketAddr) -> Option<String> {
        if !req.uri().path().starts_with(crate::proxy::SERVICE_PREFIX)
            || req.method() == http::Method::CONNECT
            || req.headers().contains_key(http::header::UPGRADE)
            || self.trusted.iter().any(|c| c.contains(peer.ip()))
        {
            return None;
        }
        let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if uri_len > MAX_URI_BYTES || header_bytes > MAX_HEADER_BYTES {
            return None;
        }
        // As `api::origin` reads it for a direct client: the Host header, else the authority.
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
        crate::api::origin::valid_host(host).then(|| host.to_owned())
    }
}

/// Accepts connections on `listener` until `stop` says so (or SIGTERM/SIGINT arrives), then
/// lets the connections finish their requests for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    front: Arc<Front>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("front: cannot watch SIGTERM ({e})");
                None
            }
        };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(()) = async { match terminate.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            } } => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!("front: accept failed ({e})");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let front = Arc::clone(&front);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // Failed handshakes are the client's business (scanners, wrong trust).
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req| {
                let front = Arc::clone(&front);
                async move { Ok::<_, Infallible>(front.handle(req, peer).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("front: connections still open after {grace:?}; closing them");
    }
}

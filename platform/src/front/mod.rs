//! The public HTTPS listener: TLS (rustls through tokio-rustls) and HTTP/1.1 + HTTP/2 on
//! hyper's server, each connection served by one of a few front threads (one per CPU), each
//! with a single-threaded runtime of its own. A `/service/…` request whose caller's
//! credentials are cached is forwarded by the proxy's direct path ([`proxy::direct`]); every
//! other request (the API, the console, first use of a credential, WebSocket upgrades,
//! refusals) is passed to the actix-web app over a Unix socket ([`backend`]), with the
//! client's address in a header that only the front can set.
//!
//! Why: the proxy is the hot path, and parsing and encoding every request twice (actix-http
//! in, hyper out) cost more than nginx spends in all; and actix-http's HTTP/2 server lost
//! answers to browsers' POSTs (see ARCHITECTURE.md), which no longer reach it.
//!
//! Why threads of their own: on the multi-threaded runtime a proxied request woke three tasks
//! (the client's connection, the upstream connection, hyper-util's pool return) that the
//! scheduler spread over both threads, and every hop between threads cost a futex wake-up;
//! the upstream pool was one mutex for every thread. A front thread keeps a connection, its
//! upstream connections and their pool to itself, as nginx's workers do.

pub mod backend;
mod idle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, Ticket};

use crate::api::request_head::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};
use crate::edge::origin::Cidr;
use crate::proxy::direct::{Caller, Direct, FrontBody, full};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client must send a request head within this long (hyper's default is 30 s).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams one HTTP/2 connection may have open at once: nginx's `http2_max_concurrent_streams`
/// (hyper's default is 200). Each costs buffers until answered or refused, and one client
/// rarely needs more: browsers open about 100.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// An idle connection told to close gets this long to do it: HTTP/2's graceful close waits
/// for the client to answer a PING, which a client holding connections on purpose never does.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the front needs to answer a request.
pub struct Front {
    pub direct: Direct,
    pub backend: backend::Backend,
    /// Peers whose forwarding headers count (`trusted_proxies`): their requests take the
    /// actix path, which reads those headers.
    pub trusted: Vec<Cidr>,
    /// A connection with no request in progress this long is closed ([`idle`]).
    pub idle_timeout: Duration,
}

impl Front {
    /// A copy for one front thread: the same state, with upstream and app clients of its own.
    fn for_thread(&self) -> Front {
        Front {
            direct: self.direct.with_own_client(),
            backend: self.backend.with_own_client(),
            trusted: self.trusted.clone(),
            idle_timeout: self.idle_timeout,
        }
    }

    /// `ticket` is the connection's place, held by a WebSocket it becomes until that ends.
    async fn handle(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        ticket: &Arc<Ticket>,
    ) -> Response<FrontBody> {
        // Only the front says who the client is.
        req.headers_mut().remove(backend::PEER_HEADER);
        // Refused here with a body: the app's HTTP layer would refuse more than 96 (with the
        // front's own headers added) without one. Counted as the app sees them: HTTP/2's
        // authority becomes a `Host` field.
        let fields =
            req.headers().len() + usize::from(!req.headers().contains_key(http::header::HOST));
        if fields > MAX_HEADERS {
            let refused = crate::api::request_head::too_many_headers(fields);
            return refused.to_http().map(|body| full(body.into()));
        }
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
        self.backend.pass(req, peer, ticket).await
    }

    /// The host a request addressed when the direct path may take it: a `/service/…` request,
    /// not an upgrade, from a peer that is not a trusted proxy, within the API's head limits,
    /// and no browser's write for another site's page.
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
        if !crate::api::origin::valid_host(host) {
            return None;
        }
        // A browser's write for another site's page goes to the app, which refuses it
        // (`edge_hygiene`): the one place that answers it.
        let ours = crate::edge::origin::Origin {
            https: true,
            host: host.to_owned(),
            client: Some(peer.ip()),
            via_trusted_proxy: false,
        };
        let sent = crate::edge::cross_site::Sent {
            method: req.method().as_str(),
            upgrade: false,
            origin: req
                .headers()
                .get(http::header::ORIGIN)
                .map(|v| v.as_bytes()),
            fetch_site: req
                .headers()
                .get(crate::edge::cross_site::SEC_FETCH_SITE)
                .map(|v| v.as_bytes()),
        };
        crate::edge::cross_site::check(&sent, &ours).ok()?;
        Some(ours.host)
    }
}

/// Accepts connections on `listener` (as many as `admission` takes) and hands them to the
/// front threads in turn, until `stop` says so (or SIGTERM/SIGINT arrives); then lets the
/// connections finish their requests for at most `grace`, and stops the threads.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    front: Arc<Front>,
    admission: Arc<Admission>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    // Tells every connection to finish its requests and close.
    let (closing, closing_seen) = watch::channel(false);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut lanes = Vec::with_capacity(threads);
    for index in 0..threads {
        match Lane::start(index, front.for_thread(), acceptor.clone()) {
            Ok(lane) => lanes.push(lane),
            Err(e) => tracing::warn!("front: cannot start front thread {index} ({e})"),
        }
    }
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("front: cannot watch SIGTERM ({e})");
                None
            }
        };
    let mut next = 0usize;
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
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                // Any client can cause this at will: counted, not logged per connection.
                tracing::warn!(target: crate::client_noise::REFUSED_TARGET, %peer, "connection refused: {refusal} ({})", refusal.setting("max_connections", "max_client_connections"));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let accepted = Accepted {
            tcp,
            peer,
            ticket,
            closing: closing_seen.clone(),
        };
        let handed = match lanes.get(next % lanes.len().max(1)) {
            Some(lane) => lane.hand(accepted),
            None => Err(accepted),
        };
        next = next.wrapping_add(1);
        if let Err(accepted) = handed {
            // No front thread (it could not start, or died): serve it here.
            tokio::spawn(connection(accepted, acceptor.clone(), Arc::clone(&front)));
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let deadline = tokio::time::Instant::now() + grace;
    while admission.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if admission.open() > 0 {
        tracing::warn!("front: connections still open after {grace:?}; closing them");
    }
    // Closing the lanes ends the threads; connections still open are dropped with their runtime.
    drop(lanes);
}

/// An accepted connection on its way to a front thread (deregistered from the accepting
/// runtime when handed over, registered again on the thread's).
struct Accepted {
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    closing: watch::Receiver<bool>,
}

/// What crosses to a front thread: the socket without its registration.
struct Handed {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    closing: watch::Receiver<bool>,
}

/// The way to one front thread.
struct Lane {
    accepted: mpsc::UnboundedSender<Handed>,
}

impl Lane {
    /// Starts thread `index`, serving the connections handed to it with `front`.
    fn start(index: usize, front: Front, acceptor: TlsAcceptor) -> std::io::Result<Lane> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (accepted, mut incoming) = mpsc::unbounded_channel::<Handed>();
        let front = Arc::new(front);
        std::thread::Builder::new()
            .name(format!("berth-front-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(handed) = incoming.recv().await {
                        let Handed {
                            tcp,
                            peer,
                            ticket,
                            closing,
                        } = handed;
                        match TcpStream::from_std(tcp) {
                            Ok(tcp) => {
                                let accepted = Accepted {
                                    tcp,
                                    peer,
                                    ticket,
                                    closing,
                                };
                                tokio::spawn(connection(
                                    accepted,
                                    acceptor.clone(),
                                    Arc::clone(&front),
                                ));
                            }
                            Err(e) => {
                                tracing::warn!(%peer, "front: cannot register a connection ({e})")
                            }
                        }
                    }
                });
            })?;
        Ok(Lane { accepted })
    }

    /// Hands a connection to the thread; gives it back if the thread is gone.
    fn hand(&self, accepted: Accepted) -> Result<(), Accepted> {
        if self.accepted.is_closed() {
            return Err(accepted);
        }
        let Accepted {
            tcp,
            peer,
            ticket,
            closing,
        } = accepted;
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%peer, "front: cannot hand over a connection ({e})");
                return Ok(());
            }
        };
        // Only fails when the thread ended since the check above; the connection is then dropped.
        let _ = self.accepted.send(Handed {
            tcp,
            peer,
            ticket,
            closing,
        });
        Ok(())
    }
}

/// Serves one connection: TLS handshake, then HTTP/1.1 or HTTP/2 until either side ends it,
/// it is idle for the idle timeout, or the server stops; its ticket frees its place at the end.
async fn connection(accepted: Accepted, acceptor: TlsAcceptor, front: Arc<Front>) {
    let Accepted {
        tcp,
        peer,
        ticket,
        mut closing,
    } = accepted;
    // Held here, and by a WebSocket this connection becomes (the upgraded stream outlives it).
    let ticket = Arc::new(ticket);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        // Failed handshakes are the client's business (scanners, wrong trust).
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let activity = idle::Activity::new();
    let idle_timeout = front.idle_timeout;
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let (front, ticket) = (Arc::clone(&front), Arc::clone(&ticket));
            let busy = activity.begin();
            async move {
                let response = front.handle(req, peer, &ticket).await;
                // In progress until its body is sent, not only until its head is ready.
                Ok::<_, Infallible>(response.map(|body| idle::Guarded::new(body, busy)))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    let mut connection = std::pin::pin!(connection);
    let (mut shutting, mut give_up) = (false, None);
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = closing.wait_for(|closing| *closing), if !shutting => {}
            () = activity.idle_for(idle_timeout), if !shutting => {
                give_up = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
            }
            () = sleep_until_some(give_up) => {
                tracing::debug!(%peer, "closing an idle connection that did not finish its shutdown");
                return;
            }
        }
        // Finish what is in progress, take nothing new.
        connection.as_mut().graceful_shutdown();
        shutting = true;
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

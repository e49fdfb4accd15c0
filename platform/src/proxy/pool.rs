//! The upstream connections of one thread: HTTP/1.1 keep-alive connections per replica
//! address, opened with hyper's connection API, each driven by a task on the thread that
//! opened it, and kept in a pool of that thread.
//!
//! Why not hyper-util's pooled client: its pool is one mutex for every thread, and it spawns a
//! task per request to put the connection back once it is idle. Here a connection goes back
//! when its response body has been read to the end (see [`Lease`]), on the thread that used
//! it, with no lock and no task; a connection whose response was not read to the end is
//! dropped, which closes it (it cannot carry another request).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::request_body::RequestBody;

type Sender = http1::SendRequest<RequestBody>;

/// Idle connections are not reused after this long: under the 5 s after which actix-web,
/// Node and uvicorn close an idle keep-alive connection, so a request (a POST above all, which
/// is never resent) rarely meets a connection the replica is closing. The cost is a new
/// connection to a replica called less than every 4 s.
const KEEP_ALIVE: Duration = Duration::from_secs(4);
/// At most this many idle connections per address and thread are kept.
const MAX_IDLE: usize = 1024;
/// The most of a response a connection's read buffer holds at once.
const UPSTREAM_BUFFER: usize = 64 * 1024;
/// How long a pooled connection may take to be ready for the next request.
const READY_WAIT: Duration = Duration::from_millis(100);
/// Every this many checkouts the idle connections of every address are pruned (the checkout
/// itself prunes only its own address).
const SWEEP_EVERY: u32 = 4096;

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.sender.is_closed() || now.saturating_duration_since(self.since) > KEEP_ALIVE
    }
}

#[derive(Default)]
struct Pool {
    idle: HashMap<SocketAddr, VecDeque<Idle>>,
    checkouts: u32,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: nothing was sent.
    Connect(String),
    /// A pooled connection closed after the request was written to it and before any answer:
    /// the upstream's keep-alive timer and this request crossed (actix-web, Node and uvicorn
    /// close idle connections after 5 s). Nothing was answered, so an idempotent request may
    /// go again on a new connection, as Go's `http.Transport` does.
    Stale(hyper::Error),
    /// The connection failed after the request started (or a new connection refused it).
    Http(hyper::Error),
}

/// A connection lent to one request.
#[derive(Debug)]
pub struct Lease {
    sender: Sender,
    addr: SocketAddr,
}

impl Lease {
    /// Puts the connection back into this thread's pool; call only once its response has been
    /// read to the end.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let idle = Idle {
            sender: self.sender,
            since: Instant::now(),
        };
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let list = pool.idle.entry(self.addr).or_default();
            if list.len() < MAX_IDLE {
                list.push_back(idle);
            }
        });
    }
}

/// The most recently used open idle connection to `addr`, if any.
fn checkout(addr: SocketAddr) -> Option<Sender> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = Instant::now();
        pool.checkouts = pool.checkouts.wrapping_add(1);
        if pool.checkouts.is_multiple_of(SWEEP_EVERY) {
            pool.idle.retain(|_, list| {
                list.retain(|idle| !idle.expired(now));
                !list.is_empty()
            });
        }
        let list = pool.idle.get_mut(&addr)?;
        // The oldest are at the front.
        while list.front().is_some_and(|idle| idle.expired(now)) {
            list.pop_front();
        }
        while let Some(idle) = list.pop_back() {
            if !idle.sender.is_closed() {
                return Some(idle.sender);
            }
        }
        None
    })
}

/// Opens a connection to `addr` and starts its task on this thread.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, SendError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(SendError::Connect(format!("tcp connect error: {e}"))),
        Err(_) => {
            return Err(SendError::Connect(format!(
                "tcp connect error: no connection within {timeout:?}"
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        // A response head, or a body chunk, held per request: 64 KiB, not hyper's ~400 KiB,
        // as thousands of requests may be in flight (nginx's `proxy_buffer_size` is 4–8 KiB).
        .max_buf_size(UPSTREAM_BUFFER)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%addr, "upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

/// The Host header hyper-util's client would send: the address, without the port when it is 80.
fn host(addr: SocketAddr) -> Option<HeaderValue> {
    let text = match addr {
        SocketAddr::V4(a) if a.port() == 80 => a.ip().to_string(),
        SocketAddr::V6(a) if a.port() == 80 => format!("[{}]", a.ip()),
        _ => addr.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

/// Sends `request` (origin-form URI) to `addr` on a pooled connection, or a new one (opened
/// within `connect_timeout`; always a new one when `fresh`). A pooled connection that turns
/// out closed before the request was written to it is passed over: the upstream closing an
/// idle connection is no failure.
pub async fn send(
    addr: SocketAddr,
    mut request: Request<RequestBody>,
    connect_timeout: Duration,
    fresh: bool,
) -> Result<(Response<Incoming>, Lease), SendError> {
    if let Some(host) = host(addr) {
        request.headers_mut().insert(http::header::HOST, host);
    }
    loop {
        let pooled = if fresh { None } else { checkout(addr) };
        let (mut sender, reused) = match pooled {
            Some(sender) => (sender, true),
            None => (connect(addr, connect_timeout).await?, false),
        };
        // A pooled connection may still be finishing its last exchange: at once, normally; a
        // request body its replica answered early without reading may never finish, so it
        // gets a moment and is then left to that exchange (it closes when done).
        // Checked first so the common case (ready at once) reads no clock and arms no timer.
        if reused && !sender.is_ready() {
            match tokio::time::timeout(READY_WAIT, sender.ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => continue,
            }
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, Lease { sender, addr })),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => request = unsent,
                None if reused && e.error().is_incomplete_message() => {
                    return Err(SendError::Stale(e.into_error()));
                }
                _ => return Err(SendError::Http(e.into_error())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_header_names_the_address_without_the_default_port() {
        let host = |addr: &str| super::host(addr.parse().unwrap()).unwrap();
        assert_eq!(host("10.0.0.2:80"), "10.0.0.2");
        assert_eq!(host("10.0.0.2:8080"), "10.0.0.2:8080");
        assert_eq!(host("[fd00::2]:80"), "[fd00::2]");
        assert_eq!(host("[fd00::2]:8080"), "[fd00::2]:8080");
    }
}

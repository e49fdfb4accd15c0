//! Forwarding one HTTP request to a ready replica with the worker's awc client (keep-alive pool
//! per upstream address), streaming the body both ways, and trying the next replica when the
//! failed attempt is safe to repeat (nothing sent yet, or an idempotent method with no body
//! sent yet). Passive health: a replica that refuses, resets or does not answer within the
//! response-header timeout is ejected from routing for the ejection period.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use awc::error::{ConnectError, SendRequestError};
use futures_util::Stream;

use super::error::{Failure, ProxyError};
use super::headers::{self, Forwarded};
use super::resolve::Route;
use super::trace::RequestTrace;
use crate::routing::{RoutingTable, Upstream};

/// Most connections one worker keeps open to upstreams at once.
const POOL_LIMIT: usize = 1024;
/// Idle upstream connections are closed after this long.
const POOL_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The proxy's timeouts and passive health (see `config.rs` for the defaults and why).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Until the response head: 504 after it.
    pub timeout: Duration,
    /// Until a TCP connection to a container is open.
    pub connect_timeout: Duration,
    /// How long a replica that failed a request stays out of routing.
    pub eject_period: Duration,
}

/// The upstream client of one worker (awc clients are not `Send`).
pub fn client(settings: Settings) -> awc::Client {
    let connector = awc::Connector::new()
        .timeout(settings.connect_timeout.min(settings.timeout))
        .limit(POOL_LIMIT)
        .conn_keep_alive(POOL_KEEP_ALIVE);
    awc::Client::builder()
        .connector(connector)
        .timeout(settings.timeout)
        .disable_redirects()
        .no_default_headers()
        .finish()
}

/// How the client framed its request body.
#[derive(Debug, Clone, Copy)]
enum BodyKind {
    None,
    Sized(u64),
    Stream,
}

fn body_kind(req: &HttpRequest) -> BodyKind {
    let headers = req.headers();
    if let Some(length) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
    {
        BodyKind::Sized(length)
    } else if headers.contains_key(TRANSFER_ENCODING) || req.version() == Version::HTTP_2 {
        BodyKind::Stream
    } else {
        BodyKind::None
    }
}

/// The client's body, shared between attempts: an attempt that never polled it leaves it
/// whole for the next replica.
struct BodyTap {
    payload: Rc<RefCell<web::Payload>>,
    started: Rc<Cell<bool>>,
}

impl Stream for BodyTap {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.started.set(true);
        let mut payload = self.payload.borrow_mut();
        Pin::new(&mut *payload).poll_next(cx)
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// One request to be forwarded.
pub struct Forward<'a> {
    pub req: &'a HttpRequest,
    pub route: &'a Route,
    pub upstreams: &'a [Upstream],
    pub path_and_query: &'a str,
    pub forwarded: Forwarded<'a>,
    pub settings: Settings,
    pub routing: &'a RoutingTable,
}

/// Sends the request to the next replica in round-robin order, moving on to the others while
/// a failure is safe to retry.
pub async fn send(
    client: &awc::Client,
    forward: Forward<'_>,
    payload: web::Payload,
    trace: &mut RequestTrace,
) -> Result<HttpResponse, ProxyError> {
    let req = forward.req;
    let kind = body_kind(req);
    let payload = Rc::new(RefCell::new(payload));
    let started = Rc::new(Cell::new(false));
    let count = forward.upstreams.len();
    let first = forward
        .route
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut attempt = 0;
    loop {
        let upstream = &forward.upstreams[(first + attempt) % count];
        trace.upstream(&upstream.instance);
        let uri = format!("http://{}{}", upstream.addr, forward.path_and_query);
        let mut request = client.request(req.method().clone(), uri);
        headers::copy_request(req.headers(), request.headers_mut());
        headers::add_forwarded(request.headers_mut(), &forward.forwarded);
        let tap = BodyTap {
            payload: Rc::clone(&payload),
            started: Rc::clone(&started),
        };
        let sent = match kind {
            BodyKind::None => request.send().await,
            BodyKind::Sized(length) => request.send_body(SizedStream::new(length, tap)).await,
            BodyKind::Stream => request.send_stream(tap).await,
        };
        match sent {
            Ok(response) => return Ok(into_response(response, req.method())),
            Err(e) => {
                let error = classify(
                    e,
                    upstream,
                    forward.settings.timeout,
                    &started,
                    req.method(),
                );
                if let Some((instance, reason)) = error.ejects() {
                    forward
                        .routing
                        .eject(instance, reason, forward.settings.eject_period);
                }
                forward.route.metrics.upstream_error(error.kind());
                attempt += 1;
                if error.retry_safe && attempt < count {
                    trace.retrying(&error);
                    continue;
                }
                return Err(error);
            }
        }
    }
}

fn classify(
    error: SendRequestError,
    upstream: &Upstream,
    timeout: Duration,
    started: &Cell<bool>,
    method: &Method,
) -> ProxyError {
    let instance = upstream.instance.clone();
    match error {
        // Nothing was sent: always safe to try elsewhere.
        SendRequestError::Connect(e) => {
            let detail = match e {
                ConnectError::Io(io) => io.to_string(),
                other => other.to_string(),
            };
            ProxyError::new(Failure::UpstreamRefused { instance, detail }).retry_safe(true)
        }
        // A hung replica: an idempotent request whose body was not sent yet may go elsewhere
        // (nginx `proxy_next_upstream timeout`, never for POST).
        SendRequestError::Timeout => ProxyError::new(Failure::UpstreamTimeout {
            instance,
            after: timeout,
        })
        .retry_safe(is_idempotent(method) && !started.get()),
        SendRequestError::Body(e) => ProxyError::new(Failure::BadRequest {
            detail: format!("The request body could not be read: {e}"),
        }),
        other => ProxyError::new(Failure::UpstreamBroken {
            instance,
            detail: other.to_string(),
        })
        .retry_safe(is_idempotent(method) && !started.get()),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The client response: status and end-to-end headers of the upstream's, body streamed
/// (sized when the upstream said how long it is, chunked otherwise).
fn into_response<S>(response: awc::ClientResponse<S>, method: &Method) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let status = response.status();
    let length = content_length(response.headers());
    let mut headers = HeaderMap::with_capacity(response.headers().len());
    headers::copy_response(response.headers(), &mut headers);
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = match length {
        _ if no_body => HttpResponse::new(status),
        None if method == Method::HEAD => HttpResponse::new(status),
        Some(length) => HttpResponse::build(status).body(SizedStream::new(length, response)),
        None => HttpResponse::build(status).streaming(response),
    };
    *out.headers_mut() = headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_whether_another_replica_may_be_tried_and_eject_the_replica() {
        let upstream = Upstream {
            instance: "i-1".into(),
            addr: std::net::SocketAddr::from(([172, 30, 0, 2], 80)),
        };
        let reset =
            || SendRequestError::Send(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        // (error, method, body started, kind, retry elsewhere, ejects)
        let cases: Vec<(SendRequestError, Method, bool, &str, bool, bool)> = vec![
            (
                SendRequestError::Connect(ConnectError::Timeout),
                Method::POST,
                true,
                "refused",
                true,
                true,
            ),
            (
                SendRequestError::Timeout,
                Method::GET,
                false,
                "timeout",
                true,
                true,
            ),
            (
                SendRequestError::Timeout,
                Method::PUT,
                true,
                "timeout",
                false,
                true,
            ),
            (
                SendRequestError::Timeout,
                Method::POST,
                false,
                "timeout",
                false,
                true,
            ),
            (reset(), Method::GET, false, "broken", true, true),
            (reset(), Method::POST, false, "broken", false, true),
            (
                SendRequestError::Body(Box::new(PayloadError::Incomplete(None))),
                Method::PUT,
                true,
                "bad_request",
                false,
                false,
            ),
        ];
        for (error, method, body_started, kind, retry, ejects) in cases {
            let started = Cell::new(body_started);
            let e = classify(error, &upstream, Duration::from_secs(2), &started, &method);
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.retry_safe, retry, "{method} {e}");
            assert_eq!(e.ejects().is_some(), ejects, "{e}");
        }
    }
}

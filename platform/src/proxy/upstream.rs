//! Forwarding one HTTP request to a ready replica with the worker's hyper client (keep-alive
//! pool per upstream address), streaming the body both ways, and trying the next replica when the
//! failed attempt is safe to repeat (nothing sent yet, or an idempotent method with no body
//! sent yet). Passive health: a replica that refuses, resets or does not answer within the
//! response-header timeout is ejected from routing for the ejection period.
//!
//! hyper reads every legal response framing (Content-Length, chunked with trailers, read until
//! the upstream closes, HTTP/1.0); an upstream that breaks off mid-body aborts the client's
//! response (see [`body::ResponseBody`](super::body::ResponseBody)).

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::body::SizedStream;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::web;
use futures_util::StreamExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use super::body::{Pipe, RequestBody, ResponseBody};
use super::error::{Failure, ProxyError};
use super::headers::{self, Forwarded};
use super::resolve::Route;
use super::trace::RequestTrace;
use crate::routing::{RoutingTable, Upstream};

/// Most requests one worker has in flight to upstreams at once (each holds a connection);
/// more wait for a slot.
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

/// The upstream client of one worker: its own pool, so connections stay on the worker's thread.
#[derive(Debug, Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, RequestBody>,
    slots: Arc<Semaphore>,
}

pub fn client(settings: Settings) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout.min(settings.timeout)));
    connector.set_nodelay(true);
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_KEEP_ALIVE)
        .pool_max_idle_per_host(POOL_LIMIT)
        .build(connector);
    Client {
        http,
        slots: Arc::new(Semaphore::new(POOL_LIMIT)),
    }
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
    if let Some(length) = content_length(headers) {
        BodyKind::Sized(length)
    } else if headers.contains_key(TRANSFER_ENCODING) || req.version() == Version::HTTP_2 {
        BodyKind::Stream
    } else {
        BodyKind::None
    }
}

/// Methods whose requests carry no body in practice (a body is still relayed when one comes).
fn usually_bodiless(req: &HttpRequest) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    )
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
    pub route: &'a Arc<Route>,
    pub upstreams: &'a [Upstream],
    pub path_and_query: &'a str,
    pub forwarded: Forwarded<'a>,
    pub settings: Settings,
    pub routing: &'a RoutingTable,
}

/// Why an attempt got no response head.
#[derive(Debug)]
enum SendFailure {
    /// No connection: nothing was sent.
    Connect(String),
    /// No response head within the timeout.
    Timeout,
    /// The client's own body failed.
    ClientBody(String),
    /// The connection failed after the request started.
    Broken(String),
}

/// The error and its cause chain in one line (hyper's top-level messages are terse).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends the request to the next replica in round-robin order, moving on to the others while
/// a failure is safe to retry.
pub async fn send(
    client: &Client,
    forward: Forward<'_>,
    payload: web::Payload,
    trace: &mut RequestTrace,
) -> Result<HttpResponse, ProxyError> {
    let req = forward.req;
    let mut kind = body_kind(req);
    let mut payload = payload;
    let mut first_chunk = None;
    if matches!(kind, BodyKind::Stream) && usually_bodiless(req) {
        // An HTTP/2 GET says whether a body follows only in its frames: its first poll answers
        // at once when the HEADERS frame ended the stream, and then no pipe (a task per request)
        // and no chunked upstream body are needed.
        first_chunk = payload.next().await;
        if first_chunk.is_none() {
            kind = BodyKind::None;
        }
    }
    let pipe = match kind {
        BodyKind::None => None,
        BodyKind::Sized(_) | BodyKind::Stream => Some(Pipe::start(first_chunk, payload)),
    };
    let method = http::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|_| {
        ProxyError::new(Failure::BadRequest {
            detail: format!("The method {} cannot be forwarded.", req.method()),
        })
    })?;
    // The end-to-end headers once, converted for each attempt.
    let mut end_to_end = HeaderMap::with_capacity(req.headers().len() + 6);
    headers::copy_request(req.headers(), &mut end_to_end);
    headers::add_forwarded(&mut end_to_end, &forward.forwarded);
    let count = forward.upstreams.len();
    let first = forward
        .route
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut attempt = 0;
    loop {
        let upstream = &forward.upstreams[(first + attempt) % count];
        trace.upstream(&upstream.instance);
        let uri = http::Uri::try_from(format!(
            "http://{}{}",
            upstream.addr, forward.path_and_query
        ))
        .map_err(|e| {
            ProxyError::new(Failure::BadRequest {
                detail: format!("The request path cannot be forwarded: {e}."),
            })
        })?;
        let (body, length) = match (kind, &pipe) {
            (BodyKind::Sized(length), Some(pipe)) => {
                (RequestBody::from_pipe(pipe, Some(length)), Some(length))
            }
            (_, Some(pipe)) => (RequestBody::from_pipe(pipe, None), None),
            (_, None) => (RequestBody::empty(), None),
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        headers::to_upstream(&end_to_end, length, request.headers_mut());
        // Never closed, so acquiring only waits.
        let permit = Arc::clone(&client.slots)
            .acquire_owned()
            .await
            .map_err(|e| {
                ProxyError::new(Failure::Internal {
                    detail: format!("upstream slots: {e}"),
                })
            })?;
        let failure = match tokio::time::timeout(
            forward.settings.timeout,
            client.http.request(request),
        )
        .await
        {
            Ok(Ok(response)) => {
                let (parts, incoming) = response.into_parts();
                let status =
                    StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let body = ResponseBody::new(
                    incoming,
                    Arc::clone(forward.route),
                    upstream.instance.clone(),
                    trace.request_id.clone(),
                    permit,
                );
                return Ok(into_response(status, &parts.headers, body, req.method()));
            }
            Ok(Err(e)) if e.is_connect() => SendFailure::Connect(describe(&e)),
            Ok(Err(e)) if pipe.as_ref().is_some_and(|p| p.failed()) => {
                SendFailure::ClientBody(describe(&e))
            }
            Ok(Err(e)) => SendFailure::Broken(describe(&e)),
            Err(_) => SendFailure::Timeout,
        };
        let started = pipe.as_ref().is_some_and(|p| p.started());
        let error = classify(
            failure,
            upstream,
            forward.settings.timeout,
            started,
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

fn classify(
    failure: SendFailure,
    upstream: &Upstream,
    timeout: Duration,
    body_started: bool,
    method: &Method,
) -> ProxyError {
    let instance = upstream.instance.clone();
    match failure {
        // Nothing was sent: always safe to try elsewhere.
        SendFailure::Connect(detail) => {
            ProxyError::new(Failure::UpstreamRefused { instance, detail }).retry_safe(true)
        }
        // A hung replica: an idempotent request whose body was not sent yet may go elsewhere
        // (nginx `proxy_next_upstream timeout`, never for POST).
        SendFailure::Timeout => ProxyError::new(Failure::UpstreamTimeout {
            instance,
            after: timeout,
        })
        .retry_safe(is_idempotent(method) && !body_started),
        SendFailure::ClientBody(e) => ProxyError::new(Failure::BadRequest {
            detail: format!("The request body could not be read: {e}"),
        }),
        SendFailure::Broken(detail) => {
            ProxyError::new(Failure::UpstreamBroken { instance, detail })
                .retry_safe(is_idempotent(method) && !body_started)
        }
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
fn into_response(
    status: StatusCode,
    upstream_headers: &http::HeaderMap,
    body: ResponseBody,
    method: &Method,
) -> HttpResponse {
    let length = upstream_headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let mut headers = HeaderMap::with_capacity(upstream_headers.len());
    headers::copy_upstream_response(upstream_headers, &mut headers);
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = match length {
        _ if no_body => HttpResponse::new(status),
        None if method == Method::HEAD => HttpResponse::new(status),
        Some(length) => HttpResponse::build(status).body(SizedStream::new(length, body)),
        None => HttpResponse::build(status).streaming(body),
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
        let refused = || SendFailure::Connect("connection refused".into());
        let reset = || SendFailure::Broken("connection reset by peer".into());
        // (failure, method, body started, kind, retry elsewhere, ejects)
        let cases: Vec<(SendFailure, Method, bool, &str, bool, bool)> = vec![
            (refused(), Method::POST, true, "refused", true, true),
            (
                SendFailure::Timeout,
                Method::GET,
                false,
                "timeout",
                true,
                true,
            ),
            (
                SendFailure::Timeout,
                Method::PUT,
                true,
                "timeout",
                false,
                true,
            ),
            (
                SendFailure::Timeout,
                Method::POST,
                false,
                "timeout",
                false,
                true,
            ),
            (reset(), Method::GET, false, "broken", true, true),
            (reset(), Method::POST, false, "broken", false, true),
            (
                SendFailure::ClientBody("incomplete".into()),
                Method::PUT,
                true,
                "bad_request",
                false,
                false,
            ),
        ];
        for (failure, method, body_started, kind, retry, ejects) in cases {
            let e = classify(
                failure,
                &upstream,
                Duration::from_secs(2),
                body_started,
                &method,
            );
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.retry_safe, retry, "{method} {e}");
            assert_eq!(e.ejects().is_some(), ejects, "{e}");
        }
    }
}

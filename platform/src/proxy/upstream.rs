//! Forwarding one HTTP request to a ready replica over the thread's keep-alive connections
//! ([`pool`](super::pool)), streaming the body both ways, and trying the next replica when the
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

use super::body::ResponseBody;
use super::error::{Failure, ProxyError};
use super::headers::{self, Forwarded};
use super::pool::{self, SendError};
use super::request_body::{Pipe, RequestBody};
use super::resolve::Route;
use super::slots::Slots;
use super::trace::RequestTrace;
use crate::routing::{RoutingTable, Upstream};

/// The proxy's timeouts and passive health (see `config.rs` for the defaults and why).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Until the response head: 504 after it.
    pub timeout: Duration,
    /// Longest silence within the response body: the client's response is aborted after it.
    pub read_timeout: Duration,
    /// Until a TCP connection to a container is open.
    pub connect_timeout: Duration,
    /// How long a replica that failed a request stays out of routing.
    pub eject_period: Duration,
}

/// The upstream client of one worker (its connections are the worker thread's, see [`pool`]).
#[derive(Debug, Clone)]
pub struct Client {
    connect_timeout: Duration,
    /// The platform's count of requests in flight, shared by every worker's client.
    slots: Arc<Slots>,
}

pub fn client(settings: Settings, slots: Arc<Slots>) -> Client {
    Client {
        connect_timeout: settings.connect_timeout.min(settings.timeout),
        slots,
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

fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
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

/// What goes upstream, whichever server received the request: method, end-to-end headers
/// with Berth's forwarding headers, and the client's body (with its length when it gave one).
pub struct Outbound {
    pub method: http::Method,
    pub headers: http::HeaderMap,
    pub body: Option<(Arc<Pipe>, Option<u64>)>,
}

/// The upstream's answer: its head and the body to relay.
pub type Answer = (http::response::Parts, ResponseBody);

/// Sends the request (from actix-web) to the next replica in round-robin order, moving on to the
/// others while a failure is safe to retry.
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
    let body = match kind {
        BodyKind::None => None,
        BodyKind::Sized(length) => Some((Pipe::start(first_chunk, payload), Some(length))),
        BodyKind::Stream => Some((Pipe::start(first_chunk, payload), None)),
    };
    let method = http::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|_| {
        ProxyError::new(Failure::BadRequest {
            detail: format!("The method {} cannot be forwarded.", req.method()),
        })
    })?;
    // The end-to-end headers once, converted for each attempt.
    let mut end_to_end = HeaderMap::with_capacity(req.headers().len() + 7);
    headers::copy_request(req.headers(), &mut end_to_end);
    super::basic_tenant::qualify(&mut end_to_end, forward.forwarded.tenant);
    headers::add_forwarded(&mut end_to_end, &forward.forwarded);
    let mut converted = http::HeaderMap::with_capacity(end_to_end.len() + 1);
    headers::to_upstream(&end_to_end, None, &mut converted);
    let outbound = Outbound {
        method,
        headers: converted,
        body,
    };
    let target = Target {
        route: forward.route,
        upstreams: forward.upstreams,
        path_and_query: forward.path_and_query,
        settings: forward.settings,
        routing: forward.routing,
    };
    let (parts, body) = exchange(client, &target, outbound, trace).await?;
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok(into_response(status, &parts.headers, body, req.method()))
}

/// Where a request goes: the caller's route and its ready replicas.
pub struct Target<'a> {
    pub route: &'a Arc<Route>,
    pub upstreams: &'a [Upstream],
    pub path_and_query: &'a str,
    pub settings: Settings,
    pub routing: &'a RoutingTable,
}

/// How long the resend after a stale pooled connection may take to connect: a live replica
/// on the same host or overlay answers in well under a millisecond, a killed one never.
const RESEND_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Sends `outbound` to the next replica in round-robin order, moving on to the others while a
/// failure is safe to retry; the answer's body holds the worker's upstream slot.
pub async fn exchange(
    client: &Client,
    target: &Target<'_>,
    outbound: Outbound,
    trace: &mut RequestTrace,
) -> Result<Answer, ProxyError> {
    let Outbound {
        method,
        headers: mut end_to_end,
        body,
    } = outbound;
    let pipe = body.as_ref().map(|(pipe, _)| pipe);
    let count = target.upstreams.len();
    let first = target
        .route
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut attempt = 0;
    // One resend on a new connection after a pooled one went stale under the request (see
    // `SendError::Stale`); it goes to the same replica and counts as no attempt.
    let mut resend = false;
    let mut resent = false;
    // Why the pooled connection failed, reported instead of the resend's own failure when
    // the resend cannot even connect: then the replica died under the request (a kill looks
    // the same as a keep-alive close from here), and that is what the client must hear.
    let mut stale: Option<String> = None;
    let idempotent = is_idempotent(&method);
    loop {
        let upstream = &target.upstreams[(first + attempt) % count];
        trace.upstream(&upstream.instance);
        // Origin-form: the connection is the replica's (the pool sets the Host header).
        let uri = http::Uri::try_from(target.path_and_query).map_err(|e| {
            ProxyError::new(Failure::BadRequest {
                detail: format!("The request path cannot be forwarded: {e}."),
            })
        })?;
        let request_body = match &body {
            Some((pipe, length)) => RequestBody::from_pipe(pipe, *length),
            None => RequestBody::empty(),
        };
        let mut request = http::Request::new(request_body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        // The last possible attempt takes the headers; an earlier one copies them for a retry.
        *request.headers_mut() = if attempt + 1 >= count && (resent || !idempotent) {
            std::mem::take(&mut end_to_end)
        } else {
            end_to_end.clone()
        };
        let headers = request.headers_mut();
        if let Some((_, Some(length))) = &body {
            headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(*length),
            );
        }
        let slot = client.slots.take(target.route).map_err(|busy| {
            ProxyError::new(Failure::Busy {
                application: target.route.target.name.clone(),
                tenant: target.route.caller.clone(),
                owner: target.route.target.owner.clone(),
                busy,
            })
        })?;
        let connect_timeout = if resend {
            client.connect_timeout.min(RESEND_CONNECT_TIMEOUT)
        } else {
            client.connect_timeout
        };
        let sent = pool::send(upstream.addr, request, connect_timeout, resend);
        resend = false;
        let failure = match head_within(sent, target.settings.timeout, pipe.map(|p| &**p)).await {
            Ok(Ok((response, lease))) => {
                let (parts, incoming) = response.into_parts();
                let body = ResponseBody::new(
                    incoming,
                    Arc::clone(target.route),
                    upstream.instance.clone(),
                    trace.request_id.clone(),
                    slot,
                    lease,
                    target.settings.read_timeout,
                );
                return Ok((parts, body));
            }
            Ok(Err(SendError::Stale(e)))
                if idempotent && !resent && !pipe.is_some_and(|p| p.started()) =>
            {
                let why = describe(&e);
                trace.resending(&why);
                (resend, resent, stale) = (true, true, Some(why));
                continue;
            }
            Ok(Err(SendError::Connect(detail))) => match stale.take() {
                Some(why) => SendFailure::Broken(why),
                None => SendFailure::Connect(detail),
            },
            Ok(Err(SendError::Http(e) | SendError::Stale(e)))
                if pipe.is_some_and(|p| p.failed()) =>
            {
                SendFailure::ClientBody(describe(&e))
            }
            Ok(Err(SendError::Http(e) | SendError::Stale(e))) => SendFailure::Broken(describe(&e)),
            // The replica waits for the rest of the body the client stopped sending.
            Err(()) if pipe.is_some_and(|p| p.stalled_by_client()) => SendFailure::ClientBody(
                format!("no more of it came within {:?}", target.settings.timeout),
            ),
            Err(()) => SendFailure::Timeout,
        };
        let started = pipe.is_some_and(|p| p.started());
        let error = classify(failure, upstream, target.settings.timeout, started, &method);
        if let Some((instance, reason)) = error.ejects() {
            target
                .routing
                .eject(instance, reason, target.settings.eject_period);
        }
        target.route.metrics.upstream_error(error.kind());
        attempt += 1;
        if error.retry_safe && attempt < count {
            trace.retrying(&error);
            continue;
        }
        return Err(error);
    }
}

/// Waits for the answer's head until `timeout` passes with no progress, the request body's
/// chunks counting as progress: an upload slower than `timeout` as a whole is no hung replica.
async fn head_within<F: std::future::Future>(
    sent: F,
    timeout: Duration,
    pipe: Option<&Pipe>,
) -> Result<F::Output, ()> {
    let mut sent = std::pin::pin!(sent);
    let mut seen = pipe.map(Pipe::progress);
    loop {
        match tokio::time::timeout(timeout, &mut sent).await {
            Ok(out) => return Ok(out),
            Err(_) => {
                let now = pipe.map(Pipe::progress);
                if now == seen {
                    return Err(());
                }
                seen = now;
            }
        }
    }
}

fn classify(
    failure: SendFailure,
    upstream: &Upstream,
    timeout: Duration,
    body_started: bool,
    method: &http::Method,
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
            let method = http::Method::from_bytes(method.as_str().as_bytes()).unwrap();
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

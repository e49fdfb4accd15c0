//! WebSocket upgrades: the handshake is forwarded over a fresh TCP connection to a replica
//! (the client's `Sec-WebSocket-*` headers unchanged, so the container answers the client's
//! key), and after its `101` the two connections are joined as a byte tunnel. Frames are not
//! parsed: extensions and subprotocols pass through untouched.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{StreamExt, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::io::ReaderStream;

use super::error::{Failure, ProxyError};
use super::headers::{self, Forwarded};
use super::trace::RequestTrace;
use super::upstream::Forward;
use crate::routing::Upstream;

/// Largest upstream response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body of a refused upgrade (an error page) relayed to the client.
const MAX_REFUSAL_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// True for an HTTP/1.1 `Upgrade: websocket` request.
pub fn is_upgrade(req: &HttpRequest) -> bool {
    req.head().upgrade()
        && req
            .headers()
            .get(actix_web::http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Opens the tunnel to a replica (the next in round-robin order that accepts a connection).
pub async fn tunnel(
    forward: Forward<'_>,
    payload: web::Payload,
    trace: &mut RequestTrace,
) -> Result<HttpResponse, ProxyError> {
    let Forward {
        req,
        route,
        upstreams,
        path_and_query,
        forwarded,
        settings,
        routing,
    } = forward;
    let timeout = settings.timeout;
    let first = route
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut last = None;
    let mut connected = None;
    for attempt in 0..upstreams.len() {
        let upstream = &upstreams[(first + attempt) % upstreams.len()];
        trace.upstream(&upstream.instance);
        let connect_timeout = settings.connect_timeout.min(timeout);
        let error =
            match tokio::time::timeout(connect_timeout, TcpStream::connect(upstream.addr)).await {
                Ok(Ok(stream)) => {
                    connected = Some((upstream, stream));
                    break;
                }
                Ok(Err(e)) => ProxyError::new(Failure::UpstreamRefused {
                    instance: upstream.instance.clone(),
                    detail: e.to_string(),
                }),
                Err(_) => ProxyError::new(Failure::UpstreamTimeout {
                    instance: upstream.instance.clone(),
                    after: connect_timeout,
                }),
            };
        route.metrics.upstream_error(error.kind());
        if let Some((instance, reason)) = error.ejects() {
            routing.eject(instance, reason, settings.eject_period);
        }
        last = Some(error);
    }
    let Some((upstream, mut stream)) = connected else {
        return Err(last.unwrap_or_else(|| {
            ProxyError::new(Failure::Internal {
                detail: "no upstream to try".into(),
            })
        }));
    };
    let broken = |detail: String| {
        route.metrics.upstream_error("broken");
        ProxyError::new(Failure::UpstreamBroken {
            instance: upstream.instance.clone(),
            detail,
        })
    };
    let head = request_head(req, upstream, path_and_query, &forwarded);
    let handshake = async {
        stream.write_all(&head).await.map_err(|e| e.to_string())?;
        read_head(&mut stream).await
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let (status, upstream_headers, mut rest) =
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(detail)) => return Err(broken(detail)),
            Err(_) => {
                route.metrics.upstream_error("timeout");
                return Err(ProxyError::new(Failure::UpstreamTimeout {
                    instance: upstream.instance.clone(),
                    after: timeout,
                }));
            }
        };
    let mut response_headers = HeaderMap::new();
    headers::copy_response(&upstream_headers, &mut response_headers);
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // The container refused the upgrade: relay its answer (with a bounded body).
        let wanted = upstream_headers
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_REFUSAL_BODY);
        // Within the handshake's deadline: a service that announces a body and sends none
        // must not hold the request (and its connections) for ever.
        while rest.len() < wanted {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => break,
                Ok(Ok(n)) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        rest.truncate(wanted);
        let mut out = HttpResponse::build(status).body(rest.freeze());
        for (name, value) in response_headers {
            out.headers_mut().append(name, value);
        }
        return Ok(out);
    }
    let (read, write) = stream.into_split();
    actix_web::rt::spawn(client_to_upstream(payload, write));
    let early = rest.freeze();
    let body = stream::iter((!early.is_empty()).then_some(Ok::<Bytes, std::io::Error>(early)))
        .chain(ReaderStream::new(read));
    let mut out = HttpResponse::SwitchingProtocols()
        .upgrade("websocket")
        .streaming(body);
    for (name, value) in response_headers {
        out.headers_mut().append(name, value);
    }
    Ok(out)
}

/// Copies what the client sends after the upgrade to the container, then half-closes.
async fn client_to_upstream(mut payload: web::Payload, mut write: OwnedWriteHalf) {
    while let Some(Ok(chunk)) = payload.next().await {
        if write.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

fn request_head(
    req: &HttpRequest,
    upstream: &Upstream,
    path_and_query: &str,
    forwarded: &Forwarded<'_>,
) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    headers::copy_request(req.headers(), &mut headers);
    super::basic_tenant::qualify(&mut headers, forwarded.tenant);
    headers::add_forwarded(&mut headers, forwarded);
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path_and_query.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(upstream.addr.to_string().as_bytes());
    head.extend_from_slice(b"\r\nconnection: Upgrade\r\nupgrade: websocket\r\n");
    for (name, value) in &headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Reads and parses the upstream's response head; returns it and the bytes that followed it.
async fn read_head(stream: &mut TcpStream) -> Result<(StatusCode, HeaderMap, BytesMut), String> {
    let mut buffer = BytesMut::with_capacity(4096);
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the upgrade answer".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(&buffer) {
            Ok(httparse::Status::Complete(len)) => {
                let status = parsed
                    .code
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or("answer without a valid status")?;
                let mut headers = HeaderMap::new();
                for h in parsed.headers.iter() {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(h.name.as_bytes()),
                        HeaderValue::from_bytes(h.value),
                    ) {
                        headers.append(name, value);
                    }
                }
                let rest = buffer.split_off(len);
                return Ok((status, headers, rest));
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("upgrade answer head too large".into()),
            Err(e) => return Err(format!("upgrade answer is not HTTP: {e}")),
        }
    }
}

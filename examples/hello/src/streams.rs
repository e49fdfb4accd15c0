//! Routes that exercise a proxy in front of the service: a slow answer (`/sleep`), streamed
//! uploads and downloads, server-sent events, a WebSocket echo and the replica's identity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_http::ws::{self, CloseReason, OpCode, Parser};
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{Stream, StreamExt, stream};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Longest `/sleep` accepted, so a typo cannot park a worker for hours.
const MAX_SLEEP_MS: u64 = 60_000;
/// Size of the chunks `/download` produces.
const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// Largest WebSocket frame the echo accepts.
const MAX_WS_FRAME: usize = 1 << 20;

/// Byte `i` of every `/download` body: deterministic, so a client can check what it got.
pub fn download_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// A numeric query parameter; the error is a 400 answer naming it.
fn query_u64(req: &HttpRequest, name: &str) -> Result<Option<u64>, Box<HttpResponse>> {
    let bad =
        |message: String| Box::new(HttpResponse::BadRequest().json(json!({"error": message})));
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map_err(|e| bad(e.to_string()))?;
    match query.get(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("{name}={text:?} must be a non-negative integer"))),
    }
}

/// `GET /sleep?ms=N`: answers after N milliseconds.
pub async fn sleep(req: HttpRequest) -> HttpResponse {
    let ms = match query_u64(&req, "ms") {
        Ok(ms) => ms.unwrap_or(0),
        Err(bad) => return *bad,
    };
    if ms > MAX_SLEEP_MS {
        return HttpResponse::BadRequest()
            .json(json!({"error": format!("ms must be at most {MAX_SLEEP_MS}")}));
    }
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
    HttpResponse::Ok().json(json!({"slept_ms": ms}))
}

/// `POST /upload`: reads the body as it streams in; answers its length and SHA-256.
pub async fn upload(mut body: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    let mut hasher = Sha256::new();
    let mut bytes: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"bytes": bytes, "sha256": digest})))
}

/// `GET /download?bytes=N`: N deterministic bytes ([`download_byte`]), streamed in chunks
/// without a Content-Length (chunked encoding).
pub async fn download(req: HttpRequest) -> HttpResponse {
    let total = match query_u64(&req, "bytes") {
        Ok(n) => n.unwrap_or(0),
        Err(bad) => return *bad,
    };
    let chunks = stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let len = (total - sent).min(DOWNLOAD_CHUNK as u64);
        let chunk: Vec<u8> = (sent..sent + len).map(download_byte).collect();
        Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), sent + len))
    });
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(chunks)
}

fn epoch_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// `GET /sse?n=N&gap_ms=G`: N server-sent events, G ms apart (default 300), each carrying
/// the time it was sent so a client can tell events arrive one by one.
pub async fn sse(req: HttpRequest) -> HttpResponse {
    let (n, gap) = match (query_u64(&req, "n"), query_u64(&req, "gap_ms")) {
        (Ok(n), Ok(gap)) => (n.unwrap_or(3), gap.unwrap_or(300).min(MAX_SLEEP_MS)),
        (Err(bad), _) | (_, Err(bad)) => return *bad,
    };
    let events = stream::unfold(0u64, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            actix_web::rt::time::sleep(Duration::from_millis(gap)).await;
        }
        let event = format!(
            "id: {i}\nevent: tick\ndata: {}\n\n",
            json!({"seq": i, "sent_at_ms": epoch_millis().to_string()})
        );
        Some((Ok::<_, actix_web::Error>(Bytes::from(event)), i + 1))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(events)
}

/// `GET /whoami`: which replica answered (the container's host name).
pub async fn whoami() -> HttpResponse {
    let hostname = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    HttpResponse::Ok().json(json!({"hostname": hostname}))
}

/// `GET /ws`: a WebSocket echo. Text and binary messages come back unchanged, pings get
/// pongs, a close is answered with a close.
pub async fn websocket(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    ws::verify_handshake(req.head())
        .map_err(|e| actix_web::error::ErrorBadRequest(e.to_string()))?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| ws::hash_key(k.as_bytes()))
        .ok_or_else(|| actix_web::error::ErrorBadRequest("missing Sec-WebSocket-Key"))?;
    let accept = header::HeaderValue::from_bytes(&key)
        .map_err(|_| actix_web::error::ErrorInternalServerError("bad accept key"))?;
    Ok(HttpResponse::SwitchingProtocols()
        .upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, accept))
        .streaming(echo_frames(payload)))
}

/// State of the echo: unparsed input, the request body, and whether a close was sent.
struct Echo {
    input: BytesMut,
    payload: web::Payload,
    closed: bool,
}

fn echo_frames(payload: web::Payload) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let state = Echo {
        input: BytesMut::new(),
        payload,
        closed: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if state.closed {
                return None;
            }
            match Parser::parse(&mut state.input, true, MAX_WS_FRAME) {
                Ok(Some((_fin, op, data))) => {
                    let data = data.unwrap_or_default();
                    let mut out = BytesMut::new();
                    match op {
                        OpCode::Text | OpCode::Binary | OpCode::Continue => {
                            Parser::write_message(&mut out, &data, op, true, false)
                        }
                        OpCode::Ping => {
                            Parser::write_message(&mut out, &data, OpCode::Pong, true, false)
                        }
                        OpCode::Pong => continue,
                        OpCode::Close | OpCode::Bad => {
                            let reason = CloseReason::from(ws::CloseCode::Normal);
                            Parser::write_close(&mut out, Some(reason), false);
                            state.closed = true;
                        }
                    }
                    return Some((Ok(out.freeze()), state));
                }
                Ok(None) => match state.payload.next().await {
                    Some(Ok(chunk)) => state.input.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e.into()), state_closed(state))),
                    None => return None,
                },
                Err(e) => {
                    let error = actix_web::error::ErrorBadRequest(e.to_string());
                    return Some((Err(error), state_closed(state)));
                }
            }
        }
    })
}

fn state_closed(mut state: Echo) -> Echo {
    state.closed = true;
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_bytes_cycle_through_a_prime() {
        let cases = [
            (0, 0),
            (250, 250),
            (251, 0),
            (252, 1),
            (1 << 20, (1u64 << 20) % 251),
        ];
        for (i, expected) in cases {
            assert_eq!(u64::from(download_byte(i)), expected, "{i}");
        }
    }
}

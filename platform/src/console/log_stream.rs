//! `GET /application/applications/{id}/logs/{instance}/stream?tail=N`: one instance's log as
//! Server-Sent Events (one `data:` event per line, with Docker's timestamp), following new lines
//! live. It is an API endpoint like `…/logs/{instance}`, with the same roles and tenant check,
//! and the same authentication (the console reads it with `fetch`, so the cookie session's
//! `X-XSRF-TOKEN` header is sent as for every other call).
//!
//! What a tenant can make Berth spend is bounded: at most [`PER_TENANT`] open streams per tenant
//! (429 past it) and `max_log_streams` on the platform (503 past it: a tenant admin can make
//! subtenants, so the tenants' bounds alone bound nothing), each for at most [`MAX_DURATION`]
//! (the console reconnects), each starting at most [`MAX_TAIL`] lines back, each holding at most
//! [`MAX_EVENT_LINE`] bytes of a line (the service writes the log, so it decides how long its
//! lines are).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::api::AppState;
use crate::api::applications::{Access, authorized_id, instance_container};
use crate::api::error::ApiError;
use crate::auth::principal::Principal;
use crate::counts::{Over, Place, Quota};

/// Open log streams allowed per tenant at once.
pub const PER_TENANT: usize = 8;
/// A stream ends after this long; the client reconnects (and is counted again).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most lines a stream replays before following.
pub const MAX_TAIL: u64 = 1000;
/// A comment line this often keeps idle connections open through proxies and lets Berth notice
/// a client that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// Open streams, per tenant and in all. Made once for the server and given to every worker's
/// app ([`routes`]): the factory runs once per worker, so a count made there would be per worker.
#[derive(Debug, Clone)]
pub struct OpenStreams(Arc<Quota<String>>);

impl OpenStreams {
    /// At most `total` streams open on the platform, [`PER_TENANT`] of them one tenant's.
    pub fn new(total: usize) -> OpenStreams {
        OpenStreams(Quota::new(total, PER_TENANT))
    }

    /// A place for one stream of `tenant`'s, given back when dropped (stream finished or client
    /// gone), or the refusal naming the bound it met.
    fn admit(&self, tenant: &str) -> Result<Place<String>, ApiError> {
        self.0.take(tenant.to_owned()).map_err(|over| match over {
            Over::Key { max } => ApiError::too_many_requests(
                "applications",
                &format!("At most {max} log streams may be open per tenant; close one first"),
                RETRY_AFTER_SECS,
            ),
            // Load shed, counted rather than logged one by one.
            Over::Total { max } => ApiError::shedding(
                "applications",
                &format!(
                    "The platform has {max} log streams open, its limit for all tenants together (max_log_streams); retry later"
                ),
            )
            .with_retry_after(RETRY_AFTER_SECS),
        })
    }
}

pub fn routes(open: OpenStreams) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(open)).route(
            "/application/applications/{id}/logs/{instance}/stream",
            web::get().to(stream_logs),
        );
    }
}

/// The longest line one event carries: a service printing without newlines would otherwise
/// grow the partial line for as long as the stream is open. A longer line goes out in pieces.
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// Splits Docker's log chunks into complete lines, keeping a partial last line (of at most
/// [`MAX_EVENT_LINE`] bytes) for the next chunk; each line becomes one SSE event. Each byte is
/// looked at once, however the chunks cut the lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The SSE events for the complete lines `chunk` finishes (and for the pieces of a line
    /// longer than [`MAX_EVENT_LINE`]).
    pub fn events(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.partial);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            push_pieces(&mut out, line);
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_EVENT_LINE {
            // Hold the bound's worth at most; what is before goes out, cut between characters.
            let at = self.partial.len() - MAX_EVENT_LINE;
            let cut = (at..(at + 4).min(self.partial.len()))
                .find(|&i| !continues(self.partial[i]))
                .unwrap_or(at);
            let long = self.partial.drain(..cut).collect::<Vec<u8>>();
            push_pieces(&mut out, &long);
        }
        out
    }
}

/// Appends `line` as events of at most [`MAX_EVENT_LINE`] bytes each, cut between characters.
fn push_pieces(out: &mut Vec<u8>, mut line: &[u8]) {
    loop {
        let end = if line.len() > MAX_EVENT_LINE {
            piece_end(line, MAX_EVENT_LINE)
        } else {
            line.len()
        };
        out.extend_from_slice(event(&String::from_utf8_lossy(&line[..end])).as_bytes());
        line = &line[end..];
        if line.is_empty() {
            return;
        }
    }
}

/// Whether `byte` continues a UTF-8 sequence (a cut before it would split a character).
fn continues(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

/// Where to end a piece of `bytes` of at most `at` bytes (`0 < at < bytes.len()`) without
/// splitting a UTF-8 sequence: before `at` if a sequence continues there (at most three bytes
/// back), else at `at`.
fn piece_end(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3).max(1)..=at)
        .rev()
        .find(|&i| !continues(bytes[i]))
        .unwrap_or(at)
}

/// One SSE event carrying `line`; a line cannot contain a newline, so one `data:` field is enough.
fn event(line: &str) -> String {
    format!("data: {line}\n\n")
}

fn parse_tail(query: &HashMap<String, String>) -> Result<u64, ApiError> {
    match query.get("tail") {
        None => Ok(100),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n <= MAX_TAIL => Ok(n),
            _ => Err(ApiError::invalid(
                "applications",
                &format!("tail must be a line count from 0 to {MAX_TAIL}, got {text:?}"),
            )),
        },
    }
}

async fn stream_logs(
    principal: Principal,
    state: web::Data<AppState>,
    open: web::Data<OpenStreams>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let (id_text, instance) = path.into_inner();
    let id = authorized_id(&principal, Access::Read, &id_text)?;
    let tail = parse_tail(&query)?;
    let container = instance_container(&state, &principal, id, &instance).await?;
    let slot = open.admit(&principal.tenant)?;
    let mut splitter = LineSplitter::default();
    let lines = state
        .runtime
        .follow_logs(&container, tail)
        .map(move |chunk| match chunk {
            Ok(bytes) => Bytes::from(splitter.events(&bytes)),
            Err(e) => Bytes::from(format!("event: failure\n{}", event(&e.to_string()))),
        })
        // The end of the log (container stopped) is said explicitly, so the console can tell
        // it from a dropped connection.
        .chain(stream::once(async {
            Bytes::from_static(b"event: end\ndata: \n\n")
        }));
    let keepalive = stream::unfold((), |()| async {
        tokio::time::sleep(KEEPALIVE).await;
        Some((Bytes::from_static(b": keepalive\n\n"), ()))
    });
    let deadline = tokio::time::sleep(MAX_DURATION);
    // The log's end (a None after its last line) ends the body despite the endless keepalive.
    let lines = lines.map(Some).chain(stream::once(async { None }));
    let body = stream::select(lines, keepalive.map(Some))
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
        .take_until(deadline)
        .map(move |bytes| {
            let _held = &slot;
            Ok::<_, actix_web::Error>(bytes)
        });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_one_event_per_complete_line() {
        let mut s = LineSplitter::default();
        assert_eq!(s.events(b"2026 a\n2026 b"), b"data: 2026 a\n\n");
        assert_eq!(s.events(b"c\r\n\n"), b"data: 2026 bc\n\ndata: \n\n");
        assert!(s.events(b"partial").is_empty());
    }

    /// What the events of `chunks` carry, line by line.
    fn lines_of(chunks: &[&[u8]]) -> (Vec<String>, usize) {
        let mut s = LineSplitter::default();
        let mut text = String::new();
        for chunk in chunks {
            text.push_str(std::str::from_utf8(&s.events(chunk)).unwrap());
            assert!(
                s.partial.len() <= MAX_EVENT_LINE,
                "{} held",
                s.partial.len()
            );
        }
        let lines = text
            .split_terminator("\n\n")
            .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
            .collect();
        (lines, s.partial.len())
    }

    #[test]
    fn a_line_without_end_is_held_only_up_to_its_bound() {
        let long = "é".repeat(MAX_EVENT_LINE); // two bytes a character: twice the bound
        let ended = format!("{long}\n");
        let cases: [(&str, Vec<&[u8]>, bool); 4] = [
            // Written in small pieces and never ended: only the bound's worth is held.
            ("trickled", long.as_bytes().chunks(999).collect(), false),
            ("one chunk", vec![long.as_bytes()], false),
            ("ended later", vec![long.as_bytes(), b"\n"], true),
            ("ended at once", vec![ended.as_bytes()], true),
        ];
        for (what, chunks, ends) in cases {
            let (lines, held) = lines_of(&chunks);
            assert!(held <= MAX_EVENT_LINE, "{what}: {held} bytes held");
            assert_eq!(held == 0, ends, "{what}: {held} bytes held");
            // Nothing is lost or garbled: the pieces and what is held make the line again.
            for line in &lines {
                assert!(
                    line.len() <= MAX_EVENT_LINE,
                    "{what}: a piece of {}",
                    line.len()
                );
                assert!(
                    !line.contains('\u{fffd}'),
                    "{what}: a piece split a character"
                );
            }
            let said: usize = lines.iter().map(String::len).sum();
            assert_eq!(said + held, long.len(), "{what}");
        }
    }

    /// The status, `Retry-After` and body of `open`'s refusal of `tenant`, if it refuses.
    async fn refusal(open: &OpenStreams, tenant: &str) -> Option<(u16, Option<String>, String)> {
        let response = actix_web::ResponseError::error_response(&open.admit(tenant).err()?);
        let retry = response
            .headers()
            .get(actix_web::http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        Some((status, retry, String::from_utf8(body.to_vec()).unwrap()))
    }

    #[actix_web::test]
    async fn streams_are_bounded_per_tenant_and_in_all_and_given_back() {
        let total = PER_TENANT + 2;
        let open = OpenStreams::new(total);
        let t1: Vec<_> = (0..PER_TENANT).map(|_| open.admit("t1").unwrap()).collect();
        let (status, retry, body) = refusal(&open, "t1").await.unwrap();
        assert_eq!((status, retry.as_deref()), (429, Some("5")), "{body}");
        assert!(body.contains("applications/Too Many Requests"), "{body}");
        assert!(
            body.contains(&format!(
                "At most {PER_TENANT} log streams may be open per tenant"
            )),
            "{body}"
        );

        // Another tenant takes what the platform has left; then a tenant with none is refused.
        let t2: Vec<_> = (0..2).map(|_| open.admit("t2").unwrap()).collect();
        let (status, retry, body) = refusal(&open, "fresh").await.unwrap();
        assert_eq!((status, retry.as_deref()), (503, Some("5")), "{body}");
        assert!(
            body.contains(&format!("The platform has {total} log streams open")),
            "{body}"
        );
        assert!(body.contains("retry later"), "{body}");

        // Places come back when streams end.
        drop(t2);
        assert!(refusal(&open, "fresh").await.is_none());
        drop(t1);
        assert!(refusal(&open, "t1").await.is_none());
    }

    #[test]
    fn tail_is_bounded() {
        let q = |v: &str| HashMap::from([("tail".to_owned(), v.to_owned())]);
        assert_eq!(parse_tail(&HashMap::new()).unwrap(), 100);
        assert_eq!(parse_tail(&q("0")).unwrap(), 0);
        assert!(parse_tail(&q("1001")).is_err());
        assert!(parse_tail(&q("x")).is_err());
    }
}

//! `GET /application/applications/{id}/logs/{instance}/stream?tail=N`: one instance's log as
//! Server-Sent Events (one `data:` event per line, with Docker's timestamp), following new lines
//! live. It is an API endpoint like `…/logs/{instance}`, with the same roles and tenant check,
//! and the same authentication (the console reads it with `fetch`, so the cookie session's
//! `X-XSRF-TOKEN` header is sent as for every other call).
//!
//! What a tenant can make Berth spend is bounded: at most [`PER_TENANT`] open streams per tenant
//! (429 past it), each for at most [`MAX_DURATION`] (the console reconnects), each starting at
//! most [`MAX_TAIL`] lines back, each holding at most [`MAX_EVENT_LINE`] bytes of a line (the
//! service writes the log, so it decides how long its lines are).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::api::AppState;
use crate::api::applications::{Access, authorized_id, instance_container};
use crate::api::error::ApiError;
use crate::auth::principal::Principal;

/// Open log streams allowed per tenant at once.
pub const PER_TENANT: usize = 8;
/// A stream ends after this long; the client reconnects (and is counted again).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most lines a stream replays before following.
pub const MAX_TAIL: u64 = 1000;
/// A comment line this often keeps idle connections open through proxies and lets Berth notice
/// a client that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Open streams per tenant. Made once for the server and given to every worker's app
/// ([`routes`]): the factory runs once per worker, so a count made there would be per worker.
#[derive(Debug, Default, Clone)]
pub struct OpenStreams(Arc<Mutex<HashMap<String, usize>>>);

/// One counted stream; dropping it (stream finished or client gone) gives the slot back.
#[derive(Debug)]
struct Slot {
    open: OpenStreams,
    tenant: String,
}

impl OpenStreams {
    fn acquire(&self, tenant: &str) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(tenant.to_owned()).or_default();
        if *count >= PER_TENANT {
            return None;
        }
        *count += 1;
        Some(Slot {
            open: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.open.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.tenant);
            }
        }
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
    let slot = open.acquire(&principal.tenant).ok_or_else(|| {
        ApiError::too_many_requests(
            "applications",
            &format!("At most {PER_TENANT} log streams may be open per tenant; close one first"),
            5,
        )
    })?;
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

    #[test]
    fn streams_per_tenant_are_bounded_and_given_back() {
        let open = OpenStreams::default();
        let held: Vec<Slot> = (0..PER_TENANT)
            .map(|_| open.acquire("t1").unwrap())
            .collect();
        assert!(open.acquire("t1").is_none());
        assert!(
            open.acquire("t2").is_some(),
            "another tenant is not affected"
        );
        drop(held);
        assert!(open.acquire("t1").is_some());
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

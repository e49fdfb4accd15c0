//! Log events any anonymous client can cause at will: actix-http logs every malformed request
//! at ERROR ("stream error: request parse error: …"), rustls warns on every handshake whose SNI
//! names an IP address (wrk sends its URL's host, IP or not) or a malformed host, and Berth
//! sheds load with a 503 when the password-hash queue is full, and the internal API refuses every
//! request from outside the container networks (anyone who can reach its port). One line per event would let a
//! client flood the log (and page whoever watches ERROR lines); so would connections refused over
//! a connection limit. These events never reach the log directly: they are counted,
//! and at most one WARN line per [`REPORT_INTERVAL`] says how many came and the latest of each.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};

use crate::sync::MutexExt;

/// Target of Berth's own load-shedding events (a full password-hash queue).
pub const SHED_TARGET: &str = "berth::shed";
/// Target of connections the public listener refused over a connection limit.
pub const REFUSED_TARGET: &str = "berth::refused_connection";
/// Target of requests to the internal API from outside the container networks.
pub const OUTSIDER_TARGET: &str = "berth::internal_api_outsider";
/// Target of the summary lines.
pub const SUMMARY_TARGET: &str = "berth::client_noise";
/// Longest a summary waits; also the least time between two summaries.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What counts as noise, by kind: (target, the least severe level counted, what it means).
const KINDS: [(&str, Level, &str); 6] = [
    (
        "actix_http::h1::dispatcher",
        Level::WARN,
        "HTTP/1 connections closed on a malformed request",
    ),
    (
        "actix_http::h2::dispatcher",
        Level::WARN,
        "HTTP/2 streams that failed",
    ),
    (SHED_TARGET, Level::WARN, "requests refused to shed load"),
    (
        REFUSED_TARGET,
        Level::WARN,
        "connections refused over a connection limit",
    ),
    (
        OUTSIDER_TARGET,
        Level::WARN,
        "internal API requests refused from outside the container networks",
    ),
    // rustls warns here only about the client's SNI (an IP address, a duplicate, a bad name).
    (
        "rustls::msgs::handshake",
        Level::WARN,
        "TLS handshakes with an IP address or a malformed name as SNI",
    ),
];

/// The noise targets, as a filter: the counting layer sees only these events.
pub fn targets() -> Targets {
    KINDS.iter().fold(Targets::new(), |t, (target, level, _)| {
        t.with_target(*target, *level)
    })
}

/// Directives that keep the noise out of the log itself, appended to the configured filter
/// (more specific than any operator directive except one naming these targets exactly).
pub fn silencing_directives() -> impl Iterator<Item = String> {
    KINDS.iter().map(|(target, _, _)| format!("{target}=off"))
}

/// Index into [`KINDS`] of an event's kind, if it is noise.
fn kind_of(target: &str, level: &Level) -> Option<usize> {
    KINDS.iter().position(|(t, least, _)| {
        (target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::")))
            && level <= least
    })
}

/// Events counted since the last summary, per kind, with the latest message of each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; KINDS.len()],
    latest: [String; KINDS.len()],
}

impl Tally {
    fn add(&mut self, kind: usize, message: String) {
        self.counts[kind] += 1;
        self.latest[kind] = message;
    }

    /// The summary line of what was counted, if anything; the tally starts over.
    pub fn take_summary(&mut self) -> Option<String> {
        let tally = std::mem::take(self);
        let mut line = String::new();
        for (i, (_, _, meaning)) in KINDS.iter().enumerate() {
            if tally.counts[i] > 0 {
                if !line.is_empty() {
                    line.push_str("; ");
                }
                let _ = write!(
                    line,
                    "{} {meaning} (latest: {})",
                    tally.counts[i], tally.latest[i]
                );
            }
        }
        (!line.is_empty()).then(|| format!("{line}; counted, not logged one by one"))
    }
}

static TALLY: Mutex<Tally> = Mutex::new(Tally {
    counts: [0; KINDS.len()],
    latest: [const { String::new() }; KINDS.len()],
});

/// The layer that counts noise events (give it [`targets`] as its filter).
pub struct Counter;

/// Longest latest message kept (a client chooses part of it).
const MESSAGE_LIMIT: usize = 200;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // A `log` record's origin (`log.target`, `log.file`…) is not part of its message.
        if self.0.len() < MESSAGE_LIMIT && !field.name().starts_with("log.") {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            if field.name() == "message" {
                let _ = write!(self.0, "{value:?}");
            } else {
                let _ = write!(self.0, "{}={value:?}", field.name());
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Records of crates that log through `log` (rustls) arrive under the bridge's own
        // metadata (target "log"); their own is in their fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let Some(kind) = kind_of(meta.target(), meta.level()) else {
            return;
        };
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut text = message.0;
        if text.len() > MESSAGE_LIMIT {
            text.truncate(crate::truncate::prefix(&text, MESSAGE_LIMIT).len());
            text.push('…');
        }
        TALLY.locked().add(kind, text);
    }
}

/// Starts the thread that writes a summary each [`REPORT_INTERVAL`] in which noise came.
pub fn start_reporter() {
    let _ = std::thread::Builder::new()
        .name("berth-noise".into())
        .spawn(|| {
            loop {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a dedicated thread, not a runtime worker"
                )]
                std::thread::sleep(REPORT_INTERVAL);
                let summary = TALLY.locked().take_summary();
                if let Some(line) = summary {
                    tracing::warn!(target: SUMMARY_TARGET, "{line}");
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_caused_events_are_noise() {
        let cases = [
            ("actix_http::h1::dispatcher", Level::ERROR, Some(0)),
            ("actix_http::h1::dispatcher", Level::WARN, Some(0)),
            ("actix_http::h1::dispatcher", Level::INFO, None),
            ("actix_http::h2::dispatcher", Level::ERROR, Some(1)),
            ("actix_http::h1::dispatcherx", Level::ERROR, None),
            ("actix_http::h1", Level::ERROR, None),
            ("actix_http::service", Level::ERROR, None),
            ("berth::shed", Level::WARN, Some(2)),
            ("berth::shed", Level::DEBUG, None),
            ("berth::api::error", Level::ERROR, None),
            ("berth::client_noise", Level::WARN, None),
            ("berth::refused_connection", Level::WARN, Some(3)),
            ("berth::internal_api_outsider", Level::WARN, Some(4)),
            ("berth::internal_api", Level::WARN, None),
            ("rustls::msgs::handshake", Level::WARN, Some(5)),
            ("rustls::msgs::handshake", Level::DEBUG, None),
            ("rustls::server::hs", Level::WARN, None),
        ];
        for (target, level, kind) in cases {
            assert_eq!(kind_of(target, &level), kind, "{target} {level}");
        }
    }

    #[test]
    fn a_summary_counts_each_kind_and_starts_over() {
        let mut tally = Tally::default();
        assert_eq!(tally.take_summary(), None);
        tally.add(0, "stream error: a".into());
        tally.add(0, "stream error: b".into());
        tally.add(2, "password hash queue full".into());
        assert_eq!(
            tally.take_summary().as_deref(),
            Some(
                "2 HTTP/1 connections closed on a malformed request (latest: stream error: b); \
                 1 requests refused to shed load (latest: password hash queue full); \
                 counted, not logged one by one"
            )
        );
        assert_eq!(tally.take_summary(), None);
    }
}

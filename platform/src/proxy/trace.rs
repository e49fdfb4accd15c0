//! What the proxy tells operators about one request: one access line at `info` (target
//! `berth::access`) with request id, method, path, tenant, application, upstream, status and
//! duration, and a `proxy` span with the same fields at `debug` for the proxy's own events.
//!
//! The access line is the one thing written per request at the default level, so it is a
//! single event carrying every field: an `info` span would cost more than the line itself,
//! because the log layer formats a span's fields when it opens and again at every `record`.
//!
//! At high request rates one line per request is a lot of log (about 1 GB an hour at 1.2k
//! req/s), so the `access_log` setting chooses which requests get one ([`AccessLog`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use tracing::field::Empty;

use super::resolve::Route;
use crate::auth::principal::Principal;

/// Which proxied requests get an access line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// Every request (the default).
    All,
    /// One request in N, plus every server-side failure (status 5xx).
    Sample(u64),
    /// Only server-side failures (status 5xx).
    Errors,
    Off,
}

impl AccessLog {
    /// Parses `all`, `sample:N` (N ≥ 1), `errors` or `off`.
    pub fn parse(text: &str) -> Result<AccessLog, String> {
        let wrong = || format!("`{text}` is not one of all, sample:N (N ≥ 1), errors, off");
        match text {
            "all" => Ok(AccessLog::All),
            "errors" => Ok(AccessLog::Errors),
            "off" => Ok(AccessLog::Off),
            _ => match text.strip_prefix("sample:").map(str::parse::<u64>) {
                Some(Ok(1)) => Ok(AccessLog::All),
                Some(Ok(n)) if n > 1 => Ok(AccessLog::Sample(n)),
                _ => Err(wrong()),
            },
        }
    }

    /// Whether request number `sequence` (counted per process) answered `status` is written.
    pub fn writes(self, sequence: u64, status: u16) -> bool {
        match self {
            AccessLog::All => true,
            AccessLog::Sample(n) => status >= 500 || sequence.is_multiple_of(n),
            AccessLog::Errors => status >= 500,
            AccessLog::Off => false,
        }
    }
}

/// The facts about one proxied request, gathered while it is handled.
pub struct RequestTrace {
    pub span: tracing::Span,
    pub request_id: HeaderValue,
    /// This request's number, for sampling.
    sequence: u64,
    access_log: AccessLog,
    start: Instant,
    principal: Option<Arc<Principal>>,
    route: Option<Arc<Route>>,
    upstream: Option<String>,
}

impl RequestTrace {
    pub fn start(request_id: HeaderValue, sequence: u64, access_log: AccessLog) -> RequestTrace {
        let span = tracing::debug_span!(
            "proxy",
            request_id = request_id.to_str().unwrap_or_default(),
            tenant = Empty,
            application = Empty,
            upstream = Empty,
            status = Empty,
            micros = Empty,
        );
        RequestTrace {
            span,
            request_id,
            sequence,
            access_log,
            start: Instant::now(),
            principal: None,
            route: None,
            upstream: None,
        }
    }

    pub fn authenticated(&mut self, principal: &Arc<Principal>) {
        self.span.record("tenant", principal.tenant.as_str());
        self.principal = Some(Arc::clone(principal));
    }

    pub fn routed(&mut self, route: &Arc<Route>) {
        self.span.record("application", route.target.name.as_str());
        self.route = Some(Arc::clone(route));
    }

    /// The replica this attempt goes to (the last one tried is what the access line shows).
    pub fn upstream(&mut self, instance: &str) {
        self.span.record("upstream", instance);
        self.upstream = Some(instance.to_owned());
    }

    pub fn route(&self) -> Option<&Arc<Route>> {
        self.route.as_ref()
    }

    fn id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    fn tenant(&self) -> &str {
        self.principal.as_ref().map_or("-", |p| p.tenant.as_str())
    }

    fn application(&self) -> &str {
        self.route.as_ref().map_or("-", |r| r.target.name.as_str())
    }

    fn upstream_name(&self) -> &str {
        self.upstream.as_deref().unwrap_or("-")
    }

    /// A failed attempt that is retried on another replica.
    pub fn retrying(&self, error: &dyn std::fmt::Display) {
        tracing::warn!(
            request_id = %self.id(),
            tenant = %self.tenant(),
            application = %self.application(),
            upstream = %self.upstream_name(),
            %error,
            "retrying on another replica"
        );
    }

    /// A pooled connection closed under the request before any answer; it goes again on a new
    /// connection to the same replica. Debug only: the client sees nothing of it.
    pub fn resending(&self, error: &dyn std::fmt::Display) {
        tracing::debug!(
            request_id = %self.id(),
            upstream = %self.upstream_name(),
            %error,
            "the pooled connection closed under the request; resending on a new one"
        );
    }

    /// A request the proxy could not forward; `downstream` failures (the client's fault) are
    /// logged at debug only, the others at warn.
    pub fn failed(&self, error: &dyn std::fmt::Display, downstream: bool, retry_safe: bool) {
        if downstream {
            tracing::debug!(request_id = %self.id(), %error, "refused");
        } else {
            tracing::warn!(
                request_id = %self.id(),
                tenant = %self.tenant(),
                application = %self.application(),
                upstream = %self.upstream_name(),
                %error,
                retry_safe,
                "failed"
            );
        }
    }

    /// Writes the access line (if the `access_log` setting wants this one); returns the time
    /// the request took.
    pub fn finish(&self, method: &str, path: &str, status: u16) -> Duration {
        let elapsed = self.start.elapsed();
        let micros = elapsed.as_micros() as u64;
        self.span.record("status", status);
        self.span.record("micros", micros);
        if !self.access_log.writes(self.sequence, status)
            || !tracing::enabled!(target: "berth::access", tracing::Level::INFO)
        {
            return elapsed;
        }
        let fields = [
            ("request_id", self.id()),
            ("method", method),
            ("path", path),
            ("tenant", self.tenant()),
            ("application", self.application()),
            ("upstream", self.upstream_name()),
        ];
        write_access_line(&fields, status, micros);
        elapsed
    }
}

/// Writes the access line straight into the batched log output, in the log layer's shape
/// (`<RFC 3339 time>  INFO berth::access: key=value …`). It is the one line per request at
/// the default level, and the layer's generic formatting (a visitor and a `dyn Display` per
/// field, the time formatted from scratch) cost about a quarter of the proxy's throughput;
/// here the time's whole seconds are formatted once per second and thread.
fn write_access_line(fields: &[(&str, &str)], status: u16, micros: u64) {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    use std::io::Write as _;
    thread_local! {
        /// The line being built, and the formatted second it starts with.
        static LINE: RefCell<(String, i64, String)> = RefCell::new((String::with_capacity(256), i64::MIN, String::new()));
    }
    let now = time::OffsetDateTime::now_utc();
    LINE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (line, second, prefix) = &mut *cell;
        let unix = now.unix_timestamp();
        if *second != unix {
            *second = unix;
            prefix.clear();
            let _ = write!(
                prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            );
        }
        line.clear();
        line.push_str(prefix);
        let _ = write!(line, "{:06}Z  INFO berth::access:", now.microsecond());
        for (name, value) in fields {
            line.push(' ');
            line.push_str(name);
            line.push('=');
            // A value never breaks the line (paths are percent-encoded; this is a backstop,
            // and the common case is copied whole rather than char by char).
            if value.bytes().any(|b| b.is_ascii_control()) || !value.is_ascii() {
                line.extend(value.chars().map(|c| if c.is_control() { '?' } else { c }));
            } else {
                line.push_str(value);
            }
        }
        let _ = writeln!(line, " status={status} micros={micros}");
        let _ = crate::log_output::BatchedStderr.write_all(line.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::AccessLog;

    #[test]
    fn access_log_settings_parse_and_choose_lines() {
        let parsed = [
            ("all", Ok(AccessLog::All)),
            ("sample:1", Ok(AccessLog::All)),
            ("sample:100", Ok(AccessLog::Sample(100))),
            ("errors", Ok(AccessLog::Errors)),
            ("off", Ok(AccessLog::Off)),
        ];
        for (text, want) in parsed {
            assert_eq!(AccessLog::parse(text), want, "{text}");
        }
        for bad in [
            "",
            "ALL",
            "sample",
            "sample:0",
            "sample:-3",
            "sample:x",
            "some",
        ] {
            let err = AccessLog::parse(bad).unwrap_err();
            assert!(err.contains("sample:N"), "{bad}: {err}");
        }
        // (setting, request number, status, written)
        let cases = [
            (AccessLog::All, 7, 200, true),
            (AccessLog::Sample(4), 0, 200, true),
            (AccessLog::Sample(4), 3, 200, false),
            (AccessLog::Sample(4), 8, 404, true),
            (AccessLog::Sample(4), 3, 502, true),
            (AccessLog::Errors, 0, 200, false),
            (AccessLog::Errors, 1, 404, false),
            (AccessLog::Errors, 1, 504, true),
            (AccessLog::Off, 0, 500, false),
        ];
        for (setting, sequence, status, want) in cases {
            assert_eq!(
                setting.writes(sequence, status),
                want,
                "{setting:?} {sequence} {status}"
            );
        }
    }
}

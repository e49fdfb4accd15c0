//! What the proxy tells operators about one request: one access line at `info` (target
//! `berth::access`) with request id, method, path, tenant, application, upstream, status and
//! duration, and a `proxy` span with the same fields at `debug` for the proxy's own events.
//!
//! The access line is the one thing written per request at the default level, so it is a
//! single event carrying every field: an `info` span would cost more than the line itself,
//! because the log layer formats a span's fields when it opens and again at every `record`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use tracing::field::Empty;

use super::resolve::Route;
use crate::auth::principal::Principal;

/// The facts about one proxied request, gathered while it is handled.
pub struct RequestTrace {
    pub span: tracing::Span,
    pub request_id: HeaderValue,
    start: Instant,
    principal: Option<Arc<Principal>>,
    route: Option<Arc<Route>>,
    upstream: Option<String>,
}

impl RequestTrace {
    pub fn start(request_id: HeaderValue) -> RequestTrace {
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

    /// Writes the access line; returns the time the request took.
    pub fn finish(&self, method: &str, path: &str, status: u16) -> Duration {
        let elapsed = self.start.elapsed();
        let micros = elapsed.as_micros() as u64;
        self.span.record("status", status);
        self.span.record("micros", micros);
        tracing::info!(
            target: "berth::access",
            request_id = %self.id(),
            method = %method,
            path = %path,
            tenant = %self.tenant(),
            application = %self.application(),
            upstream = %self.upstream_name(),
            status,
            micros,
        );
        elapsed
    }
}

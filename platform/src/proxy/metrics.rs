//! Prometheus metrics of the proxy: requests by application and status class, a latency
//! histogram (time to the upstream's response head), and upstream errors by kind; rendered by
//! `GET /metrics` for management-tenant users with ROLE_TENANT_MANAGEMENT_READ or _ADMIN.
//! Handles are created once per application (when its route is resolved), so recording
//! costs a few atomic operations and no allocation.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};
use metrics::{Counter, Histogram, counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::api::error::ApiError;
use crate::auth::roles;

pub const REQUESTS: &str = "berth_proxy_requests_total";
pub const DURATION: &str = "berth_proxy_request_duration_seconds";
pub const UPSTREAM_ERRORS: &str = "berth_proxy_upstream_errors_total";
/// Histogram buckets in seconds (1 ms … 60 s).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// How often histogram samples are folded into buckets (bounds their memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and starts its upkeep task on the current
/// Tokio runtime; returns the handle that renders the metrics.
pub fn install() -> PrometheusHandle {
    let handle = HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; proxy metrics go there");
        }
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        handle
    });
    handle.clone()
}

/// Status classes used as the `status` label.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metric handles of one application (or of requests that never reached one: `""`).
#[derive(Debug)]
pub struct AppMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    application: String,
}

impl AppMetrics {
    pub fn new(application: &str) -> AppMetrics {
        let by_class = CLASSES.map(
            |class| counter!(REQUESTS, "application" => application.to_owned(), "status" => class),
        );
        AppMetrics {
            by_class,
            duration: histogram!(DURATION, "application" => application.to_owned()),
            application: application.to_owned(),
        }
    }

    /// Counts one answered request and its latency.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }

    /// Counts an upstream failure (rare path: the handle is looked up each time).
    pub fn upstream_error(&self, kind: &'static str) {
        counter!(UPSTREAM_ERRORS, "application" => self.application.clone(), "kind" => kind)
            .increment(1);
    }
}

/// Metrics of requests refused before a route was found (401, 403, 404).
pub fn unrouted() -> &'static AppMetrics {
    static UNROUTED: OnceLock<AppMetrics> = OnceLock::new();
    UNROUTED.get_or_init(|| AppMetrics::new(""))
}

/// `GET /metrics`: the Prometheus text format, for management-tenant operators.
pub async fn render(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let principal = crate::auth::principal::authenticate(&req).await?;
    if !principal.is_management() {
        return Err(ApiError::forbidden());
    }
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_READ,
        roles::TENANT_MANAGEMENT_ADMIN,
    ])?;
    let handle = HANDLE
        .get()
        .ok_or_else(|| ApiError::internal("metrics recorder not installed"))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

//! Prometheus metrics of the proxy: requests by application and status class, a latency
//! histogram (time to the upstream's response head), and upstream errors by kind; rendered for
//! `GET /metrics` (`api::metrics`: management-tenant users with ROLE_TENANT_MANAGEMENT_READ or _ADMIN).
//! Handles are created once per application (when its route is resolved), so recording
//! costs a few atomic operations and no allocation.
//!
//! The exporter cannot remove one series, so what no longer exists is dropped when rendering:
//! series labelled with an `application` that was deleted, an `instance` whose container is
//! gone, or a deployment (`application` + `tenant` of `berth_deployment_*`) no longer wanted
//! are left out (see [`Live`]); the handles kept in the registry are a few hundred bytes each.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::routing::{LIVE, Live};

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

/// The labels of one sample line (`name{k="v",…} value`), unescaped.
fn labels_of(line: &str) -> Vec<(&str, String)> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        let Some(eq) = rest.find("=\"") else { break };
        let key = &rest[..eq];
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        labels.push((key, value));
        rest = &rest[end..];
        if rest.starts_with('}') {
            break;
        }
    }
    labels
}

/// Whether a rendered line describes something that still exists: comments always do;
/// samples only if their application exists and, once the supervisor has published what
/// runs, their instance and deployment too.
fn keep(line: &str, applications: &HashSet<String>, live: Option<&Live>) -> bool {
    if line.starts_with('#') || !line.contains('{') {
        return true;
    }
    let labels = labels_of(line);
    let get = |k: &str| labels.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
    if let Some(app) = get("application")
        && !app.is_empty()
        && !applications.contains(app)
    {
        return false;
    }
    let Some(live) = live else { return true };
    if let Some(instance) = get("instance")
        && !live.instances.contains(instance)
    {
        return false;
    }
    if line.starts_with("berth_deployment_")
        && let (Some(app), Some(tenant)) = (get("application"), get("tenant"))
        && !live.deployments.contains(&(app.clone(), tenant.clone()))
    {
        return false;
    }
    true
}

/// The rendered text without the series of what no longer exists.
fn filtered(text: &str, applications: &HashSet<String>) -> String {
    let live = LIVE.read().unwrap_or_else(|p| p.into_inner());
    let mut out = String::with_capacity(text.len());
    for line in text
        .lines()
        .filter(|l| keep(l, applications, live.as_ref()))
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

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

/// The Prometheus text format of every series, less those of what no longer exists
/// (`applications`: the names of the applications that do). None before [`install`].
pub fn render(applications: &HashSet<String>) -> Option<String> {
    Some(filtered(&HANDLE.get()?.render(), applications))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_what_is_gone_are_left_out() {
        let apps: HashSet<String> = ["kept".to_owned(), "we\"ird".to_owned()].into();
        let live = Live {
            deployments: [("kept".to_owned(), "t1".to_owned())].into(),
            instances: ["c1".to_owned()].into(),
        };
        let cases: &[(&str, Option<&Live>, bool)] = &[
            (
                "# TYPE berth_proxy_requests_total counter",
                Some(&live),
                true,
            ),
            ("berth_password_in_flight 0", Some(&live), true),
            (
                r#"berth_proxy_requests_total{application="",status="4xx"} 3"#,
                Some(&live),
                true,
            ),
            (
                r#"berth_proxy_requests_total{application="kept",status="2xx"} 3"#,
                Some(&live),
                true,
            ),
            (
                r#"berth_proxy_requests_total{application="gone",status="2xx"} 3"#,
                Some(&live),
                false,
            ),
            (
                r#"berth_proxy_requests_total{application="we\"ird",status="2xx"} 1"#,
                None,
                true,
            ),
            (
                r#"berth_instance_memory_bytes{application="kept",instance="c1"} 5"#,
                Some(&live),
                true,
            ),
            (
                r#"berth_instance_memory_bytes{application="kept",instance="c0"} 5"#,
                Some(&live),
                false,
            ),
            (
                r#"berth_instance_memory_bytes{application="kept",instance="c0"} 5"#,
                None,
                true,
            ),
            (
                r#"berth_deployment_replicas_desired{application="kept",tenant="t1"} 1"#,
                Some(&live),
                true,
            ),
            (
                r#"berth_deployment_replicas_desired{application="kept",tenant="t2"} 1"#,
                Some(&live),
                false,
            ),
            (
                r#"berth_proxy_request_duration_seconds_bucket{application="gone",le="0.5"} 1"#,
                None,
                false,
            ),
        ];
        for (line, live, want) in cases {
            assert_eq!(keep(line, &apps, *live), *want, "{line}");
        }
    }
}

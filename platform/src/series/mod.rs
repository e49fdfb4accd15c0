//! Prometheus series labelled by what comes and goes: applications, their deployments and their
//! instances. They live in a registry that can forget them (`prometheus-client`), so a series
//! goes when what it describes goes instead of staying in memory for the process's life: a
//! tenant creating, calling and deleting applications in a loop, or a service restarting in a
//! loop under new container names, would otherwise grow the registry without bound.
//!
//! * [`apps`]: per application (`application` label): proxied requests by status class, their
//!   latency, upstream errors by kind, container restarts and OOM kills, autoscaler decisions.
//!   Forgotten when no application of that name is left ([`Series::keep_applications`]).
//! * [`placement`]: per deployment and per instance, gauges the supervisor publishes after
//!   each pass as a whole; what the pass did not publish is removed.
//!
//! Process-wide series that never multiply (password hashing, reconcile passes, the
//! supervisor's map sizes) stay on the `metrics` facade and its Prometheus exporter, which
//! renders summaries; [`render`] writes both in the Prometheus text format (0.0.4).

pub mod apps;
pub mod placement;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use prometheus_client::registry::Registry;

/// How often histogram samples of the process-wide series are folded (bounds their memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The forgettable series and the registry that renders them.
pub struct Series {
    registry: Registry,
    pub apps: apps::AppFamilies,
    pub placement: placement::Placement,
    /// Application names that have series, so those of names no longer used can be removed
    /// (a family cannot be listed), each with the sweep epoch it was last named in.
    named: Mutex<HashMap<String, u64>>,
    epoch: AtomicU64,
}

/// The process's series.
pub fn get() -> &'static Series {
    static SERIES: OnceLock<Series> = OnceLock::new();
    SERIES.get_or_init(Series::new)
}

impl Series {
    fn new() -> Series {
        let mut registry = Registry::default();
        let apps = apps::AppFamilies::register(&mut registry);
        let placement = placement::Placement::register(&mut registry);
        Series {
            registry,
            apps,
            placement,
            named: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// These series in the Prometheus text format.
    fn encode(&self, text: &mut String) {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(text, &self.registry);
    }

    /// Notes that `application` has series (called after its handles are made).
    fn named(&self, application: &str) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        match named.get_mut(application) {
            Some(at) => *at = epoch,
            None => {
                named.insert(application.to_owned(), epoch);
            }
        }
    }

    /// Begins a sweep: call before reading which applications exist, and pass the result to
    /// [`Series::keep_applications`] with what was read.
    pub fn mark(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Removes the per-application series of every name not in `existing`, the names that
    /// existed when `mark` was taken. A name given series since (an application made after
    /// the read) is kept, and `""` (requests that reached no application) always is. Returns
    /// how many names went.
    pub fn keep_applications(&self, existing: &HashSet<String>, mark: u64) -> usize {
        let gone: Vec<String> = {
            let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = named
                .iter()
                .filter(|(n, at)| !n.is_empty() && **at < mark && !existing.contains(*n))
                .map(|(n, _)| n.clone())
                .collect();
            for name in &gone {
                named.remove(name);
            }
            gone
        };
        for name in &gone {
            self.apps.forget(name);
        }
        gone.len()
    }
}

static EXPORTER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder of the `metrics` facade (once) and starts its upkeep on
/// the current Tokio runtime.
pub fn install() {
    EXPORTER.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; process metrics go there");
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
}

/// Every series in the Prometheus text format: the process-wide ones (when [`install`]ed),
/// then those of applications, deployments and instances.
pub fn render() -> String {
    let mut text = EXPORTER.get().map(|h| h.render()).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    get().encode(&mut text);
    text
}

/// The `Content-Type` of [`render`]'s text.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Removes the series of applications that no longer exist (their names read from the
/// store, after a [`Series::mark`]); returns how many names went.
pub async fn sweep(store: &crate::Store) -> Result<usize, crate::store::StoreError> {
    let series = get();
    let mark = series.mark();
    let names = application_names(store).await?;
    Ok(series.keep_applications(&names, mark))
}

/// Runs [`sweep`] every `period`, so series of deleted applications go even when nobody
/// reads `/metrics`.
pub fn spawn_sweep(store: crate::Store, period: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            match sweep(&store).await {
                Ok(0) => {}
                Ok(gone) => tracing::debug!(gone, "series of deleted applications removed"),
                Err(e) => tracing::warn!(error = %e, "cannot list applications for metrics"),
            }
        }
    });
}

/// The names of the applications that exist.
async fn application_names(
    store: &crate::Store,
) -> Result<HashSet<String>, crate::store::StoreError> {
    store
        .run(|conn| {
            let mut stmt = conn.prepare("SELECT DISTINCT name FROM applications")?;
            let names = stmt
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<HashSet<String>, _>>()?;
            Ok(names)
        })
        .await
}
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::placement::{DeploymentLabels, DeploymentSample, InstanceLabels, InstanceSample};
    use super::*;

    fn text(series: &Series) -> String {
        // (Tests leak their own `Series`: the proxy's handles keep a `'static` one.)
        let mut text = String::new();
        series.encode(&mut text);
        text
    }

    fn names(list: &[&str]) -> HashSet<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn series_render_in_the_prometheus_text_format_dashboards_read() {
        let series: &'static Series = Box::leak(Box::new(Series::new()));
        let metrics = series.app_metrics("hello");
        metrics.record(200, Duration::from_micros(700));
        metrics.upstream_error("timeout");
        series.container_restart("hello");
        series.autoscaler_decision("hello", "up");
        let text = text(series);
        for line in [
            "# TYPE berth_proxy_requests_total counter",
            r#"berth_proxy_requests_total{application="hello",status="2xx"} 1"#,
            r#"berth_proxy_requests_total{application="hello",status="5xx"} 0"#,
            "# TYPE berth_proxy_request_duration_seconds histogram",
            r#"berth_proxy_request_duration_seconds_bucket{application="hello",le="0.001"} 1"#,
            r#"berth_proxy_request_duration_seconds_count{application="hello"} 1"#,
            r#"berth_proxy_upstream_errors_total{application="hello",kind="timeout"} 1"#,
            r#"berth_container_restarts_total{application="hello"} 1"#,
            r#"berth_autoscaler_decisions_total{application="hello",direction="up"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn a_sweep_removes_the_series_of_names_gone_and_keeps_those_named_after_its_read() {
        let series: &'static Series = Box::leak(Box::new(Series::new()));
        series.app_metrics("kept").record(200, Duration::ZERO);
        series.app_metrics("gone").record(200, Duration::ZERO);
        series.oom_kill("gone");
        series.autoscaler_decision("gone", "down");
        series.app_metrics("gone").upstream_error("broken");
        series.app_metrics("").record(404, Duration::ZERO);
        let mark = series.mark();
        // Made after the store was read: not in what was read, but kept.
        series.container_restart("new");
        let removed = series.keep_applications(&names(&["kept"]), mark);
        assert_eq!(removed, 1);
        let text = text(series);
        assert!(!text.contains(r#"application="gone""#), "{text}");
        for kept in ["kept", "new", ""] {
            assert!(
                text.contains(&format!(r#"application="{kept}""#)),
                "{kept} missing from\n{text}"
            );
        }
        // Nothing of "gone" is left to list either.
        let named = series.named.lock().unwrap();
        assert_eq!(
            named.keys().map(String::as_str).collect::<HashSet<_>>(),
            HashSet::from(["kept", "new", ""])
        );
    }

    #[test]
    fn a_pass_replaces_the_gauges_of_the_one_before() {
        let series = Series::new();
        let deployment = |application: &str, tenant: &str, active| DeploymentSample {
            labels: DeploymentLabels {
                application: application.to_owned(),
                tenant: tenant.to_owned(),
            },
            desired: 2,
            active,
            unhealthy: 2 - active,
        };
        let instance = |instance: &str, memory_bytes| InstanceSample {
            labels: InstanceLabels {
                application: "a".to_owned(),
                instance: instance.to_owned(),
            },
            cpu_cores: 0.25,
            memory_bytes,
        };
        series.placement.publish(
            &[deployment("a", "t1", 1), deployment("a", "t2", 2)],
            &[instance("a-1", 100), instance("a-2", 200)],
        );
        series
            .placement
            .publish(&[deployment("a", "t1", 2)], &[instance("a-3", 300)]);
        let text = text(&series);
        let want = [
            r#"berth_deployment_replicas_active{application="a",tenant="t1"} 2"#,
            r#"berth_deployment_replicas_unhealthy{application="a",tenant="t1"} 0"#,
            r#"berth_instance_memory_bytes{application="a",instance="a-3"} 300"#,
            r#"berth_instance_cpu_cores{application="a",instance="a-3"} 0.25"#,
        ];
        for line in want {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        for gone in [r#"tenant="t2""#, r#"instance="a-1""#, r#"instance="a-2""#] {
            assert!(!text.contains(gone), "{gone} still in\n{text}");
        }
    }
}

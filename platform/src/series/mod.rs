//! Prometheus series labelled by what comes and goes: applications, their deployments and their
//! instances. They live in a registry that can forget them (`prometheus-client`), so a series
//! goes when what it describes goes instead of staying in memory for the process's life: a
//! tenant creating, calling and deleting applications in a loop, or a service restarting in a
//! loop under new container names, would otherwise grow the registry without bound.
//!
//! * [`apps`]: per application (`owner` and `application` labels: names are unique per owner
//!   only): proxied requests by status class, their latency, upstream errors by kind, container
//!   restarts and OOM kills, autoscaler decisions. Forgotten when the owner has no application
//!   of that name any more ([`Series::keep_applications`]).
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

use crate::sync::MutexExt;

/// How often histogram samples of the process-wide series are folded (bounds their memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The forgettable series and the registry that renders them.
pub struct Series {
    registry: Registry,
    pub apps: apps::AppFamilies,
    pub placement: placement::Placement,
    /// Applications that have series, so those no longer existing can be removed (a family
    /// cannot be listed), each with the sweep epoch it was last named in.
    named: Mutex<HashMap<apps::AppLabel, u64>>,
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

    /// Notes that `app` has series (called after its handles are made).
    fn named(&self, app: &apps::AppLabel) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut named = self.named.locked();
        match named.get_mut(app) {
            Some(at) => *at = epoch,
            None => {
                named.insert(app.clone(), epoch);
            }
        }
    }

    /// Begins a sweep: call before reading which applications exist, and pass the result to
    /// [`Series::keep_applications`] with what was read.
    pub fn mark(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Removes the per-application series of every application not in `existing`, those that
    /// existed when `mark` was taken. One given series since (an application made after the
    /// read) is kept, and so are requests that reached no application. Returns how many
    /// applications' series went.
    pub fn keep_applications(&self, existing: &HashSet<apps::AppLabel>, mark: u64) -> usize {
        let gone: Vec<apps::AppLabel> = {
            let mut named = self.named.locked();
            let gone: Vec<apps::AppLabel> = named
                .iter()
                .filter(|(a, at)| !a.is_unrouted() && **at < mark && !existing.contains(*a))
                .map(|(a, _)| a.clone())
                .collect();
            for app in &gone {
                named.remove(app);
            }
            gone
        };
        for app in &gone {
            self.apps.forget(app);
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

/// Removes the series of applications that no longer exist (read from the store, after a
/// [`Series::mark`]); returns how many applications' series went.
pub async fn sweep(store: &crate::Store) -> Result<usize, crate::store::StoreError> {
    let series = get();
    let mark = series.mark();
    let existing = applications(store).await?;
    Ok(series.keep_applications(&existing, mark))
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

/// The applications that exist, as their series are labelled.
async fn applications(
    store: &crate::Store,
) -> Result<HashSet<apps::AppLabel>, crate::store::StoreError> {
    store
        .run(|conn| {
            let mut stmt = conn.prepare("SELECT owner_tenant, name FROM applications")?;
            let existing = stmt
                .query_map([], |row| {
                    Ok(apps::AppLabel::new(
                        &row.get::<_, String>(0)?,
                        &row.get::<_, String>(1)?,
                    ))
                })?
                .collect::<Result<HashSet<_>, _>>()?;
            Ok(existing)
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

    fn app(owner: &str, name: &str) -> apps::AppLabel {
        apps::AppLabel::new(owner, name)
    }

    #[test]
    fn series_render_in_the_prometheus_text_format_dashboards_read() {
        let series: &'static Series = Box::leak(Box::new(Series::new()));
        let hello = app("t1", "hello");
        let metrics = series.app_metrics(hello.clone());
        metrics.record(200, Duration::from_micros(700));
        metrics.upstream_error("timeout");
        series.container_restart(&hello);
        series.autoscaler_decision(&hello, "up");
        let text = text(series);
        for line in [
            "# TYPE berth_proxy_requests_total counter",
            r#"berth_proxy_requests_total{owner="t1",application="hello",status="2xx"} 1"#,
            r#"berth_proxy_requests_total{owner="t1",application="hello",status="5xx"} 0"#,
            "# TYPE berth_proxy_request_duration_seconds histogram",
            r#"berth_proxy_request_duration_seconds_bucket{owner="t1",application="hello",le="0.001"} 1"#,
            r#"berth_proxy_request_duration_seconds_count{owner="t1",application="hello"} 1"#,
            r#"berth_proxy_upstream_errors_total{owner="t1",application="hello",kind="timeout"} 1"#,
            r#"berth_container_restarts_total{owner="t1",application="hello"} 1"#,
            r#"berth_autoscaler_decisions_total{owner="t1",application="hello",direction="up"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn two_owners_applications_of_one_name_keep_apart() {
        let series: &'static Series = Box::leak(Box::new(Series::new()));
        series
            .app_metrics(app("t1", "hello"))
            .record(200, Duration::ZERO);
        series
            .app_metrics(app("t2", "hello"))
            .record(500, Duration::ZERO);
        let rendered = text(series);
        for line in [
            r#"berth_proxy_requests_total{owner="t1",application="hello",status="2xx"} 1"#,
            r#"berth_proxy_requests_total{owner="t1",application="hello",status="5xx"} 0"#,
            r#"berth_proxy_requests_total{owner="t2",application="hello",status="5xx"} 1"#,
            r#"berth_proxy_requests_total{owner="t2",application="hello",status="2xx"} 0"#,
        ] {
            assert!(
                rendered.lines().any(|l| l == line),
                "{line} missing from\n{rendered}"
            );
        }
        // t2 deleted its hello: t1's stays.
        let mark = series.mark();
        assert_eq!(
            series.keep_applications(&HashSet::from([app("t1", "hello")]), mark),
            1
        );
        let rendered = text(series);
        assert!(
            rendered.contains(r#"owner="t1",application="hello""#),
            "{rendered}"
        );
        assert!(!rendered.contains(r#"owner="t2""#), "{rendered}");
    }

    #[test]
    fn a_sweep_removes_the_series_of_applications_gone_and_keeps_those_named_after_its_read() {
        let series: &'static Series = Box::leak(Box::new(Series::new()));
        let (kept, gone, new) = (app("t1", "kept"), app("t1", "gone"), app("t1", "new"));
        series.app_metrics(kept.clone()).record(200, Duration::ZERO);
        series.app_metrics(gone.clone()).record(200, Duration::ZERO);
        series.oom_kill(&gone);
        series.autoscaler_decision(&gone, "down");
        series.app_metrics(gone.clone()).upstream_error("broken");
        series.app_metrics(app("", "")).record(404, Duration::ZERO);
        let mark = series.mark();
        // Made after the store was read: not in what was read, but kept.
        series.container_restart(&new);
        let removed = series.keep_applications(&HashSet::from([kept.clone()]), mark);
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
            named.keys().cloned().collect::<HashSet<_>>(),
            HashSet::from([kept, new, app("", "")])
        );
    }

    #[test]
    fn a_pass_replaces_the_gauges_of_the_one_before() {
        let series = Series::new();
        let deployment = |application: &str, tenant: &str, active| DeploymentSample {
            labels: DeploymentLabels {
                owner: "t0".to_owned(),
                application: application.to_owned(),
                tenant: tenant.to_owned(),
            },
            desired: 2,
            active,
            unhealthy: 2 - active,
        };
        let instance = |instance: &str, memory_bytes| InstanceSample {
            labels: InstanceLabels {
                owner: "t0".to_owned(),
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
            r#"berth_deployment_replicas_active{owner="t0",application="a",tenant="t1"} 2"#,
            r#"berth_deployment_replicas_unhealthy{owner="t0",application="a",tenant="t1"} 0"#,
            r#"berth_instance_memory_bytes{owner="t0",application="a",instance="a-3"} 300"#,
            r#"berth_instance_cpu_cores{owner="t0",application="a",instance="a-3"} 0.25"#,
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

//! Series labelled by application (its owner tenant and name): what the proxy counts per
//! request (handles made once per application when its route is resolved, so recording costs
//! a few atomic operations and one uncontended lock), and what the supervisor counts per
//! container exit and scaling decision.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Histogram buckets in seconds (1 ms … 60 s).
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Status classes used as the `status` label.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The kinds of upstream error the proxy counts (`proxy::error::ProxyError::kind`).
pub const UPSTREAM_ERROR_KINDS: [&str; 11] = [
    "unauthenticated",
    "unknown_service",
    "ambiguous",
    "not_subscribed",
    "not_ready",
    "busy",
    "refused",
    "broken",
    "timeout",
    "bad_request",
    "internal",
];
/// Autoscaler decisions.
pub const DIRECTIONS: [&str; 3] = ["up", "down", "none"];

/// Which application a series describes: its owner tenant and name (a name is unique only
/// per owner, so two tenants' applications of one name keep apart).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    owner: String,
    application: String,
}

impl AppLabel {
    pub fn new(owner: &str, application: &str) -> AppLabel {
        AppLabel {
            owner: owner.to_owned(),
            application: application.to_owned(),
        }
    }

    /// Requests that reached no application.
    fn unrouted() -> AppLabel {
        AppLabel::new("", "")
    }

    pub(super) fn is_unrouted(&self) -> bool {
        self.owner.is_empty() && self.application.is_empty()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    #[prometheus(flatten)]
    app: AppLabel,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    #[prometheus(flatten)]
    app: AppLabel,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    #[prometheus(flatten)]
    app: AppLabel,
    direction: &'static str,
}

type Histograms = Family<AppLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The per-application families.
pub struct AppFamilies {
    requests: Family<StatusLabels, Counter>,
    duration: Histograms,
    upstream_errors: Family<KindLabels, Counter>,
    restarts: Family<AppLabel, Counter>,
    oom_kills: Family<AppLabel, Counter>,
    decisions: Family<DirectionLabels, Counter>,
}

impl AppFamilies {
    pub(super) fn register(registry: &mut Registry) -> AppFamilies {
        let families = AppFamilies {
            requests: Family::default(),
            duration: Histograms::new_with_constructor(latency_histogram),
            upstream_errors: Family::default(),
            restarts: Family::default(),
            oom_kills: Family::default(),
            decisions: Family::default(),
        };
        registry.register(
            "berth_proxy_requests",
            "Requests through /service/… by application and status class",
            families.requests.clone(),
        );
        registry.register(
            "berth_proxy_request_duration_seconds",
            "Time to the upstream's response head, by application",
            families.duration.clone(),
        );
        registry.register(
            "berth_proxy_upstream_errors",
            "Failed proxied requests by application and kind",
            families.upstream_errors.clone(),
        );
        registry.register(
            "berth_container_restarts",
            "Container exits followed by a restart, by application",
            families.restarts.clone(),
        );
        registry.register(
            "berth_container_oom_kills",
            "Containers killed at their memory limit, by application",
            families.oom_kills.clone(),
        );
        registry.register(
            "berth_autoscaler_decisions",
            "Autoscaler decisions by application and direction",
            families.decisions.clone(),
        );
        families
    }

    /// Removes every series of `app`.
    pub(super) fn forget(&self, app: &AppLabel) {
        for status in CLASSES {
            self.requests.remove(&StatusLabels {
                app: app.clone(),
                status,
            });
        }
        for kind in UPSTREAM_ERROR_KINDS {
            self.upstream_errors.remove(&KindLabels {
                app: app.clone(),
                kind,
            });
        }
        for direction in DIRECTIONS {
            self.decisions.remove(&DirectionLabels {
                app: app.clone(),
                direction,
            });
        }
        self.duration.remove(app);
        self.restarts.remove(app);
        self.oom_kills.remove(app);
    }
}

/// The proxy's handles of one application (or of requests that never reached one).
pub struct AppMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    app: AppLabel,
    series: &'static super::Series,
}

impl std::fmt::Debug for AppMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppMetrics")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl AppMetrics {
    pub fn new(owner: &str, application: &str) -> AppMetrics {
        super::get().app_metrics(AppLabel::new(owner, application))
    }

    /// Counts one answered request and its latency.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts an upstream failure (rare path: the handle is looked up each time).
    pub fn upstream_error(&self, kind: &'static str) {
        debug_assert!(UPSTREAM_ERROR_KINDS.contains(&kind), "unlisted kind {kind}");
        let series = self.series;
        series
            .apps
            .upstream_errors
            .get_or_create(&KindLabels {
                app: self.app.clone(),
                kind,
            })
            .inc();
        series.named(&self.app);
    }
}

/// Metrics of requests refused before a route was found (401, 403, 404).
pub fn unrouted() -> &'static AppMetrics {
    static UNROUTED: OnceLock<AppMetrics> = OnceLock::new();
    UNROUTED.get_or_init(|| super::get().app_metrics(AppLabel::unrouted()))
}

impl super::Series {
    /// The proxy's handles of `app`.
    pub fn app_metrics(&'static self, app: AppLabel) -> AppMetrics {
        let by_class = CLASSES.map(|status| {
            self.apps.requests.get_or_create_owned(&StatusLabels {
                app: app.clone(),
                status,
            })
        });
        let duration = self.apps.duration.get_or_create_owned(&app);
        // After the handles exist: a sweep in between then sees the name (see `Series::named`).
        self.named(&app);
        AppMetrics {
            by_class,
            duration,
            app,
            series: self,
        }
    }

    /// Counts a container exit followed by a restart.
    pub fn container_restart(&self, app: &AppLabel) {
        self.count(&self.apps.restarts, app);
    }

    /// Counts a container killed at its memory limit.
    pub fn oom_kill(&self, app: &AppLabel) {
        self.count(&self.apps.oom_kills, app);
    }

    /// Counts an autoscaler decision (`direction`: one of [`DIRECTIONS`]).
    pub fn autoscaler_decision(&self, app: &AppLabel, direction: &'static str) {
        debug_assert!(
            DIRECTIONS.contains(&direction),
            "unlisted direction {direction}"
        );
        self.apps
            .decisions
            .get_or_create(&DirectionLabels {
                app: app.clone(),
                direction,
            })
            .inc();
        self.named(app);
    }

    fn count(&self, family: &Family<AppLabel, Counter>, app: &AppLabel) {
        family.get_or_create(app).inc();
        self.named(app);
    }
}

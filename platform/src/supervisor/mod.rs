//! The container supervisor: a level-triggered, idempotent reconcile loop. Desired state comes
//! from the database (subscribed microservices, see [`spec`]), actual state from Docker
//! (containers and networks found by Berth's labels); each pass converges one towards the other,
//! publishes ready upstreams to the [`RoutingTable`] and the per-application status.
//!
//! A pass runs when poked (API handlers after every change, probe results, Docker `die`/`oom`
//! events, a restart back-off expiring, the proxy reporting a refused upstream) and at least
//! every `reconcile_interval`. Invariants:
//! * only objects labelled with this installation's id are ever touched;
//! * a deployment's network exists before its containers; containers go before networks;
//! * a new revision's containers start before the old ones stop, and the old ones stop only
//!   when every new replica is ready (zero-downtime rollout); a rollout that is not ready within
//!   `rollout_timeout` is rolled back to the last stable version;
//! * after a Berth restart, running containers are adopted (never duplicated), containers of
//!   no desired deployment are removed, missing ones created.
//! * `scale: AUTO` deployments run the replica count their [`autoscale`] decision gives (never
//!   below the manifest's `replicas`, never above the configured maximum); a removed replica
//!   leaves routing first and is stopped only after the drain period;
//! * every scaling decision that changes the count, every exit (OOM kills apart), failed start
//!   and alarm raise/clear is an audit record ([`journal`]) written off the loop;
//! * a deployment starting for the first time raises no alarm until its startup grace is over
//!   ([`startup_grace`]), unless it crash-loops; once one of its replicas was ready, having none
//!   is `c8y_Application_Down` at once.

pub mod autoscale;
pub mod backoff;
pub mod journal;
pub mod probes;
pub mod spec;
pub mod subnets;
pub mod usage;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::routing::{DeploymentKey, RoutingTable, Upstream};
use crate::runtime::{
    InstanceInfo as ContainerInfo, InstanceSpec, LABEL_INSTALLATION, NetworkInfo, NetworkSpec,
    Runtime, firewall, images,
};
use crate::secrets::{Secrets, bootstrap_context, service_context};
use crate::store::autoscaler as store_autoscaler;
use crate::store::{Store, StoreError, applications, audit, options, subscriptions};
use autoscale::{Decision, Policy};
use probes::{ProbeState, SharedProbeState};
use spec::{Deployment, Inputs, Platform};
use usage::SharedUsage;

const LABEL_APP: &str = "berth.app";
const LABEL_DEPLOYMENT: &str = "berth.deployment";
const LABEL_TENANT: &str = "berth.tenant";
const LABEL_VERSION: &str = "berth.version";
const LABEL_REVISION: &str = "berth.revision";
const LABEL_REPLICA: &str = "berth.replica";
/// Docker's "never" timestamp of a container that has not finished (or started).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Supervisor settings (from the server configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    pub installation: String,
    pub extra_labels: Vec<(String, String)>,
    pub reconcile_interval: Duration,
    pub rollout_timeout: Duration,
    pub pids_limit: i64,
    pub platform: Platform,
    pub autoscaling: Autoscaling,
    /// How long a replica without readiness probe that the proxy ejected may take to answer a
    /// plain `GET /` before it counts as unresponsive (the proxy's connect timeout).
    pub answer_timeout: Duration,
    /// Where deployment network subnets come from.
    pub network_pool: subnets::Pool,
}

/// Settings of the CPU autoscaler and of scale-down draining.
#[derive(Debug, Clone, Copy)]
pub struct Autoscaling {
    pub period: Duration,
    /// Target utilisation as a fraction of each replica's CPU limit.
    pub target: f64,
    pub scale_down_window: Duration,
    pub max_replicas: u32,
    pub drain_period: Duration,
}

/// The HPA's default tolerance band around the target.
pub const TOLERANCE: f64 = 0.1;

/// One deployment's autoscaler between decisions.
#[derive(Debug)]
struct Scaler {
    /// The manifest's `replicas`.
    min_replicas: u32,
    replicas: u32,
    next_decision: Instant,
    /// Recommendations of the scale-down window, oldest first.
    history: VecDeque<(Instant, u32)>,
    last: Option<Decision>,
    last_time: Option<String>,
}

/// OOM kills of one deployment.
#[derive(Debug, Default, Clone)]
struct OomKills {
    count: u32,
    last_time: Option<String>,
    last_peak_bytes: Option<u64>,
}

/// When this process first wanted a deployment, and whether any of its replicas has been ready
/// since: a deployment none of whose replicas was ever ready is starting, not down, within its
/// startup grace.
#[derive(Debug, Clone, Copy)]
struct Startup {
    since: Instant,
    ever_ready: bool,
}

impl Startup {
    /// Still starting for the first time: nothing was ever ready, the grace is not over, and
    /// the replicas are not crash-looping (which no amount of waiting mends).
    fn starting(&self, now: Instant, grace: Duration, crash_loop: bool) -> bool {
        !self.ever_ready && !crash_loop && now.duration_since(self.since) < grace
    }
}

/// How long a deployment starting for the first time may go without a ready replica before it
/// counts as down: its readiness probe's `initialDelaySeconds + failureThreshold ×
/// periodSeconds` (the time Kubernetes' probe needs to give up on a start), and for a deployment
/// without one, the same with Kubernetes' defaults (0 + 3 × 10 s): it is ready once running,
/// and that should not take longer.
fn startup_grace(readiness: Option<&manifests_schema::Probe>) -> Duration {
    use manifests_schema::Probe;
    let (initial, failures, period) = readiness.map_or(
        (
            Probe::DEFAULT_INITIAL_DELAY_SECONDS,
            Probe::DEFAULT_FAILURE_THRESHOLD,
            Probe::DEFAULT_PERIOD_SECONDS,
        ),
        |p| {
            (
                p.initial_delay_seconds,
                p.failure_threshold.max(1),
                p.period_seconds.max(1),
            )
        },
    );
    Duration::from_secs(u64::from(initial) + u64::from(failures) * u64::from(period))
}

/// Alarm types of the contract (§4.3).
const ALARM_DOWN: &str = "c8y_Application_Down";
const ALARM_UNHEALTHY: &str = "c8y_Application_Unhealthy";

/// The API's view of the supervisor: poke it, read status, find instances, check peers.
#[derive(Debug, Clone)]
pub struct Handle {
    wake: Arc<Notify>,
    status: Arc<RwLock<HashMap<i64, Value>>>,
    /// Instance name → (application id, container id).
    instances: Arc<RwLock<HashMap<String, (i64, String)>>>,
    /// Subnets of Berth's networks: (network address, prefix length).
    subnets: Arc<RwLock<Vec<(IpAddr, u8)>>>,
    /// Convergence requests handed out ([`Handle::converge`] takes the next number)…
    requested: Arc<AtomicU64>,
    /// …and the highest one a completed pass had seen when it started (so it read the
    /// database after that request's change).
    covered: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Handle {
    /// Asks for a reconcile pass soon (never blocks; several pokes coalesce).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Pokes and waits (at most `limit`) until a pass that started after this call completed,
    /// so the caller sees Docker converged to the database (e.g. containers of a deleted
    /// application gone before its image is removed). False on timeout.
    pub async fn converge(&self, limit: Duration) -> bool {
        let mut covered = self.covered.subscribe();
        // A pass that starts after this number was taken reads the database after our change;
        // a pass already running may not have, and is not waited for beyond its end.
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.poke();
        let done = covered.wait_for(|c| *c >= ticket);
        matches!(tokio::time::timeout(limit, done).await, Ok(Ok(_)))
    }

    /// The status fragment of an application (None if it has no deployment).
    pub fn status(&self, application_id: i64) -> Option<Value> {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&application_id)
            .cloned()
    }

    /// The container of `instance` if it belongs to `application_id`.
    pub fn instance_container(&self, application_id: i64, instance: &str) -> Option<String> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .filter(|(app, _)| *app == application_id)
            .map(|(_, id)| id.clone())
    }

    /// True when `ip` is inside one of Berth's container networks.
    pub fn is_container_peer(&self, ip: IpAddr) -> bool {
        self.subnets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(net, prefix)| in_subnet(ip, *net, *prefix))
    }
}

fn in_subnet(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn parse_subnet(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    Some((addr.parse().ok()?, prefix.parse().ok()?))
}

/// What the supervisor remembers about one container between passes.
#[derive(Debug)]
struct Instance {
    app: i64,
    /// The container name, which is the instance name of the status and logs endpoints.
    name: String,
    /// Exits already counted (by `finished_at`).
    counted_exit: String,
    restarts: u32,
    consecutive_failures: u32,
    next_start: Option<Instant>,
    last_failure: Option<String>,
    /// The run the probe task watches (`started_at`), and the task.
    probed_run: String,
    probe_task: Option<JoinHandle<()>>,
    probe_state: SharedProbeState,
    running_since: Option<Instant>,
    /// Stats of the current run, followed by `usage_task`.
    usage: SharedUsage,
    usage_task: Option<JoinHandle<()>>,
}

impl Instance {
    fn new(app: i64, name: &str) -> Instance {
        Instance {
            app,
            name: name.to_owned(),
            counted_exit: String::new(),
            restarts: 0,
            consecutive_failures: 0,
            next_start: None,
            last_failure: None,
            probed_run: String::new(),
            probe_task: None,
            probe_state: Arc::new(Mutex::new(ProbeState::default())),
            running_since: None,
            usage: SharedUsage::default(),
            usage_task: None,
        }
    }

    /// Stops the probe and stats tasks (the last stats stay readable for the exit record).
    fn stop_probes(&mut self) {
        if let Some(task) = self.probe_task.take() {
            task.abort();
        }
        if let Some(task) = self.usage_task.take() {
            task.abort();
        }
        self.probed_run.clear();
        *self.probe_state.lock().unwrap_or_else(|p| p.into_inner()) = ProbeState::default();
    }

    fn ready(&self) -> bool {
        self.probe_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ready
    }

    /// Why the proxy's ejection made it unready, while it does not answer.
    fn unresponsive(&self) -> Option<String> {
        self.probe_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unresponsive
            .clone()
    }
}

/// A failure to start something, remembered per (deployment, replica) so creation failures
/// back off too.
#[derive(Debug, Default)]
struct CreateFailures {
    failures: u32,
    next_try: Option<Instant>,
    reason: String,
}

pub struct Supervisor {
    settings: Settings,
    store: Store,
    runtime: Arc<dyn Runtime>,
    secrets: Arc<Secrets>,
    routing: RoutingTable,
    handle: Handle,
    instances: HashMap<String, Instance>,
    create_failures: HashMap<(DeploymentKey, u32), CreateFailures>,
    rollouts: HashMap<(i64, String), Instant>,
    /// Deployments whose manifest could not be used, with the reason.
    broken: HashMap<i64, String>,
    /// Per application of the last pass: (active version, stable version).
    rollout_apps: HashMap<i64, (String, Option<String>)>,
    /// Per application: how long its active version may take to become ready.
    rollout_deadlines: HashMap<i64, Duration>,
    /// Autoscalers of `scale: AUTO` deployments.
    scalers: HashMap<DeploymentKey, Scaler>,
    /// Scale-down windows saved by an earlier process, by deployment, taken up when the
    /// deployment's autoscaler is made again (so a restart does not forget them).
    saved_windows: HashMap<String, store_autoscaler::Window>,
    /// Containers removed from routing by a scale-down, stopped at the deadline.
    draining: HashMap<String, Instant>,
    oom_kills: HashMap<DeploymentKey, OomKills>,
    /// Alarms raised per application (type → text), to record raise/clear once.
    alarms: HashMap<i64, BTreeMap<String, String>>,
    /// First start of each deployment (no alarm while it is starting).
    startups: HashMap<DeploymentKey, Startup>,
    /// Per application: (owner tenant, name), for records.
    app_names: HashMap<i64, (String, String)>,
    /// When this process made its supervisor: image tags older than this that no version
    /// refers to are leftovers of an earlier process, never an upload in flight.
    started: time::OffsetDateTime,
}

impl Supervisor {
    pub fn new(
        settings: Settings,
        store: Store,
        runtime: Arc<dyn Runtime>,
        secrets: Arc<Secrets>,
        routing: RoutingTable,
    ) -> Supervisor {
        Supervisor {
            settings,
            store,
            runtime,
            secrets,
            routing,
            handle: Handle {
                wake: Arc::new(Notify::new()),
                status: Arc::default(),
                instances: Arc::default(),
                subnets: Arc::default(),
                requested: Arc::new(AtomicU64::new(0)),
                covered: Arc::new(tokio::sync::watch::channel(0).0),
            },
            instances: HashMap::new(),
            create_failures: HashMap::new(),
            rollouts: HashMap::new(),
            broken: HashMap::new(),
            rollout_apps: HashMap::new(),
            rollout_deadlines: HashMap::new(),
            scalers: HashMap::new(),
            saved_windows: HashMap::new(),
            draining: HashMap::new(),
            oom_kills: HashMap::new(),
            alarms: HashMap::new(),
            startups: HashMap::new(),
            app_names: HashMap::new(),
            started: time::OffsetDateTime::now_utc(),
        }
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs forever: one pass now, then on every poke, event, expiring back-off or interval.
    pub async fn run(mut self) {
        self.remove_orphan_images().await;
        match self.store.run(|c| store_autoscaler::load(c)).await {
            Ok(windows) => {
                self.saved_windows = windows
                    .into_iter()
                    .map(|w| (w.deployment.clone(), w))
                    .collect();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the autoscalers' windows"),
        }
        let events = self.watch_events();
        loop {
            let covering = self.handle.requested.load(Ordering::SeqCst);
            let began = Instant::now();
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "reconcile pass failed; retrying");
            }
            // A summary (quantiles, sum, count) on /metrics: how long passes take at scale.
            metrics::histogram!("berth_reconcile_pass_seconds")
                .record(began.elapsed().as_secs_f64());
            self.handle.covered.send_modify(|c| *c = (*c).max(covering));
            let now = Instant::now();
            let mut wait = self.settings.reconcile_interval;
            let deadlines = self
                .instances
                .values()
                .filter_map(|i| i.next_start)
                .chain(self.create_failures.values().filter_map(|f| f.next_try))
                .chain(self.draining.values().copied())
                .chain(self.scalers.values().map(|s| s.next_decision));
            for deadline in deadlines {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            tokio::select! {
                () = self.handle.wake.notified() => {}
                () = self.routing.refused_reported() => {}
                () = tokio::time::sleep(wait) => {}
            }
            if events.is_finished() {
                tracing::warn!("Docker event watcher ended");
            }
        }
    }

    /// Removes this installation's image tags that no version refers to: Berth killed between
    /// `docker load` and the upload's commit leaves one (and its image, when no other tag holds
    /// it). Only tags older than this process count, so an upload in flight keeps its tag.
    async fn remove_orphan_images(&self) {
        let prefix = images::repository_prefix(&self.settings.installation);
        let tags = match self.runtime.tags_older_than(&prefix, self.started).await {
            Ok(tags) => tags,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list this installation's images");
                return;
            }
        };
        if tags.is_empty() {
            return;
        }
        let known = match self.store.run(applications::image_tags).await {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the versions' image tags");
                return;
            }
        };
        for tag in tags.iter().filter(|t| !known.contains(*t)) {
            match self.runtime.remove_image(tag).await {
                Ok(()) => {
                    tracing::info!(%tag, "removed an image tag no application version refers to")
                }
                Err(e) => tracing::warn!(%tag, error = %e, "cannot remove an orphaned image tag"),
            }
        }
    }

    /// Pokes the loop on every `die`/`oom` of our containers (fast restarts); reconnects if the
    /// event stream breaks.
    fn watch_events(&self) -> JoinHandle<()> {
        let runtime = Arc::clone(&self.runtime);
        let wake = Arc::clone(&self.handle.wake);
        let installation = self.settings.installation.clone();
        tokio::spawn(async move {
            loop {
                let labels = [(LABEL_INSTALLATION, installation.as_str())];
                let mut events = std::pin::pin!(runtime.events(&labels));
                while let Some(event) = events.next().await {
                    match event {
                        Ok(e) => {
                            tracing::debug!(container = %e.instance_id, action = %e.action, "container event");
                            wake.notify_one();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Docker event stream failed");
                            break;
                        }
                    }
                }
                // The engine went away or the stream closed: reconnect shortly, and reconcile
                // meanwhile (events may have been missed).
                wake.notify_one();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    fn labels(&self) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> =
            self.settings.extra_labels.iter().cloned().collect();
        labels.insert(
            LABEL_INSTALLATION.to_owned(),
            self.settings.installation.clone(),
        );
        labels
    }

    fn short_id(&self) -> &str {
        let id = &self.settings.installation;
        &id[..id.len().min(8)]
    }

    fn network_name(&self, key: &DeploymentKey) -> String {
        format!(
            "berth-{}-{}-{}",
            self.short_id(),
            key.application_id,
            docker_safe(key.tenant.as_deref().unwrap_or("shared"))
        )
    }

    /// Reads the desired deployments (opening sealed passwords, reading owner options).
    async fn desired(&mut self) -> Result<BTreeMap<DeploymentKey, Deployment>, String> {
        let apps = self
            .store
            .run(|c| {
                let apps = subscriptions::desired(c)?;
                let mut with_options = Vec::new();
                for app in apps {
                    let runtime_options: BTreeMap<String, String> =
                        options::category(c, &app.owner, spec::RUNTIME_CATEGORY)?
                            .into_iter()
                            .filter(|o| !o.encrypted)
                            .map(|o| (o.key, o.value))
                            .collect();
                    with_options.push((app, runtime_options));
                }
                Ok(with_options)
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut desired = BTreeMap::new();
        self.broken.clear();
        for (app, runtime_options) in apps {
            let opened = (|| {
                let bootstrap_password = self
                    .secrets
                    .open(
                        &bootstrap_context(&app.owner, &app.bootstrap_user),
                        &app.bootstrap_password_sealed,
                    )
                    .map_err(|e| e.to_string())?;
                let mut service_users = Vec::new();
                for sub in &app.subscriptions {
                    let password = self
                        .secrets
                        .open(
                            &service_context(&sub.tenant, &sub.service_user),
                            &sub.service_password_sealed,
                        )
                        .map_err(|e| e.to_string())?;
                    service_users.push((sub.tenant.clone(), sub.service_user.clone(), password));
                }
                Ok::<_, String>((bootstrap_password, service_users))
            })();
            let id = app.application_id;
            let result = opened.and_then(|(bootstrap_password, service_users)| {
                let inputs = Inputs {
                    app,
                    bootstrap_password,
                    service_users,
                    runtime_options,
                };
                spec::deployments(&inputs, &self.settings.platform).map(|deps| (inputs.app, deps))
            });
            match result {
                Ok((app, deps)) => {
                    self.app_names
                        .insert(app.application_id, (app.owner.clone(), app.name.clone()));
                    for dep in deps {
                        desired.insert(dep.key.clone(), (app.clone(), dep));
                    }
                }
                Err(reason) => {
                    tracing::warn!(application = id, %reason, "cannot deploy");
                    self.broken.insert(id, reason);
                }
            }
        }
        self.rollout_apps = desired
            .values()
            .map(|(app, _)| {
                (
                    app.application_id,
                    (app.active_version.clone(), app.stable_version.clone()),
                )
            })
            .collect();
        self.rollout_deadlines = desired
            .values()
            .map(|(app, dep)| {
                (
                    app.application_id,
                    rollout_deadline(self.settings.rollout_timeout, dep.readiness.as_ref()),
                )
            })
            .collect();
        Ok(desired.into_iter().map(|(k, (_, d))| (k, d)).collect())
    }

    /// One reconcile pass.
    async fn pass(&mut self) -> Result<(), String> {
        let desired = self.desired().await?;
        let installation = self.settings.installation.clone();
        let ours = [(LABEL_INSTALLATION, installation.as_str())];
        let containers = self
            .runtime
            .instances(&ours)
            .await
            .map_err(|e| e.to_string())?;
        // Containers being removed (`docker rm -f`) are gone already: their replica is
        // created anew in this pass instead of being restarted (which Docker refuses).
        let containers: Vec<ContainerInfo> =
            containers.into_iter().filter(|c| !c.removing).collect();
        // Forget containers that no longer exist (removed by hand, or by an earlier pass).
        let existing: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.instances.retain(|id, instance| {
            let keep = existing.contains(id.as_str());
            if !keep {
                instance.stop_probes();
            }
            keep
        });
        let live_instances: HashSet<String> = containers.iter().map(|c| c.name.clone()).collect();
        let mut by_deployment: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
        let mut orphans = Vec::new();
        let desired_names: HashMap<String, &DeploymentKey> =
            desired.keys().map(|k| (k.to_string(), k)).collect();
        for c in containers {
            match c.labels.get(LABEL_DEPLOYMENT) {
                Some(d) if desired_names.contains_key(d) => {
                    by_deployment.entry(d.clone()).or_default().push(c)
                }
                _ => orphans.push(c),
            }
        }
        // Orphans first: frees names, addresses and memory.
        for c in &orphans {
            tracing::info!(container = %c.name, "removing container of no desired deployment");
            self.remove(c).await;
        }
        // Networks of no desired deployment (their containers are gone): before any new
        // network is made, so an unsubscribe frees its subnet for this very pass.
        let wanted: HashSet<String> = desired.keys().map(|k| self.network_name(k)).collect();
        match self.runtime.networks(&ours).await {
            Ok(networks) => {
                for n in networks.into_iter().filter(|n| !wanted.contains(&n.name)) {
                    tracing::info!(network = %n.name, "removing network of no desired deployment");
                    if let Err(e) = self.runtime.remove_network(&n.name).await {
                        tracing::warn!(network = %n.name, error = %e, "cannot remove network");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list networks"),
        }
        let mut subnets = Vec::new();
        let mut app_ready: HashMap<i64, bool> = HashMap::new();
        let mut statuses: HashMap<i64, Vec<Value>> = HashMap::new();
        // Subnets in use on the engine, read once per pass and only if a network is missing.
        let mut in_use = None;
        for (key, dep) in &desired {
            let network = self.network_name(key);
            let mut labels = self.labels();
            labels.insert(LABEL_APP.to_owned(), key.application_id.to_string());
            labels.insert(LABEL_DEPLOYMENT.to_owned(), key.to_string());
            let bridge = firewall::bridge_name(&self.settings.installation, &network);
            let net = match self
                .ensure_network(&network, &bridge, &labels, &mut in_use)
                .await
            {
                Ok(n) => {
                    self.routing.set_failure(key, None);
                    n
                }
                Err(reason) => {
                    tracing::warn!(deployment = %key, %reason, "cannot deploy");
                    // Visible where operators and tenants look: status, alarm, the proxy's 503.
                    self.routing.set_failure(key, Some(reason.clone()));
                    statuses
                        .entry(key.application_id)
                        .or_default()
                        .push(unplaced_status(dep, &reason));
                    continue;
                }
            };
            let fresh: Vec<(IpAddr, u8)> =
                net.subnets.iter().filter_map(|s| parse_subnet(s)).collect();
            {
                // Known to the internal API before any container of this network starts.
                let mut known = self
                    .handle
                    .subnets
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                for s in &fresh {
                    if !known.contains(s) {
                        known.push(*s);
                    }
                }
            }
            subnets.extend(fresh);
            let current = by_deployment.remove(&key.to_string()).unwrap_or_default();
            let scaled = self.autoscale(dep, &current);
            let (all_ready, status) = self.converge(&scaled, &network, labels, current).await;
            *app_ready.entry(key.application_id).or_insert(true) &= all_ready;
            statuses.entry(key.application_id).or_default().push(status);
        }
        *self
            .handle
            .subnets
            .write()
            .unwrap_or_else(|p| p.into_inner()) = subnets;
        for key in self.routing.keys() {
            if !desired.contains_key(&key) {
                self.routing.remove(&key);
            }
        }
        let names: HashSet<String> = self.instances.values().map(|i| i.name.clone()).collect();
        self.routing.forget_ejected_except(&names);
        let seen: HashSet<&DeploymentKey> = desired.keys().collect();
        self.routing.forget_failures_except(&seen);
        self.create_failures.retain(|(k, _), _| seen.contains(k));
        self.forget_windows(&seen);
        self.oom_kills.retain(|k, _| seen.contains(k));
        self.startups.retain(|k, _| seen.contains(k));
        let live: HashSet<&String> = self.instances.keys().collect();
        self.draining.retain(|id, _| live.contains(id));
        // What was kept per application goes with it (memory flat over churn).
        let apps: HashSet<i64> = desired.keys().map(|k| k.application_id).collect();
        self.app_names.retain(|id, _| apps.contains(id));
        self.rollouts.retain(|(id, _), _| apps.contains(id));
        crate::proxy::metrics::publish_live(crate::proxy::metrics::Live {
            deployments: desired
                .values()
                .map(|d| {
                    let tenant = d.key.tenant.clone().unwrap_or_default();
                    (d.application_name.clone(), tenant)
                })
                .collect(),
            instances: live_instances,
        });
        self.count_entries();
        self.rollout_step(&app_ready).await;
        self.publish_status(statuses);
        Ok(())
    }

    /// The network of a deployment, made on a free subnet of the pool if missing. `in_use`
    /// caches the engine's subnets for the pass (None: not read yet, or stale after a failure).
    async fn ensure_network(
        &self,
        name: &str,
        bridge: &str,
        labels: &HashMap<String, String>,
        in_use: &mut Option<Vec<subnets::Block>>,
    ) -> Result<NetworkInfo, String> {
        let found = self
            .runtime
            .network(name)
            .await
            .map_err(|e| format!("cannot inspect its network {name}: {e}"))?;
        match found {
            Some(n) if n.bridge.as_deref() == Some(bridge) => return Ok(n),
            Some(n) => {
                // Made before the firewall existed: an unmatched bridge would leave the host
                // open to its containers.
                tracing::warn!(
                    network = name,
                    "replacing a network whose bridge the host firewall does not cover"
                );
                self.runtime
                    .remove_network_and_instances(&n.id)
                    .await
                    .map_err(|e| format!("cannot replace its network {name}: {e}"))?;
            }
            None => {}
        }
        // Another installation on the engine may take the same block between our read and our
        // create (Docker then refuses the overlap): read afresh and try again, a few times.
        let mut last_error = String::new();
        for _ in 0..CREATE_NETWORK_ATTEMPTS {
            let taken = match in_use {
                Some(taken) => taken,
                None => {
                    let listed = self
                        .runtime
                        .subnets_in_use()
                        .await
                        .map_err(|e| format!("cannot list the engine's networks: {e}"))?;
                    in_use.insert(
                        listed
                            .iter()
                            .filter_map(|s| subnets::Block::parse(s))
                            .collect(),
                    )
                }
            };
            let pool = self.settings.network_pool;
            let Some(block) = pool.allocate(taken) else {
                return Err(format!(
                    "cannot create its network: all {} subnets (/{}) of the network pool {} are in use; unsubscribe tenants or widen network_pool",
                    pool.capacity(),
                    pool.subnet_prefix,
                    pool.pool
                ));
            };
            match self
                .runtime
                .create_network(&NetworkSpec {
                    name: name.to_owned(),
                    bridge: bridge.to_owned(),
                    labels: labels.clone(),
                    subnet: block.to_string(),
                })
                .await
            {
                Ok(n) => {
                    taken.push(block);
                    return Ok(n);
                }
                Err(e) => {
                    last_error = format!("cannot create its network on {block}: {e}");
                    *in_use = None;
                }
            }
        }
        Err(last_error)
    }

    async fn remove(&mut self, c: &ContainerInfo) {
        self.draining.remove(&c.id);
        if let Some(mut instance) = self.instances.remove(&c.id) {
            instance.stop_probes();
        }
        if let Err(e) = self.runtime.remove_instance(&c.id).await {
            tracing::warn!(container = %c.name, error = %e, "cannot remove container");
        }
    }

    /// Converges one deployment; returns whether every replica of its current revision is
    /// ready, and its status fragment.
    async fn converge(
        &mut self,
        dep: &Deployment,
        network: &str,
        mut labels: HashMap<String, String>,
        containers: Vec<ContainerInfo>,
    ) -> (bool, Value) {
        labels.insert(
            LABEL_TENANT.to_owned(),
            dep.key.tenant.clone().unwrap_or_default(),
        );
        labels.insert(LABEL_VERSION.to_owned(), dep.version.clone());
        labels.insert(LABEL_REVISION.to_owned(), dep.revision.clone());
        let (mut current, old): (Vec<_>, Vec<_>) = containers
            .into_iter()
            .partition(|c| c.labels.get(LABEL_REVISION) == Some(&dep.revision));
        current.sort_by(|a, b| a.name.cmp(&b.name));
        let mut kept: BTreeMap<u32, ContainerInfo> = BTreeMap::new();
        for c in current {
            let replica = c
                .labels
                .get(LABEL_REPLICA)
                .and_then(|r| r.parse::<u32>().ok());
            match replica {
                Some(r) if r < dep.replicas && !kept.contains_key(&r) => {
                    // Scaled up again while draining: it serves again.
                    self.draining.remove(&c.id);
                    kept.insert(r, c);
                }
                // Scaled down: out of routing now (not published below), stopped after the
                // drain period so requests in flight finish.
                Some(r) if r >= dep.replicas && c.running && !self.drained(&c.id) => {
                    tracing::info!(container = %c.name, "scaled down: draining");
                }
                // Drained, or a duplicate (e.g. a create raced a crash): remove.
                _ => self.remove(&c).await,
            }
        }
        for replica in 0..dep.replicas {
            match kept.get(&replica).cloned() {
                Some(c) => {
                    if let Some(updated) = self.keep_running(dep, c).await {
                        kept.insert(replica, updated);
                    } else {
                        // Vanished (removed by hand): replace it now, not a pass later.
                        kept.remove(&replica);
                        if let Some(created) = self.create(dep, network, &labels, replica).await {
                            kept.insert(replica, created);
                        }
                    }
                }
                None => {
                    if let Some(created) = self.create(dep, network, &labels, replica).await {
                        kept.insert(replica, created);
                    }
                }
            }
        }
        let ready_current: Vec<&ContainerInfo> = kept
            .values()
            .filter(|c| c.running && self.is_ready(&c.id))
            .collect();
        let all_ready = ready_current.len() == dep.replicas as usize;
        let mut old_kept = Vec::new();
        for c in old {
            if all_ready || !c.running {
                // Traffic has moved to the new revision (or the old one is dead anyway).
                self.remove(&c).await;
            } else {
                self.observe_old(dep, &c);
                old_kept.push(c);
            }
        }
        // Replicas the proxy ejected stay out for the ejection period (the routing table's
        // business); their probe task turns them unready if they do not answer either.
        let upstreams: Vec<Upstream> = kept
            .values()
            .chain(old_kept.iter())
            .filter(|c| c.running && self.is_ready(&c.id))
            .filter_map(|c| {
                c.ip.map(|ip| Upstream {
                    instance: c.name.clone(),
                    addr: SocketAddr::new(ip, 80),
                })
            })
            .collect();
        self.routing.publish(dep.key.clone(), upstreams);
        let mut status = self.deployment_status(dep, &kept, &old_kept);
        let now = Instant::now();
        let startup = self.startups.entry(dep.key.clone()).or_insert(Startup {
            since: now,
            ever_ready: false,
        });
        startup.ever_ready |= status["available"].as_u64().unwrap_or(0) > 0;
        status["starting"] = json!(startup.starting(
            now,
            startup_grace(dep.readiness.as_ref()),
            status["reason"] == "CrashLoopBackOff",
        ));
        // What the proxy really sees, straight from the routing table.
        status["upstreams"] = self
            .routing
            .ready(&dep.key)
            .iter()
            .map(|u| json!(u.instance))
            .collect();
        (all_ready, status)
    }

    /// Starts (or checks) the drain of a scaled-down container: true once its time is up.
    fn drained(&mut self, id: &str) -> bool {
        let now = Instant::now();
        let deadline = *self
            .draining
            .entry(id.to_owned())
            .or_insert(now + self.settings.autoscaling.drain_period);
        deadline <= now
    }

    /// The deployment with the replica count its autoscaler decides (`scale: AUTO`), deciding
    /// again when the period is up; unchanged for `scale: NONE`.
    fn autoscale(&mut self, dep: &Deployment, containers: &[ContainerInfo]) -> Deployment {
        if !dep.autoscale {
            self.scalers.remove(&dep.key);
            return dep.clone();
        }
        let settings = self.settings.autoscaling;
        let now = Instant::now();
        let policy = Policy {
            target: settings.target,
            tolerance: TOLERANCE,
            min_replicas: dep.replicas,
            max_replicas: settings.max_replicas.max(dep.replicas),
        };
        // After a Berth restart the running replicas are adopted as the starting count, so a
        // service scaled up under load is not cut back before the first decision.
        let running: HashSet<&String> = containers
            .iter()
            .filter(|c| c.running && c.labels.get(LABEL_REVISION) == Some(&dep.revision))
            .filter_map(|c| c.labels.get(LABEL_REPLICA))
            .collect();
        let adopted = u32::try_from(running.len()).unwrap_or(u32::MAX);
        let saved = self.saved_windows.remove(&dep.key.to_string());
        let scaler = self
            .scalers
            .entry(dep.key.clone())
            .or_insert_with(|| Scaler {
                min_replicas: dep.replicas,
                replicas: adopted.max(dep.replicas),
                next_decision: now + settings.period,
                // A window an earlier process saved holds replicas up as it would have.
                history: saved
                    .map(|w| restored_window(&w.recommendations, unix_millis(), now))
                    .unwrap_or_default(),
                last: None,
                last_time: None,
            });
        // A new minimum (new manifest) applies at once.
        scaler.min_replicas = dep.replicas;
        scaler.replicas = scaler
            .replicas
            .clamp(policy.min_replicas, policy.max_replicas);
        if scaler.next_decision <= now {
            scaler.next_decision = now + settings.period;
            let limit_cores = dep.nano_cpus as f64 / 1e9;
            let cpu: Vec<Option<f64>> = (0..scaler.replicas)
                .map(|replica| {
                    let c = containers.iter().find(|c| {
                        c.running
                            && c.labels.get(LABEL_REVISION) == Some(&dep.revision)
                            && c.labels.get(LABEL_REPLICA) == Some(&replica.to_string())
                    })?;
                    let instance = self.instances.get(&c.id).filter(|i| i.ready())?;
                    let cores = instance
                        .usage
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .fresh_cpu(now)?;
                    (limit_cores > 0.0).then(|| cores / limit_cores)
                })
                .collect();
            while scaler
                .history
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > settings.scale_down_window)
            {
                scaler.history.pop_front();
            }
            let window: Vec<u32> = scaler.history.iter().map(|(_, r)| *r).collect();
            let decision = autoscale::decide(&policy, &cpu, &window);
            scaler.history.push_back((now, decision.recommendation));
            let persisted = store_autoscaler::Window {
                deployment: dep.key.to_string(),
                replicas: decision.desired_replicas,
                recommendations: saved_window(&scaler.history, unix_millis(), now),
            };
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store
                    .run(move |c| store_autoscaler::save(c, &persisted))
                    .await
                {
                    tracing::warn!(error = %e, "cannot save an autoscaler's window");
                }
            });
            let direction = match decision.desired_replicas.cmp(&decision.current_replicas) {
                std::cmp::Ordering::Greater => "up",
                std::cmp::Ordering::Less => "down",
                std::cmp::Ordering::Equal => "none",
            };
            metrics::counter!("berth_autoscaler_decisions_total",
                "application" => dep.application_name.clone(), "direction" => direction)
            .increment(1);
            if decision.desired_replicas != scaler.replicas {
                let details = json!({
                    "deployment": dep.key.to_string(),
                    "cpu": cpu,
                    "target": policy.target,
                    "tolerance": policy.tolerance,
                    "minReplicas": policy.min_replicas,
                    "maxReplicas": policy.max_replicas,
                    "scaleDownWindowSeconds": settings.scale_down_window.as_secs(),
                    "recommendations": window,
                    "decision": decision,
                });
                journal::record(
                    &self.store,
                    journal::Entry {
                        tenant: &dep.owner,
                        application: (dep.key.application_id, &dep.application_name),
                        record_type: "Autoscaler",
                        activity: if direction == "up" {
                            "Scaled up"
                        } else {
                            "Scaled down"
                        },
                        text: format!(
                            "{}: {} → {} replicas ({}): {}",
                            dep.key,
                            scaler.replicas,
                            decision.desired_replicas,
                            decision.rule,
                            decision.explanation
                        ),
                        severity: audit::INFORMATION,
                        details,
                    },
                );
                scaler.replicas = decision.desired_replicas;
                scaler.last_time = Some(crate::store::timestamp());
            } else {
                tracing::debug!(deployment = %dep.key, rule = decision.rule, "{}", decision.explanation);
            }
            scaler.last = Some(decision);
        }
        let mut scaled = dep.clone();
        scaled.replicas = scaler.replicas;
        scaled
    }

    /// Sizes of the maps this loop keeps per application, deployment or container, as gauges:
    /// they must follow what exists, never what ever existed.
    fn count_entries(&self) {
        let sizes = [
            ("applications", self.app_names.len()),
            ("alarms", self.alarms.len()),
            ("rollouts", self.rollouts.len()),
            ("scalers", self.scalers.len()),
            ("saved_windows", self.saved_windows.len()),
            ("startups", self.startups.len()),
            ("oom_kills", self.oom_kills.len()),
            ("create_failures", self.create_failures.len()),
            ("instances", self.instances.len()),
            ("draining", self.draining.len()),
        ];
        for (map, size) in sizes {
            metrics::gauge!("berth_supervisor_entries", "map" => map).set(size as f64);
        }
    }

    /// Drops the autoscalers (and saved windows) of deployments no longer wanted.
    fn forget_windows(&mut self, seen: &HashSet<&DeploymentKey>) {
        let wanted: HashSet<String> = seen.iter().map(|k| k.to_string()).collect();
        let mut gone: Vec<String> = self
            .scalers
            .keys()
            .filter(|k| !seen.contains(k))
            .map(ToString::to_string)
            .collect();
        gone.extend(
            self.saved_windows
                .keys()
                .filter(|k| !wanted.contains(*k))
                .cloned(),
        );
        self.scalers.retain(|k, _| seen.contains(k));
        self.saved_windows.retain(|k, _| wanted.contains(k));
        if gone.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.run(move |c| store_autoscaler::forget(c, &gone)).await {
                tracing::warn!(error = %e, "cannot forget autoscalers' windows");
            }
        });
    }

    fn is_ready(&self, id: &str) -> bool {
        self.instances.get(id).is_some_and(Instance::ready)
    }

    /// Old-revision containers keep serving during a rollout: their probe task (started while
    /// they were current) keeps running; adopted ones get a probe-less watcher.
    fn observe_old(&mut self, dep: &Deployment, c: &ContainerInfo) {
        let instance = self
            .instances
            .entry(c.id.clone())
            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name));
        if instance.probed_run != c.started_at
            && let Some(ip) = c.ip
        {
            instance.stop_probes();
            instance.probed_run = c.started_at.clone();
            // An old-revision container adopted after a restart: its own probes are not known
            // any more (and the new revision's may not fit it), so it counts as ready while it
            // runs, as a container without probes would.
            instance.probe_task = Some(tokio::spawn(probes::watch(
                Arc::clone(&self.runtime),
                c.id.clone(),
                ip,
                None,
                None,
                running_for(&c.started_at, time::OffsetDateTime::now_utc()),
                probes::Passive {
                    routing: self.routing.clone(),
                    instance: c.name.clone(),
                    answer_timeout: self.settings.answer_timeout,
                },
                Arc::clone(&instance.probe_state),
                Arc::clone(&self.handle.wake),
            )));
        }
    }

    /// Keeps an existing container of the current revision running: counts exits, restarts
    /// with back-off, kills it when liveness failed, keeps its probe task on the current run.
    /// Returns the container's fresh state (None if it vanished).
    async fn keep_running(&mut self, dep: &Deployment, c: ContainerInfo) -> Option<ContainerInfo> {
        let now = Instant::now();
        let instance = self
            .instances
            .entry(c.id.clone())
            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name));
        if c.running {
            let liveness_failed = instance
                .probe_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .liveness_failed;
            if liveness_failed && instance.probed_run == c.started_at {
                tracing::info!(container = %c.name, "liveness failed: killing for restart");
                let reason = instance
                    .probe_state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_failure
                    .clone();
                instance.last_failure = reason;
                instance.stop_probes();
                if let Err(e) = self.runtime.kill_instance(&c.id).await {
                    tracing::warn!(container = %c.name, error = %e, "cannot kill");
                }
                // Counted as a failure when the exit is observed (next pass, poked by `die`).
                return self.runtime.instance(&c.id).await.ok().flatten();
            }
            let since = *instance.running_since.get_or_insert(now);
            if now.duration_since(since) >= backoff::STABLE_AFTER {
                instance.consecutive_failures = 0;
            }
            if instance.probed_run != c.started_at
                && let Some(ip) = c.ip
            {
                instance.stop_probes();
                instance.probed_run = c.started_at.clone();
                instance.usage_task = Some(usage::watch(
                    Arc::clone(&self.runtime),
                    c.id.clone(),
                    Arc::clone(&instance.usage),
                ));
                // An adopted replica (Berth restarted) has served for a while: its probes'
                // initial delays count from its start, so it is routed again at once.
                instance.probe_task = Some(tokio::spawn(probes::watch(
                    Arc::clone(&self.runtime),
                    c.id.clone(),
                    ip,
                    dep.liveness.clone(),
                    dep.readiness.clone(),
                    running_for(&c.started_at, time::OffsetDateTime::now_utc()),
                    probes::Passive {
                        routing: self.routing.clone(),
                        instance: c.name.clone(),
                        answer_timeout: self.settings.answer_timeout,
                    },
                    Arc::clone(&instance.probe_state),
                    Arc::clone(&self.handle.wake),
                )));
            }
            return Some(c);
        }
        // Not running.
        instance.running_since = None;
        if !instance.probed_run.is_empty() {
            let probe_failure = instance
                .probe_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_failure
                .clone()
                .filter(|f| f.starts_with("Liveness"));
            instance.stop_probes();
            if let Some(f) = probe_failure {
                instance.last_failure = Some(f);
            }
        }
        let exited = c.finished_at != ZERO_TIME && !c.finished_at.is_empty();
        let mut exit_record = None;
        if exited && instance.counted_exit != c.finished_at {
            instance.counted_exit = c.finished_at.clone();
            instance.consecutive_failures += 1;
            let reason = if c.oom_killed {
                "OOMKilled: the memory limit was exceeded".to_owned()
            } else {
                format!("exited with code {}", c.exit_code.unwrap_or(-1))
            };
            // A liveness kill keeps its own, more telling reason.
            let killed_for_liveness = instance
                .last_failure
                .as_deref()
                .is_some_and(|f| f.starts_with("Liveness") && c.exit_code == Some(137));
            if !killed_for_liveness {
                instance.last_failure = Some(reason.clone());
            }
            instance.next_start = Some(now + backoff::delay(instance.consecutive_failures));
            let peak = instance
                .usage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .peak_bytes;
            let (failures, wait) = (
                instance.consecutive_failures,
                backoff::delay(instance.consecutive_failures),
            );
            let failure = instance.last_failure.clone().unwrap_or(reason);
            exit_record = Some((failure, peak, failures, wait));
        }
        if let Some((failure, peak, failures, wait)) = exit_record {
            self.record_exit(dep, &c, failure, peak, failures, wait)
                .await;
        }
        let instance = self.instances.get_mut(&c.id)?;
        if instance.next_start.is_some_and(|t| t > now) {
            return Some(c);
        }
        instance.next_start = None;
        let first_start = !exited;
        match self.runtime.start_instance(&c.id).await {
            Ok(false) => {
                // Removed or being removed meanwhile: forget it; the caller replaces it.
                tracing::info!(container = %c.name, "removed while stopped: replacing it");
                if let Some(mut gone) = self.instances.remove(&c.id) {
                    gone.stop_probes();
                }
                return None;
            }
            Ok(true) => {
                if !first_start {
                    instance.restarts += 1;
                }
                tracing::info!(container = %c.name, restarts = instance.restarts, "started");
            }
            Err(e) => {
                instance.consecutive_failures += 1;
                let wait = backoff::delay(instance.consecutive_failures);
                instance.last_failure = Some(format!("cannot start: {e}"));
                instance.next_start = Some(now + wait);
                journal::record(
                    &self.store,
                    journal::Entry {
                        tenant: &dep.owner,
                        application: (dep.key.application_id, &dep.application_name),
                        record_type: "ContainerStartFailure",
                        activity: "Start failed",
                        text: format!(
                            "{} cannot start: {e}; retrying in {} ms",
                            c.name,
                            wait.as_millis()
                        ),
                        severity: audit::WARNING,
                        details: json!({
                            "deployment": dep.key.to_string(),
                            "instance": c.name,
                            "consecutiveFailures": instance.consecutive_failures,
                            "restartDelayMillis": wait.as_millis() as u64,
                            "reason": e.to_string(),
                        }),
                    },
                );
                return Some(c);
            }
        }
        let fresh = self.runtime.instance(&c.id).await.ok().flatten()?;
        if fresh.running {
            Box::pin(self.keep_running(dep, fresh)).await
        } else {
            Some(fresh)
        }
    }

    /// Records a container exit (an OOM kill distinctly, with the limit, the peak memory seen
    /// and the last log lines) before it is restarted.
    async fn record_exit(
        &mut self,
        dep: &Deployment,
        c: &ContainerInfo,
        reason: String,
        peak_bytes: u64,
        failures: u32,
        wait: Duration,
    ) {
        const LOG_LINES: u64 = 20;
        let app = dep.application_name.clone();
        metrics::counter!("berth_container_restarts_total", "application" => app.clone())
            .increment(1);
        // The run just ended: its last lines (Docker keeps them across restarts).
        let logs = self
            .runtime
            .logs(&c.id, 0, 0, Some(LOG_LINES))
            .await
            .unwrap_or_else(|e| format!("(logs unavailable: {e})"));
        let last_lines: Vec<&str> = logs.lines().collect();
        let mut details = json!({
            "deployment": dep.key.to_string(),
            "instance": c.name,
            "exitCode": c.exit_code,
            "finishedAt": c.finished_at,
            "consecutiveFailures": failures,
            "restartDelayMillis": wait.as_millis() as u64,
            "reason": reason,
            "lastLogLines": last_lines,
        });
        if c.oom_killed {
            metrics::counter!("berth_container_oom_kills_total", "application" => app.clone())
                .increment(1);
            let kills = self.oom_kills.entry(dep.key.clone()).or_default();
            kills.count += 1;
            kills.last_time = Some(if c.finished_at.is_empty() {
                crate::store::timestamp()
            } else {
                c.finished_at.clone()
            });
            kills.last_peak_bytes = (peak_bytes > 0).then_some(peak_bytes);
            details["memoryLimitBytes"] = json!(dep.memory_bytes);
            details["memoryLimit"] = json!(spec::memory_limit_text(
                u64::try_from(dep.memory_bytes).unwrap_or(0)
            ));
            // None when the run ended before its first stats sample.
            details["memoryPeakBytes"] = json!((peak_bytes > 0).then_some(peak_bytes));
            journal::record(
                &self.store,
                journal::Entry {
                    tenant: &dep.owner,
                    application: (dep.key.application_id, &app),
                    record_type: "OomKill",
                    activity: "Killed for exceeding the memory limit",
                    text: format!(
                        "{} was killed for exceeding its memory limit of {} bytes (peak seen {} bytes); restarting in {} ms",
                        c.name,
                        dep.memory_bytes,
                        peak_bytes,
                        wait.as_millis()
                    ),
                    severity: audit::MAJOR,
                    details,
                },
            );
        } else {
            journal::record(
                &self.store,
                journal::Entry {
                    tenant: &dep.owner,
                    application: (dep.key.application_id, &app),
                    record_type: "ContainerExit",
                    activity: "Restarted after an exit",
                    text: format!("{} {reason}; restarting in {} ms", c.name, wait.as_millis()),
                    severity: audit::WARNING,
                    details,
                },
            );
        }
    }

    /// Creates and starts replica `replica` of `dep` (respecting creation back-off).
    async fn create(
        &mut self,
        dep: &Deployment,
        network: &str,
        labels: &HashMap<String, String>,
        replica: u32,
    ) -> Option<ContainerInfo> {
        let now = Instant::now();
        let slot = (dep.key.clone(), replica);
        if self
            .create_failures
            .get(&slot)
            .and_then(|f| f.next_try)
            .is_some_and(|t| t > now)
        {
            return None;
        }
        let suffix = hex::encode(uuid::Uuid::new_v4().as_bytes())[..6].to_owned();
        let name = format!(
            "berth-{}-{}-{}-{}-{}",
            self.short_id(),
            dep.key.application_id,
            docker_safe(dep.key.tenant.as_deref().unwrap_or("shared")),
            replica,
            suffix
        );
        let mut labels = labels.clone();
        labels.insert(LABEL_REPLICA.to_owned(), replica.to_string());
        let spec = InstanceSpec {
            name: name.clone(),
            deployment: dep.key.to_string(),
            revision: dep.revision.clone(),
            replica,
            replicas: dep.replicas,
            image: dep.image.clone(),
            env: dep.env.clone(),
            labels,
            network: network.to_owned(),
            memory_bytes: dep.memory_bytes,
            nano_cpus: dep.nano_cpus,
            pids_limit: self.settings.pids_limit,
        };
        let created = match self.runtime.create_instance(&spec).await {
            Ok(id) => id,
            Err(e) => {
                let entry = self.create_failures.entry(slot).or_default();
                entry.failures += 1;
                entry.reason = format!("cannot create container: {e}");
                entry.next_try = Some(now + backoff::delay(entry.failures));
                tracing::warn!(deployment = %dep.key, error = %e, "cannot create container");
                return None;
            }
        };
        self.create_failures.remove(&slot);
        tracing::info!(container = %name, deployment = %dep.key, version = %dep.version, "created");
        let info = self.runtime.instance(&created).await.ok().flatten()?;
        self.keep_running(dep, info).await
    }

    /// Marks finished rollouts stable and rolls back those past their deadline.
    async fn rollout_step(&mut self, app_ready: &HashMap<i64, bool>) {
        let now = Instant::now();
        let apps = std::mem::take(&mut self.rollout_apps);
        for (app, (active, stable)) in &apps {
            if stable.as_deref() == Some(active.as_str()) {
                self.rollouts.remove(&(*app, active.clone()));
                continue;
            }
            let ready = app_ready.get(app).copied().unwrap_or(false);
            let started = *self.rollouts.entry((*app, active.clone())).or_insert(now);
            if ready {
                let (id, version) = (*app, active.clone());
                match self
                    .store
                    .run(move |c| subscriptions::mark_stable(c, id, &version))
                    .await
                {
                    Ok(()) => {
                        tracing::info!(application = app, version = %active, "rollout complete");
                        self.rollouts.remove(&(*app, active.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot record rollout"),
                }
            } else if let Some(deadline) = self.rollout_deadlines.get(app).copied()
                && now.duration_since(started) >= deadline
                && let Some(previous) = stable.clone()
            {
                let reason = format!(
                    "version {active} did not become ready within {}s; rolled back to {previous}",
                    deadline.as_secs()
                );
                let (id, failed, prev, why) =
                    (*app, active.clone(), previous.clone(), reason.clone());
                let secrets = Arc::clone(&self.secrets);
                // The owner and name come back with the rollback, for the audit record.
                let rolled_back = self
                    .store
                    .run(move |c| {
                        let seal = |tenant: &str, category: &str, key: &str, value: &str| {
                            secrets
                                .seal_setting_for(tenant, category, key, value)
                                .map_err(|e| StoreError::Seal(e.to_string()))
                        };
                        let app = subscriptions::roll_back(c, id, &failed, &prev, &why, &seal)?;
                        Ok(app.map(|a| (a.owner, a.name)))
                    })
                    .await;
                match rolled_back {
                    Ok(Some((owner, name))) => {
                        journal::record(
                            &self.store,
                            journal::Entry {
                                tenant: &owner,
                                application: (*app, &name),
                                record_type: "Application",
                                activity: "Rolled back",
                                text: format!("{name}: {reason}"),
                                severity: audit::MAJOR,
                                details: json!({
                                    "failedVersion": active,
                                    "restoredVersion": previous,
                                    "reason": reason,
                                    "rolloutTimeoutSeconds": deadline.as_secs(),
                                }),
                            },
                        );
                        self.rollouts.remove(&(*app, active.clone()));
                        self.handle.poke();
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot roll back"),
                }
            }
        }
        self.rollout_apps = apps;
        self.rollouts
            .retain(|(app, _), _| app_ready.contains_key(app));
    }

    fn deployment_status(
        &self,
        dep: &Deployment,
        kept: &BTreeMap<u32, ContainerInfo>,
        old: &[ContainerInfo],
    ) -> Value {
        let now = Instant::now();
        let mut instances = Vec::new();
        let (mut active, mut unhealthy, mut restarts) = (0u32, 0u32, 0u32);
        // Ready replicas of any revision (the old one serves until the new one is ready).
        let mut available = 0u32;
        let mut last_failure: Option<String> = self
            .create_failures
            .iter()
            .find(|((k, _), _)| *k == dep.key)
            .map(|(_, f)| f.reason.clone());
        let mut crash_loop = false;
        for c in kept.values().chain(old.iter()) {
            let instance = self.instances.get(&c.id);
            let ready = c.running && instance.is_some_and(Instance::ready);
            let current = c.labels.get(LABEL_REVISION) == Some(&dep.revision);
            if ready {
                available += 1;
            }
            if current {
                if ready {
                    active += 1;
                } else {
                    unhealthy += 1;
                }
            }
            let (n_restarts, failure, waiting) = instance.map_or((0, None, false), |i| {
                (
                    i.restarts,
                    i.last_failure.clone(),
                    i.next_start.is_some_and(|t| t > now),
                )
            });
            let looping = waiting
                && instance.is_some_and(|i| i.consecutive_failures >= backoff::CRASH_LOOP_AFTER);
            crash_loop |= looping && current;
            restarts += n_restarts;
            let unresponsive = instance
                .and_then(Instance::unresponsive)
                .filter(|_| c.running);
            let state = if unresponsive.is_some() {
                "UNRESPONSIVE"
            } else if c.running {
                "RUNNING"
            } else if looping {
                "CRASH_LOOP_BACK_OFF"
            } else if waiting {
                "WAITING"
            } else {
                "STOPPED"
            };
            let failure = unresponsive.or(failure);
            if failure.is_some() {
                last_failure = failure.clone();
            }
            let usage = instance
                .map(|i| i.usage.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .filter(|_| c.running)
                .unwrap_or_default();
            let cores = usage.fresh_cpu(now);
            let limit_cores = dep.nano_cpus as f64 / 1e9;
            let memory = usage.latest.map(|u| u.memory_bytes);
            let labels = [
                ("application", dep.application_name.clone()),
                ("instance", c.name.clone()),
            ];
            metrics::gauge!("berth_instance_cpu_cores", &labels).set(cores.unwrap_or(0.0));
            metrics::gauge!("berth_instance_memory_bytes", &labels).set(memory.unwrap_or(0) as f64);
            instances.push(json!({
                "name": c.name,
                "version": c.labels.get(LABEL_VERSION),
                "state": state,
                "ready": ready,
                "restarts": n_restarts,
                "ip": c.ip.map(|ip| ip.to_string()),
                // The node of a cluster runtime (`lost node …` once the cluster lost it).
                "node": c.node,
                "lastFailure": failure,
                // Out of routing for a while: the proxy saw it fail (see `routing`).
                "ejected": self.routing.ejection(&c.name).map(|e| e.reason),
                "draining": self.draining.contains_key(&c.id),
                "cpu": cores.map(|cores| json!({
                    "cores": cores,
                    "ofLimit": if limit_cores > 0.0 { Some(cores / limit_cores) } else { None },
                })),
                "memory": json!({
                    "usedBytes": memory,
                    "peakBytes": (usage.peak_bytes > 0).then_some(usage.peak_bytes),
                    "limitBytes": dep.memory_bytes,
                }),
            }));
        }
        let oom = self.oom_kills.get(&dep.key).cloned().unwrap_or_default();
        let autoscaler = dep.autoscale.then(|| {
            let scaler = self.scalers.get(&dep.key);
            json!({
                "minReplicas": scaler.map(|s| s.min_replicas),
                "maxReplicas": self.settings.autoscaling.max_replicas.max(dep.replicas),
                "target": self.settings.autoscaling.target,
                "scaleDownWindowSeconds": self.settings.autoscaling.scale_down_window.as_secs(),
                "replicas": dep.replicas,
                "lastDecision": scaler.and_then(|s| s.last.clone()),
                "lastScaleTime": scaler.and_then(|s| s.last_time.clone()),
                // The scale-down window: what holds replicas up (kept across restarts).
                "recommendations": scaler.map(|s| {
                    saved_window(&s.history, unix_millis(), Instant::now())
                        .into_iter()
                        .map(|(ms, replicas)| json!({"time": rfc3339_millis(ms), "replicas": replicas}))
                        .collect::<Vec<_>>()
                }),
            })
        });
        let tenant = dep.key.tenant.clone().unwrap_or_default();
        let labels = [
            ("application", dep.application_name.clone()),
            ("tenant", tenant),
        ];
        metrics::gauge!("berth_deployment_replicas_desired", &labels).set(f64::from(dep.replicas));
        metrics::gauge!("berth_deployment_replicas_active", &labels).set(f64::from(active));
        metrics::gauge!("berth_deployment_replicas_unhealthy", &labels).set(f64::from(unhealthy));
        json!({
            "tenant": dep.key.tenant,
            "version": dep.version,
            "scale": if dep.autoscale { "AUTO" } else { "NONE" },
            "desired": dep.replicas,
            "active": active,
            "available": available,
            "unhealthy": unhealthy,
            "restarts": restarts,
            "oomKills": oom.count,
            "lastOomKill": oom.last_time,
            "lastOomPeakBytes": oom.last_peak_bytes,
            "autoscaler": autoscaler,
            "reason": if crash_loop { Some("CrashLoopBackOff") } else { None },
            "lastFailure": last_failure,
            "instances": instances,
        })
    }

    /// The contract's alarms (§4.3) of one application from its deployments' status:
    /// `c8y_Application_Down` (CRITICAL) when a deployment has no available instance (of any
    /// revision), `c8y_Application_Unhealthy` (MAJOR) when some instances are not ready; neither
    /// for a deployment that is still `starting` for the first time.
    fn alarms_of(deployments: &[Value]) -> BTreeMap<String, String> {
        let mut down = Vec::new();
        let mut unhealthy = Vec::new();
        for d in deployments.iter().filter(|d| d["starting"] != true) {
            let name = d["tenant"].as_str().unwrap_or("shared").to_owned();
            let active = d["active"].as_u64().unwrap_or(0);
            let available = d["available"].as_u64().unwrap_or(active);
            let desired = d["desired"].as_u64().unwrap_or(0);
            let not_ready = d["unhealthy"].as_u64().unwrap_or(0);
            if available == 0 {
                match d["lastFailure"]
                    .as_str()
                    .filter(|_| d["reason"] == UNPLACED)
                {
                    Some(why) => down.push(format!("{name} ({why})")),
                    None => down.push(name),
                }
            } else if active < desired || not_ready > 0 {
                unhealthy.push(format!("{name} ({active}/{desired} ready)"));
            }
        }
        let mut alarms = BTreeMap::new();
        if !down.is_empty() {
            alarms.insert(
                ALARM_DOWN.to_owned(),
                format!("No instance available: {}", down.join(", ")),
            );
        }
        if !unhealthy.is_empty() {
            alarms.insert(
                ALARM_UNHEALTHY.to_owned(),
                format!("Some instances are not ready: {}", unhealthy.join(", ")),
            );
        }
        alarms
    }

    /// Records alarms raised and cleared since the last pass; returns the active ones.
    fn update_alarms(&mut self, app: i64, deployments: &[Value]) -> Vec<Value> {
        let now = Self::alarms_of(deployments);
        let before = self.alarms.remove(&app).unwrap_or_default();
        if let Some((owner, name)) = self.app_names.get(&app) {
            let severity = |t: &str| {
                if t == ALARM_DOWN {
                    audit::CRITICAL
                } else {
                    audit::MAJOR
                }
            };
            for (kind, text) in &now {
                if before.get(kind) != Some(text) && !before.contains_key(kind) {
                    journal::record(
                        &self.store,
                        journal::Entry {
                            tenant: owner,
                            application: (app, name),
                            record_type: kind,
                            activity: "Alarm raised",
                            text: text.clone(),
                            severity: severity(kind),
                            details: json!({"status": "ACTIVE"}),
                        },
                    );
                }
            }
            for kind in before.keys().filter(|k| !now.contains_key(*k)) {
                journal::record(
                    &self.store,
                    journal::Entry {
                        tenant: owner,
                        application: (app, name),
                        record_type: kind,
                        activity: "Alarm cleared",
                        text: format!("{kind} cleared"),
                        severity: audit::INFORMATION,
                        details: json!({"status": "CLEARED"}),
                    },
                );
            }
        }
        let list = now
            .iter()
            .map(|(kind, text)| {
                json!({"type": kind, "severity": if kind == ALARM_DOWN { audit::CRITICAL } else { audit::MAJOR }, "text": text, "status": "ACTIVE"})
            })
            .collect();
        self.alarms.insert(app, now);
        list
    }

    fn publish_status(&mut self, statuses: HashMap<i64, Vec<Value>>) {
        let gone: Vec<i64> = self
            .alarms
            .keys()
            .filter(|a| !statuses.contains_key(a))
            .copied()
            .collect();
        for app in gone {
            self.alarms.remove(&app);
        }
        let mut map = HashMap::new();
        let names: HashMap<String, (i64, String)> = self
            .instances
            .iter()
            .map(|(id, i)| (i.name.clone(), (i.app, id.clone())))
            .collect();
        for (app, deployments) in statuses {
            let (active, stable) = self.rollout_apps.get(&app).cloned().unwrap_or_default();
            let alarms = self.update_alarms(app, &deployments);
            map.insert(
                app,
                json!({
                    "activeVersion": active,
                    "stableVersion": stable,
                    "alarms": alarms,
                    "deployments": deployments,
                }),
            );
        }
        for (app, reason) in &self.broken {
            map.insert(*app, json!({"deployments": [], "lastFailure": reason}));
        }
        *self
            .handle
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner()) = map;
        *self
            .handle
            .instances
            .write()
            .unwrap_or_else(|p| p.into_inner()) = names;
    }
}

fn unix_millis() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn rfc3339_millis(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A window's recommendations in wall-clock time (unix ms), to be saved.
fn saved_window(
    history: &VecDeque<(Instant, u32)>,
    wall_now: i64,
    now: Instant,
) -> Vec<(i64, u32)> {
    history
        .iter()
        .map(|(t, r)| {
            let age = i64::try_from(now.duration_since(*t).as_millis()).unwrap_or(i64::MAX);
            (wall_now.saturating_sub(age), *r)
        })
        .collect()
}

/// Saved recommendations back on this process's clock; those from the future (a clock set
/// back) count as made now, and ones older than this process's clock can express are dropped
/// (the window pruning drops expired ones at the next decision).
fn restored_window(saved: &[(i64, u32)], wall_now: i64, now: Instant) -> VecDeque<(Instant, u32)> {
    saved
        .iter()
        .filter_map(|(t, r)| {
            let age = Duration::from_millis(u64::try_from(wall_now - t).unwrap_or(0));
            now.checked_sub(age).map(|at| (at, *r))
        })
        .collect()
}

/// Tries at making a deployment network per pass (each on a freshly read engine).
const CREATE_NETWORK_ATTEMPTS: usize = 3;

/// `reason` of a deployment that lacks what its containers need (its network).
const UNPLACED: &str = "CannotCreateNetwork";

/// Status of a deployment whose network could not be made: no instance, the reason, and not
/// `starting` (so it is `c8y_Application_Down` at once: waiting will not fix it).
fn unplaced_status(dep: &Deployment, reason: &str) -> Value {
    json!({
        "tenant": dep.key.tenant,
        "version": dep.version,
        "scale": if dep.autoscale { "AUTO" } else { "NONE" },
        "desired": dep.replicas,
        "active": 0,
        "available": 0,
        "unhealthy": 0,
        "restarts": 0,
        "reason": UNPLACED,
        "lastFailure": reason,
        "starting": false,
        "instances": [],
        "upstreams": [],
    })
}

/// How long a container has been running at `now`, from Docker's `State.StartedAt` (RFC 3339);
/// zero when unknown (then probes wait their whole initial delay, as for a fresh start).
fn running_for(started_at: &str, now: time::OffsetDateTime) -> Duration {
    time::OffsetDateTime::parse(started_at, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|started| Duration::try_from(now - started).ok())
        .unwrap_or_default()
}

/// How long a new version may take to become ready: the configured `rollout_timeout`, but
/// never less than its readiness probe needs to pass once it is up (initial delay plus
/// `successThreshold` probe periods, plus `failureThreshold` periods of slack for a slow start).
fn rollout_deadline(configured: Duration, readiness: Option<&manifests_schema::Probe>) -> Duration {
    let Some(p) = readiness else {
        return configured;
    };
    let period = u64::from(p.period_seconds.max(1) + p.timeout_seconds);
    let needed = u64::from(p.initial_delay_seconds)
        + period * u64::from(p.success_threshold.max(1) + p.failure_threshold);
    configured.max(Duration::from_secs(needed))
}

/// Docker object names allow `[a-zA-Z0-9_.-]`.
fn docker_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopted_containers_have_been_running_since_docker_started_them() {
        let now = time::macros::datetime!(2026-12-02 08:00:30 UTC);
        let cases = [
            ("2026-12-02T08:00:00.000000000Z", Duration::from_secs(30)),
            ("2026-12-02T08:00:29.5Z", Duration::from_millis(500)),
            ("2026-12-02T09:00:00+01:00", Duration::from_secs(30)),
            // Clock skew or a start in the future: not running yet.
            ("2026-12-02T08:01:00Z", Duration::ZERO),
            ("", Duration::ZERO),
            ("yesterday", Duration::ZERO),
        ];
        for (started, expected) in cases {
            assert_eq!(running_for(started, now), expected, "{started}");
        }
    }

    #[test]
    fn rollout_deadline_covers_what_the_readiness_probe_needs() {
        let probe = |initial, period, timeout, success, failure| manifests_schema::Probe {
            handler: manifests_schema::ProbeHandler::TcpSocket {
                host: None,
                port: 80,
            },
            initial_delay_seconds: initial,
            period_seconds: period,
            success_threshold: success,
            timeout_seconds: timeout,
            failure_threshold: failure,
        };
        let cases = [
            (300, None, 300),
            (300, Some(probe(10, 10, 1, 1, 3)), 300),
            (4, Some(probe(0, 1, 1, 1, 1)), 4),
            (4, Some(probe(120, 30, 5, 1, 3)), 120 + 35 * 4),
        ];
        for (configured, readiness, expected) in cases {
            assert_eq!(
                rollout_deadline(Duration::from_secs(configured), readiness.as_ref()),
                Duration::from_secs(expected),
                "{configured} {readiness:?}"
            );
        }
    }

    #[test]
    fn a_first_start_is_starting_within_its_readiness_grace_until_ready() {
        let probe = |initial, period, failure| manifests_schema::Probe {
            handler: manifests_schema::ProbeHandler::TcpSocket {
                host: None,
                port: 80,
            },
            initial_delay_seconds: initial,
            period_seconds: period,
            success_threshold: 1,
            timeout_seconds: 1,
            failure_threshold: failure,
        };
        for (readiness, grace) in [
            (None, 30),
            (Some(probe(0, 10, 3)), 30),
            (Some(probe(20, 5, 6)), 50),
            (Some(probe(0, 0, 0)), 1),
        ] {
            assert_eq!(
                startup_grace(readiness.as_ref()),
                Duration::from_secs(grace),
                "{readiness:?}"
            );
        }
        let since = Instant::now();
        let grace = Duration::from_secs(30);
        // (seconds since the first pass, ever ready, crash-looping, starting)
        let cases = [
            (0, false, false, true),
            (29, false, false, true),
            (30, false, false, false),
            (5, true, false, false),
            (5, false, true, false),
            (60, true, false, false),
        ];
        for (elapsed, ever_ready, crash_loop, starting) in cases {
            let startup = Startup { since, ever_ready };
            assert_eq!(
                startup.starting(since + Duration::from_secs(elapsed), grace, crash_loop),
                starting,
                "{elapsed} s, ever ready {ever_ready}, crash loop {crash_loop}"
            );
        }
    }

    #[test]
    fn alarms_follow_available_instances_except_while_starting() {
        let dep = |tenant: Option<&str>, desired, active, available, unhealthy, starting| {
            json!({"tenant": tenant, "desired": desired, "active": active,
                   "available": available, "unhealthy": unhealthy, "starting": starting})
        };
        let cases = [
            // Starting for the first time: no alarm, whatever the counts.
            (vec![dep(None, 1, 0, 0, 1, true)], vec![]),
            (vec![dep(None, 2, 1, 1, 1, true)], vec![]),
            // Nothing ready any more (or the grace is over): down.
            (
                vec![dep(None, 1, 0, 0, 1, false)],
                vec![(ALARM_DOWN, "No instance available: shared")],
            ),
            // An upgrade: the old revision still serves, the new one is not ready yet.
            (
                vec![dep(None, 1, 0, 1, 1, false)],
                vec![(
                    ALARM_UNHEALTHY,
                    "Some instances are not ready: shared (0/1 ready)",
                )],
            ),
            (vec![dep(None, 2, 2, 2, 0, false)], vec![]),
            // Per tenant: each deployment on its own.
            (
                vec![
                    dep(Some("t1"), 1, 0, 0, 1, false),
                    dep(Some("t2"), 1, 0, 0, 1, true),
                    dep(Some("t3"), 2, 1, 1, 1, false),
                ],
                vec![
                    (ALARM_DOWN, "No instance available: t1"),
                    (
                        ALARM_UNHEALTHY,
                        "Some instances are not ready: t3 (1/2 ready)",
                    ),
                ],
            ),
        ];
        for (deployments, expected) in cases {
            let alarms = Supervisor::alarms_of(&deployments);
            let expected: BTreeMap<String, String> = expected
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(alarms, expected, "{deployments:?}");
        }
    }

    #[test]
    fn saved_windows_come_back_with_their_ages() {
        let now = Instant::now() + Duration::from_secs(100);
        let history: VecDeque<(Instant, u32)> = [
            (now - Duration::from_secs(30), 3),
            (now - Duration::from_secs(5), 1),
        ]
        .into();
        let saved = saved_window(&history, 1_000_000, now);
        assert_eq!(saved, vec![(970_000, 3), (995_000, 1)]);
        // Ten seconds later, in another process.
        let later = now + Duration::from_secs(10);
        let restored = restored_window(&saved, 1_010_000, later);
        let ages: Vec<(u64, u32)> = restored
            .iter()
            .map(|(t, r)| (later.duration_since(*t).as_secs(), *r))
            .collect();
        assert_eq!(ages, vec![(40, 3), (15, 1)]);
        // A clock set back: saved times in the future count as now.
        let back = restored_window(&[(2_000_000, 2)], 1_000_000, later);
        assert_eq!(back, VecDeque::from([(later, 2)]));
    }

    #[test]
    fn subnet_membership() {
        let cases = [
            ("172.18.0.5", "172.18.0.0/16", true),
            ("172.19.0.5", "172.18.0.0/16", false),
            ("192.168.16.2", "192.168.16.0/20", true),
            ("192.168.32.2", "192.168.16.0/20", false),
            ("10.0.0.1", "0.0.0.0/0", true),
            ("::1", "172.18.0.0/16", false),
        ];
        for (ip, net, inside) in cases {
            let (addr, prefix) = parse_subnet(net).unwrap();
            assert_eq!(
                in_subnet(ip.parse().unwrap(), addr, prefix),
                inside,
                "{ip} in {net}"
            );
        }
    }
}

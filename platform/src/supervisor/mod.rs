//! The container supervisor: a level-triggered, idempotent reconcile loop, split at one seam
//! between deciding and acting. Desired state comes from the database (subscribed
//! microservices, read in [`reading`], see [`spec`]), observed state from the [`Runtime`] (instances and networks
//! found by Berth's labels); [`plan`] decides, as pure functions of both and the time, what to
//! do (remove garbage, create, tend, drain or retire instances, finish or roll back a rollout),
//! and the executor ([`act`], [`network`], [`scaling`], [`rollout`]) does it through the
//! runtime. Each pass ends by publishing ready upstreams to the [`RoutingTable`] and typed
//! statuses ([`status`], computed in [`report`]) on the [`Handle`].
//!
//! A pass runs when poked (API handlers after every change, probe results, runtime events, a
//! restart back-off expiring, the proxy reporting a refused upstream) and at least every
//! `reconcile_interval`. Invariants:
//! * only objects labelled with this installation's id are ever touched;
//! * a deployment's network exists before its instances; instances go before networks: a
//!   network (and its subnet) stays while any instance on it is being removed, and a network
//!   being removed keeps its name and subnet from every deployment until it is gone;
//! * removing an instance or a network never holds a pass: each removal runs off it
//!   ([`removals`]), at most `deploy_concurrency` at once, what it removes remembered as
//!   leaving until it ends (then a pass is poked); a leaving instance is not live, ready,
//!   routed or removed again, and its replica slot gets a new instance only once it is gone; a
//!   leaving network is not removed again, and its deployment, if wanted again, waits for it;
//! * a new revision's instances start before the old ones stop, and the old ones stop only
//!   when every new replica is ready (zero-downtime rollout); only the deployment's last
//!   fully-ready revision keeps running beside a rollout, never more than one, and for the
//!   rollout deadline at most unless a version rollback bounds it ([`plan::kept`]); a version
//!   that is not ready within `rollout_timeout` is rolled back to the last stable version;
//! * after a Berth restart, running instances are adopted (never duplicated), instances of
//!   no desired deployment are removed, missing ones created;
//! * an application whose stored manifest or sealed passwords cannot be used is broken, not
//!   gone: its subscribers' deployments are held as they are ([`hold`]: nothing made or
//!   removed, ready instances routed) and its status says why;
//! * `scale: AUTO` deployments run the replica count their [`autoscale`] decision gives (never
//!   below the manifest's `replicas`, never above the configured maximum); a removed replica
//!   leaves routing first and is stopped only after the drain period;
//! * every scaling decision that changes the count, every exit (OOM kills apart), failed start
//!   and alarm raise/clear is an audit record ([`journal`]) written off the loop;
//! * a deployment starting for the first time raises no alarm until its startup grace is over,
//!   unless it crash-loops; once one of its replicas was ready, having none is
//!   `c8y_Application_Down` at once;
//! * what is remembered between passes is per application, deployment or instance
//!   ([`state`]) and forgotten in one place when it no longer exists.

mod act;
pub mod autoscale;
pub mod backoff;
mod deploy;
pub mod error;
mod exits;
#[cfg(test)]
mod fake;
mod garbage;
mod handle;
mod hold;
pub mod journal;
mod network;
pub mod plan;
pub mod probes;
mod reading;
mod removals;
mod report;
mod rollout;
mod scaling;
pub mod spec;
mod state;
pub mod status;
pub mod subnets;
pub mod usage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;

pub use error::SupervisorError;
use handle::parse_subnet;
pub use handle::{Handle, Scope};

use crate::audit::AuditLog;
use crate::routing::{DeploymentKey, RoutingTable};
use crate::runtime::{InstanceInfo, LABEL_INSTALLATION, NetworkInfo, Runtime, images};
use crate::secrets::Secrets;
use crate::store::Store;
use crate::store::autoscaler as store_autoscaler;
use reading::Desired;
use rollout::Standing;
use spec::Platform;
use state::State;
use status::Alarms;

const LABEL_APP: &str = "berth.app";
const LABEL_DEPLOYMENT: &str = "berth.deployment";
const LABEL_TENANT: &str = "berth.tenant";
const LABEL_VERSION: &str = "berth.version";
const LABEL_REVISION: &str = "berth.revision";
const LABEL_REPLICA: &str = "berth.replica";

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
    /// Deployments a pass converges at once (and containers it removes at once).
    pub deploy_concurrency: usize,
    /// How a failed rollout is rolled back in the store: the application flows' rule
    /// ([`crate::apps::rollback`]), passed in because the flows use the supervisor's handle.
    pub roll_back: RollBack,
    /// The resource maxima a rollback is checked against.
    pub maxima: crate::limits::Maxima,
}

/// Rolls application `id` back from the failed version to the previous one with the reason,
/// checked against the resource maxima, sealing settings with
/// the closure; the application as it is now, None when the active
/// version changed meanwhile.
pub type RollBack =
    fn(
        &mut rusqlite::Connection,
        &crate::limits::Maxima,
        i64,
        &str,
        &str,
        &str,
        &crate::store::settings::Seal<'_>,
    ) -> Result<Option<crate::store::applications::Application>, crate::store::StoreError>;

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

pub struct Supervisor {
    settings: Settings,
    store: Store,
    /// Where its decisions are recorded (the one audit writer).
    audit: AuditLog,
    runtime: Arc<dyn Runtime>,
    secrets: Arc<Secrets>,
    routing: RoutingTable,
    handle: Handle,
    state: State,
    /// When this process made its supervisor: image tags older than this that no version
    /// refers to are leftovers of an earlier process, never an upload in flight.
    started: time::OffsetDateTime,
    /// The network pool had no subnet for a network in this pass: the holder pool's network
    /// gives its subnet back in the next (see [`Supervisor::holder_pool_network`]). Set where
    /// the allocation fails, the one place that knows.
    subnets_short: std::sync::atomic::AtomicBool,
}

impl Supervisor {
    pub fn new(
        settings: Settings,
        store: Store,
        audit: AuditLog,
        runtime: Arc<dyn Runtime>,
        secrets: Arc<Secrets>,
        routing: RoutingTable,
    ) -> Supervisor {
        let removals = removals::Removals::new(settings.deploy_concurrency);
        Supervisor {
            settings,
            store,
            audit,
            runtime,
            secrets,
            routing,
            handle: Handle::new(),
            state: State {
                removals,
                ..State::default()
            },
            started: time::OffsetDateTime::now_utc(),
            subnets_short: Default::default(),
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
                self.state.saved_windows = windows
                    .into_iter()
                    .map(|w| (w.deployment.clone(), w))
                    .collect();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the autoscalers' windows"),
        }
        let events = self.watch_events();
        loop {
            self.covered_pass().await;
            let now = Instant::now();
            let wait = (self.state.deadlines())
                .map(|deadline| deadline.saturating_duration_since(now))
                .fold(self.settings.reconcile_interval, Duration::min);
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

    /// One pass, then published for [`Handle::converge`]: the convergence requests it covers
    /// (those taken before it began) and what it left going.
    async fn covered_pass(&mut self) {
        let covering = self.handle.requested.load(Ordering::SeqCst);
        let began = Instant::now();
        // A failed pass leaves what the last one left.
        let leftovers = match self.pass().await {
            Ok(leftovers) => Some(Arc::new(leftovers)),
            Err(e) => {
                tracing::warn!(error = %e, "reconcile pass failed; retrying");
                None
            }
        };
        // A summary (quantiles, sum, count) on /metrics: how long passes take at scale.
        metrics::histogram!("berth_reconcile_pass_seconds").record(began.elapsed().as_secs_f64());
        self.handle.covered.send_modify(|c| {
            c.pass = c.pass.max(covering);
            if let Some(leftovers) = leftovers {
                c.leftovers = leftovers;
            }
        });
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
        let known = match self.store.run(crate::store::artifacts::image_tags).await {
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

    /// Labels of a deployment's network and containers.
    fn deployment_labels(&self, key: &DeploymentKey) -> HashMap<String, String> {
        let mut labels = self.labels();
        labels.insert(LABEL_APP.to_owned(), key.application_id.to_string());
        labels.insert(LABEL_DEPLOYMENT.to_owned(), key.to_string());
        labels
    }

    pub(super) fn short_id(&self) -> &str {
        let id = &self.settings.installation;
        &id[..id.len().min(8)]
    }

    /// One reconcile pass: read, forget what is gone, collect garbage, converge each
    /// deployment, finish rollouts, publish. Returns what of no desired deployment it left
    /// still going (removals run off the pass).
    async fn pass(&mut self) -> Result<handle::Leftovers, SupervisorError> {
        let Desired {
            deployments: desired,
            rollouts,
            broken,
            held,
        } = self.desired().await?;
        let installation = self.settings.installation.clone();
        let ours = [(LABEL_INSTALLATION, installation.as_str())];
        // Read before the listing, so that no container listed while its removal runs is
        // taken for live (one whose removal failed meanwhile waits for the pass its end
        // brings).
        let leaving = self.state.removals.snapshot();
        // Likewise networks: one listed while its removal runs is neither used nor removed
        // again, and keeps its name and subnet.
        let leaving_networks = self.state.removals.networks();
        let containers = self.runtime.instances(&ours).await?;
        // Instances being removed are gone already: neither live, nor ready, nor routed, nor
        // removed again. One the engine shows being removed (not by this process) has its
        // replica created anew in this pass instead of being restarted (which the engine
        // refuses); one this process removes has its slot wait for the removal's end
        // (`plan::leaving_slots`).
        let containers: Vec<InstanceInfo> = (containers.into_iter())
            .filter(|c| !c.removing && !leaving.contains_key(&c.id))
            .collect();
        let leaving: Vec<plan::Leaving> = leaving.into_values().collect();
        let existing: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        // Held deployments (of broken applications) are remembered as they are, but their
        // deadlines wake nobody: nothing is done to them until they can be deployed again.
        let keys: HashSet<&DeploymentKey> = desired.keys().chain(&held).collect();
        let apps: HashSet<i64> = keys.iter().map(|k| k.application_id).collect();
        let gone = self.state.forget(&apps, &keys, &existing);
        self.state.held = held.iter().map(|k| k.application_id).collect();
        self.forget_windows(gone);
        // Garbage first (instances of no desired deployment, then the networks nothing is
        // left on): starts freeing names, addresses and memory, and frees the subnet of a
        // network whose instances are gone (an unsubscribe's, once its removals ended).
        // Networks uploads in flight are having made (see `Handle::prepare_networks`).
        let preparing: Vec<DeploymentKey> = (self.handle.preparing().into_iter())
            .filter(|k| !keys.contains(k))
            .collect();
        let (wanted_deployments, mut wanted_networks) =
            garbage::wanted(&keys, &preparing, |k| self.network_name(k));
        let holder_pool = self.holder_pool_network();
        wanted_networks.extend(holder_pool.clone());
        let listed: Option<HashMap<String, NetworkInfo>> = match self.runtime.networks(&ours).await
        {
            Ok(networks) => Some(networks.into_iter().map(|n| (n.name.clone(), n)).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list networks");
                None
            }
        };
        let networks: Vec<(String, Option<String>)> = (listed.iter().flat_map(|l| l.values()))
            .map(|n| (n.name.clone(), n.labels.get(LABEL_DEPLOYMENT).cloned()))
            .collect();
        let labelled: Vec<(String, Option<String>)> = containers
            .iter()
            .map(|c| (c.id.clone(), c.labels.get(LABEL_DEPLOYMENT).cloned()))
            .collect();
        let garbage = plan::garbage(
            &labelled,
            &networks,
            &leaving,
            &leaving_networks.keys().map(String::as_str).collect(),
            (&wanted_deployments, &wanted_networks),
        );
        let mut by_deployment: HashMap<String, Vec<InstanceInfo>> = HashMap::new();
        let mut orphans: HashMap<String, InstanceInfo> = HashMap::new();
        for c in containers {
            match c.labels.get(LABEL_DEPLOYMENT) {
                Some(d) if wanted_deployments.contains(d) => {
                    by_deployment.entry(d.clone()).or_default().push(c)
                }
                _ => {
                    orphans.insert(c.id.clone(), c);
                }
            }
        }
        // Routes go before their containers: a freed subnet may be reused in this same pass,
        // and a new container of another application could get a removed one's address while
        // the route still named it.
        for key in self.routing.keys() {
            if !keys.contains(&key) {
                self.routing.remove(&key);
            }
        }
        let waiting_networks = self.collect_garbage(garbage, orphans, listed.as_ref());
        for key in &held {
            let found = by_deployment.remove(&key.to_string()).unwrap_or_default();
            self.hold(key, &found);
        }
        self.prepare_networks(&preparing, listed.as_ref(), &leaving_networks)
            .await;
        let now = Instant::now();
        let (mut units, mut windows, mut rescaled) = (Vec::new(), Vec::new(), false);
        for (key, dep) in &desired {
            let current = by_deployment.remove(&key.to_string()).unwrap_or_default();
            let scaled = self.autoscale(dep, &current);
            windows.extend(scaled.window);
            rescaled |= scaled.changed;
            let part = self
                .state
                .take_part(key, current.iter().map(|c| c.id.as_str()), now);
            let deployment = key.to_string();
            units.push(deploy::Unit {
                dep: scaled.dep,
                current,
                leaving: (leaving.iter())
                    .filter(|l| l.deployment.as_deref() == Some(deployment.as_str()))
                    .cloned()
                    .collect(),
                part,
            });
        }
        self.save_windows(windows).await;
        if rescaled {
            crate::fault::point(crate::fault::SCALE_DECIDED).await;
        }
        let done = self
            .deploy_all(units, listed.as_ref(), &leaving_networks)
            .await;
        if let Some(pool) = &holder_pool {
            self.tend_holder_pool(pool, listed.as_ref(), &leaving_networks)
                .await;
        }
        // Held deployments' containers still call the platform from their networks.
        let mut subnets: Vec<_> = (held.iter())
            .filter_map(|k| listed.as_ref()?.get(&self.network_name(k)))
            .flat_map(|n| n.subnets.iter().filter_map(|s| parse_subnet(s)))
            .collect();
        let mut standing: HashMap<i64, Standing> = HashMap::new();
        let mut statuses: HashMap<i64, Vec<status::DeploymentStatus>> = HashMap::new();
        let mut gauges = report::Gauges::default();
        for deploy::Done { dep, part, outcome } in done {
            let key = dep.key.clone();
            self.state.put_part(key.clone(), part);
            let status = match outcome {
                Ok((converged, fresh)) => {
                    subnets.extend(fresh);
                    (standing.entry(key.application_id).or_default())
                        .add(converged.all_ready, !converged.old.is_empty());
                    self.deployment_status(&dep, &converged)
                }
                Err(reason) => network::unplaced_status(&dep, &reason),
            };
            gauges.add(&dep, &status);
            statuses.entry(key.application_id).or_default().push(status);
        }
        self.handle.set_subnets(subnets);
        let names: HashSet<String> = self
            .state
            .instances
            .values()
            .map(|i| i.name.clone())
            .collect();
        self.routing.forget_ejected_except(&names);
        self.routing.forget_failures_except(&keys);
        gauges.publish();
        self.state.count_entries();
        self.rollout_step(&rollouts, &standing).await;
        self.publish_status(statuses, &rollouts, &broken);
        // Those begun in this pass included; a desired deployment's network being replaced
        // is no leftover.
        let unwanted =
            |d: &Option<String>| !d.as_ref().is_some_and(|d| wanted_deployments.contains(d));
        let containers = (self.state.removals.snapshot().into_iter())
            .filter(|(_, l)| unwanted(&l.deployment))
            .map(|(id, l)| (id, l.deployment))
            .collect();
        let mut networks = waiting_networks;
        networks.extend(
            (self.state.removals.networks().into_iter())
                .filter(|(_, n)| unwanted(&n.deployment))
                .map(|(name, n)| (name, n.deployment)),
        );
        Ok(handle::Leftovers {
            containers,
            networks,
        })
    }
}

/// How long a container has been running at `now`, from Docker's `State.StartedAt` (RFC 3339);
/// zero when unknown (then probes wait their whole initial delay, as for a fresh start).
pub(super) fn running_for(started_at: &str, now: time::OffsetDateTime) -> Duration {
    time::OffsetDateTime::parse(started_at, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|started| Duration::try_from(now - started).ok())
        .unwrap_or_default()
}

/// Docker object names allow `[a-zA-Z0-9_.-]`.
pub(super) fn docker_safe(text: &str) -> String {
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
}

//! What the supervisor remembers between passes, folded per instance, per deployment and per
//! application, with one place ([`State::forget`]) that drops what no longer exists, so
//! memory follows what exists, never what ever existed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::autoscale::Decision;
use super::probes::{ProbeState, SharedProbeState};
use super::removals::Removals;
use super::status::{Alarms, OomKills};
use super::usage::SharedUsage;
use crate::routing::DeploymentKey;
use crate::store::autoscaler as store_autoscaler;
use crate::sync::MutexExt;

/// What the supervisor remembers about one instance between passes.
#[derive(Debug)]
pub(super) struct Instance {
    pub app: i64,
    /// The instance name, which is the instance of the status and logs endpoints.
    pub name: String,
    /// Exits already counted (by `finished_at`).
    pub counted_exit: Option<String>,
    /// The exit whose restart was counted last (by `finished_at`): a runtime that restarts
    /// by itself (Swarm) keeps showing the ended run for a few passes while the supervisor's
    /// start changes nothing, and that is one restart, not one per pass.
    pub restarted_exit: Option<String>,
    pub restarts: u32,
    pub consecutive_failures: u32,
    pub next_start: Option<Instant>,
    pub last_failure: Option<String>,
    /// Why Berth killed the current run (its liveness probe failed): the reason its exit is
    /// recorded with, whatever `last_failure` says by the time the exit is seen.
    pub liveness_kill: Option<String>,
    /// The run the probe task watches (`started_at`), and the task.
    pub probed_run: String,
    pub probe_task: Option<JoinHandle<()>>,
    pub probe_state: SharedProbeState,
    pub running_since: Option<Instant>,
    /// Stats of the current run, followed by `usage_task`.
    pub usage: SharedUsage,
    pub usage_task: Option<JoinHandle<()>>,
    /// Removed from routing by a scale-down, stopped at this deadline.
    pub draining: Option<Instant>,
}

impl Instance {
    pub fn new(app: i64, name: &str) -> Instance {
        Instance {
            app,
            name: name.to_owned(),
            counted_exit: None,
            restarted_exit: None,
            restarts: 0,
            consecutive_failures: 0,
            next_start: None,
            last_failure: None,
            liveness_kill: None,
            probed_run: String::new(),
            probe_task: None,
            probe_state: Arc::new(Mutex::new(ProbeState::default())),
            running_since: None,
            usage: SharedUsage::default(),
            usage_task: None,
            draining: None,
        }
    }

    /// Stops the probe and stats tasks (the last stats stay readable for the exit record).
    pub fn stop_probes(&mut self) {
        if let Some(task) = self.probe_task.take() {
            task.abort();
        }
        if let Some(task) = self.usage_task.take() {
            task.abort();
        }
        self.probed_run.clear();
        *self.probe_state.locked() = ProbeState::default();
    }

    pub fn probes(&self) -> ProbeState {
        self.probe_state.locked().clone()
    }

    pub fn ready(&self) -> bool {
        self.probe_state.locked().ready
    }

    /// Why the proxy's ejection made it unready, while it does not answer.
    pub fn unresponsive(&self) -> Option<String> {
        self.probe_state.locked().unresponsive.clone()
    }
}

impl Drop for Instance {
    // A forgotten instance leaves no task behind.
    fn drop(&mut self) {
        self.stop_probes();
    }
}

/// A failure to create a replica, remembered per replica slot so creation failures back off
/// too.
#[derive(Debug, Default)]
pub(super) struct CreateFailures {
    pub failures: u32,
    pub next_try: Option<Instant>,
    pub reason: String,
}

/// One deployment's autoscaler between decisions.
#[derive(Debug)]
pub(super) struct Scaler {
    /// The manifest's `replicas`.
    pub min_replicas: u32,
    pub replicas: u32,
    pub next_decision: Instant,
    /// Recommendations of the scale-down window, oldest first.
    pub history: VecDeque<(Instant, u32)>,
    pub last: Option<Decision>,
    pub last_time: Option<String>,
}

/// When this process first wanted a deployment, and whether any of its replicas has been ready
/// since: a deployment none of whose replicas was ever ready is starting, not down, within its
/// startup grace.
#[derive(Debug, Clone, Copy)]
pub(super) struct Startup {
    pub since: Instant,
    pub ever_ready: bool,
}

impl Startup {
    /// Still starting for the first time: nothing was ever ready, the grace is not over, and
    /// the replicas are not crash-looping (which no amount of waiting mends).
    pub fn starting(&self, now: Instant, grace: Duration, crash_loop: bool) -> bool {
        !self.ever_ready && !crash_loop && now.duration_since(self.since) < grace
    }
}

/// How long a deployment starting for the first time may go without a ready replica before it
/// counts as down: its readiness probe's `initialDelaySeconds + failureThreshold ×
/// periodSeconds` (the time Kubernetes' probe needs to give up on a start), and for a deployment
/// without one, the same with Kubernetes' defaults (0 + 3 × 10 s): it is ready once running,
/// and that should not take longer. At most [`MAX_START`], as the rollout deadline's
/// stretch: uncapped, a manifest's `initialDelaySeconds` of 2^31 − 1 kept a first start that
/// never becomes ready from raising `c8y_Application_Down` for 68 years.
pub(super) fn startup_grace(readiness: Option<&manifests_schema::Probe>) -> Duration {
    use super::probes::schedule::MAX_START;
    use manifests_schema::Probe;
    let (initial, failures, period) = readiness.map_or(
        (
            Probe::DEFAULT_INITIAL_DELAY_SECONDS.into(),
            Probe::DEFAULT_FAILURE_THRESHOLD.into(),
            Probe::DEFAULT_PERIOD_SECONDS.into(),
        ),
        |p| {
            (
                u64::from(p.initial_delay_seconds),
                u64::from(p.failure_threshold.max(1)),
                // As the probe runs: an exec probe's period is at least 5 s.
                super::probes::schedule::period(p).as_secs(),
            )
        },
    );
    let needed = initial.saturating_add(failures.saturating_mul(period));
    Duration::from_secs(needed).min(MAX_START)
}

/// What is remembered per deployment.
#[derive(Debug)]
pub(super) struct DeploymentEntry {
    /// Its autoscaler (`scale: AUTO` only).
    pub scaler: Option<Scaler>,
    pub oom_kills: OomKills,
    /// First start (no alarm while it is starting).
    pub startup: Startup,
    /// Creation failures by replica slot.
    pub create_failures: BTreeMap<u32, CreateFailures>,
    /// The restart delay last set on the runtime for a revision (by revision), for a runtime
    /// that restarts instances by itself (`plan::restart_pace`).
    pub restart_pace: Option<(String, Duration)>,
    /// The last revision all of whose wanted replicas were ready: the only one kept beside a
    /// rollout (`plan::kept`).
    pub stable_revision: Option<String>,
    /// The old revision kept beside the current one, and since when.
    pub kept: Option<(String, Instant)>,
}

impl DeploymentEntry {
    pub fn new(now: Instant) -> DeploymentEntry {
        DeploymentEntry {
            scaler: None,
            oom_kills: OomKills::default(),
            startup: Startup {
                since: now,
                ever_ready: false,
            },
            create_failures: BTreeMap::new(),
            restart_pace: None,
            stable_revision: None,
            kept: None,
        }
    }
}

/// What is remembered per application.
#[derive(Debug, Default)]
pub(super) struct ApplicationEntry {
    /// (owner tenant, name), for records.
    pub owner: String,
    pub name: String,
    /// Alarms raised (type → text), to record raise and clear once.
    pub alarms: Alarms,
    /// The version being rolled out and when this process first saw it wanted.
    pub rollout: Option<(String, Instant)>,
}

/// Everything the loop keeps between passes.
#[derive(Debug, Default)]
pub(super) struct State {
    pub apps: HashMap<i64, ApplicationEntry>,
    pub deployments: HashMap<DeploymentKey, DeploymentEntry>,
    /// By instance (container) id.
    pub instances: HashMap<String, Instance>,
    /// Scale-down windows saved by an earlier process, by deployment, taken up when the
    /// deployment's autoscaler is made again (so a restart does not forget them).
    pub saved_windows: HashMap<String, store_autoscaler::Window>,
    /// Applications whose deployments the last pass held as they are (broken: see
    /// `spec::held_keys`): what is remembered of them stays, but nothing of it is due.
    pub held: HashSet<i64>,
    /// The containers being removed, off the pass, until their removal ends (each removal
    /// forgets its own).
    pub removals: Removals,
}

/// One deployment's share of the state: taken out for the pass's concurrent step (so
/// deployments converge side by side, each on its own part) and put back after it.
#[derive(Debug)]
pub(super) struct Part {
    /// The deployment's instances by id (only those of its containers the pass found).
    pub instances: HashMap<String, Instance>,
    pub deployment: DeploymentEntry,
}

impl Part {
    pub fn is_ready(&self, id: &str) -> bool {
        self.instances.get(id).is_some_and(Instance::ready)
    }
}

impl State {
    /// The one place that forgets: applications, deployments and instances that no longer
    /// exist. Returns the deployments whose saved autoscaler window is to be forgotten too.
    pub fn forget(
        &mut self,
        apps: &HashSet<i64>,
        deployments: &HashSet<&DeploymentKey>,
        instances: &HashSet<&str>,
    ) -> Vec<String> {
        self.apps.retain(|id, _| apps.contains(id));
        let mut gone: Vec<String> = self
            .deployments
            .iter()
            .filter(|(k, d)| !deployments.contains(k) && d.scaler.is_some())
            .map(|(k, _)| k.to_string())
            .collect();
        self.deployments.retain(|k, _| deployments.contains(k));
        let wanted: HashSet<String> = deployments.iter().map(|k| k.to_string()).collect();
        gone.extend(
            self.saved_windows
                .keys()
                .filter(|k| !wanted.contains(*k))
                .cloned(),
        );
        self.saved_windows.retain(|k, _| wanted.contains(k));
        self.instances
            .retain(|id, _| instances.contains(id.as_str()));
        gone
    }

    /// When something remembered is due (a restart's back-off, a drain, a creation retry, an
    /// autoscaler decision), for the loop's next wake-up; none of a held application.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        let instances = (self.instances.values())
            .filter(|i| !self.held.contains(&i.app))
            .flat_map(|i| [i.next_start, i.draining]);
        let deployments = (self.deployments.iter())
            .filter(|(k, _)| !self.held.contains(&k.application_id))
            .flat_map(|(_, d)| {
                (d.create_failures.values().map(|f| f.next_try))
                    .chain([d.scaler.as_ref().map(|s| s.next_decision)])
            });
        instances.chain(deployments).flatten()
    }

    /// Takes out a deployment's part: its entry and the instances of `ids` (its containers).
    pub fn take_part<'a>(
        &mut self,
        key: &DeploymentKey,
        ids: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> Part {
        let instances = ids
            .filter_map(|id| self.instances.remove_entry(id))
            .collect();
        let deployment = self
            .deployments
            .remove(key)
            .unwrap_or_else(|| DeploymentEntry::new(now));
        Part {
            instances,
            deployment,
        }
    }

    /// Puts a part back (with the instances its step made, without those it removed).
    pub fn put_part(&mut self, key: DeploymentKey, part: Part) {
        self.instances.extend(part.instances);
        self.deployments.insert(key, part.deployment);
    }

    /// Sizes of what is kept, as gauges: they must follow what exists.
    pub fn count_entries(&self) {
        let apps = self.apps.values();
        let deployments = self.deployments.values();
        // The names of the maps these were before they were folded per application,
        // deployment and instance: dashboards keep their series.
        let sizes = [
            ("applications", self.apps.len()),
            (
                "alarms",
                apps.clone().filter(|a| !a.alarms.is_empty()).count(),
            ),
            ("rollouts", apps.filter(|a| a.rollout.is_some()).count()),
            (
                "scalers",
                deployments.clone().filter(|d| d.scaler.is_some()).count(),
            ),
            ("saved_windows", self.saved_windows.len()),
            ("startups", self.deployments.len()),
            (
                "oom_kills",
                deployments
                    .clone()
                    .filter(|d| d.oom_kills.count > 0)
                    .count(),
            ),
            (
                "create_failures",
                deployments.map(|d| d.create_failures.len()).sum(),
            ),
            ("instances", self.instances.len()),
            ("removing", self.removals.len()),
            (
                "draining",
                self.instances
                    .values()
                    .filter(|i| i.draining.is_some())
                    .count(),
            ),
        ];
        for (map, size) in sizes {
            metrics::gauge!("berth_supervisor_entries", "map" => map).set(size as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let exec_probe = |initial, period, failure| manifests_schema::Probe {
            handler: manifests_schema::ProbeHandler::Exec {
                command: vec!["true".to_owned()],
            },
            ..probe(initial, period, failure)
        };
        for (readiness, grace) in [
            (None, 30),
            (Some(probe(0, 10, 3)), 30),
            (Some(probe(20, 5, 6)), 50),
            (Some(probe(0, 0, 0)), 1),
            (Some(exec_probe(0, 1, 3)), 15),
            // What no start needs, though the schema allows it: an hour at most, as the
            // rollout deadline's stretch.
            (Some(probe(3500, 10, 3)), 3530),
            (Some(probe(3570, 10, 3)), 3600),
            (Some(probe(3590, 10, 3)), 3600),
            (Some(probe(i32::MAX as u32, 10, 3)), 3600),
            (Some(probe(0, i32::MAX as u32, 3)), 3600),
            (Some(probe(0, 10, i32::MAX as u32)), 3600),
            (Some(probe(u32::MAX, u32::MAX, u32::MAX)), 3600),
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
    fn nothing_of_a_held_application_is_due() {
        let now = Instant::now();
        let (soon, later) = (now + Duration::from_secs(1), now + Duration::from_secs(2));
        let key = |app| DeploymentKey {
            application_id: app,
            tenant: None,
        };
        let mut state = State::default();
        for (id, app, due) in [("a", 1, soon), ("b", 2, later)] {
            let mut instance = Instance::new(app, id);
            instance.next_start = Some(due);
            state.instances.insert(id.to_owned(), instance);
            let mut deployment = DeploymentEntry::new(now);
            deployment.create_failures.insert(
                0,
                CreateFailures {
                    next_try: Some(due),
                    ..CreateFailures::default()
                },
            );
            state.deployments.insert(key(app), deployment);
        }
        // (held applications, what is due)
        let cases = [
            (vec![], vec![soon, soon, later, later]),
            (vec![1], vec![later, later]),
            (vec![2], vec![soon, soon]),
            (vec![1, 2], vec![]),
        ];
        for (held, due) in cases {
            state.held = held.iter().copied().collect();
            let mut deadlines: Vec<Instant> = state.deadlines().collect();
            deadlines.sort();
            assert_eq!(deadlines, due, "held {held:?}");
        }
    }

    #[test]
    fn forgetting_keeps_only_what_exists() {
        let now = Instant::now();
        let key = |app, tenant: &str| DeploymentKey {
            application_id: app,
            tenant: Some(tenant.to_owned()),
        };
        let mut state = State::default();
        for app in [1, 2] {
            state.apps.insert(app, ApplicationEntry::default());
        }
        state
            .deployments
            .insert(key(1, "t1"), DeploymentEntry::new(now));
        let mut scaled = DeploymentEntry::new(now);
        scaled.scaler = Some(Scaler {
            min_replicas: 1,
            replicas: 1,
            next_decision: now,
            history: VecDeque::new(),
            last: None,
            last_time: None,
        });
        state.deployments.insert(key(2, "t1"), scaled);
        state
            .instances
            .insert("a".to_owned(), Instance::new(1, "x"));
        state
            .instances
            .insert("b".to_owned(), Instance::new(2, "y"));
        let kept = key(1, "t1");
        let gone = state.forget(
            &HashSet::from([1]),
            &HashSet::from([&kept]),
            &HashSet::from(["a"]),
        );
        assert_eq!(state.apps.keys().collect::<Vec<_>>(), vec![&1]);
        assert_eq!(state.deployments.keys().collect::<Vec<_>>(), vec![&kept]);
        assert_eq!(state.instances.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(gone, vec![key(2, "t1").to_string()]);
    }
}

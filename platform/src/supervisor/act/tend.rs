//! Keeping one instance run going, as [`plan::tend`] says: creating a replica (respecting
//! its slot's back-off), starting a stopped one (a refused start backs off like a crash),
//! killing one whose liveness failed, and counting each exit.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;

use crate::runtime::{InstanceInfo, InstanceSpec};
use crate::store::audit;
use crate::supervisor::journal;
use crate::supervisor::plan::{self, Tend};
use crate::supervisor::spec::Deployment;
use crate::supervisor::state::{Instance, Part};
use crate::supervisor::{LABEL_REPLICA, Supervisor, docker_safe};
use crate::sync::MutexExt;

/// What tending an instance left of it. Only returned, never stored: as large as the
/// `Option<InstanceInfo>` it replaces, and no allocation per tended replica.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Tended {
    /// It is there, in this state.
    Kept(InstanceInfo),
    /// It is gone (removed by hand, or being removed): its slot is empty and filled at once.
    Vanished,
    /// The engine could not tell (an inspect failed): its slot is left alone this pass, since
    /// reading that as vanished would make a second instance of the slot (and the next pass
    /// remove one of the two, maybe the healthy one).
    Unknown,
}

impl Tended {
    /// An inspect's answer.
    fn inspected(
        found: Result<Option<InstanceInfo>, crate::runtime::RuntimeError>,
        id: &str,
    ) -> Tended {
        match found {
            Ok(Some(c)) => Tended::Kept(c),
            Ok(None) => Tended::Vanished,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot inspect container; its slot waits for the next pass");
                Tended::Unknown
            }
        }
    }

    fn kept(self) -> Option<InstanceInfo> {
        match self {
            Tended::Kept(c) => Some(c),
            Tended::Vanished | Tended::Unknown => None,
        }
    }
}

impl Supervisor {
    /// Keeps an instance of the current revision running as [`plan::tend`] says: counts
    /// exits, restarts with back-off, kills it when liveness failed, keeps its probe task on
    /// the current run. Returns what became of it.
    pub(super) async fn keep_running(
        &self,
        part: &mut Part,
        dep: &Deployment,
        c: InstanceInfo,
    ) -> Tended {
        let now = Instant::now();
        let instance = part
            .instances
            .entry(c.id.clone())
            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name));
        // Not placed by the cluster yet: nothing ran, nothing to start (the cluster starts it
        // once a node has room); the status says why.
        if let Some(why) = &c.unplaced {
            instance.running_since = None;
            instance.last_failure = Some(format!("No node can run it yet: {why}"));
            return Tended::Kept(c);
        }
        if !c.running {
            instance.running_since = None;
            if !instance.probed_run.is_empty() {
                let probe_failure = instance
                    .probes()
                    .last_failure
                    .filter(|f| f.starts_with("Liveness"));
                instance.stop_probes();
                if let Some(f) = probe_failure {
                    instance.last_failure = Some(f);
                }
            }
        }
        let exited = c.finished_at.is_some();
        let probes = instance.probes();
        let mut run = plan::Run {
            running: c.running,
            liveness_failed: probes.liveness_failed && instance.probed_run == c.started_at,
            exited,
            exit_counted: instance.counted_exit == c.finished_at,
            next_start: instance.next_start,
        };
        loop {
            match plan::tend(run, now) {
                Tend::Kill => {
                    tracing::info!(container = %c.name, "liveness failed: killing for restart");
                    let Some(instance) = part.instances.get_mut(&c.id) else {
                        return Tended::Unknown;
                    };
                    let reason = probes
                        .last_failure
                        .clone()
                        .unwrap_or_else(|| "Liveness probe failed".to_owned());
                    instance.last_failure = Some(reason.clone());
                    instance.liveness_kill = Some(reason);
                    instance.stop_probes();
                    if let Err(e) = self.runtime.kill_instance(&c.id).await {
                        tracing::warn!(container = %c.name, error = %e, "cannot kill");
                    }
                    // Counted as a failure when the exit is observed (next pass, poked by
                    // `die`).
                    return Tended::inspected(self.runtime.instance(&c.id).await, &c.id);
                }
                Tend::Watch => {
                    let Some(instance) = part.instances.get_mut(&c.id) else {
                        return Tended::Unknown;
                    };
                    let since = *instance.running_since.get_or_insert(now);
                    if plan::streak_over(since, now) {
                        instance.consecutive_failures = 0;
                    }
                    if instance.probed_run != c.started_at {
                        self.watch_run(part, Some(dep), &c);
                    }
                    return Tended::Kept(c);
                }
                Tend::CountExit => {
                    self.count_exit(part, dep, &c, now).await;
                    let Some(instance) = part.instances.get(&c.id) else {
                        return Tended::Unknown;
                    };
                    run.exit_counted = true;
                    run.next_start = instance.next_start;
                }
                Tend::Wait(_) => return Tended::Kept(c),
                Tend::Start => return self.start(part, dep, c, exited, now).await,
            }
        }
    }

    /// Counts a new exit: the failure streak, the back-off, the reason, and an audit record.
    async fn count_exit(&self, part: &mut Part, dep: &Deployment, c: &InstanceInfo, now: Instant) {
        let Some(instance) = part.instances.get_mut(&c.id) else {
            return;
        };
        let kill = instance.liveness_kill.take();
        let counted = plan::count_exit(
            plan::Exit {
                oom_killed: c.oom_killed,
                exit_code: c.exit_code,
                liveness_kill: kill.as_deref(),
            },
            instance.consecutive_failures,
            now,
        );
        instance.counted_exit = c.finished_at.clone();
        instance.consecutive_failures = counted.failures;
        instance.last_failure = Some(counted.reason.clone());
        instance.next_start = Some(counted.next_start);
        let peak = instance.usage.locked().peak_bytes;
        self.record_exit(part, dep, c, counted.reason, peak, counted.failures)
            .await;
    }

    /// Starts a stopped instance; a start the engine refuses backs off like a crash.
    async fn start(
        &self,
        part: &mut Part,
        dep: &Deployment,
        c: InstanceInfo,
        exited: bool,
        now: Instant,
    ) -> Tended {
        let Some(instance) = part.instances.get_mut(&c.id) else {
            return Tended::Unknown;
        };
        instance.next_start = None;
        match self.runtime.start_instance(&c.id).await {
            Ok(false) => {
                // Removed or being removed meanwhile: forget it; the caller replaces it.
                tracing::info!(container = %c.name, "removed while stopped: replacing it");
                part.instances.remove(&c.id);
                return Tended::Vanished;
            }
            Ok(true) => {
                let Some(instance) = part.instances.get_mut(&c.id) else {
                    return Tended::Unknown;
                };
                if exited && instance.restarted_exit != c.finished_at {
                    instance.restarts += 1;
                    instance.restarted_exit = c.finished_at.clone();
                }
                tracing::info!(container = %c.name, restarts = instance.restarts, "started");
            }
            Err(e) => {
                let Some(instance) = part.instances.get_mut(&c.id) else {
                    return Tended::Unknown;
                };
                let (failures, wait) = plan::failed_start(instance.consecutive_failures);
                instance.consecutive_failures = failures;
                instance.last_failure = Some(format!("cannot start: {e}"));
                instance.next_start = Some(now + wait);
                journal::record(
                    &self.audit,
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
                return Tended::Kept(c);
            }
        }
        match Tended::inspected(self.runtime.instance(&c.id).await, &c.id) {
            Tended::Kept(fresh) if fresh.running => {
                Box::pin(self.keep_running(part, dep, fresh)).await
            }
            other => other,
        }
    }

    /// Creates and starts replica `replica` of `dep` (respecting creation back-off).
    pub(super) async fn create(
        &self,
        part: &mut Part,
        dep: &Deployment,
        network: &str,
        labels: &HashMap<String, String>,
        replica: u32,
    ) -> Option<InstanceInfo> {
        let now = Instant::now();
        let next_try = part
            .deployment
            .create_failures
            .get(&replica)
            .and_then(|f| f.next_try);
        if !plan::may_create(next_try, now) {
            return None;
        }
        let suffix = hex::encode(uuid::Uuid::new_v4().as_bytes())[..6].to_owned();
        let name = format!(
            "berth-{}-{}-{}-{}-{}",
            self.short_id(),
            dep.key.application_id,
            docker_safe(dep.key.tenant.as_deref().unwrap_or(crate::routing::SHARED)),
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
        let created = self.runtime.create_instance(&spec).await;
        let entry = &mut part.deployment;
        let created = match created {
            Ok(id) => id,
            Err(e) => {
                let failure = entry.create_failures.entry(replica).or_default();
                let (failures, wait) = plan::failed_start(failure.failures);
                failure.failures = failures;
                failure.reason = format!("cannot create container: {e}");
                failure.next_try = Some(now + wait);
                tracing::warn!(deployment = %dep.key, error = %e, "cannot create container");
                return None;
            }
        };
        entry.create_failures.remove(&replica);
        tracing::info!(container = %name, deployment = %dep.key, version = %dep.version, "created");
        // Not there or unknown: the next pass finds it by its labels (it was made).
        let info = Tended::inspected(self.runtime.instance(&created).await, &created).kept()?;
        self.keep_running(part, dep, info).await.kept()
    }
}

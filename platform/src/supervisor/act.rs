//! The executor of one deployment's instances: it asks [`plan`] what to do with the
//! deployment's replicas, old revision and each instance run, and does it through the
//! [`Runtime`](crate::runtime::Runtime): create, start, kill, remove, drain, and the probe and
//! stats tasks of every run. Exits and failed starts become audit records.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::plan::{self, Action, Observed, Tend};
use super::spec::Deployment;
use super::state::{Instance, Part};
use super::{LABEL_REPLICA, LABEL_REVISION, Supervisor, docker_safe, journal, probes};
use super::{running_for, usage};
use crate::routing::Upstream;
use crate::runtime::{InstanceInfo, InstanceSpec};
use crate::store::audit;

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

/// The upstreams among `instances` the proxy may send to: running, ready, with an address.
pub(super) fn routable<'a>(
    part: &Part,
    instances: impl Iterator<Item = &'a InstanceInfo>,
) -> Vec<Upstream> {
    instances
        .filter(|c| c.running && part.is_ready(&c.id))
        .filter_map(|c| {
            c.ip.map(|ip| Upstream {
                instance: c.name.clone(),
                addr: SocketAddr::new(ip, 80),
            })
        })
        .collect()
}

/// What converging one deployment left: its kept replicas by slot, the old-revision
/// instances still serving, and whether every replica of the current revision is ready.
pub(super) struct Converged {
    pub kept: BTreeMap<u32, InstanceInfo>,
    pub old: Vec<InstanceInfo>,
    pub all_ready: bool,
}

impl Supervisor {
    fn observed(part: &Part, c: &InstanceInfo) -> Observed {
        let instance = part.instances.get(&c.id);
        Observed {
            id: c.id.clone(),
            replica: c.labels.get(LABEL_REPLICA).and_then(|r| r.parse().ok()),
            running: c.running,
            draining: instance.and_then(|i| i.draining),
        }
    }

    /// Converges one deployment (`dep.replicas` already the autoscaler's count) on its part
    /// of the state and publishes its ready instances to routing. `containers` are those the
    /// pass found, `leaving` those of them being removed. Touches nothing of another
    /// deployment, so the pass runs several at once.
    pub(super) async fn converge(
        &self,
        part: &mut Part,
        dep: &Deployment,
        network: &str,
        mut labels: HashMap<String, String>,
        containers: Vec<InstanceInfo>,
        leaving: &[plan::Leaving],
    ) -> Converged {
        labels.insert(
            super::LABEL_TENANT.to_owned(),
            dep.key.tenant.clone().unwrap_or_default(),
        );
        labels.insert(super::LABEL_VERSION.to_owned(), dep.version.clone());
        labels.insert(LABEL_REVISION.to_owned(), dep.revision.clone());
        let (mut current, old): (Vec<_>, Vec<_>) = containers
            .into_iter()
            .partition(|c| c.labels.get(LABEL_REVISION) == Some(&dep.revision));
        current.sort_by(|a, b| a.name.cmp(&b.name));
        let now = Instant::now();
        let create_backoff: BTreeMap<u32, Instant> = part
            .deployment
            .create_failures
            .iter()
            .filter_map(|(slot, f)| Some((*slot, f.next_try?)))
            .collect();
        let observed: Vec<Observed> = current.iter().map(|c| Self::observed(part, c)).collect();
        let leaving_slots = plan::leaving_slots(leaving, &dep.key.to_string(), &dep.revision);
        let actions = plan::replicas(
            dep.replicas,
            &observed,
            &create_backoff,
            &leaving_slots,
            self.settings.autoscaling.drain_period,
            now,
        );
        let mut by_id: HashMap<String, InstanceInfo> =
            current.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut kept: BTreeMap<u32, InstanceInfo> = BTreeMap::new();
        for action in actions {
            match action {
                Action::Remove { id, why } => {
                    if let Some(c) = by_id.remove(&id) {
                        tracing::debug!(container = %c.name, ?why, "removing");
                        self.remove(part, &c);
                    }
                }
                Action::Drain { id, until } => {
                    if let Some(c) = by_id.get(&id) {
                        tracing::info!(container = %c.name, "scaled down: draining");
                        part.instances
                            .entry(id)
                            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name))
                            .draining = Some(until);
                    }
                }
                Action::Undrain { id } => {
                    if let Some(i) = part.instances.get_mut(&id) {
                        i.draining = None;
                    }
                }
                Action::Tend { replica, id } => {
                    let Some(c) = by_id.remove(&id) else { continue };
                    match self.keep_running(part, dep, c).await {
                        Tended::Kept(updated) => {
                            kept.insert(replica, updated);
                        }
                        // Removed by hand: replace it now, not a pass later (unless the
                        // slot waits for a removal of ours, as `plan::replicas` has it).
                        Tended::Vanished if !leaving_slots.contains(&replica) => {
                            if let Some(created) =
                                self.create(part, dep, network, &labels, replica).await
                            {
                                kept.insert(replica, created);
                            }
                        }
                        Tended::Vanished => {}
                        Tended::Unknown => {}
                    }
                }
                Action::Create { replica } => {
                    if let Some(created) = self.create(part, dep, network, &labels, replica).await {
                        kept.insert(replica, created);
                    }
                }
                Action::Retain { .. }
                | Action::RemoveNetwork { .. }
                | Action::DeferNetwork { .. } => {}
            }
        }
        self.pace_restarts(part, dep, &kept).await;
        let ready_current = kept
            .values()
            .filter(|c| c.running && part.is_ready(&c.id))
            .count();
        let all_ready = ready_current == dep.replicas as usize;
        let old_observed: Vec<plan::Old> = old
            .iter()
            .map(|c| plan::Old {
                id: c.id.clone(),
                running: c.running,
                revision: c.labels.get(LABEL_REVISION).cloned(),
                version: c.labels.get(super::LABEL_VERSION).cloned(),
            })
            .collect();
        let kept_revision = self.kept_revision(part, dep, all_ready, &old_observed, leaving, now);
        let mut old_by_id: HashMap<String, InstanceInfo> =
            old.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut old_kept = Vec::new();
        let mut expired = false;
        for action in plan::retire(
            dep.replicas,
            ready_current,
            &old_observed,
            kept_revision.as_ref(),
        ) {
            match action {
                Action::Remove { id, .. } => {
                    // Traffic has moved to the new revision (or the old one is dead anyway, or
                    // not the last ready one, or its time is over).
                    if let Some(c) = old_by_id.remove(&id) {
                        expired |= kept_revision.as_ref().is_some_and(|k| {
                            k.expired && c.labels.get(LABEL_REVISION) == Some(&k.revision)
                        });
                        self.remove(part, &c);
                    }
                }
                Action::Retain { id } => {
                    if let Some(c) = old_by_id.remove(&id) {
                        self.observe_old(part, dep, &c);
                        old_kept.push(c);
                    }
                }
                _ => {}
            }
        }
        if expired {
            self.record_expired_revision(dep);
        }
        // Replicas the proxy ejected stay out for the ejection period (the routing table's
        // business); their probe task turns them unready if they do not answer either.
        let upstreams = routable(part, kept.values().chain(old_kept.iter()));
        self.routing.publish(dep.key.clone(), upstreams);
        Converged {
            kept,
            old: old_kept,
            all_ready,
        }
    }

    /// Tells a runtime that restarts instances by itself (Swarm) how long to wait before it
    /// restarts the current revision's instances, as [`plan::restart_pace`] says from their
    /// failure streaks; the local engine ignores it (the supervisor starts its containers).
    async fn pace_restarts(
        &self,
        part: &mut Part,
        dep: &Deployment,
        kept: &BTreeMap<u32, InstanceInfo>,
    ) {
        let Some(any) = kept.values().next() else {
            return;
        };
        let streak = kept
            .values()
            .filter_map(|c| part.instances.get(&c.id))
            .map(|i| i.consecutive_failures)
            .max()
            .unwrap_or(0);
        let asked = part
            .deployment
            .restart_pace
            .as_ref()
            .filter(|(revision, _)| *revision == dep.revision)
            .map(|(_, delay)| *delay);
        let pace = plan::Pace {
            streak,
            any_down: kept.values().any(|c| !c.running),
            asked,
        };
        let Some(delay) = plan::restart_pace(pace) else {
            return;
        };
        match self.runtime.pace_restarts(&any.id, delay).await {
            Ok(()) => {
                tracing::info!(deployment = %dep.key, streak, delay_ms = delay.as_millis() as u64, "restart delay set");
                part.deployment.restart_pace = Some((dep.revision.clone(), delay));
            }
            // Asked again next pass.
            Err(e) => {
                tracing::warn!(deployment = %dep.key, error = %e, "cannot set the restart delay")
            }
        }
    }

    /// Forgets an instance and starts removing it (off the pass: its removal may take
    /// minutes, and the pass must not wait for it).
    pub(super) fn remove(&self, part: &mut Part, c: &InstanceInfo) {
        part.instances.remove(&c.id);
        self.start_removal(c);
    }

    pub(super) fn watch_run(&self, part: &mut Part, dep: Option<&Deployment>, c: &InstanceInfo) {
        let Some(ip) = c.ip else { return };
        let runtime = Arc::clone(&self.runtime);
        let passive = probes::Passive {
            routing: self.routing.clone(),
            instance: c.name.clone(),
            answer_timeout: self.settings.answer_timeout,
        };
        let wake = Arc::clone(&self.handle.wake);
        let Some(instance) = part.instances.get_mut(&c.id) else {
            return;
        };
        instance.stop_probes();
        instance.probed_run = c.started_at.clone();
        if dep.is_some() {
            instance.usage_task = Some(usage::watch(
                Arc::clone(&runtime),
                c.id.clone(),
                Arc::clone(&instance.usage),
            ));
        }
        // An adopted instance (Berth restarted) has served for a while: its probes' initial
        // delays count from its start, so it is routed again at once. An old-revision one
        // adopted after a restart (`dep` None): its own probes are not known any more (and the
        // new revision's may not fit it), so it counts as ready while it runs.
        instance.probe_task = Some(tokio::spawn(probes::watch(
            runtime,
            c.id.clone(),
            ip,
            dep.and_then(|d| d.liveness.clone()),
            dep.and_then(|d| d.readiness.clone()),
            running_for(&c.started_at, time::OffsetDateTime::now_utc()),
            passive,
            Arc::clone(&instance.probe_state),
            wake,
        )));
    }

    /// Old-revision instances keep serving during a rollout: their probe task (started while
    /// they were current) keeps running; adopted ones get a probe-less watcher.
    fn observe_old(&self, part: &mut Part, dep: &Deployment, c: &InstanceInfo) {
        let instance = part
            .instances
            .entry(c.id.clone())
            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name));
        if instance.probed_run != c.started_at && c.ip.is_some() {
            self.watch_run(part, None, c);
        }
    }

    /// Keeps an instance of the current revision running as [`plan::tend`] says: counts
    /// exits, restarts with back-off, kills it when liveness failed, keeps its probe task on
    /// the current run. Returns what became of it.
    async fn keep_running(&self, part: &mut Part, dep: &Deployment, c: InstanceInfo) -> Tended {
        let now = Instant::now();
        let instance = part
            .instances
            .entry(c.id.clone())
            .or_insert_with(|| Instance::new(dep.key.application_id, &c.name));
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
        let peak = instance
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peak_bytes;
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
    async fn create(
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::routing::DeploymentKey;
    use crate::supervisor::fake::{FakeRuntime, supervisor};
    use crate::supervisor::state::State;

    fn deployment() -> Deployment {
        Deployment {
            key: DeploymentKey {
                application_id: 1,
                tenant: None,
            },
            application_name: "svc".to_owned(),
            owner: "t0".to_owned(),
            autoscale: false,
            version: "1.0.0".to_owned(),
            stable_version: None,
            image: "sha256:00".to_owned(),
            replicas: 1,
            env: Vec::new(),
            memory_bytes: 64_000_000,
            nano_cpus: 500_000_000,
            liveness: None,
            readiness: None,
            revision: "r1".to_owned(),
        }
    }

    /// A stopped replica is started, and the engine is asked how it is now: its answer
    /// decides whether the slot is filled anew.
    #[tokio::test]
    async fn a_slot_whose_instance_cannot_be_inspected_gets_no_second_one() {
        // (case, instance removed meanwhile, inspect fails, creations, kept in slot 0)
        let cases = [
            ("inspected", false, false, 0, Some("c0")),
            ("vanished", true, false, 1, Some("created-0")),
            ("inspect failed", false, true, 0, None),
        ];
        for (case, vanished, inspect_fails, creations, kept) in cases {
            let dir = tempfile::tempdir().unwrap();
            let runtime = std::sync::Arc::new(FakeRuntime::default());
            let sup = supervisor(std::sync::Arc::clone(&runtime), dir.path());
            let dep = deployment();
            runtime.add("c0", &dep.key.to_string(), &dep.revision, 0);
            let listed = runtime.lock().values().cloned().collect::<Vec<_>>();
            if vanished {
                runtime.lock().clear();
            }
            runtime.inspect_fails.store(inspect_fails, Ordering::SeqCst);
            let mut part = State::default().take_part(&dep.key, ["c0"].into_iter(), Instant::now());
            let converged = sup
                .converge(&mut part, &dep, "net", HashMap::new(), listed, &[])
                .await;
            assert_eq!(
                runtime.created.load(Ordering::SeqCst),
                creations,
                "{case}: creations"
            );
            assert_eq!(
                converged.kept.get(&0).map(|c| c.id.as_str()),
                kept,
                "{case}: kept"
            );
        }
    }
}

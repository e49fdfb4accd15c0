//! The executor of one deployment's instances: it asks [`plan`] what to do with the
//! deployment's replicas, old revision and each instance run, and does it through the
//! [`Runtime`](crate::runtime::Runtime): create, start, kill, remove, drain, and the probe and
//! stats tasks of every run. Exits and failed starts become audit records.
//!
//! Converging a deployment (here) carries out its actions in order; [`tend`] keeps each
//! instance run going (create, start, kill, count exits), [`watch`] gives a run its probe and
//! stats tasks, and [`outcome`] is what converging left, for the report and the proxy.
//! Paths out of `act` name `crate::supervisor::…` so the layering test sees them.

mod outcome;
mod tend;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::runtime::InstanceInfo;
use crate::supervisor::plan::{self, Action, Observed};
use crate::supervisor::spec::Deployment;
use crate::supervisor::state::{Instance, Part};
use crate::supervisor::{LABEL_REPLICA, LABEL_REVISION, LABEL_TENANT, LABEL_VERSION, Supervisor};
pub(super) use outcome::{Converged, routable};
use tend::Tended;

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
            LABEL_TENANT.to_owned(),
            dep.key.tenant.clone().unwrap_or_default(),
        );
        labels.insert(LABEL_VERSION.to_owned(), dep.version.clone());
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
                version: c.labels.get(LABEL_VERSION).cloned(),
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
    fn remove(&self, part: &mut Part, c: &InstanceInfo) {
        part.instances.remove(&c.id);
        self.start_removal(c);
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

    /// A replica a cluster cannot place yet is neither started, nor counted as an exit, nor
    /// replaced: the status says it is pending, and why.
    #[tokio::test]
    async fn a_replica_no_node_can_run_is_pending_not_crashing() {
        use crate::supervisor::status::{DeploymentReason, InstanceState};
        let dir = tempfile::tempdir().unwrap();
        let runtime = std::sync::Arc::new(FakeRuntime::default());
        let mut sup = supervisor(std::sync::Arc::clone(&runtime), dir.path());
        let dep = deployment();
        runtime.add("c0", &dep.key.to_string(), &dep.revision, 0);
        let why = "no suitable node (insufficient resources on 3 nodes)";
        runtime.lock().get_mut("c0").unwrap().unplaced = Some(why.to_owned());
        let mut converged = None;
        for _ in 0..3 {
            let listed = runtime.lock().values().cloned().collect::<Vec<_>>();
            let mut part = sup
                .state
                .take_part(&dep.key, ["c0"].into_iter(), Instant::now());
            let done = sup
                .converge(&mut part, &dep, "net", HashMap::new(), listed, &[])
                .await;
            sup.state.put_part(dep.key.clone(), part);
            assert_eq!(done.kept.get(&0).map(|c| c.id.as_str()), Some("c0"));
            converged = Some(done);
        }
        assert_eq!(runtime.created.load(Ordering::SeqCst), 0);
        assert!(!runtime.lock()["c0"].running, "started");
        let converged = converged.unwrap();
        let status = sup.deployment_status(&dep, &converged);
        assert_eq!(status.reason, Some(DeploymentReason::Unschedulable));
        assert_eq!(status.restarts, 0);
        let instance = &status.instances[0];
        assert_eq!(instance.state, InstanceState::Pending);
        assert!(
            instance
                .last_failure
                .as_deref()
                .is_some_and(|f| f.contains(why)),
            "{instance:?}"
        );
        assert_eq!(status.last_failure, instance.last_failure);
    }
}

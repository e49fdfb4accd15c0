//! What a pass reports: each deployment's typed [`DeploymentStatus`] (with its instances'
//! states, usage and the metrics operators watch), the alarms computed from them and recorded
//! when raised or cleared, and the statuses published on the [`Handle`](super::Handle).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;

use super::act::Converged;
use super::scaling::{rfc3339_millis, saved_window, unix_millis};
use super::spec::Deployment;
use super::state::{DeploymentEntry, Instance, startup_grace};
use super::status::{
    ApplicationStatus, AutoscalerStatus, CpuUse, DeploymentReason, DeploymentStatus, InstanceState,
    InstanceStatus, MemoryUse, Placement, alarms_of,
};
use super::{LABEL_REVISION, LABEL_VERSION, Supervisor, backoff, journal};
use crate::runtime::InstanceInfo;
use crate::series::placement::{
    DeploymentLabels, DeploymentSample, InstanceLabels, InstanceSample,
};
use crate::store::audit;
use crate::sync::MutexExt;

/// The gauges a pass publishes (`series::placement`): one sample per deployment and
/// instance, taken from the statuses the pass computed.
#[derive(Default)]
pub(super) struct Gauges {
    deployments: Vec<DeploymentSample>,
    instances: Vec<InstanceSample>,
}

impl Gauges {
    pub(super) fn add(&mut self, dep: &Deployment, status: &DeploymentStatus) {
        self.deployments.push(DeploymentSample {
            labels: DeploymentLabels {
                owner: dep.owner.clone(),
                application: dep.application_name.clone(),
                tenant: dep.key.tenant.clone().unwrap_or_default(),
            },
            desired: status.desired,
            active: status.active,
            unhealthy: status.unhealthy,
        });
        self.instances
            .extend(status.instances.iter().map(|i| InstanceSample {
                labels: InstanceLabels {
                    owner: dep.owner.clone(),
                    application: dep.application_name.clone(),
                    instance: i.name.clone(),
                },
                cpu_cores: i.cpu.as_ref().map_or(0.0, |c| c.cores),
                memory_bytes: i.memory.used_bytes.unwrap_or(0),
            }));
    }

    /// Replaces what the last pass published.
    pub(super) fn publish(self) {
        crate::series::get()
            .placement
            .publish(&self.deployments, &self.instances);
    }
}

impl Supervisor {
    /// The status of a converged deployment.
    pub(super) fn deployment_status(
        &mut self,
        dep: &Deployment,
        converged: &Converged,
    ) -> DeploymentStatus {
        let now = Instant::now();
        let entry = self
            .state
            .deployments
            .entry(dep.key.clone())
            .or_insert_with(|| DeploymentEntry::new(now));
        let mut last_failure: Option<String> = entry
            .create_failures
            .values()
            .next()
            .map(|f| f.reason.clone());
        let oom_kills = entry.oom_kills.clone();
        let (mut active, mut unhealthy, mut restarts, mut available) = (0u32, 0u32, 0u32, 0u32);
        let mut crash_loop = false;
        let mut unplaced = false;
        let mut instances = Vec::new();
        for c in converged.kept.values().chain(converged.old.iter()) {
            let instance = self.state.instances.get(&c.id);
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
            let status = self.instance_status(dep, c, instance, ready, now);
            crash_loop |= status.state == InstanceState::CrashLoopBackOff && current;
            unplaced |= status.state == InstanceState::Pending && current;
            restarts += status.restarts;
            if status.last_failure.is_some() {
                last_failure = status.last_failure.clone();
            }
            instances.push(status);
        }
        let autoscaler = dep.autoscale.then(|| self.autoscaler_status(dep));
        let entry = self
            .state
            .deployments
            .entry(dep.key.clone())
            .or_insert_with(|| DeploymentEntry::new(now));
        entry.startup.ever_ready |= available > 0;
        let starting =
            entry
                .startup
                .starting(now, startup_grace(dep.readiness.as_ref()), crash_loop);
        DeploymentStatus {
            tenant: dep.key.tenant.clone(),
            version: dep.version.clone(),
            autoscale: dep.autoscale,
            desired: dep.replicas,
            active,
            available,
            unhealthy,
            restarts,
            placement: Placement::Placed {
                oom_kills,
                autoscaler,
            },
            reason: if crash_loop {
                Some(DeploymentReason::CrashLoopBackOff)
            } else {
                unplaced.then_some(DeploymentReason::Unschedulable)
            },
            last_failure,
            starting,
            instances,
            // What the proxy really sees, straight from the routing table.
            upstreams: self
                .routing
                .ready(&dep.key)
                .iter()
                .map(|u| u.instance.clone())
                .collect(),
        }
    }

    fn instance_status(
        &self,
        dep: &Deployment,
        c: &InstanceInfo,
        instance: Option<&Instance>,
        ready: bool,
        now: Instant,
    ) -> InstanceStatus {
        let (restarts, failure, waiting) = instance.map_or((0, None, false), |i| {
            (
                i.restarts,
                i.last_failure.clone(),
                i.next_start.is_some_and(|t| t > now),
            )
        });
        let looping = waiting
            && instance.is_some_and(|i| i.consecutive_failures >= backoff::CRASH_LOOP_AFTER);
        let unresponsive = instance
            .and_then(Instance::unresponsive)
            .filter(|_| c.running);
        let probing = instance
            .filter(|_| c.running && !ready)
            .and_then(|i| i.probes().last_failure);
        let state = InstanceState::of(
            c.unplaced.is_some(),
            c.running,
            unresponsive.is_some(),
            waiting,
            looping,
        );
        let usage = instance
            .map(|i| i.usage.locked().clone())
            .filter(|_| c.running)
            .unwrap_or_default();
        let cores = usage.fresh_cpu(now);
        let limit_cores = dep.nano_cpus as f64 / 1e9;
        let memory = usage.latest.map(|u| u.memory_bytes);
        InstanceStatus {
            name: c.name.clone(),
            version: c.labels.get(LABEL_VERSION).cloned(),
            state,
            ready,
            restarts,
            ip: c.ip,
            node: c.node.clone(),
            // A restart's reason first; else, while it runs unready, why its probe fails.
            last_failure: unresponsive.or(failure).or(probing),
            // Out of routing for a while: the proxy saw it fail (see `routing`).
            ejected: self.routing.ejection(&c.name).map(|e| e.reason),
            draining: instance.is_some_and(|i| i.draining.is_some()),
            cpu: cores.map(|cores| CpuUse {
                cores,
                of_limit: (limit_cores > 0.0).then(|| cores / limit_cores),
            }),
            memory: MemoryUse {
                used_bytes: memory,
                peak_bytes: (usage.peak_bytes > 0).then_some(usage.peak_bytes),
                limit_bytes: dep.memory_bytes,
            },
        }
    }

    fn autoscaler_status(&self, dep: &Deployment) -> AutoscalerStatus {
        let settings = self.settings.autoscaling;
        let scaler = self
            .state
            .deployments
            .get(&dep.key)
            .and_then(|d| d.scaler.as_ref());
        AutoscalerStatus {
            min_replicas: scaler.map(|s| s.min_replicas),
            max_replicas: settings.max_replicas.max(dep.replicas),
            target: settings.target,
            scale_down_window_secs: settings.scale_down_window.as_secs(),
            replicas: dep.replicas,
            last_decision: scaler.and_then(|s| s.last.clone()),
            last_scale_time: scaler.and_then(|s| s.last_time.clone()),
            // The scale-down window: what holds replicas up (kept across restarts).
            recommendations: scaler.map(|s| {
                saved_window(&s.history, unix_millis(), Instant::now())
                    .into_iter()
                    .map(|(ms, replicas)| (rfc3339_millis(ms), replicas))
                    .collect()
            }),
        }
    }

    /// Records alarms raised and cleared since the last pass; returns the active ones.
    fn update_alarms(&mut self, app: i64, deployments: &[DeploymentStatus]) -> super::Alarms {
        let now = alarms_of(deployments);
        let entry = self.state.apps.entry(app).or_default();
        let before = std::mem::replace(&mut entry.alarms, now.clone());
        if entry.name.is_empty() {
            return now;
        }
        let (owner, name) = (entry.owner.clone(), entry.name.clone());
        for (kind, text) in now.iter().filter(|(k, _)| !before.contains_key(*k)) {
            journal::record(
                &self.audit,
                journal::Entry {
                    tenant: &owner,
                    application: (app, &name),
                    record_type: kind.as_str(),
                    activity: "Alarm raised",
                    text: text.clone(),
                    severity: kind.severity(),
                    details: json!({"status": "ACTIVE"}),
                },
            );
        }
        for kind in before.keys().filter(|k| !now.contains_key(*k)) {
            journal::record(
                &self.audit,
                journal::Entry {
                    tenant: &owner,
                    application: (app, &name),
                    record_type: kind.as_str(),
                    activity: "Alarm cleared",
                    text: format!("{} cleared", kind.as_str()),
                    severity: audit::INFORMATION,
                    details: json!({"status": "CLEARED"}),
                },
            );
        }
        now
    }

    /// Publishes every application's status (alarms recorded on the way) and the instances.
    pub(super) fn publish_status(
        &mut self,
        statuses: HashMap<i64, Vec<DeploymentStatus>>,
        wanted: &HashMap<i64, super::rollout::Wanted>,
        broken: &HashMap<i64, String>,
    ) {
        let mut map = HashMap::new();
        for (app, deployments) in statuses {
            let (active, stable) = wanted
                .get(&app)
                .map(|w| (w.active.clone(), w.stable.clone()))
                .unwrap_or_default();
            let alarms = self.update_alarms(app, &deployments);
            map.insert(
                app,
                ApplicationStatus::Deployed {
                    active_version: active,
                    stable_version: stable,
                    alarms,
                    deployments,
                },
            );
        }
        // An application with no status this pass has no alarm to remember.
        for (app, entry) in &mut self.state.apps {
            if !map.contains_key(app) {
                entry.alarms.clear();
            }
        }
        for (app, reason) in broken {
            map.insert(
                *app,
                ApplicationStatus::Broken {
                    reason: reason.clone(),
                },
            );
        }
        let names: HashMap<String, (i64, String)> = self
            .state
            .instances
            .iter()
            .map(|(id, i)| (i.name.clone(), (i.app, id.clone())))
            .collect();
        let usage = self
            .state
            .instances
            .values()
            .map(|i| {
                let history = i.usage.locked().history.clone();
                (i.name.clone(), (i.app, history))
            })
            .collect();
        self.handle.publish(map, names);
        self.handle.publish_usage(usage);
    }
}

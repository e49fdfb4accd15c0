//! The autoscaler's side of a pass: each `scale: AUTO` deployment's replica count from its
//! [`autoscale::decide`] decision once per period (never below the manifest's `replicas`,
//! never above the configured maximum), the scale-down window kept across restarts, and the
//! audit record of every change.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::json;

use super::autoscale::{self, Policy};
use super::spec::Deployment;
use super::state::{DeploymentEntry, Scaler};
use super::{LABEL_REPLICA, LABEL_REVISION, Supervisor, TOLERANCE, journal};
use crate::runtime::InstanceInfo;
use crate::store::audit;
use crate::store::autoscaler as store_autoscaler;
use crate::sync::MutexExt;

/// A deployment with its autoscaler's replica count, and the decision's window to save (when
/// one was made) before anything acts on it.
pub(super) struct Scaled {
    pub dep: Deployment,
    pub window: Option<store_autoscaler::Window>,
    /// The decision changed the replica count.
    pub changed: bool,
}

impl Supervisor {
    /// The deployment with the replica count its autoscaler decides (`scale: AUTO`), deciding
    /// again when the period is up; unchanged for `scale: NONE`.
    pub(super) fn autoscale(&mut self, dep: &Deployment, containers: &[InstanceInfo]) -> Scaled {
        let now = Instant::now();
        let entry = self
            .state
            .deployments
            .entry(dep.key.clone())
            .or_insert_with(|| DeploymentEntry::new(now));
        if !dep.autoscale {
            entry.scaler = None;
            return Scaled {
                dep: dep.clone(),
                window: None,
                changed: false,
            };
        }
        let settings = self.settings.autoscaling;
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
        let saved = self.state.saved_windows.remove(&dep.key.to_string());
        let instances = &self.state.instances;
        let entry = self
            .state
            .deployments
            .entry(dep.key.clone())
            .or_insert_with(|| DeploymentEntry::new(now));
        let scaler = entry.scaler.get_or_insert_with(|| Scaler {
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
        let (mut window_to_save, mut changed) = (None, false);
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
                    let instance = instances.get(&c.id).filter(|i| i.ready())?;
                    let cores = instance.usage.locked().fresh_cpu(now)?;
                    (limit_cores > 0.0).then(|| cores / limit_cores)
                })
                .collect();
            let (decision, window) = autoscale::step(
                &mut scaler.history,
                &policy,
                &cpu,
                now,
                settings.scale_down_window,
            );
            let persisted = store_autoscaler::Window {
                deployment: dep.key.to_string(),
                replicas: decision.desired_replicas,
                recommendations: saved_window(&scaler.history, unix_millis(), now),
            };
            window_to_save = Some(persisted);
            let direction = match decision.desired_replicas.cmp(&decision.current_replicas) {
                std::cmp::Ordering::Greater => "up",
                std::cmp::Ordering::Less => "down",
                std::cmp::Ordering::Equal => "none",
            };
            crate::series::get().autoscaler_decision(&dep.series_app(), direction);
            if decision.desired_replicas != scaler.replicas {
                changed = true;
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
                    &self.audit,
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
        Scaled {
            dep: scaled,
            window: window_to_save,
            changed,
        }
    }

    /// Saves the pass's autoscaler windows, before any replica is made or drained for them: a
    /// restart right after a decision still holds the replicas its window holds up.
    pub(super) async fn save_windows(&self, windows: Vec<store_autoscaler::Window>) {
        if windows.is_empty() {
            return;
        }
        let saved = self
            .store
            .run(move |c| {
                let tx = c.transaction()?;
                for w in &windows {
                    store_autoscaler::save(&tx, w)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot save the autoscalers' windows");
        }
    }

    /// Forgets saved windows of deployments no longer wanted, in the store too.
    pub(super) fn forget_windows(&self, gone: Vec<String>) {
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
}

pub(super) fn unix_millis() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

pub(super) fn rfc3339_millis(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A window's recommendations in wall-clock time (unix ms), to be saved.
pub(super) fn saved_window(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

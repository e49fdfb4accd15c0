//! Rollouts: a new active version becomes stable once every deployment of it is ready, and
//! is rolled back to the stable version when it is not ready within its deadline
//! ([`plan::rollout`] decides; this records it in the store and the audit log).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::plan::{self, Rollout};
use super::{Supervisor, journal};
use crate::store::{StoreError, audit, desired};

/// What a pass wants of one application's rollout.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    pub active: String,
    pub stable: Option<String>,
    /// How long its active version may take to become ready.
    pub deadline: Duration,
}

impl Supervisor {
    /// Marks finished rollouts stable and rolls back those past their deadline. `app_ready`:
    /// per application with a placed deployment, whether all of them are ready.
    pub(super) async fn rollout_step(
        &mut self,
        wanted: &HashMap<i64, Wanted>,
        app_ready: &HashMap<i64, bool>,
    ) {
        let now = Instant::now();
        for (app, w) in wanted {
            let ready = app_ready.get(app).copied().unwrap_or(false);
            let entry = self.state.apps.entry(*app).or_default();
            // A rollout whose application had no placed deployment last pass starts over.
            let started = match &entry.rollout {
                Some((version, started)) if *version == w.active => *started,
                _ => now,
            };
            entry.rollout = Some((w.active.clone(), started));
            let step = plan::rollout(
                &w.active,
                w.stable.as_deref(),
                ready,
                now.duration_since(started),
                w.deadline,
            );
            match step {
                Rollout::Stable => entry.rollout = None,
                Rollout::Wait => {}
                Rollout::MarkStable => {
                    let (id, version) = (*app, w.active.clone());
                    match self
                        .store
                        .run(move |c| desired::mark_stable(c, id, &version))
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(application = app, version = %w.active, "rollout complete");
                            self.state.apps.entry(*app).or_default().rollout = None;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot record rollout"),
                    }
                }
                Rollout::RollBack { to } => self.roll_back(*app, w, &to).await,
            }
        }
        for (app, entry) in &mut self.state.apps {
            if !app_ready.contains_key(app) {
                entry.rollout = None;
            }
        }
    }

    async fn roll_back(&mut self, app: i64, w: &Wanted, previous: &str) {
        let reason = format!(
            "version {} did not become ready within {}s; rolled back to {previous}",
            w.active,
            w.deadline.as_secs()
        );
        let (failed, prev, why) = (w.active.clone(), previous.to_owned(), reason.clone());
        let secrets = Arc::clone(&self.secrets);
        let roll_back = self.settings.roll_back;
        let maxima = self.settings.maxima;
        // The owner and name come back with the rollback, for the audit record.
        let rolled_back = self
            .store
            .run(move |c| {
                let seal = |tenant: &str, category: &str, key: &str, value: &str| {
                    secrets
                        .seal_setting_for(tenant, category, key, value)
                        .map_err(|e| StoreError::Seal(e.to_string()))
                };
                let app = roll_back(c, &maxima, app, &failed, &prev, &why, &seal)?;
                Ok(app.map(|a| (a.owner, a.name)))
            })
            .await;
        match rolled_back {
            Ok(Some((owner, name))) => {
                journal::record(
                    &self.audit,
                    journal::Entry {
                        tenant: &owner,
                        application: (app, &name),
                        record_type: "Application",
                        activity: "Rolled back",
                        text: format!("{name}: {reason}"),
                        severity: audit::MAJOR,
                        details: json!({
                            "failedVersion": w.active,
                            "restoredVersion": previous,
                            "reason": reason,
                            "rolloutTimeoutSeconds": w.deadline.as_secs(),
                        }),
                    },
                );
                self.state.apps.entry(app).or_default().rollout = None;
                // The restored manifest may serve callers otherwise (isolation, context path).
                self.routing.catalog_changed();
                self.handle.poke();
            }
            Ok(None) => {}
            // The stable version offers other terms than subscribers agreed to, or takes its
            // tenant over a resource maximum: the failed version stays, said once (not retried
            // every pass).
            Err(StoreError::Invalid(why)) => {
                tracing::warn!(application = app, %why, "rollback refused");
                let named = self
                    .store
                    .run(move |c| crate::store::applications::get_any(c, app))
                    .await
                    .map(|a| (a.owner, a.name));
                if let Ok((owner, name)) = &named {
                    journal::record(
                        &self.audit,
                        journal::Entry {
                            tenant: owner,
                            application: (app, name),
                            record_type: "Application",
                            activity: "Rollback refused",
                            text: format!(
                                "{name}: version {} did not become ready, and {previous} was not restored: {why}",
                                w.active
                            ),
                            severity: audit::MAJOR,
                            details: json!({
                                "failedVersion": w.active,
                                "stableVersion": previous,
                                "reason": why,
                            }),
                        },
                    );
                }
                self.state.apps.entry(app).or_default().rollout = None;
            }
            Err(e) => tracing::warn!(error = %e, "cannot roll back"),
        }
    }
}

/// How long a new version may take to become ready, counted from the rollout's start: the
/// configured `rollout_timeout`, but never less than its readiness probe needs to pass once it
/// is up (initial delay plus `successThreshold` probe periods, plus `failureThreshold` periods
/// of slack for a slow start) up to [`MAX_START`](super::probes::schedule::MAX_START). Without the cap a manifest's
/// `initialDelaySeconds` (or period and thresholds) up to 2^31 − 1 kept a never-ready version
/// rolling out, and the stable one running beside it, for decades; capping the extension, not
/// dropping it, keeps rolling out services that are slow to start but do start.
pub(super) fn rollout_deadline(
    configured: Duration,
    readiness: Option<&manifests_schema::Probe>,
) -> Duration {
    let Some(p) = readiness else {
        return configured;
    };
    // As the probe runs: the exec period's minimum and the attempt's cap apply.
    let schedule = super::probes::schedule::period(p) + super::probes::schedule::timeout(p);
    let period = schedule.as_secs();
    let probes = u64::from(p.success_threshold.max(1)) + u64::from(p.failure_threshold);
    let needed = u64::from(p.initial_delay_seconds).saturating_add(period.saturating_mul(probes));
    configured.max(Duration::from_secs(needed).min(super::probes::schedule::MAX_START))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            // A delay, period or threshold the schema allows but no start needs: capped.
            (300, Some(probe(i32::MAX as u32, 1, 1, 1, 1)), 3600),
            (
                300,
                Some(probe(0, i32::MAX as u32, i32::MAX as u32, 1, 1)),
                3600,
            ),
            (
                300,
                Some(probe(0, 1, 1, i32::MAX as u32, i32::MAX as u32)),
                3600,
            ),
            (4, Some(probe(3590, 10, 1, 1, 3)), 3600),
            // An operator's own longer timeout still counts.
            (7200, Some(probe(i32::MAX as u32, 1, 1, 1, 1)), 7200),
        ];
        for (configured, readiness, expected) in cases {
            assert_eq!(
                rollout_deadline(Duration::from_secs(configured), readiness.as_ref()),
                Duration::from_secs(expected),
                "{configured} {readiness:?}"
            );
        }
    }
}

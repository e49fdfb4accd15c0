//! Rollouts: a new active version (or a re-upload of the stable one) becomes stable once every
//! deployment of it is ready, and is rolled back to the stable version when it is not ready
//! within its deadline ([`plan::rollout`] decides; this records it in the store and the audit
//! log). Per deployment, only its last fully-ready revision keeps running beside a rollout, for
//! the deadline at most unless a version rollback bounds it ([`plan::kept`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::plan::{self, Rollout};
use super::spec::Deployment;
use super::state::Part;
use super::{Supervisor, journal};
use crate::store::{StoreError, audit, desired};

/// What a pass wants of one application's rollout.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    pub active: String,
    pub stable: Option<String>,
    /// The active version's manifest as the pass read it: it becomes stable only as such (an
    /// upload meanwhile is a rollout of its own).
    pub manifest: String,
    /// The stable version's manifest as it became ready, when a re-upload replaced it since
    /// (`applications.stable_manifest`).
    pub replaced: Option<String>,
    /// How long its active version may take to become ready.
    pub deadline: Duration,
}

/// How one application's deployments stand after a pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct Standing {
    /// Every placed deployment runs its current revision ready.
    pub ready: bool,
    /// Some deployment keeps an old revision beside its current one.
    pub keeps_old: bool,
}

impl Standing {
    /// Folds one more deployment in.
    pub fn add(&mut self, ready: bool, keeps_old: bool) {
        self.ready &= ready;
        self.keeps_old |= keeps_old;
    }
}

impl Default for Standing {
    fn default() -> Standing {
        Standing {
            ready: true,
            keeps_old: false,
        }
    }
}

impl Supervisor {
    /// The old revision kept beside `dep`'s current one ([`plan::kept`]); remembers the
    /// deployment's last fully-ready revision and since when the kept one runs beside it.
    pub(super) fn kept_revision(
        &self,
        part: &mut Part,
        dep: &Deployment,
        all_ready: bool,
        old: &[plan::Old],
        leaving: &[plan::Leaving],
        now: Instant,
    ) -> Option<plan::Kept> {
        let entry = &mut part.deployment;
        if all_ready {
            entry.stable_revision = Some(dep.revision.clone());
        }
        let beside = plan::Beside {
            current: &dep.revision,
            stable_revision: entry.stable_revision.as_deref(),
            active_version: &dep.version,
            stable_version: dep.stable_version.as_deref(),
            kept_since: entry.kept.as_ref().map(|(r, since)| (r.as_str(), *since)),
            deadline: rollout_deadline(self.settings.rollout_timeout, dep.readiness.as_ref()),
            now,
        };
        let kept = plan::kept(beside, old);
        // After a restart, the revision chosen stands for the last ready one from now on.
        if entry.stable_revision.is_none() {
            entry.stable_revision = kept.as_ref().map(|k| k.revision.clone());
        }
        // Kept when expired too, and while its instances are being removed: an instance whose
        // removal failed is removed next pass, not given another deadline.
        let removing =
            |revision: &str| (leaving.iter()).any(|l| l.revision.as_deref() == Some(revision));
        entry.kept = match &kept {
            Some(k) => Some((k.revision.clone(), k.since)),
            None => entry.kept.take().filter(|(r, _)| removing(r)),
        };
        kept
    }

    /// Records that `dep`'s new revision was not ready within the deadline and the revision
    /// kept beside it stopped (a revision change within one version: nothing to roll back to).
    pub(super) fn record_expired_revision(&self, dep: &Deployment) {
        let deadline = rollout_deadline(self.settings.rollout_timeout, dep.readiness.as_ref());
        let text = format!(
            "a new revision of version {} (a re-upload or a changed runtime option) did not become ready within {}s; the previous revision was stopped, as it runs beside a rollout for that long at most",
            dep.version,
            deadline.as_secs()
        );
        tracing::warn!(deployment = %dep.key, revision = %dep.revision, "previous revision stopped: the new one was not ready in time");
        self.record_rollout(
            (&dep.owner, dep.key.application_id, &dep.application_name),
            "Previous revision stopped",
            &text,
            json!({
                "deployment": dep.key.to_string(),
                "version": dep.version,
                "revision": dep.revision,
                "rolloutTimeoutSeconds": deadline.as_secs(),
            }),
        );
    }

    /// Marks finished rollouts stable and rolls back those past their deadline. `standing`:
    /// per application with a placed deployment, how they stand.
    pub(super) async fn rollout_step(
        &mut self,
        wanted: &HashMap<i64, Wanted>,
        standing: &HashMap<i64, Standing>,
    ) {
        let now = Instant::now();
        for (app, w) in wanted {
            let state = standing.get(app).copied();
            let ready = state.is_some_and(|c| c.ready);
            let entry = self.state.apps.entry(*app).or_default();
            // A rollout whose application had no placed deployment last pass starts over.
            let started = match &entry.rollout {
                Some((version, started)) if *version == w.active => *started,
                _ => now,
            };
            entry.rollout = Some((w.active.clone(), started));
            let step = plan::rollout(plan::Progress {
                active: &w.active,
                stable: w.stable.as_deref(),
                replaced: w.replaced.is_some(),
                ready,
                keeps_old: state.is_none_or(|c| c.keeps_old),
                elapsed: now.duration_since(started),
                deadline: w.deadline,
            });
            match step {
                Rollout::Stable => entry.rollout = None,
                Rollout::Wait => {}
                Rollout::MarkStable => {
                    let (id, version, manifest) = (*app, w.active.clone(), w.manifest.clone());
                    match self
                        .store
                        .run(move |c| desired::mark_stable(c, id, &version, &manifest))
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
                Rollout::Expire => self.expire(*app, w).await,
            }
        }
        for (app, entry) in &mut self.state.apps {
            if !standing.contains_key(app) {
                entry.rollout = None;
            }
        }
    }

    /// A re-upload of the stable version not ready within its deadline: the replaced
    /// manifest's instances have stopped, so it stops being charged; the new one stays active
    /// (there is nothing to roll back to) and the application's `rolloutMessage` says so.
    async fn expire(&mut self, app: i64, w: &Wanted) {
        let Some(replaced) = w.replaced.clone() else {
            return;
        };
        let message = expired_reupload_message(&w.active, w.deadline);
        let (version, text) = (w.active.clone(), message.clone());
        let expired = self
            .store
            .run(move |c| {
                let done = desired::forget_replaced(c, app, &version, &replaced, &text)?;
                let a = crate::store::applications::get_any(c, app)?;
                Ok((done, a.owner, a.name))
            })
            .await;
        match expired {
            Ok((true, owner, name)) => {
                self.record_rollout(
                    (&owner, app, &name),
                    "Re-upload not ready",
                    &message,
                    json!({
                        "version": w.active,
                        "reason": message,
                        "rolloutTimeoutSeconds": w.deadline.as_secs(),
                    }),
                );
                self.state.apps.entry(app).or_default().rollout = None;
            }
            Ok((false, ..)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot record an expired re-upload"),
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
                self.record_rollout(
                    (&owner, app, &name),
                    "Rolled back",
                    &reason,
                    json!({
                        "failedVersion": w.active,
                        "restoredVersion": previous,
                        "reason": reason,
                        "rolloutTimeoutSeconds": w.deadline.as_secs(),
                    }),
                );
                self.state.apps.entry(app).or_default().rollout = None;
                // The restored manifest may serve callers otherwise (isolation, context path).
                self.routing.catalog_changed();
                self.handle.poke();
            }
            Ok(None) => {}
            // The stable version offers other terms than subscribers agreed to, or takes its
            // tenant over a resource maximum: the failed version stays, and the application's
            // rolloutMessage says why and what to do. Tried again after the next deadline (the
            // tenant may have made room meanwhile), but the same refusal is said once.
            Err(StoreError::Invalid(why)) => {
                let message = refused_rollback_message(&w.active, previous, w.deadline, &why);
                let (failed, text) = (w.active.clone(), message.clone());
                let noted = self
                    .store
                    .run(move |c| {
                        let new = desired::set_rollout_message(c, app, &failed, &text)?;
                        let a = crate::store::applications::get_any(c, app)?;
                        Ok((new, a.owner, a.name))
                    })
                    .await;
                match noted {
                    Ok((true, owner, name)) => {
                        tracing::warn!(application = app, %why, "rollback refused");
                        self.record_rollout(
                            (&owner, app, &name),
                            "Rollback refused",
                            &message,
                            json!({
                                "failedVersion": w.active,
                                "stableVersion": previous,
                                "reason": why,
                                "rolloutTimeoutSeconds": w.deadline.as_secs(),
                            }),
                        );
                    }
                    Ok((false, ..)) => {
                        tracing::debug!(application = app, %why, "rollback refused again");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot record a refused rollback"),
                }
                self.state.apps.entry(app).or_default().rollout = None;
            }
            Err(e) => tracing::warn!(error = %e, "cannot roll back"),
        }
    }

    /// A rollout's record (rolled back, rollback refused, re-upload or revision expired) in the
    /// owner's audit log, `text` after the application's name.
    fn record_rollout(
        &self,
        (owner, app, name): (&str, i64, &str),
        activity: &str,
        text: &str,
        details: serde_json::Value,
    ) {
        journal::record(
            &self.audit,
            journal::Entry {
                tenant: owner,
                application: (app, name),
                record_type: "Application",
                activity,
                text: format!("{name}: {text}"),
                severity: audit::MAJOR,
                details,
            },
        );
    }
}

/// The application's `rolloutMessage` when rolling `failed` back to `stable` was refused, `why`
/// saying which terms or maximum it would breach and how to mend that: what happened, what
/// runs now and what the tenant can do. The same words for the same refusal, so one repeated
/// after the next deadline is recognised as such.
pub(super) fn refused_rollback_message(
    failed: &str,
    stable: &str,
    deadline: Duration,
    why: &str,
) -> String {
    let every = deadline.as_secs();
    format!(
        "version {failed} did not become ready within {every}s, and the rollback to {stable} was refused: {why}. \
         {failed} stays active, with {stable} running beside it; upload or activate a version that becomes ready, \
         or mend the cause above and the rollback is tried again (every {every}s)"
    )
}

/// The application's `rolloutMessage` when a re-upload of its stable `version` was not ready
/// within the deadline: what happened, what runs now and what the tenant can do.
pub(super) fn expired_reupload_message(version: &str, deadline: Duration) -> String {
    format!(
        "version {version} was uploaded again and did not become ready within {}s; the instances of the upload it replaced were stopped \
         (the stored version was replaced, so there is nothing to roll back to). {version} stays active; upload a version that becomes ready",
        deadline.as_secs()
    )
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
    fn a_refused_rollback_says_why_what_runs_and_what_to_do() {
        let limit = "with version 1.0.0 active again: Tenant t1 would reserve 1 GiB in total over its microservices, over its memory maximum of 768 MiB (operator setting tenant_max_memory); lower the resources or replicas, or unsubscribe other microservices";
        let terms = "1 other tenant(s) are subscribed to hello on its current terms, and the settings category would change; keep the settings category, or have them unsubscribe first";
        // (failed, stable, deadline s, why, what the message must say)
        let cases = [
            (
                "2.0.0",
                "1.0.0",
                300,
                limit,
                ["tenant_max_memory", "every 300s"],
            ),
            (
                "3.1.0",
                "3.0.0",
                3600,
                terms,
                ["have them unsubscribe", "every 3600s"],
            ),
        ];
        for (failed, stable, deadline, why, named) in cases {
            let message =
                refused_rollback_message(failed, stable, Duration::from_secs(deadline), why);
            for said in [
                format!("version {failed} did not become ready within {deadline}s"),
                format!("the rollback to {stable} was refused: {why}"),
                format!("{failed} stays active, with {stable} running beside it"),
                "upload or activate a version that becomes ready".to_owned(),
            ]
            .iter()
            .map(String::as_str)
            .chain(named)
            {
                assert!(message.contains(said), "{said:?} in {message:?}");
            }
            // Word for word again for the same refusal, so it is recorded once; another
            // reason is a new message.
            assert_eq!(
                message,
                refused_rollback_message(failed, stable, Duration::from_secs(deadline), why)
            );
            assert_ne!(
                message,
                refused_rollback_message(failed, stable, Duration::from_secs(deadline), "other")
            );
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

//! What a pass wants, read from the database: the desired deployments of every subscribed
//! microservice (sealed passwords opened, the owner's runtime options read), each
//! application's rollout, and the applications that cannot be deployed now.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::error::Undeployable;
use super::rollout::{Wanted, rollout_deadline};
use super::spec::{self, Deployment, Inputs};
use super::{Supervisor, SupervisorError};
use crate::routing::DeploymentKey;
use crate::secrets::{bootstrap_context, service_context};
use crate::store::{desired, options};

/// What a pass wants, read from the database.
pub(super) struct Desired {
    pub deployments: BTreeMap<DeploymentKey, Deployment>,
    /// Per application: its versions and rollout deadline.
    pub rollouts: HashMap<i64, Wanted>,
    /// Applications whose manifest or secrets could not be used, with the reason.
    pub broken: HashMap<i64, String>,
    /// The deployments those applications may have running ([`spec::held_keys`]): held as
    /// they are, neither converged nor removed, until the application can be deployed again.
    /// A data problem (a manifest a stricter Berth rejects, a password that does not open)
    /// must not become an outage.
    pub held: HashSet<DeploymentKey>,
}

impl Supervisor {
    /// Reads the desired deployments (opening sealed passwords, reading owner options).
    pub(super) async fn desired(&mut self) -> Result<Desired, SupervisorError> {
        let apps = self
            .store
            .run(|c| {
                let apps = desired::desired(c)?;
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
            .await?;
        let mut desired = BTreeMap::new();
        let mut broken = HashMap::new();
        let mut held = HashSet::new();
        for (app, runtime_options) in apps {
            let subscribed: Vec<String> =
                app.subscriptions.iter().map(|s| s.tenant.clone()).collect();
            let opened = (|| {
                let bootstrap_password = self.secrets.open(
                    &bootstrap_context(&app.owner, &app.bootstrap_user),
                    &app.bootstrap_password_sealed,
                )?;
                let mut service_users = Vec::new();
                for sub in &app.subscriptions {
                    let password = self.secrets.open(
                        &service_context(&sub.tenant, &sub.service_user),
                        &sub.service_password_sealed,
                    )?;
                    service_users.push((sub.tenant.clone(), sub.service_user.clone(), password));
                }
                Ok::<_, Undeployable>((bootstrap_password, service_users))
            })();
            let id = app.application_id;
            let result = opened.and_then(|(bootstrap_password, service_users)| {
                let inputs = Inputs {
                    app,
                    bootstrap_password,
                    service_users,
                    runtime_options,
                };
                spec::deployments(&inputs, &self.settings.platform)
                    .map(|deps| (inputs.app, deps))
                    .map_err(Undeployable::Spec)
            });
            match result {
                Ok((app, deps)) => {
                    let entry = self.state.apps.entry(app.application_id).or_default();
                    entry.owner.clone_from(&app.owner);
                    entry.name.clone_from(&app.name);
                    for dep in deps {
                        desired.insert(dep.key.clone(), (app.clone(), dep));
                    }
                }
                Err(reason) => {
                    tracing::warn!(application = id, %reason, "cannot deploy");
                    broken.insert(id, reason.to_string());
                    held.extend(spec::held_keys(id, &subscribed));
                }
            }
        }
        let rollouts = desired
            .values()
            .map(|(app, dep)| {
                let wanted = Wanted {
                    active: app.active_version.clone(),
                    stable: app.stable_version.clone(),
                    manifest: app.manifest.clone(),
                    replaced: app.stable_manifest.clone(),
                    deadline: rollout_deadline(
                        self.settings.rollout_timeout,
                        dep.readiness.as_ref(),
                    ),
                };
                (app.application_id, wanted)
            })
            .collect();
        Ok(Desired {
            deployments: desired.into_iter().map(|(k, (_, d))| (k, d)).collect(),
            rollouts,
            broken,
            held,
        })
    }
}

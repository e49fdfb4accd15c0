//! The pass's step per desired deployment — its network, then its instances ([`converge`]) —
//! run for up to `deploy_concurrency` deployments at once, each on its own [`Part`] of the
//! state: a pass that makes hundreds of deployments (tenants subscribing) is not all of them
//! in a row, while each deployment's own actions keep their order (network before instances,
//! create before start).
//!
//! [`converge`]: Supervisor::converge

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use futures_util::{StreamExt, stream};
use tokio::sync::Mutex;

use super::act::Converged;
use super::network::Claims;
use super::plan::Leaving;
use super::removals::LeavingNetwork;
use super::spec::Deployment;
use super::state::Part;
use super::{Supervisor, parse_subnet};
use crate::routing::DeploymentKey;
use crate::runtime::{InstanceInfo, NetworkInfo};

/// One deployment's work for the step: the deployment (with the autoscaler's count), its
/// containers as the pass found them (those being removed apart), those being removed, and its
/// part of the state.
pub(super) struct Unit {
    pub dep: Deployment,
    pub current: Vec<InstanceInfo>,
    pub leaving: Vec<Leaving>,
    pub part: Part,
}

/// What the step left of one deployment: its part to put back, and either what converging it
/// left with its network's subnets, or why its network could not be made.
pub(super) struct Done {
    pub dep: Deployment,
    pub part: Part,
    pub outcome: Result<(Converged, Vec<(IpAddr, u8)>), String>,
}

impl Supervisor {
    /// Runs every unit's step, at most `deploy_concurrency` at once; the results in deployment
    /// order.
    pub(super) async fn deploy_all(
        &self,
        units: Vec<Unit>,
        listed: Option<&HashMap<String, NetworkInfo>>,
        leaving: &HashMap<String, LeavingNetwork>,
    ) -> Vec<Done> {
        let claims = Mutex::new(Claims::new(leaving));
        let mut done: Vec<Done> = stream::iter(units)
            .map(|unit| self.deploy(unit, listed, &claims))
            .buffer_unordered(self.settings.deploy_concurrency)
            .collect()
            .await;
        done.sort_by(|a, b| a.dep.key.cmp(&b.dep.key));
        done
    }

    async fn deploy(
        &self,
        mut unit: Unit,
        listed: Option<&HashMap<String, NetworkInfo>>,
        claims: &Mutex<Claims>,
    ) -> Done {
        let key: &DeploymentKey = &unit.dep.key;
        let network = self.network_name(key);
        let labels = self.deployment_labels(key);
        let outcome = match self.ensure_network(&network, &labels, listed, claims).await {
            Ok(None) => {
                // Its network is being removed: nothing runs, nothing is made, until the pass
                // the removal's end brings (a resubscription racing its unsubscription's
                // removal, a network being replaced).
                tracing::debug!(deployment = %key, network = %network, "waits for its network's removal");
                self.routing.set_failure(key, None);
                self.routing.publish(key.clone(), Vec::new());
                let waiting = Converged {
                    kept: BTreeMap::new(),
                    old: Vec::new(),
                    all_ready: unit.dep.replicas == 0,
                };
                Ok((waiting, Vec::new()))
            }
            Ok(Some(net)) => {
                self.routing.set_failure(key, None);
                let fresh: Vec<(IpAddr, u8)> =
                    net.subnets.iter().filter_map(|s| parse_subnet(s)).collect();
                // Known to the internal API before any instance of this network starts.
                self.handle.add_subnets(&fresh);
                let converged = self
                    .converge(
                        &mut unit.part,
                        &unit.dep,
                        &network,
                        labels,
                        unit.current,
                        &unit.leaving,
                    )
                    .await;
                Ok((converged, fresh))
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(deployment = %key, %reason, "cannot deploy");
                // Visible where operators and tenants look: status, alarm, the proxy's 503.
                self.routing.set_failure(key, Some(reason.clone()));
                Err(reason)
            }
        };
        Done {
            dep: unit.dep,
            part: unit.part,
            outcome,
        }
    }
}

//! The relay service of each deployment network ([`services::relay_spec`]): made with its
//! network, and brought up to date when Berth adopts a network whose relay an earlier Berth
//! made (one without the way to the internal API, or naming another gateway or relay image),
//! so such a deployment needs no new network to reach the internal API.

use std::collections::HashMap;

use super::services;
use super::{LABEL_BRIDGE, SwarmRuntime};
use crate::runtime::docker::is_conflict;
use crate::runtime::{NetworkInfo, RuntimeError};
use crate::sync::MutexExt;

impl SwarmRuntime {
    /// Creates the relay of `network` (subnet `subnet`), or updates it when its spec is not
    /// the one this Berth makes; Swarm then replaces its tasks one node at a time.
    pub(super) async fn ensure_relay(
        &self,
        network: &str,
        subnet: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let token = self.relay_token(network)?;
        let gateway =
            self.identity.get().map(|i| i.gateway).ok_or_else(|| {
                RuntimeError::Docker("the Swarm runtime has no gateway yet".into())
            })?;
        let wanted = services::relay_spec(
            network,
            subnet,
            &token,
            &self.settings.relay_image,
            labels,
            gateway,
        );
        let name = services::relay_name(network);
        let Some(existing) = self.service(&name).await? else {
            return match self.docker.create_service(wanted, self.credentials()).await {
                Ok(_) => Ok(()),
                Err(e) if is_conflict(&e) => Ok(()),
                Err(e) => Err(e.into()),
            };
        };
        if existing
            .spec
            .as_ref()
            .is_some_and(|s| services::relay_is_current(s, &wanted))
        {
            return Ok(());
        }
        tracing::info!(relay = %name, "the relay is not the one this Berth makes: updating it");
        self.update_service(&name, &existing, wanted).await
    }

    /// Brings the relays of `networks` up to date, each once per process (the first listing
    /// after a start sees every network Berth adopts); one that fails is tried at the next.
    pub(super) async fn adopt_relays(&self, networks: &[NetworkInfo]) {
        for net in networks {
            let seen = self.relays_checked.locked().contains(&net.name);
            let Some(subnet) = net.subnets.first().filter(|_| !seen) else {
                continue;
            };
            // The network carries the relay's labels plus the bridge name (`create_network`).
            let mut labels = net.labels.clone();
            labels.remove(LABEL_BRIDGE);
            match self.ensure_relay(&net.name, subnet, &labels).await {
                Ok(()) => {
                    self.relays_checked.locked().insert(net.name.clone());
                }
                Err(e) => {
                    tracing::warn!(network = %net.name, error = %e, "cannot check the network's relay")
                }
            }
        }
    }
}

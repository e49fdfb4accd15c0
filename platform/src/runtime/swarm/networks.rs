//! The deployment networks on Swarm: an overlay per deployment network, made and removed
//! together with its relay ([`super::relays`]) and, on removal, the services on it.

use bollard::models::NetworkCreateRequest;

use super::cluster::{labels_of, service_name_of, with_bridge};
use super::{LABEL_BRIDGE, LABEL_NETWORK, SwarmRuntime, services};
use crate::runtime::docker::{is_conflict, one_subnet};
use crate::runtime::{LABEL_INSTALLATION, NetworkInfo, NetworkSpec, Runtime, RuntimeError};
use crate::sync::MutexExt;

impl SwarmRuntime {
    /// An overlay network (not attachable: only Berth's services join it) and its relay.
    pub(super) async fn create_overlay(
        &self,
        spec: &NetworkSpec,
    ) -> Result<NetworkInfo, RuntimeError> {
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("overlay".to_owned()),
            scope: Some("swarm".to_owned()),
            attachable: Some(false),
            labels: Some({
                let mut labels = spec.labels.clone();
                labels.insert(LABEL_BRIDGE.to_owned(), spec.bridge.clone());
                labels
            }),
            ipam: Some(one_subnet(&spec.subnet)),
            ..Default::default()
        };
        let existed = match self.docker.create_network(request).await {
            Ok(_) => false,
            Err(e) if is_conflict(&e) => true,
            Err(e) => return Err(e.into()),
        };
        // The relay admits the network's own block. After a 409 (an earlier attempt made the
        // network, then failed on its relay, and the caller retried on a new block) that is the
        // block the network has, not the one asked for this time. (A network just made may not
        // show its block yet: Swarm's allocator fills it in.)
        let subnet = if existed {
            self.engine
                .network(&spec.name)
                .await?
                .and_then(|n| match n.subnets.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| spec.subnet.clone())
        } else {
            spec.subnet.clone()
        };
        self.ensure_relay(&spec.name, &subnet, &spec.labels).await?;
        self.relays_checked.locked().insert(spec.name.clone());
        self.engine
            .network(&spec.name)
            .await?
            .map(with_bridge)
            .ok_or_else(|| {
                RuntimeError::Docker(format!("network {} vanished after creation", spec.name))
            })
    }

    /// The relay goes first; the network follows once Swarm detached its tasks (until then
    /// the removal fails and the next pass tries again).
    pub(super) async fn remove_overlay(&self, name: &str) -> Result<(), RuntimeError> {
        self.relays_checked.locked().remove(name);
        self.remove_service(&services::relay_name(name)).await?;
        self.engine.remove_network(name).await
    }

    /// The network `id`, its deployments' services and its relay.
    pub(super) async fn remove_overlay_and_services(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(net) = self.engine.network(id).await? else {
            return Ok(());
        };
        self.remove_overlay_and_services_named(&net.name).await
    }

    /// The network `name`, its deployments' services and its relay. The supervisor removes a
    /// network once no desired deployment is on it, so any service left there is garbage, and
    /// one whose tasks Swarm is still starting (an image that cannot be pulled cycles through
    /// those states) is listed by no instance: only this removes it.
    pub(super) async fn remove_overlay_and_services_named(
        &self,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let ours = [(LABEL_INSTALLATION, self.installation())];
        for s in self.deployment_services(&ours).await? {
            if labels_of(&s).get(LABEL_NETWORK).map(String::as_str) == Some(name) {
                self.remove_service(&service_name_of(&s)).await?;
            }
        }
        self.remove_overlay(name).await
    }
}

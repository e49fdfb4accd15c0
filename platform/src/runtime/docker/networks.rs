//! Deployment networks on the local engine: bridges on Berth's subnets, named for the host
//! firewall, found by labels, removed with their holders (see `holders`) or, when replaced,
//! with everything on them.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use futures_util::StreamExt;

use super::containers::INSPECT_CONCURRENCY;
use super::{DockerEngine, is_conflict, is_not_found, label_filter};
use crate::runtime::{NetworkInfo, NetworkSpec, RuntimeError};

/// Docker's network option naming the bridge interface.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// The address management of a network with one subnet, Berth's choice (bridges and overlays
/// alike: subnets come from Berth's pool, never Docker's).
pub(crate) fn one_subnet(subnet: &str) -> Ipam {
    Ipam {
        driver: Some("default".to_owned()),
        config: Some(vec![IpamConfig {
            subnet: Some(subnet.to_owned()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

impl DockerEngine {
    /// Creates a bridge network with `labels` on `subnet` whose interface is named `bridge`
    /// (the host firewall matches Berth's bridges by name). The subnet is Berth's choice (see
    /// `supervisor::subnets`): Docker's default pools hold only about 30 networks. A name
    /// that exists already (a race with ourselves) is returned as is.
    pub(super) async fn create_network(
        &self,
        spec: &NetworkSpec,
    ) -> Result<NetworkInfo, RuntimeError> {
        let NetworkSpec {
            name,
            bridge,
            labels,
            subnet,
        } = spec;
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels.clone()),
            options: Some(HashMap::from([(
                BRIDGE_NAME_OPTION.to_owned(),
                bridge.to_owned(),
            )])),
            ipam: Some(one_subnet(subnet)),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {}
            // Lost a race with ourselves: fine, it exists now.
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let network = self.network(name).await?.ok_or_else(|| {
            RuntimeError::Docker(format!("network {name} vanished after creation"))
        })?;
        // The first replica's start then pays only its own (see `holders`); made here, the
        // holder's start overlaps an upload's image load. Without one the replica makes its own.
        if let Err(e) = self.make_spare(&network).await {
            tracing::warn!(network = name, "no spare network holder: {e}");
        }
        Ok(network)
    }

    /// Every IPv4/IPv6 subnet of every network on the engine, whoever made it: a new network
    /// must overlap none of them.
    pub(super) async fn subnets_in_use(&self) -> Result<Vec<String>, RuntimeError> {
        let mut subnets = Vec::new();
        for n in self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await?
        {
            let listed = subnets_of(n.ipam);
            if !listed.is_empty() {
                subnets.extend(listed);
            } else if let Some(name) = n.name
                // The list endpoint omits IPAM details on some engines: inspect.
                && let Some(info) = self.network(&name).await?
            {
                subnets.extend(info.subnets);
            }
        }
        Ok(subnets)
    }

    /// Removes a network and every container attached to it, or in a holder on it.
    pub(super) async fn remove_network_and_instances(&self, id: &str) -> Result<(), RuntimeError> {
        let (name, attached) = match self.docker.inspect_network(id, None).await {
            Ok(n) => (n.name.unwrap_or_default(), n.containers.unwrap_or_default()),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.remove_holders(&name).await?;
        for container in attached.keys() {
            self.remove_instance(container).await?;
        }
        self.remove_network(id).await
    }

    /// One network by name, or None.
    pub(super) async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, RuntimeError> {
        match self.docker.inspect_network(name, None).await {
            Ok(n) => Ok(Some(network_info(
                n.name.unwrap_or_default(),
                n.id,
                n.options,
                n.labels,
                subnets_of(n.ipam),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Networks carrying every label of `labels`.
    pub(super) async fn networks(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<NetworkInfo>, RuntimeError> {
        let options = ListNetworksOptions {
            filters: Some(label_filter(labels)),
        };
        let mut found = Vec::new();
        let mut names = Vec::new();
        for n in self.docker.list_networks(Some(options)).await? {
            let subnets = subnets_of(n.ipam);
            match n.name {
                // Current engines list what inspecting would say: no round trip per network
                // (hundreds of deployments would otherwise cost every pass hundreds).
                Some(name) if !subnets.is_empty() => {
                    found.push(network_info(name, n.id, n.options, n.labels, subnets));
                }
                Some(name) => names.push(name),
                None => {}
            }
        }
        // Some engines omit IPAM details from the list: inspect those, a few at once.
        let inspected: Vec<Result<Option<NetworkInfo>, RuntimeError>> =
            futures_util::stream::iter(names)
                .map(|name| async move { self.network(&name).await })
                .buffered(INSPECT_CONCURRENCY)
                .collect()
                .await;
        for info in inspected.into_iter().filter_map(Result::transpose) {
            found.push(info?);
        }
        Ok(found)
    }

    /// Removes a network, and first its holders (a spare, or one whose replica was removed by
    /// hand), which would keep it in use; absent is fine.
    pub(super) async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove_holders(name).await?;
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What Berth keeps of a network, from an inspection or a listing alike.
fn network_info(
    name: String,
    id: Option<String>,
    options: Option<HashMap<String, String>>,
    labels: Option<HashMap<String, String>>,
    subnets: Vec<String>,
) -> NetworkInfo {
    NetworkInfo {
        bridge: options.and_then(|mut o| o.remove(BRIDGE_NAME_OPTION)),
        id: id.unwrap_or_default(),
        name,
        labels: labels.unwrap_or_default(),
        subnets,
    }
}

/// The subnets a network's IPAM configuration lists (empty when the engine did not say).
fn subnets_of(ipam: Option<Ipam>) -> Vec<String> {
    ipam.and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.subnet)
        .collect()
}

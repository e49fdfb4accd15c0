//! The manager's view of the cluster: services, tasks and nodes, read and changed through the
//! engine, and turned into Berth's instances with [`super::tasks`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use bollard::models::{Service, ServiceSpec, Task};
use bollard::query_parameters::{
    ListNodesOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::services::{self, LABEL_RELAY, SERVICE_PORT};
use super::tasks::{self, NodeView, Slot};
use super::tunnel::{Route, Way};
use super::{LABEL_BRIDGE, LABEL_NETWORK, SwarmRuntime};
use crate::runtime::docker::is_not_found;
use crate::runtime::{InstanceInfo, NetworkInfo, RuntimeError};
use crate::sync::MutexExt;

impl SwarmRuntime {
    pub(super) async fn service(&self, name: &str) -> Result<Option<Service>, RuntimeError> {
        match self.docker.inspect_service(name, None).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn set_replicas(
        &self,
        service: &Service,
        replicas: u32,
    ) -> Result<(), RuntimeError> {
        let (Some(name), Some(mut spec)) = (
            service.spec.as_ref().and_then(|s| s.name.clone()),
            service.spec.clone(),
        ) else {
            return Ok(());
        };
        spec.mode = Some(services::replicated(replicas));
        self.update_service(&name, service, spec).await
    }

    /// Replaces the spec of `service` (named `name`), at the version it was read at, as
    /// Swarm requires of an update.
    pub(super) async fn update_service(
        &self,
        name: &str,
        service: &Service,
        spec: ServiceSpec,
    ) -> Result<(), RuntimeError> {
        let options = UpdateServiceOptions {
            version: service
                .version
                .as_ref()
                .and_then(|v| v.index)
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(0),
            ..Default::default()
        };
        self.docker
            .update_service(name, spec, options, self.credentials())
            .await?;
        Ok(())
    }

    pub(super) async fn remove_service(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn nodes(&self) -> Result<HashMap<String, NodeView>, RuntimeError> {
        let list = self.docker.list_nodes(None::<ListNodesOptions>).await?;
        Ok(tasks::nodes(list))
    }

    pub(super) async fn tasks_of(&self, service: &str) -> Result<Vec<Task>, RuntimeError> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_owned(),
                vec![service.to_owned()],
            )])),
        };
        // A service removed since it was listed (an unsubscribe racing the pass) has no tasks;
        // the engine answers 404 "service … not found" for the filter.
        match self.docker.list_tasks(Some(options)).await {
            Ok(tasks) => Ok(tasks),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The run instance `id`'s slot shows, as the listings show it (counted against the
    /// service's replicas, so a task Swarm kept above them is found at the place it took),
    /// with the nodes.
    pub(super) async fn slot_of_instance(
        &self,
        id: &str,
    ) -> Result<Option<(Slot, HashMap<String, NodeView>)>, RuntimeError> {
        let Some((service, replica)) = parse_instance_id(id) else {
            return Ok(None);
        };
        let Some(existing) = self.service(service).await? else {
            return Ok(None);
        };
        let nodes = self.nodes().await?;
        let task_list = self.tasks_of(service).await?;
        let slot = tasks::slots(service, replicas_of(&existing), &task_list, &nodes)
            .into_iter()
            .find(|s| s.replica == replica);
        Ok(slot.map(|s| (s, nodes)))
    }

    /// Our deployment services carrying every label of `labels` (relays left out).
    pub(super) async fn deployment_services(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Service>, RuntimeError> {
        Ok(self
            .services_labelled(labels)
            .await?
            .into_iter()
            .filter(|s| !labels_of(s).contains_key(LABEL_RELAY))
            .collect())
    }

    /// Our services carrying every label of `labels`, relays included.
    async fn services_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Service>, RuntimeError> {
        let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let options = ListServicesOptions {
            filters: Some(HashMap::from([("label".to_owned(), filter)])),
            ..Default::default()
        };
        Ok(self.docker.list_services(Some(options)).await?)
    }

    /// The instances of one deployment service, each at its tunnel address routed to the
    /// relay on its node (or, when that relay is not running, any node's: the overlay reaches
    /// every task from every node that has the network).
    pub(super) async fn service_instances(
        &self,
        service: &Service,
        nodes: &HashMap<String, NodeView>,
    ) -> Result<Vec<InstanceInfo>, RuntimeError> {
        let name = service_name_of(service);
        let labels = labels_of(service);
        let replicas = replicas_of(service);
        let task_list = self.tasks_of(&name).await?;
        let network = labels.get(LABEL_NETWORK).cloned().unwrap_or_default();
        let relay_ports =
            tasks::relay_ports(&self.tasks_of(&services::relay_name(&network)).await?);
        let token = self.relay_token(&network)?;
        let mut out = Vec::new();
        let hidden = self.removed_slots(&name, |r| r.clone());
        for slot in tasks::slots(&name, replicas, &task_list, nodes) {
            // A slot Swarm is still starting is not listed: to the supervisor a listed
            // instance that is not running has exited, and would count as a restart.
            if hidden.contains(&slot.replica) || slot.starting {
                continue;
            }
            let id = instance_id(&name, slot.replica);
            let way = way_for(&slot, nodes, &relay_ports, &token);
            let ip = self
                .tunnels
                .address(&id, way)
                .await
                .map_err(|e| RuntimeError::Docker(format!("tunnel for {id}: {e}")))?;
            let mut info = info_of(&id, &name, &labels, &slot, IpAddr::V4(ip));
            info.oom_killed = self.oom_killed(&slot, nodes).await;
            out.push(info);
        }
        Ok(out)
    }
    /// Removes slot `replica` of `service` (see `remove_instance`); one at a time per service.
    pub(super) async fn remove_slot(
        &self,
        service: &str,
        replica: u32,
    ) -> Result<(), RuntimeError> {
        let Some(existing) = self.service(service).await? else {
            self.removed_slots(service, |r| r.clear());
            return Ok(());
        };
        let replicas = replicas_of(&existing);
        let keep = self.removed_slots(service, |r| {
            r.insert(replica);
            (0..replicas)
                .rev()
                .find(|s| !r.contains(s))
                .map_or(0, |s| s + 1)
        });
        if keep == 0 {
            self.remove_service(service).await?;
            self.removed_slots(service, |r| r.clear());
        } else if keep < replicas {
            if let Err(e) = self.set_replicas(&existing, keep).await {
                // Shown again, so that the next pass removes it again.
                self.removed_slots(service, |r| r.remove(&replica));
                return Err(e);
            }
            self.removed_slots(service, |r| r.retain(|s| *s < keep));
        }
        Ok(())
    }

    /// Runs `f` on the removed slots of `service`.
    pub(super) fn removed_slots<T>(
        &self,
        service: &str,
        f: impl FnOnce(&mut BTreeSet<u32>) -> T,
    ) -> T {
        let mut all = self.removed.locked();
        let set = all.entry(service.to_owned()).or_default();
        let out = f(set);
        if set.is_empty() {
            all.remove(service);
        }
        out
    }

    /// What the event stream compares: the state of every task of our services and of
    /// every node. Relay tasks count: a slot's way changes when one starts or stops.
    pub(super) async fn fingerprint(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<String, RuntimeError> {
        let ids: HashSet<String> = self
            .services_labelled(labels)
            .await?
            .into_iter()
            .filter_map(|s| s.id)
            .collect();
        let mut parts: Vec<String> = self
            .docker
            .list_tasks(None::<ListTasksOptions>)
            .await?
            .into_iter()
            .filter(|t| t.service_id.as_ref().is_some_and(|s| ids.contains(s)))
            .map(|t| {
                format!(
                    "{}:{:?}:{:?}",
                    t.id.unwrap_or_default(),
                    t.status.and_then(|s| s.state),
                    t.desired_state
                )
            })
            .collect();
        for (id, n) in self.nodes().await? {
            parts.push(format!("{id}:{}", n.ready));
        }
        parts.sort();
        Ok(parts.join(","))
    }
}

/// The way to `slot`: through the relay on its node when one runs there, else any ready
/// node's; pending while no relay runs on a ready node (Swarm may start a deployment's
/// replicas before its relay tasks).
pub(super) fn way_for(
    slot: &Slot,
    nodes: &HashMap<String, NodeView>,
    relay_ports: &HashMap<String, u16>,
    token: &str,
) -> Way {
    if !slot.running {
        return Way::Closed;
    }
    let relay_on = |node_id: &str| -> Option<SocketAddr> {
        let node = nodes.get(node_id).filter(|n| n.ready)?;
        Some(SocketAddr::new(
            IpAddr::V4(node.addr?),
            *relay_ports.get(node_id)?,
        ))
    };
    let mut others: Vec<&String> = relay_ports.keys().collect();
    others.sort();
    let relay = relay_on(&slot.node_id).or_else(|| others.into_iter().find_map(|n| relay_on(n)));
    match relay {
        Some(relay) => Way::Open(Route {
            relay,
            token: token.to_owned(),
            task: slot.task_name.clone(),
            port: SERVICE_PORT,
        }),
        None => Way::Pending,
    }
}

/// A slot's instance id: the service and Berth's replica number.
pub(super) fn instance_id(service: &str, replica: u32) -> String {
    format!("{service}/{replica}")
}

pub(super) fn parse_instance_id(id: &str) -> Option<(&str, u32)> {
    let (service, replica) = id.rsplit_once('/')?;
    Some((service, replica.parse().ok()?))
}

pub(super) fn info_of(
    id: &str,
    service: &str,
    labels: &HashMap<String, String>,
    slot: &Slot,
    ip: IpAddr,
) -> InstanceInfo {
    let mut labels = labels.clone();
    labels.insert(services::LABEL_REPLICA.to_owned(), slot.replica.to_string());
    let unplaced = slot.unplaced().map(str::to_owned);
    InstanceInfo {
        id: id.to_owned(),
        name: format!("{service}.{}", slot.replica + 1),
        labels,
        running: slot.running,
        exit_code: slot.exit_code,
        // Swarm's task status has no OOM flag: the node's engine has it (set by the caller).
        oom_killed: false,
        started_at: if slot.running {
            slot.since.clone()
        } else {
            String::new()
        },
        // A task never placed has not run: no exit for the supervisor to count.
        finished_at: (!slot.running && unplaced.is_none()).then(|| slot.since.clone()),
        ip: slot.running.then_some(ip),
        removing: false,
        node: Some(slot.node.clone()),
        unplaced,
    }
}

/// The bridge name Berth asked for, from the network's label.
pub(super) fn with_bridge(mut info: NetworkInfo) -> NetworkInfo {
    info.bridge = info.labels.get(LABEL_BRIDGE).cloned();
    info
}

pub(super) fn labels_of(service: &Service) -> HashMap<String, String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.clone())
        .unwrap_or_default()
}

pub(super) fn service_name_of(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default()
}

pub(super) fn replicas_of(service: &Service) -> u32 {
    service
        .spec
        .as_ref()
        .and_then(|s| s.mode.as_ref())
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn node(n: u8, ready: bool) -> NodeView {
        NodeView {
            hostname: format!("n{n}"),
            addr: Some(Ipv4Addr::new(10, 0, 0, n)),
            ready,
            message: String::new(),
        }
    }

    fn slot(node_id: &str, running: bool) -> Slot {
        Slot {
            replica: 0,
            task_id: "t".into(),
            task_name: "svc.1.t".into(),
            container_id: String::new(),
            node_id: node_id.into(),
            node: node_id.into(),
            node_ready: true,
            running,
            starting: false,
            state: String::new(),
            exit_code: None,
            since: String::new(),
            message: String::new(),
        }
    }

    /// The relay on the task's node first, another ready node's next, and pending (not
    /// closed) while no relay runs: a replica may be running before its relay tasks are.
    #[test]
    fn a_slot_is_reached_through_the_nearest_running_relay() {
        let nodes = HashMap::from([
            ("n1".to_owned(), node(1, true)),
            ("n2".to_owned(), node(2, true)),
            ("n3".to_owned(), node(3, false)),
        ]);
        // The task's node, whether it runs, the running relays (node:port), the way.
        let cases = [
            ("n1", true, "n1:31001 n2:31002", "10.0.0.1:31001"),
            ("n1", true, "n2:31002", "10.0.0.2:31002"),
            // A relay on a node that is not ready is no way.
            ("n1", true, "n3:31003", "pending"),
            ("n1", true, "", "pending"),
            ("n1", false, "n1:31001", "closed"),
            ("n3", true, "n3:31003 n2:31002", "10.0.0.2:31002"),
        ];
        for (on, running, relays, want) in cases {
            let ports = relays
                .split_whitespace()
                .map(|r| {
                    let (n, p) = r.split_once(':').unwrap();
                    (n.to_owned(), p.parse().unwrap())
                })
                .collect();
            let got = match way_for(&slot(on, running), &nodes, &ports, "tok") {
                Way::Closed => "closed".to_owned(),
                Way::Pending => "pending".to_owned(),
                Way::Open(r) => {
                    assert_eq!((r.task.as_str(), r.port), ("svc.1.t", SERVICE_PORT));
                    r.relay.to_string()
                }
            };
            assert_eq!(
                got, want,
                "slot on {on}, running {running}, relays {relays:?}"
            );
        }
    }
}

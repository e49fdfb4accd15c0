//! What Berth asks Swarm for, as pure functions: the service of a deployment's revision, the
//! relay service of a deployment's network, and the names and tokens that tie them together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    Limit, NetworkAttachmentConfig, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges,
    TaskSpecLogDriver, TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};

use crate::runtime::{InstanceSpec, PLATFORM_HOST};

/// The label Berth's replica slot has on an instance; a service carries every instance label
/// but this one (its tasks are the slots).
pub const LABEL_REPLICA: &str = "berth.replica";
/// Marks a relay service, naming the network it serves.
pub const LABEL_RELAY: &str = "berth.swarm.relay";
/// The port the relay listens on inside its task (published on each node's host port).
pub const RELAY_PORT: u16 = 7070;
/// The microservice port (the contract: HTTP on 80).
pub const SERVICE_PORT: u16 = 80;
/// The port of `berth-platform` on a deployment's overlay (the relay's way to the internal API):
/// the port of `C8Y_BASEURL` on Swarm.
pub const PLATFORM_PORT: u16 = 8111;

/// The service that runs one revision of one deployment: a stable name from the deployment
/// and revision (every replica slot asks for the same service), within Swarm's 63 characters.
pub fn service_name(installation: &str, deployment: &str, revision: &str) -> String {
    let mut h = Sha256::new();
    h.update(deployment.as_bytes());
    h.update([0]);
    h.update(revision.as_bytes());
    format!(
        "berth-{}-{}",
        short(installation),
        &hex::encode(h.finalize())[..16]
    )
}

/// The relay service of a deployment network.
pub fn relay_name(network: &str) -> String {
    format!("{network}-relay")
}

fn short(installation: &str) -> String {
    installation
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The relay token of a network: an HMAC of its name under Berth's key, so a restarted Berth
/// derives the same token and a relay's token opens no other deployment's relay.
pub fn relay_token(key: &[u8], network: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex::encode(ring::hmac::sign(&key, network.as_bytes()).as_ref())
}

/// The Swarm service for the revision `spec` belongs to, running `image` (a registry reference
/// pinned by digest). The hardening is the local engine's where Swarm has it: every capability
/// dropped but binding port 80, no privilege gain, a pids limit, the image's own `USER`; memory
/// and CPU both limited and reserved (the scheduler places a replica only where its limits
/// fit, as Kubernetes' Guaranteed class). No port is published and the endpoint mode is DNS
/// round robin, so the service has no virtual IP and no ingress entry: replicas are reached only
/// over their deployment's overlay network, through its relay. No `hosts` entry: on the overlay
/// `berth-platform` is the relay (its network alias), the way to the internal API.
pub fn service_spec(spec: &InstanceSpec, image: &str) -> ServiceSpec {
    let mut labels = spec.labels.clone();
    labels.remove(LABEL_REPLICA);
    let container = TaskSpecContainerSpec {
        image: Some(image.to_owned()),
        labels: Some(labels.clone()),
        env: Some(spec.env.clone()),
        capability_drop: Some(vec!["ALL".to_owned()]),
        capability_add: Some(vec!["CAP_NET_BIND_SERVICE".to_owned()]),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        stop_grace_period: Some(10_000_000_000),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(spec.nano_cpus),
                memory_bytes: Some(spec.memory_bytes),
                pids: Some(spec.pids_limit),
            }),
            reservations: Some(ResourceObject {
                nano_cpus: Some(spec.nano_cpus),
                memory_bytes: Some(spec.memory_bytes),
                ..Default::default()
            }),
            ..Default::default()
        }),
        restart_policy: Some(restart_policy(FIRST_RESTART_DELAY)),
        placement: Some(TaskSpecPlacement {
            preferences: Some(vec![TaskSpecPlacementPreferences {
                spread: Some(TaskSpecPlacementSpread {
                    spread_descriptor: Some("node.id".to_owned()),
                }),
            }]),
            ..Default::default()
        }),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(spec.network.clone()),
            ..Default::default()
        }]),
        log_driver: Some(log_driver()),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(service_name(
            labels
                .get(crate::runtime::LABEL_INSTALLATION)
                .map_or("", String::as_str),
            &spec.deployment,
            &spec.revision,
        )),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(replicated(spec.replicas)),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: None,
        }),
        ..Default::default()
    }
}

/// The relay of deployment network `network` (subnet `subnet`): one task on every node
/// (global mode), attached to that network only, its port published on each node's own
/// address in host mode with a port Docker picks (read back from the task's status). It
/// forwards only to addresses of `subnet`, port 80, for clients that send `token`. The other
/// way, it is `berth-platform` on the network (an alias) and carries the replicas'
/// connections to its port [`PLATFORM_PORT`] on to Berth's `gateway`, with the same token.
pub fn relay_spec(
    network: &str,
    subnet: &str,
    token: &str,
    image: &str,
    labels: &HashMap<String, String>,
    gateway: SocketAddr,
) -> ServiceSpec {
    let mut labels = labels.clone();
    labels.insert(LABEL_RELAY.to_owned(), network.to_owned());
    let container = TaskSpecContainerSpec {
        image: Some(image.to_owned()),
        labels: Some(labels.clone()),
        env: Some(vec![
            format!("BERTH_RELAY_TOKEN={token}"),
            format!("BERTH_RELAY_ALLOW={subnet}"),
            format!("BERTH_RELAY_PORTS={SERVICE_PORT}"),
            format!("BERTH_RELAY_LISTEN=0.0.0.0:{RELAY_PORT}"),
            format!("BERTH_RELAY_PLATFORM={gateway}"),
            format!("BERTH_RELAY_NETWORK={network}"),
            format!("BERTH_RELAY_PLATFORM_LISTEN=0.0.0.0:{PLATFORM_PORT}"),
        ]),
        user: Some("65534:65534".to_owned()),
        read_only: Some(true),
        capability_drop: Some(vec!["ALL".to_owned()]),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(250_000_000),
                memory_bytes: Some(64 << 20),
                // Two threads per connection of the relay's 960 (`LIMITS` in swarm-relay), and
                // its listeners': the relay keeps well under this.
                pids: Some(2048),
            }),
            ..Default::default()
        }),
        restart_policy: Some(restart_policy(FIRST_RESTART_DELAY)),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(network.to_owned()),
            aliases: Some(vec![PLATFORM_HOST.to_owned()]),
            ..Default::default()
        }]),
        log_driver: Some(log_driver()),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(relay_name(network)),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                target_port: Some(i64::from(RELAY_PORT)),
                published_port: None,
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    }
}

/// Whether the relay service spec `existing` already is `wanted` ([`relay_spec`]) where it
/// matters: the image (Swarm may have pinned it by digest), the environment (the gateway, the
/// token, the subnet) and the network alias `berth-platform`. A relay made by an earlier Berth
/// (before the way to the internal API existed, or for another gateway or relay image) is not.
pub fn relay_is_current(existing: &ServiceSpec, wanted: &ServiceSpec) -> bool {
    let container = |s: &ServiceSpec| {
        s.task_template
            .as_ref()
            .and_then(|t| t.container_spec.clone())
            .unwrap_or_default()
    };
    let aliases = |s: &ServiceSpec| -> Vec<String> {
        let mut all: Vec<String> = s
            .task_template
            .as_ref()
            .and_then(|t| t.networks.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|n| n.aliases.clone().unwrap_or_default())
            .collect();
        all.sort();
        all
    };
    let env = |c: &TaskSpecContainerSpec| -> Vec<String> {
        let mut env = c.env.clone().unwrap_or_default();
        env.sort();
        env
    };
    let image = |c: &TaskSpecContainerSpec| -> String {
        let image = c.image.clone().unwrap_or_default();
        match image.split_once("@sha256:") {
            Some((name, _)) => name.to_owned(),
            None => image,
        }
    };
    let (have, want) = (container(existing), container(wanted));
    image(&have) == image(&want) && env(&have) == env(&want) && aliases(existing) == aliases(wanted)
}

/// A replicated mode of `replicas` tasks.
pub fn replicated(replicas: u32) -> ServiceSpecMode {
    ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(i64::from(replicas)),
        }),
        ..Default::default()
    }
}

/// The restart delay a service starts with: the supervisor's fast restart (its back-off's
/// first delay), until a crash loop makes the supervisor raise it (`pace_restarts`).
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(200);

/// Swarm restarts an exited task itself (a node's agent does it, the manager cannot reach a
/// node's containers) after `delay`, for ever: no `max_attempts`, since a slot that used them
/// up stays down for good (the window passing does not bring it back; only an update that
/// replaces every task of the service does), and no `window` (it only counts attempts).
pub fn restart_policy(delay: Duration) -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
        delay: Some(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX)),
        max_attempts: None,
        window: None,
    }
}

/// The contract keeps at most ~35 MB of logs per instance, as on the local engine.
fn log_driver() -> TaskSpecLogDriver {
    TaskSpecLogDriver {
        name: Some("json-file".to_owned()),
        options: Some(HashMap::from([
            ("max-size".to_owned(), "10m".to_owned()),
            ("max-file".to_owned(), "3".to_owned()),
        ])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> InstanceSpec {
        InstanceSpec {
            name: "berth-abc-7-t1-0-aaaaaa".into(),
            deployment: "7/t1".into(),
            revision: "rev1".into(),
            replica: 0,
            replicas: 3,
            image: "sha256:0123".into(),
            env: vec!["C8Y_TENANT=t1".into()],
            labels: HashMap::from([
                ("berth.installation".into(), "AbCdEf123456".into()),
                ("berth.deployment".into(), "7/t1".into()),
                ("berth.replica".into(), "0".into()),
            ]),
            network: "berth-abc-net".into(),
            memory_bytes: 256 << 20,
            nano_cpus: 500_000_000,
            pids_limit: 512,
        }
    }

    #[test]
    fn every_slot_of_a_revision_names_the_same_service() {
        let a = service_name("AbCdEf123456", "7/t1", "rev1");
        let mut other = instance();
        other.replica = 2;
        other.labels.insert("berth.replica".into(), "2".into());
        let spec = service_spec(&other, "r/x@sha256:1");
        assert_eq!(spec.name.as_deref(), Some(a.as_str()));
        assert!(a.starts_with("berth-abcdef12-") && a.len() <= 63, "{a}");
        assert_ne!(a, service_name("AbCdEf123456", "7/t1", "rev2"));
        assert_ne!(a, service_name("AbCdEf123456", "7/t2", "rev1"));
    }

    #[test]
    fn a_service_is_limited_reserved_hardened_spread_and_unpublished() {
        let spec = service_spec(&instance(), "reg:5000/berth/x@sha256:1");
        let task = spec.task_template.as_ref().unwrap();
        let c = task.container_spec.as_ref().unwrap();
        assert_eq!(c.image.as_deref(), Some("reg:5000/berth/x@sha256:1"));
        assert_eq!(c.hosts, None, "berth-platform is the relay on the overlay");
        assert_eq!(c.capability_drop, Some(vec!["ALL".into()]));
        assert_eq!(c.user, None, "the image's own USER");
        assert!(!spec.labels.as_ref().unwrap().contains_key(LABEL_REPLICA));
        let r = task.resources.as_ref().unwrap();
        let limits = r.limits.as_ref().unwrap();
        assert_eq!(limits.memory_bytes, Some(256 << 20));
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        assert_eq!(limits.pids, Some(512));
        assert_eq!(
            r.reservations.as_ref().unwrap().memory_bytes,
            Some(256 << 20)
        );
        let spread = &task
            .placement
            .as_ref()
            .unwrap()
            .preferences
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            spread.spread.as_ref().unwrap().spread_descriptor.as_deref(),
            Some("node.id")
        );
        let endpoint = spec.endpoint_spec.as_ref().unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        assert_eq!(endpoint.ports, None);
        assert_eq!(
            spec.mode.unwrap().replicated.unwrap().replicas,
            Some(3),
            "the revision's replica count"
        );
    }

    #[test]
    fn a_relay_serves_one_network_with_its_own_token() {
        let labels = HashMap::from([("berth.installation".into(), "abc".into())]);
        let gateway = "10.213.9.1:41000".parse().unwrap();
        let spec = relay_spec(
            "net-a",
            "10.214.0.0/26",
            "tok",
            "reg/relay:1",
            &labels,
            gateway,
        );
        assert_eq!(spec.name.as_deref(), Some("net-a-relay"));
        let task = spec.task_template.unwrap();
        let nets = task.networks.unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].target.as_deref(), Some("net-a"));
        assert_eq!(nets[0].aliases, Some(vec!["berth-platform".to_owned()]));
        let env = task.container_spec.unwrap().env.unwrap();
        assert!(env.contains(&"BERTH_RELAY_ALLOW=10.214.0.0/26".to_owned()));
        assert!(env.contains(&"BERTH_RELAY_TOKEN=tok".to_owned()));
        assert!(env.contains(&"BERTH_RELAY_PLATFORM=10.213.9.1:41000".to_owned()));
        assert!(env.contains(&"BERTH_RELAY_NETWORK=net-a".to_owned()));
        let port = &spec.endpoint_spec.unwrap().ports.unwrap()[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert!(spec.mode.unwrap().global.is_some());
        let key = b"0123456789abcdef0123456789abcdef";
        assert_eq!(relay_token(key, "net-a"), relay_token(key, "net-a"));
        assert_ne!(relay_token(key, "net-a"), relay_token(key, "net-b"));
        assert_ne!(
            relay_token(key, "net-a"),
            relay_token(b"another key", "net-a")
        );
    }

    fn relay_of(gateway: &str, image: &str) -> ServiceSpec {
        let labels = HashMap::from([("berth.installation".into(), "abc".into())]);
        relay_spec(
            "net-a",
            "10.214.0.0/26",
            "tok",
            image,
            &labels,
            gateway.parse().unwrap(),
        )
    }

    #[test]
    fn a_relay_an_earlier_berth_made_is_not_current() {
        let wanted = relay_of("10.213.9.1:41000", "reg/relay:1");
        assert!(relay_is_current(&wanted, &wanted));
        // Swarm's copy may pin the image by digest and list the environment in its own order.
        let mut pinned = wanted.clone();
        let task = pinned.task_template.as_mut().unwrap();
        let c = task.container_spec.as_mut().unwrap();
        c.image = Some("reg/relay:1@sha256:0123".into());
        c.env.as_mut().unwrap().reverse();
        assert!(relay_is_current(&pinned, &wanted));
        // Before the way to the internal API: no gateway in its environment, no alias.
        let mut old = wanted.clone();
        let task = old.task_template.as_mut().unwrap();
        task.container_spec
            .as_mut()
            .unwrap()
            .env
            .as_mut()
            .unwrap()
            .retain(|e| {
                !e.starts_with("BERTH_RELAY_PLATFORM") && !e.starts_with("BERTH_RELAY_NETWORK")
            });
        task.networks.as_mut().unwrap()[0].aliases = None;
        assert!(!relay_is_current(&old, &wanted));
        // Another gateway or relay image.
        assert!(!relay_is_current(
            &relay_of("10.213.9.1:42000", "reg/relay:1"),
            &wanted
        ));
        assert!(!relay_is_current(
            &relay_of("10.213.9.1:41000", "reg/relay:2"),
            &wanted
        ));
    }

    #[test]
    fn the_restart_policy_restarts_for_ever_after_the_delay_asked() {
        let fast = restart_policy(FIRST_RESTART_DELAY);
        assert_eq!(fast.delay, Some(200_000_000));
        assert_eq!(
            fast.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ANY)
        );
        assert_eq!((fast.max_attempts, fast.window), (None, None));
        assert_eq!(
            restart_policy(Duration::from_secs(60)).delay,
            Some(60_000_000_000)
        );
        let spec = service_spec(&instance(), "registry/image@sha256:1");
        assert_eq!(spec.task_template.unwrap().restart_policy, Some(fast));
    }
}

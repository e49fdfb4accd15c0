//! Which runtime runs the deployments: the local Docker engine (the default) or a Docker Swarm
//! through one manager's engine, with the registry its nodes pull from. A pure function of the
//! settings, so a Swarm setting given without `runtime = swarm` (or the reverse) is refused
//! before anything starts.

use std::net::IpAddr;
use std::path::PathBuf;

use super::{ConfigError, invalid};

/// The deployments' runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Containers on the engine at `docker_socket`.
    Docker(DockerChoice),
    /// Services on the Swarm whose manager's engine is at `docker_socket`.
    Swarm(SwarmChoice),
}

/// The local engine's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerChoice {
    /// Each replica joins a network holder's namespace (`runtime::docker::holders`): faster
    /// starts for one more small container per replica. Off, replicas join their network.
    pub network_holders: bool,
}

/// The Swarm runtime's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmChoice {
    /// `host:port` of the registry every node pulls from.
    pub registry: String,
    /// User and password (`registry_user`, `BERTH_REGISTRY_PASSWORD`).
    pub registry_credentials: Option<(String, String)>,
    /// The relay image (see `swarm-relay/`), pullable by every node.
    pub relay_image: String,
    /// The platform's address as the nodes' containers reach it (`berth-platform`).
    pub platform_address: IpAddr,
    /// Each node's own engine (unix socket) by the node's address as the manager reports it:
    /// what the manager cannot do (stats, exec, kill, a container's OOM flag) goes there.
    pub node_engines: Vec<(IpAddr, PathBuf)>,
}

/// Swarm's default overlay pool: away from the local engine's `10.213.0.0/16`, so that a Berth
/// on Swarm and a Berth on the local engine beside it (or its tests) never pick one block.
pub const SWARM_NETWORK_POOL: &str = "10.214.0.0/16";
/// A /26 per overlay: besides the replicas, Swarm gives each node that joins the network an
/// address, and the relay has a task on every node (61 addresses: 4 nodes, 4 relays, plus
/// replicas of two revisions during an upgrade).
pub const SWARM_NETWORK_SUBNET_PREFIX: u8 = 26;

/// The settings as given (flag > env > file already merged).
#[derive(Debug, Default, Clone)]
pub struct RuntimeSettings {
    pub runtime: Option<String>,
    pub registry: Option<String>,
    pub registry_user: Option<String>,
    pub registry_password: Option<String>,
    pub swarm_relay_image: Option<String>,
    pub swarm_platform_address: Option<String>,
    /// `ADDR=SOCKET` entries.
    pub swarm_node_engines: Vec<String>,
    pub network_holders: Option<bool>,
}

/// Validates the runtime settings.
pub fn runtime_choice(s: RuntimeSettings) -> Result<RuntimeChoice, ConfigError> {
    let runtime = s.runtime.as_deref().unwrap_or("docker");
    match runtime {
        "docker" => {
            let swarm_only = [
                ("registry", s.registry.is_some()),
                ("registry_user", s.registry_user.is_some()),
                ("swarm_relay_image", s.swarm_relay_image.is_some()),
                ("swarm_platform_address", s.swarm_platform_address.is_some()),
                ("swarm_node_engines", !s.swarm_node_engines.is_empty()),
            ];
            if let Some((name, _)) = swarm_only.into_iter().find(|(_, set)| *set) {
                return Err(invalid(name, "(set)", "applies only with runtime = swarm"));
            }
            Ok(RuntimeChoice::Docker(DockerChoice {
                network_holders: s.network_holders.unwrap_or(true),
            }))
        }
        "swarm" => {
            if s.network_holders.is_some() {
                return Err(invalid(
                    "network_holders",
                    "(set)",
                    "applies only with runtime = docker (Swarm's tasks join their overlay network themselves)",
                ));
            }
            let registry = s.registry.ok_or_else(|| {
                invalid(
                    "registry",
                    "",
                    "runtime = swarm needs the registry every node pulls from, as HOST:PORT",
                )
            })?;
            if !valid_registry(&registry) {
                return Err(invalid(
                    "registry",
                    &registry,
                    "expected HOST:PORT, such as 10.0.0.1:5000 (no scheme, no path)",
                ));
            }
            let registry_credentials = match (s.registry_user, s.registry_password) {
                (None, None) => None,
                (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
                (Some(_), _) => {
                    return Err(invalid(
                        "registry_user",
                        "(set)",
                        "needs BERTH_REGISTRY_PASSWORD (and a non-empty user)",
                    ));
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "BERTH_REGISTRY_PASSWORD",
                        "<hidden>",
                        "needs registry_user",
                    ));
                }
            };
            let relay_image = s.swarm_relay_image.filter(|i| !i.trim().is_empty()).ok_or_else(|| {
                invalid(
                    "swarm_relay_image",
                    "",
                    "runtime = swarm needs the relay image (swarm-relay/build.sh) in the registry",
                )
            })?;
            let text = s.swarm_platform_address.unwrap_or_default();
            let platform_address: IpAddr = text.parse().map_err(|_| {
                invalid(
                    "swarm_platform_address",
                    &text,
                    "runtime = swarm needs the IP address at which the nodes reach this host",
                )
            })?;
            let node_engines = s
                .swarm_node_engines
                .iter()
                .map(|e| node_engine(e))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RuntimeChoice::Swarm(SwarmChoice {
                registry,
                registry_credentials,
                relay_image,
                platform_address,
                node_engines,
            }))
        }
        other => Err(invalid("runtime", other, "expected docker or swarm")),
    }
}

/// `ADDR=SOCKET`: a node's address and its engine's unix socket (a path or `unix://path`).
fn node_engine(text: &str) -> Result<(IpAddr, PathBuf), ConfigError> {
    let parsed = text.split_once('=').and_then(|(addr, socket)| {
        let addr: IpAddr = addr.trim().parse().ok()?;
        let socket = socket.trim();
        let socket = socket.strip_prefix("unix://").unwrap_or(socket);
        socket
            .starts_with('/')
            .then(|| (addr, PathBuf::from(socket)))
    });
    parsed.ok_or_else(|| {
        invalid(
            "swarm_node_engines",
            text,
            "expected NODE_ADDRESS=/path/to/docker.sock (the node's own engine)",
        )
    })
}

fn valid_registry(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm() -> RuntimeSettings {
        RuntimeSettings {
            runtime: Some("swarm".into()),
            registry: Some("10.0.0.1:5000".into()),
            swarm_relay_image: Some("10.0.0.1:5000/relay:1".into()),
            swarm_platform_address: Some("10.0.0.1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn decides_the_runtime_or_names_the_setting_to_fix() {
        assert_eq!(
            runtime_choice(RuntimeSettings::default()).unwrap(),
            RuntimeChoice::Docker(DockerChoice {
                network_holders: true
            })
        );
        assert_eq!(
            runtime_choice(RuntimeSettings {
                network_holders: Some(false),
                ..Default::default()
            })
            .unwrap(),
            RuntimeChoice::Docker(DockerChoice {
                network_holders: false
            })
        );
        let RuntimeChoice::Swarm(s) = runtime_choice(swarm()).unwrap() else {
            panic!("swarm")
        };
        assert_eq!(s.registry, "10.0.0.1:5000");
        assert_eq!(s.registry_credentials, None);
        assert!(s.node_engines.is_empty());
        let RuntimeChoice::Swarm(s) = runtime_choice(RuntimeSettings {
            swarm_node_engines: vec![
                "10.0.0.2=/run/n2.sock".into(),
                "10.0.0.3=unix:///run/n3.sock".into(),
            ],
            ..swarm()
        })
        .unwrap() else {
            panic!("swarm")
        };
        assert_eq!(
            s.node_engines,
            vec![
                ("10.0.0.2".parse().unwrap(), PathBuf::from("/run/n2.sock")),
                ("10.0.0.3".parse().unwrap(), PathBuf::from("/run/n3.sock")),
            ]
        );
        let cases: Vec<(RuntimeSettings, &str)> = vec![
            (
                RuntimeSettings {
                    runtime: Some("k8s".into()),
                    ..Default::default()
                },
                "runtime",
            ),
            (
                RuntimeSettings {
                    registry: Some("r:1".into()),
                    ..Default::default()
                },
                "registry",
            ),
            (
                RuntimeSettings {
                    registry: None,
                    ..swarm()
                },
                "registry",
            ),
            (
                RuntimeSettings {
                    registry: Some("http://r:5000".into()),
                    ..swarm()
                },
                "registry",
            ),
            (
                RuntimeSettings {
                    swarm_relay_image: None,
                    ..swarm()
                },
                "swarm_relay_image",
            ),
            (
                RuntimeSettings {
                    swarm_platform_address: Some("host".into()),
                    ..swarm()
                },
                "swarm_platform_address",
            ),
            (
                RuntimeSettings {
                    swarm_node_engines: vec!["node2=/run/n2.sock".into()],
                    ..swarm()
                },
                "swarm_node_engines",
            ),
            (
                RuntimeSettings {
                    swarm_node_engines: vec!["10.0.0.2=tcp://10.0.0.2:2375".into()],
                    ..swarm()
                },
                "swarm_node_engines",
            ),
            (
                RuntimeSettings {
                    swarm_node_engines: vec!["10.0.0.2=/run/n2.sock".into()],
                    ..Default::default()
                },
                "swarm_node_engines",
            ),
            (
                RuntimeSettings {
                    registry_user: Some("u".into()),
                    ..swarm()
                },
                "registry_user",
            ),
            (
                RuntimeSettings {
                    registry_password: Some("p".into()),
                    ..swarm()
                },
                "BERTH_REGISTRY_PASSWORD",
            ),
            (
                RuntimeSettings {
                    network_holders: Some(true),
                    ..swarm()
                },
                "network_holders",
            ),
        ];
        for (settings, name) in cases {
            let e = runtime_choice(settings.clone()).unwrap_err().to_string();
            assert!(e.contains(&format!("setting {name} ")), "{settings:?}: {e}");
        }
    }
}

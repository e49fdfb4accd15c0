//! Containers and networks of deployments: create with Berth's limits and hardening, find by
//! labels, inspect, start, kill, remove, read logs, run exec probes, and watch die/oom events.
//! Everything here is plain data in, plain data out: no bollard type leaves this module.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions,
};
use futures_util::{Stream, StreamExt};

use super::{DockerEngine, is_conflict, is_not_found};
use crate::runtime::log_text::{LogText, MAX_LOG_TEXT};
use crate::runtime::{
    ExecOutcome, HostResources, InstanceEvent, InstanceInfo, InstanceSpec, NetworkInfo,
    NetworkSpec, RuntimeError,
};

/// Inspections of a listing in flight at once.
const INSPECT_CONCURRENCY: usize = 8;

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

/// Docker's 409 for a container marked for removal (or dead), which can never start again.
fn is_being_removed(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } if message.contains("removal") || message.contains("dead")
    )
}

fn label_filter(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut filters = HashMap::new();
    filters.insert(
        "label".to_owned(),
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    );
    filters
}

impl DockerEngine {
    /// CPUs and memory of the Docker host (`docker info`), from which default maxima come.
    pub(super) async fn host_resources(&self) -> Result<HostResources, RuntimeError> {
        let info = self.docker.info().await?;
        let positive = |v: Option<i64>, what: &str| {
            v.and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| RuntimeError::Docker(format!("docker info reports no {what}")))
        };
        Ok(HostResources {
            cpus: positive(info.ncpu, "NCPU")?,
            memory_bytes: positive(info.mem_total, "MemTotal")?,
            only_port: None,
            exec_probes: true,
        })
    }

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
        self.network(name)
            .await?
            .ok_or_else(|| RuntimeError::Docker(format!("network {name} vanished after creation")))
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

    /// Removes a network and every container attached to it.
    pub(super) async fn remove_network_and_instances(&self, id: &str) -> Result<(), RuntimeError> {
        let attached = match self.docker.inspect_network(id, None).await {
            Ok(n) => n.containers.unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for container in attached.keys() {
            self.remove_instance(container).await?;
        }
        self.remove_network(id).await
    }

    /// One network by name, or None.
    pub(super) async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, RuntimeError> {
        match self.docker.inspect_network(name, None).await {
            Ok(n) => Ok(Some(NetworkInfo {
                bridge: n
                    .options
                    .as_ref()
                    .and_then(|o| o.get(BRIDGE_NAME_OPTION))
                    .cloned(),
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                labels: n.labels.unwrap_or_default(),
                subnets: subnets_of(n.ipam),
            })),
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
                Some(name) if !subnets.is_empty() => found.push(NetworkInfo {
                    bridge: n
                        .options
                        .as_ref()
                        .and_then(|o| o.get(BRIDGE_NAME_OPTION))
                        .cloned(),
                    id: n.id.unwrap_or_default(),
                    name,
                    labels: n.labels.unwrap_or_default(),
                    subnets,
                }),
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

    /// Removes a network; absent is fine.
    pub(super) async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates (not starts) a container from `spec`; returns its id. The hardening is the same
    /// for every container whatever its manifest says (apiVersion included): every capability
    /// dropped but binding port 80, no privilege gain through setuid binaries, a pids limit,
    /// a private IPC namespace. The user is the image's `USER` (never overridden).
    pub(super) async fn create_instance(
        &self,
        spec: &InstanceSpec,
    ) -> Result<String, RuntimeError> {
        let host_config = HostConfig {
            memory: Some(spec.memory_bytes),
            // Equal to memory: no swap, so the limit is what the manifest says.
            memory_swap: Some(spec.memory_bytes),
            nano_cpus: Some(spec.nano_cpus),
            pids_limit: Some(spec.pids_limit),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(vec!["NET_BIND_SERVICE".to_owned()]),
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            privileged: Some(false),
            ipc_mode: Some("private".to_owned()),
            network_mode: Some(spec.network.clone()),
            extra_hosts: Some(vec![format!(
                "{}:host-gateway",
                crate::runtime::PLATFORM_HOST
            )]),
            // The contract keeps at most ~35 MB of logs per instance.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "3".to_owned()),
                ])),
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        Ok(self.docker.create_container(Some(options), body).await?.id)
    }

    /// Starts a container; Ok(false) when it is gone or being removed (`docker rm -f`), which
    /// no retry mends: the caller replaces it instead.
    pub(super) async fn start_instance(&self, id: &str) -> Result<bool, RuntimeError> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) || is_being_removed(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// SIGKILLs a running container (liveness failure); not running is fine.
    pub(super) async fn kill_instance(&self, id: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptions {
            signal: "KILL".to_owned(),
        };
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a container, running or not; absent is fine.
    pub(super) async fn remove_instance(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every container (running or not) carrying every label of `labels`, inspected.
    pub(super) async fn instances(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<InstanceInfo>, RuntimeError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(label_filter(labels)),
            ..Default::default()
        };
        let ids: Vec<String> = self
            .docker
            .list_containers(Some(options))
            .await?
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        let inspected: Vec<Result<Option<InstanceInfo>, RuntimeError>> =
            futures_util::stream::iter(ids)
                .map(|id| async move { self.instance(&id).await })
                .buffered(INSPECT_CONCURRENCY)
                .collect()
                .await;
        inspected
            .into_iter()
            .filter_map(Result::transpose)
            .collect()
    }

    /// One container, or None if it no longer exists.
    pub(super) async fn instance(&self, id: &str) -> Result<Option<InstanceInfo>, RuntimeError> {
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let state = c.state.unwrap_or_default();
        let removing = matches!(
            state.status,
            Some(
                bollard::models::ContainerStateStatusEnum::REMOVING
                    | bollard::models::ContainerStateStatusEnum::DEAD
            )
        );
        let ip = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_values()
            .filter_map(|e| e.ip_address)
            .find_map(|ip| ip.parse().ok());
        Ok(Some(InstanceInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            started_at: state.started_at.unwrap_or_default(),
            // Docker says "never" with its zero time (or nothing).
            finished_at: state
                .finished_at
                .filter(|t| !t.is_empty() && t != "0001-01-01T00:00:00Z"),
            ip,
            removing,
            node: None,
        }))
    }

    /// Logs of a container (stdout and stderr, with timestamps). `since`/`until` are Unix
    /// seconds (0 = unbounded), `tail` a line count (None = all).
    pub(super) async fn logs(
        &self,
        id: &str,
        since: i64,
        until: i64,
        tail: Option<u64>,
    ) -> Result<String, RuntimeError> {
        let options = LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            since: i32::try_from(since).unwrap_or(i32::MAX),
            until: i32::try_from(until).unwrap_or(i32::MAX),
            timestamps: true,
            tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        let mut stream = std::pin::pin!(self.docker.logs(id, Some(options)));
        let mut text = LogText::new(MAX_LOG_TEXT);
        while let Some(chunk) = stream.next().await {
            text.push(&String::from_utf8_lossy(&chunk?.into_bytes()));
        }
        Ok(text.finish())
    }

    /// Follows a container's stdout and stderr (with timestamps), starting `tail` lines back,
    /// until the container stops or the stream is dropped (the console's live log view).
    pub fn follow_logs(
        &self,
        id: &str,
        tail: u64,
    ) -> impl Stream<Item = Result<bytes::Bytes, RuntimeError>> + use<> {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        self.docker
            .logs(id, Some(options))
            .map(|chunk| Ok(chunk?.into_bytes()))
    }

    /// Runs `command` in the container (exec probe) and waits at most `timeout` for it to exit.
    pub(super) async fn exec_command(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, RuntimeError> {
        let config = CreateExecOptions::<String> {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self.docker.create_exec(id, config).await?;
        let run = async {
            let options = StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            };
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, Some(options)).await?
            {
                // Drain the output: the exec ends when its streams close.
                while output.next().await.is_some() {}
            }
            Ok::<_, BollardError>(self.docker.inspect_exec(&exec.id).await?.exit_code)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(code)) => Ok(ExecOutcome::Exited {
                success: code == Some(0),
            }),
            Ok(Err(e)) => Err(e.into()),
            // Dropping the attach stream leaves the process running: Docker cannot kill an exec.
            Err(_) => Ok(ExecOutcome::TimedOut { exec: exec.id }),
        }
    }

    /// Whether exec `exec` still runs (`docker inspect` of the exec: `Running`). One the engine
    /// no longer knows (its container removed, the engine restarted) does not.
    pub(super) async fn exec_running(&self, exec: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_exec(exec).await {
            Ok(inspect) => Ok(inspect.running.unwrap_or(false)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `die` and `oom` events of containers carrying `labels`, as they happen.
    pub(super) fn events(
        &self,
        labels: &[(&str, &str)],
    ) -> impl Stream<Item = Result<InstanceEvent, RuntimeError>> + use<> {
        let mut filters = label_filter(labels);
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        // `destroy`: a container removed by hand is replaced at once.
        filters.insert(
            "event".to_owned(),
            vec!["die".to_owned(), "oom".to_owned(), "destroy".to_owned()],
        );
        let options = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker.events(Some(options)).map(|item| {
            let event = item?;
            Ok(InstanceEvent {
                instance_id: event.actor.and_then(|a| a.id).unwrap_or_default(),
                action: event.action.unwrap_or_default(),
            })
        })
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

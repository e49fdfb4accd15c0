//! Containers of deployments: create with Berth's limits and hardening, find by
//! labels, inspect, start, kill, remove, read logs, run exec probes, and watch die/oom events.
//! Everything here is plain data in, plain data out: no bollard type leaves this module.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::{Stream, StreamExt};

use super::holders::{LABEL_HOLDER, holder_of};
use super::{DockerEngine, first_ip, is_conflict, is_not_found, label_filter};
use crate::runtime::log_text::{LogText, MAX_LOG_TEXT};
use crate::runtime::{
    ExecOutcome, HostResources, InstanceEvent, InstanceInfo, InstanceSpec, RuntimeError,
};
use crate::sync::MutexExt;

/// Inspections of a listing in flight at once.
pub(super) const INSPECT_CONCURRENCY: usize = 8;

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

    /// Creates (not starts) a container from `spec`; returns its id. The hardening is the same
    /// for every container whatever its manifest says (apiVersion included): every capability
    /// dropped but binding port 80, no privilege gain through setuid binaries, a pids limit,
    /// a private IPC namespace. The user is the image's `USER` (never overridden).
    ///
    /// It joins the network namespace of a holder of its own on the deployment network (see
    /// `holders`), which also carries its host entries; where Berth has no holder program, the
    /// network itself.
    pub(super) async fn create_instance(
        &self,
        spec: &InstanceSpec,
    ) -> Result<String, RuntimeError> {
        let holder = self.claim_holder(&spec.network, &spec.name).await?;
        match self.create_container(spec, holder.as_deref()).await {
            Ok(id) => Ok(id),
            Err(e) => {
                // Not the holder of an earlier attempt's container of that name.
                let taken = self
                    .docker
                    .inspect_container(&spec.name, None)
                    .await
                    .is_ok();
                if let Some(holder) = holder.filter(|_| !taken) {
                    let _ = self.remove_container(&holder).await;
                }
                Err(e)
            }
        }
    }

    async fn create_container(
        &self,
        spec: &InstanceSpec,
        holder: Option<&str>,
    ) -> Result<String, RuntimeError> {
        let platform_host = crate::runtime::platform_host_entry();
        let (network_mode, extra_hosts, endpoints) = match holder {
            Some(holder) => (format!("container:{holder}"), None, None),
            None => (
                spec.network.clone(),
                Some(vec![platform_host]),
                Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings::default(),
                )])),
            ),
        };
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
            network_mode: Some(network_mode),
            extra_hosts,
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
            networking_config: endpoints.map(|endpoints| NetworkingConfig {
                endpoints_config: Some(endpoints),
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
    ///
    /// A replica whose holder stopped (the engine restarted) cannot start: the holder is
    /// started first and the start tried again; one whose holder is gone can never start, so
    /// it is removed here and Ok(false) says so (its replacement is made at once, and must not
    /// meet it: two containers of one replica slot). One still running after its holder
    /// stopped (listed as not running: its network went with the holder's) is stopped first,
    /// or the engine would take the start for done.
    pub(super) async fn start_instance(&self, id: &str) -> Result<bool, RuntimeError> {
        let cut_off = self.cut_off.locked().remove(id);
        // Checked only for those (a new replica's first start, on every deploy's path, is not).
        if cut_off && let Some(holder) = self.running_without_holder(id).await? {
            let options = StopContainerOptions {
                t: Some(0),
                signal: None,
            };
            match self.docker.stop_container(id, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            if !self.start_holder(&holder).await? {
                return self.remove_holderless(id).await;
            }
        }
        let refused = match self.docker.start_container(id, None).await {
            Ok(()) => return Ok(true),
            Err(e) if is_not_found(&e) || is_being_removed(&e) => return Ok(false),
            Err(e) => e,
        };
        let mode = match self.docker.inspect_container(id, None).await {
            Ok(c) => c.host_config.and_then(|h| h.network_mode),
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(_) => return Err(refused.into()),
        };
        let Some(holder) = holder_of(mode.as_deref()) else {
            return Err(refused.into());
        };
        if !self.start_holder(holder).await? {
            return self.remove_holderless(id).await;
        }
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) || is_being_removed(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes replica `id`, whose holder is gone; Ok(false) for `start_instance`.
    async fn remove_holderless(&self, id: &str) -> Result<bool, RuntimeError> {
        tracing::debug!(container = %id, "removing a replica whose network holder is gone");
        self.remove_container(id).await?;
        Ok(false)
    }

    /// The holder of replica `id` when the replica runs and its holder does not.
    async fn running_without_holder(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let running = c.state.and_then(|s| s.running).unwrap_or(false);
        let mode = c.host_config.and_then(|h| h.network_mode);
        match holder_of(mode.as_deref()) {
            Some(holder) if running && self.holder_ip(holder).await?.is_none() => {
                Ok(Some(holder.to_owned()))
            }
            _ => Ok(None),
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

    /// Removes an instance's container, running or not, and then its holder; absent is fine.
    pub(super) async fn remove_instance(&self, id: &str) -> Result<(), RuntimeError> {
        self.cut_off.locked().remove(id);
        let mode = match self.docker.inspect_container(id, None).await {
            Ok(c) => c.host_config.and_then(|h| h.network_mode),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.remove_container(id).await?;
        match holder_of(mode.as_deref()) {
            Some(holder) => self.remove_container(holder).await,
            None => Ok(()),
        }
    }

    /// Removes a container, running or not; absent is fine.
    pub(super) async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
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
        // Holders are no instances; their addresses are their replicas'.
        let mut ids = Vec::new();
        let mut holder_ips = HashMap::new();
        for c in self.docker.list_containers(Some(options)).await? {
            let Some(id) = c.id else { continue };
            if c.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(LABEL_HOLDER))
            {
                if let Some(ip) = first_ip(c.network_settings.and_then(|n| n.networks)) {
                    holder_ips.insert(id, ip);
                }
            } else {
                ids.push(id);
            }
        }
        let holder_ips = &holder_ips;
        let inspected: Vec<Result<Option<InstanceInfo>, RuntimeError>> =
            futures_util::stream::iter(ids)
                .map(|id| async move { self.inspect_instance(&id, holder_ips).await })
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
        self.inspect_instance(id, &HashMap::new()).await
    }

    /// One container, its address read from its holder's (from `holder_ips` if listed there).
    async fn inspect_instance(
        &self,
        id: &str,
        holder_ips: &HashMap<String, IpAddr>,
    ) -> Result<Option<InstanceInfo>, RuntimeError> {
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
        let mode = c
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref());
        let (ip, in_holder) = match holder_of(mode) {
            Some(holder) => match holder_ips.get(holder) {
                Some(ip) => (Some(*ip), true),
                None => (self.holder_ip(holder).await?, true),
            },
            None => (first_ip(c.network_settings.and_then(|n| n.networks)), false),
        };
        // A replica whose holder stopped under it (stopped by hand, or killed) runs on with
        // no network: it serves nothing, so it is listed as not running, and started again
        // (`start_instance`).
        let cut_off = state.running.unwrap_or(false) && in_holder && ip.is_none();
        let running = state.running.unwrap_or(false) && !cut_off;
        let id = c.id.unwrap_or_default();
        if cut_off {
            self.cut_off.locked().insert(id.clone());
        }
        Ok(Some(InstanceInfo {
            id,
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
            running,
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
            unplaced: None,
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
        // One deadline for the whole probe: an engine that never answers the exec's creation
        // (overloaded, or a node cut off) would otherwise hold the probe for the client's
        // timeout, ten minutes. An exec created after we gave up never starts: nothing runs.
        let deadline = tokio::time::Instant::now() + timeout;
        let exec =
            match tokio::time::timeout_at(deadline, self.docker.create_exec(id, config)).await {
                Ok(created) => created?,
                Err(_) => {
                    return Err(RuntimeError::Docker(format!(
                        "the engine did not create the probe command within its timeout ({} s)",
                        timeout.as_secs_f64()
                    )));
                }
            };
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
        match tokio::time::timeout_at(deadline, run).await {
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

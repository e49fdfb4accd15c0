//! Docker Swarm as a [`Runtime`]: Berth talks to one manager's engine. A deployment revision is
//! one service (its replica slots are Berth's instances), a deployment network one overlay
//! network with its relay service, an image is pushed to the registry every node pulls from.
//!
//! The proxy and the probes reach a slot at a loopback address of its own ([`tunnel`]) that
//! leads, through the relay on the slot's node, into the overlay network: no microservice port
//! is ever published, and the relay answers only Berth (a per-network token) and only for its
//! own network's addresses. Decisions are pure functions in [`services`] (what to ask Swarm for)
//! and [`tasks`] (what Swarm's tasks and nodes mean for Berth); this file only calls the engine.

mod cluster;
pub mod gateway;
mod images;
mod networks;
mod node_engines;
pub mod registry;
mod relays;
pub mod services;
pub mod tasks;
pub mod tunnel;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ServiceSpec;
use bollard::query_parameters::{ListNodesOptions, LogsOptions};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use time::OffsetDateTime;

use super::docker::{DockerEngine, is_conflict};
use super::log_text::{LogText, MAX_LOG_TEXT};
use super::{
    ExecOutcome, HostResources, ImageArchive, InstanceEvent, InstanceInfo, InstanceSpec,
    LABEL_INSTALLATION, NetworkInfo, NetworkSpec, Pending, Runtime, RuntimeError, Usage,
};
use crate::sync::MutexExt;
use cluster::{instance_id, parse_instance_id, replicas_of, with_bridge};
use tunnel::Tunnels;

/// The label naming a service's deployment network (Swarm stores the network's id, not the
/// name the relay token is derived from).
const LABEL_NETWORK: &str = "berth.swarm.network";
/// The bridge name the supervisor gave a network: an overlay has no host bridge, but the
/// supervisor replaces a network whose reported bridge is not the one it asked for.
const LABEL_BRIDGE: &str = "berth.swarm.bridge";
/// How often the event stream looks at the cluster (Swarm's task and node events are only on
/// each node's own engine; the manager's state is the one place to see all of them).
const EVENT_POLL: Duration = Duration::from_millis(500);

/// What the Swarm runtime needs besides the manager's socket.
#[derive(Debug, Clone)]
pub struct SwarmSettings {
    /// `host:port` of the registry every node pulls from.
    pub registry: String,
    /// Registry credentials (`user`, `password`), if it needs them.
    pub registry_credentials: Option<(String, String)>,
    /// The relay image, pullable by every node from `registry`.
    pub relay_image: String,
    /// The platform's address as the nodes' containers reach it.
    pub platform_address: IpAddr,
    /// Each node's own engine (unix socket) by the node's address ([`node_engines`]).
    pub node_engines: HashMap<IpAddr, std::path::PathBuf>,
}

/// Who this runtime works for, known once the data directory is read (after connecting).
#[derive(Debug)]
struct Identity {
    installation: String,
    /// The key relay tokens are derived from.
    relay_key: Vec<u8>,
    /// Berth's gateway to its internal API, as the relays reach it ([`gateway`]).
    gateway: SocketAddr,
}

/// A Swarm cluster through one manager.
#[derive(Debug, Clone)]
pub struct SwarmRuntime {
    /// The manager's engine as a local engine: images live there before they are pushed.
    engine: DockerEngine,
    docker: Docker,
    settings: Arc<SwarmSettings>,
    identity: Arc<std::sync::OnceLock<Identity>>,
    tunnels: Arc<Tunnels>,
    /// Slots removed below a service's highest one, which Swarm cannot drop alone: hidden
    /// from listings, and the service shrinks past them once the slots above go too.
    removed: Arc<std::sync::Mutex<HashMap<String, std::collections::BTreeSet<u32>>>>,
    /// One slot removal of a service at a time: each reads the service's version and scales it
    /// from what it read, so two at once (the supervisor removes off its pass, in parallel)
    /// would make the second fail on a stale version.
    removing: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The node engines connected so far, by node address.
    node_engines: Arc<tokio::sync::Mutex<HashMap<IpAddr, DockerEngine>>>,
    /// Networks whose relay this process has made or checked ([`relays`]).
    relays_checked: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl SwarmRuntime {
    /// Connects to the manager's engine; refuses an engine that is not a Swarm manager.
    pub async fn connect(
        socket: &Path,
        settings: SwarmSettings,
    ) -> Result<SwarmRuntime, RuntimeError> {
        let engine = DockerEngine::connect(socket).await?;
        let display = socket.display().to_string();
        let docker = Docker::connect_with_unix(&display, 600, bollard::API_DEFAULT_VERSION)
            .map_err(|e| RuntimeError::Connect {
                socket: display.clone(),
                message: e.to_string(),
            })?
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Connect {
                socket: display.clone(),
                message: e.to_string(),
            })?;
        let info = docker.info().await?;
        let manager = info
            .swarm
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        if !manager {
            return Err(RuntimeError::Connect {
                socket: display,
                message: "the engine is not a Swarm manager (runtime = swarm needs one)".into(),
            });
        }
        Ok(SwarmRuntime {
            engine,
            docker,
            settings: Arc::new(settings),
            identity: Arc::new(std::sync::OnceLock::new()),
            tunnels: Arc::new(Tunnels::default()),
            removed: Arc::default(),
            removing: Arc::default(),
            node_engines: Arc::default(),
            relays_checked: Arc::default(),
        })
    }

    /// Sets the installation id, the relay key and the gateway's address; before this no
    /// deployment object can be made (the first call wins).
    pub fn identify(&self, installation: String, relay_key: Vec<u8>, gateway: SocketAddr) {
        let _ = self.identity.set(Identity {
            installation,
            relay_key,
            gateway,
        });
    }

    /// The platform's address as the nodes reach it (where the gateway listens).
    pub fn platform_address(&self) -> IpAddr {
        self.settings.platform_address
    }

    fn installation(&self) -> &str {
        self.identity.get().map_or("", |i| i.installation.as_str())
    }

    fn relay_token(&self, network: &str) -> Result<String, RuntimeError> {
        let identity = self
            .identity
            .get()
            .ok_or_else(|| RuntimeError::Docker("the Swarm runtime has no relay key yet".into()))?;
        Ok(services::relay_token(&identity.relay_key, network))
    }
}

impl Runtime for SwarmRuntime {
    fn host_resources(&self) -> Pending<'_, HostResources> {
        Box::pin(async move {
            let nodes = self.docker.list_nodes(None::<ListNodesOptions>).await?;
            let (mut nano, mut memory) = (0i64, 0i64);
            for n in nodes {
                let r = n.description.and_then(|d| d.resources).unwrap_or_default();
                nano += r.nano_cpus.unwrap_or(0);
                memory += r.memory_bytes.unwrap_or(0);
            }
            Ok(HostResources {
                cpus: u64::try_from(nano / 1_000_000_000).unwrap_or(0).max(1),
                memory_bytes: u64::try_from(memory).unwrap_or(0),
                // The tunnel and the relay carry the service port only (README: what Swarm
                // cannot do).
                only_port: Some(services::SERVICE_PORT),
                exec_probes: !self.settings.node_engines.is_empty(),
            })
        })
    }

    fn image_id<'a>(&'a self, reference: &'a str) -> Pending<'a, Option<String>> {
        self.engine.image_id(reference)
    }

    fn image_tags<'a>(&'a self, reference: &'a str) -> Pending<'a, Option<Vec<String>>> {
        self.engine.image_tags(reference)
    }

    fn image_user<'a>(&'a self, reference: &'a str) -> Pending<'a, String> {
        self.engine.image_user(reference)
    }

    fn load_image(&self, archive: ImageArchive) -> Pending<'_, Vec<String>> {
        self.engine.load_image(archive)
    }

    fn tag<'a>(&'a self, image: &'a str, repo: &'a str, tag: &'a str) -> Pending<'a, ()> {
        Box::pin(self.tag_and_push(image, repo, tag))
    }

    fn remove_image<'a>(&'a self, reference: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_version_image(reference))
    }

    fn tags_older_than<'a>(
        &'a self,
        prefix: &'a str,
        before: OffsetDateTime,
    ) -> Pending<'a, Vec<String>> {
        self.engine.tags_older_than(prefix, before)
    }

    fn network<'a>(&'a self, name: &'a str) -> Pending<'a, Option<NetworkInfo>> {
        Box::pin(async move { Ok(self.engine.network(name).await?.map(with_bridge)) })
    }

    /// Also brings the relays of networks an earlier Berth made up to date ([`relays`]).
    fn networks<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<NetworkInfo>> {
        Box::pin(async move {
            let networks: Vec<NetworkInfo> = self
                .engine
                .networks(labels)
                .await?
                .into_iter()
                .map(with_bridge)
                .collect();
            self.adopt_relays(&networks).await;
            Ok(networks)
        })
    }

    /// An overlay network (not attachable: only Berth's services join it) and its relay.
    fn create_network<'a>(&'a self, spec: &'a NetworkSpec) -> Pending<'a, NetworkInfo> {
        Box::pin(self.create_overlay(spec))
    }

    fn subnets_in_use(&self) -> Pending<'_, Vec<String>> {
        // The manager lists every swarm-scoped network (ingress included) besides its own
        // local ones.
        self.engine.subnets_in_use()
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_overlay_and_services_named(name))
    }

    fn remove_network_and_instances<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_overlay_and_services(id))
    }

    /// Creates the revision's service with the revision's replica count, or scales it up to
    /// that count; every slot of a revision names the same service.
    fn create_instance<'a>(&'a self, spec: &'a InstanceSpec) -> Pending<'a, String> {
        Box::pin(async move {
            let name =
                services::service_name(self.installation(), &spec.deployment, &spec.revision);
            match self.service(&name).await? {
                Some(existing) => {
                    if replicas_of(&existing) < spec.replicas {
                        self.set_replicas(&existing, spec.replicas).await?;
                    }
                }
                None => {
                    let image = self.pinned(&spec.image).await?;
                    let mut service: ServiceSpec = services::service_spec(spec, &image);
                    service.name = Some(name.clone());
                    if let Some(labels) = service.labels.as_mut() {
                        labels.insert(LABEL_NETWORK.to_owned(), spec.network.clone());
                    }
                    match self
                        .docker
                        .create_service(service, self.credentials())
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_conflict(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            self.removed_slots(&name, |r| r.remove(&spec.replica));
            Ok(instance_id(&name, spec.replica))
        })
    }

    /// Swarm starts tasks itself; a slot of an existing service is "started".
    fn start_instance<'a>(&'a self, id: &'a str) -> Pending<'a, bool> {
        Box::pin(async move {
            let Some((service, _)) = parse_instance_id(id) else {
                return Ok(false);
            };
            Ok(self.service(service).await?.is_some())
        })
    }

    /// Sets the restart delay of the slot's service (its task template's restart policy), if
    /// it is another. Swarm then replaces every task of the service (a task whose spec differs
    /// is out of date), which is why the supervisor changes it only for a crash loop and its
    /// end (`plan::restart_pace`).
    fn pace_restarts<'a>(&'a self, id: &'a str, delay: Duration) -> Pending<'a, ()> {
        Box::pin(async move {
            let Some((service, _)) = parse_instance_id(id) else {
                return Ok(());
            };
            let Some(existing) = self.service(service).await? else {
                return Ok(());
            };
            let Some(mut spec) = existing.spec.clone() else {
                return Ok(());
            };
            let wanted = services::restart_policy(delay);
            let task = spec.task_template.get_or_insert_with(Default::default);
            // Swarm reports an unset `MaxAttempts` as 0: only the delay tells them apart.
            if task.restart_policy.as_ref().and_then(|p| p.delay) == wanted.delay {
                return Ok(());
            }
            task.restart_policy = Some(wanted);
            self.update_service(service, &existing, spec).await
        })
    }

    /// Only the node's engine can kill one task's container; without it the slot stays out of
    /// routing until it passes its probe again, and Swarm restarts it if it exits (README:
    /// what Swarm cannot guarantee). Swarm restarts a killed task itself.
    fn kill_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            match self.container_of(id).await? {
                Some((engine, container)) => engine.kill_instance(&container).await,
                None => {
                    tracing::warn!(instance = %id, "no engine for this task's node: left to Swarm's restart policy");
                    Ok(())
                }
            }
        })
    }

    /// Removing a slot hides it; the service then shrinks to its highest slot not removed
    /// (Swarm drops the highest slots first), and goes when none is left. A lower slot
    /// therefore keeps running, out of every listing, until the slots above it are removed
    /// too (the supervisor removes a revision's slots together, and scales down from the top).
    fn remove_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let Some((service, replica)) = parse_instance_id(id) else {
                return Ok(());
            };
            self.tunnels.retain(|t| t != id);
            let turn = {
                let mut all = self.removing.locked();
                Arc::clone(all.entry(service.to_owned()).or_default())
            };
            let removed = {
                let _turn = turn.lock().await;
                self.remove_slot(service, replica).await
            };
            let mut all = self.removing.locked();
            // The last one waiting (ours and the map's references) forgets the service.
            if Arc::strong_count(&turn) == 2 {
                all.remove(service);
            }
            removed
        })
    }

    fn instances<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<InstanceInfo>> {
        Box::pin(async move {
            let services = self.deployment_services(labels).await?;
            let nodes = self.nodes().await?;
            let mut out = Vec::new();
            for s in &services {
                out.extend(self.service_instances(s, &nodes).await?);
            }
            // A listing of the whole installation is the supervisor's pass: tunnels of slots
            // that no longer exist close.
            if labels.iter().all(|(k, _)| *k == LABEL_INSTALLATION) {
                let live: std::collections::HashSet<&str> =
                    out.iter().map(|i| i.id.as_str()).collect();
                self.tunnels.retain(|id| live.contains(id));
            }
            Ok(out)
        })
    }

    fn instance<'a>(&'a self, id: &'a str) -> Pending<'a, Option<InstanceInfo>> {
        Box::pin(async move {
            let Some((service, _)) = parse_instance_id(id) else {
                return Ok(None);
            };
            let Some(s) = self.service(service).await? else {
                return Ok(None);
            };
            let nodes = self.nodes().await?;
            Ok(self
                .service_instances(&s, &nodes)
                .await?
                .into_iter()
                .find(|i| i.id == id))
        })
    }

    /// The logs of the slot's current task, which the manager gathers from its node.
    fn logs<'a>(
        &'a self,
        id: &'a str,
        since: i64,
        until: i64,
        tail: Option<u64>,
    ) -> Pending<'a, String> {
        Box::pin(async move {
            let Some((slot, _)) = self.slot_of_instance(id).await? else {
                return Ok(String::new());
            };
            let options = LogsOptions {
                follow: false,
                stdout: true,
                stderr: true,
                since: i32::try_from(since).unwrap_or(0),
                until: i32::try_from(until).unwrap_or(0),
                timestamps: true,
                tail: tail.map_or_else(|| "all".to_owned(), |t| t.to_string()),
            };
            let mut stream = std::pin::pin!(self.docker.task_logs(&slot.task_id, Some(options)));
            let mut text = LogText::new(MAX_LOG_TEXT);
            while let Some(chunk) = stream.next().await {
                text.push(&chunk?.to_string());
            }
            Ok(text.finish())
        })
    }

    /// The instance's address is its local tunnel, which accepts every connection: a probe of
    /// the service port asks the relay to connect to the task instead.
    fn tcp_probe<'a>(
        &'a self,
        id: &'a str,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let tunnel = self.tunnels.existing(id).map(IpAddr::V4);
            if addr.port() == services::SERVICE_PORT && tunnel == Some(addr.ip()) {
                self.tunnels.probe(id, timeout).await
            } else {
                crate::runtime::tcp_connect(addr, timeout).await
            }
        })
    }

    /// On the node's own engine; without one an exec probe cannot run.
    fn exec_command<'a>(
        &'a self,
        id: &'a str,
        command: &'a [String],
        timeout: Duration,
    ) -> Pending<'a, ExecOutcome> {
        Box::pin(async move {
            let (engine, container) = self.exec_engine(id).await?;
            Runtime::exec_command(&engine, &container, command, timeout).await
        })
    }

    /// On the engine of the node the task runs on, as the exec was: exec ids are that
    /// engine's own (another node's engine knows none of them: not running).
    fn exec_running<'a>(&'a self, id: &'a str, exec: &'a str) -> Pending<'a, bool> {
        Box::pin(async move {
            let (engine, container) = self.exec_engine(id).await?;
            Runtime::exec_running(&engine, &container, exec).await
        })
    }

    /// Stats are only on the node's own engine: without one, no samples (the autoscaler then
    /// holds the replica count; README: what Swarm cannot guarantee).
    fn usage(&self, id: &str) -> BoxStream<'static, Result<Usage, RuntimeError>> {
        let (this, id) = (self.clone(), id.to_owned());
        futures_util::stream::once(async move {
            match this.container_of(&id).await {
                Ok(Some((engine, container))) => engine.usage(&container),
                _ => futures_util::stream::pending().boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    /// Followed on the node's own engine (the manager cannot follow a task's log), until the
    /// run ends. Without that engine: the last `tail` lines once, then the stream ends, which
    /// the console shows as the end of the log.
    fn follow_logs(
        &self,
        id: &str,
        tail: u64,
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>> {
        let (this, id) = (self.clone(), id.to_owned());
        futures_util::stream::once(async move {
            match this.container_of(&id).await {
                Ok(Some((engine, container))) => engine.follow_logs(&container, tail).boxed(),
                _ => futures_util::stream::once(async move {
                    this.logs(&id, 0, 0, Some(tail))
                        .await
                        .map(bytes::Bytes::from)
                })
                .boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    /// A change of any of our services' tasks or of any node, seen by polling the manager.
    fn events(
        &self,
        labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<InstanceEvent, RuntimeError>> {
        let this = self.clone();
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        futures_util::stream::unfold(
            (this, labels, None::<String>),
            |(this, labels, mut last)| async move {
                loop {
                    tokio::time::sleep(EVENT_POLL).await;
                    let now = {
                        let refs: Vec<(&str, &str)> = labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        this.fingerprint(&refs).await
                    };
                    let now = match now {
                        Ok(now) => now,
                        Err(e) => return Some((Err(e), (this, labels, last))),
                    };
                    let changed = last.as_ref().is_some_and(|l| *l != now);
                    last = Some(now);
                    if changed {
                        let event = InstanceEvent {
                            instance_id: String::new(),
                            action: "swarm task or node change".to_owned(),
                        };
                        return Some((Ok(event), (this, labels, last)));
                    }
                }
            },
        )
        .boxed()
    }
}

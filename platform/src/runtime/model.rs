//! The plain data every runtime speaks: what the supervisor asks for (an instance of a
//! deployment, a deployment's network) and what it is told (instances, networks, usage,
//! events, the host). No engine type appears here.

use std::collections::HashMap;
use std::net::IpAddr;

/// Label carrying the id of the Berth installation that owns an object. The reconciler only
/// ever touches objects with its own id, because several installations may share one engine.
pub const LABEL_INSTALLATION: &str = "berth.installation";

/// One instance (replica) of one revision of a deployment to create.
///
/// The supervisor asks for instances one replica slot at a time, and says which deployment,
/// revision and desired replica count the slot belongs to: a runtime that runs a deployment
/// as one unit (a Swarm service of `replicas` tasks) creates or scales that unit from the same
/// request, and one that runs containers (the local engine) creates one container.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The instance name, unique on the runtime: the instance of the status and logs endpoints.
    pub name: String,
    /// The deployment (`DeploymentKey` as text) the instance belongs to.
    pub deployment: String,
    /// The revision hash of the deployment's spec.
    pub revision: String,
    /// The replica slot, `0..replicas`.
    pub replica: u32,
    /// How many replicas the deployment's revision wants now.
    pub replicas: u32,
    /// The image id (`sha256:…`); never a tag, which anyone with engine access can move.
    pub image: String,
    pub env: Vec<String>,
    /// Every label of the instance, installation and deployment labels included.
    pub labels: HashMap<String, String>,
    /// The deployment's network (made by [`super::Runtime::create_network`] first).
    pub network: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
}

/// What the supervisor needs to know about one instance.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// The runtime's id of the instance (container id, task id).
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// Identifies one run: changes at every (re)start. RFC 3339.
    pub started_at: String,
    /// When the last run ended (RFC 3339); None while it runs or when it never ran.
    pub finished_at: Option<String>,
    /// The address on its deployment network while running (probes and the proxy use it).
    pub ip: Option<IpAddr>,
    /// Being removed or dead: it can never run again, so it counts as gone and its replica is
    /// replaced rather than restarted.
    pub removing: bool,
    /// The node it runs on, for a runtime with several (None on the local engine).
    pub node: Option<String>,
    /// Why a cluster runtime has placed it on no node yet (Swarm: the scheduler's error for a
    /// pending task, such as no node with the memory it reserves). It has not run, so it is
    /// no exit, and only the cluster can start it, once a node has room.
    pub unplaced: Option<String>,
}

/// A deployment's network to create.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    /// The bridge interface name (the host firewall matches Berth's bridges by name); a
    /// runtime without host bridges (an overlay network) ignores it.
    pub bridge: String,
    pub labels: HashMap<String, String>,
    /// The subnet, chosen by the supervisor from its pool so networks never overlap.
    pub subnet: String,
}

/// A Berth network and its subnets.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub subnets: Vec<String>,
    /// The bridge interface name Berth gave it (None for networks made before it did, and
    /// for networks without a host bridge).
    pub bridge: Option<String>,
}

/// What the host (or cluster) has, from which default maxima come.
#[derive(Debug, Clone, Copy)]
pub struct HostResources {
    pub cpus: u64,
    pub memory_bytes: u64,
    /// The one container port the platform can reach (Swarm: its tunnels' port); `None`: any.
    pub only_port: Option<u16>,
    /// Whether an exec probe can run (Swarm: only through the nodes' own engines).
    pub exec_probes: bool,
}

/// A lifecycle event of an instance: the supervisor reconciles at once on any of them.
#[derive(Debug, Clone)]
pub struct InstanceEvent {
    pub instance_id: String,
    /// What happened, in the runtime's words (`die`, `oom`, `destroy`…), for the log only.
    pub action: String,
}

/// One resource usage sample of an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU cores in use since the previous sample (None on the first sample, which has no
    /// previous one).
    pub cpu_cores: Option<f64>,
    /// Memory in use without reclaimable page cache, in bytes.
    pub memory_bytes: u64,
    /// The highest memory usage the kernel recorded (cgroup v1 only; v2 reports none).
    pub memory_peak_bytes: Option<u64>,
    /// The enforced memory limit, in bytes.
    pub memory_limit_bytes: Option<u64>,
}

/// How an exec probe's command ended within the probe's timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited, with status 0 or not.
    Exited { success: bool },
    /// Still running at the timeout. No engine API kills an exec, so it may run on until the
    /// container stops: `exec` names it for [`Runtime::exec_running`](super::Runtime::exec_running).
    TimedOut { exec: String },
}

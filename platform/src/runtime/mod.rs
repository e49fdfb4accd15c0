//! The runtime seam: everything the supervisor and the API ask of a container engine, as the
//! [`Runtime`] trait over plain data ([`model`]). The local Docker engine ([`docker`]) is its
//! first implementation, Docker Swarm ([`swarm`]: one deployment revision = one service,
//! instances = its tasks, images pushed to a registry) the second, with no change to planning,
//! the API or the proxy; they are the only modules that know bollard.

pub mod docker;
pub mod firewall;
pub mod images;
pub mod log_text;
pub mod model;
pub mod swarm;

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use time::OffsetDateTime;

pub use model::{
    ExecOutcome, HostResources, InstanceEvent, InstanceInfo, InstanceSpec, LABEL_INSTALLATION,
    NetworkInfo, NetworkSpec, Usage,
};

/// Host name instances use for the platform (mapped to the platform's host by the runtime).
pub const PLATFORM_HOST: &str = "berth-platform";

/// The `extra_hosts` entry mapping [`PLATFORM_HOST`] to the host (Docker's `host-gateway`).
pub(crate) fn platform_host_entry() -> String {
    format!("{PLATFORM_HOST}:host-gateway")
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the Docker engine at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("Docker: {0}")]
    Docker(String),
    #[error("the image archive was rejected by Docker: {0}")]
    Rejected(String),
}

/// The bytes of a `docker save` archive, streamed.
pub type ImageArchive = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A result the runtime delivers later.
pub type Pending<'a, T> = BoxFuture<'a, Result<T, RuntimeError>>;

/// A container engine as the platform uses it. Object-safe (the platform holds an
/// `Arc<dyn Runtime>`), so every method returns a boxed future or stream.
///
/// Conventions every implementation keeps (the supervisor is level-triggered and relies on
/// them): "already exists" on create and "not found" on remove/kill are success; lookups of
/// absent objects are `Ok(None)`; list methods return only objects carrying every given label;
/// nothing is touched that the caller did not name or label.
pub trait Runtime: Send + Sync + Debug + 'static {
    // The host.

    /// CPUs and memory the runtime can give instances (`docker info`; a cluster's sum).
    fn host_resources(&self) -> Pending<'_, HostResources>;

    // Images in and out.

    /// The id (`sha256:…`) of the image `reference` (id, name:tag), or None if absent.
    fn image_id<'a>(&'a self, reference: &'a str) -> Pending<'a, Option<String>>;
    /// The tags (`repo:tag`) naming the image `reference`, or None if absent.
    fn image_tags<'a>(&'a self, reference: &'a str) -> Pending<'a, Option<Vec<String>>>;
    /// The user an image runs as (its config's `User`; empty = root).
    fn image_user<'a>(&'a self, reference: &'a str) -> Pending<'a, String>;
    /// Loads a `docker save` archive. Returns what the engine reports as loaded: `sha256:…`
    /// per untagged image, `name:tag` per tag it set.
    fn load_image(&self, archive: ImageArchive) -> Pending<'_, Vec<String>>;
    /// Tags `image` as `repo:tag` (moving the tag if it points elsewhere), making it usable by
    /// every node that runs instances (a cluster runtime pushes it to its registry).
    fn tag<'a>(&'a self, image: &'a str, repo: &'a str, tag: &'a str) -> Pending<'a, ()>;
    /// Removes a tag (or, given an id, the image). Absent is fine. An image still used
    /// elsewhere (other tags, instances) is only untagged, never forced away.
    fn remove_image<'a>(&'a self, reference: &'a str) -> Pending<'a, ()>;
    /// The tags under `prefix` (an [`images::repository_prefix`]) of images last tagged
    /// before `before`; an image whose tag time is unknown counts as older.
    fn tags_older_than<'a>(
        &'a self,
        prefix: &'a str,
        before: OffsetDateTime,
    ) -> Pending<'a, Vec<String>>;

    // Networks: one per deployment, made before its instances, removed after them.

    /// One network by name, or None.
    fn network<'a>(&'a self, name: &'a str) -> Pending<'a, Option<NetworkInfo>>;
    /// Networks carrying every label of `labels`.
    fn networks<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<NetworkInfo>>;
    /// Creates a network; a name that exists already (a race with ourselves) is returned as is.
    fn create_network<'a>(&'a self, spec: &'a NetworkSpec) -> Pending<'a, NetworkInfo>;
    /// Every subnet of every network the runtime has, whoever made it: a new network must
    /// overlap none of them.
    fn subnets_in_use(&self) -> Pending<'_, Vec<String>>;
    /// Removes a network no desired deployment uses; absent is fine. (On Swarm with any service
    /// still on it: one whose tasks never started is listed by no instance.)
    fn remove_network<'a>(&'a self, name: &'a str) -> Pending<'a, ()>;
    /// Removes a network and every instance attached to it.
    fn remove_network_and_instances<'a>(&'a self, id: &'a str) -> Pending<'a, ()>;
    /// The name's suffix of a network of holders started ahead of deployments (see the local
    /// engine's `holder_pool`), when the runtime keeps one; the supervisor then keeps that
    /// network (`berth-<installation>-<suffix>`) as it keeps a deployment's.
    fn holder_pool(&self) -> Option<&'static str> {
        None
    }
    /// Tops up the holders on the pool network `network` (off the caller: it returns at once).
    fn fill_holder_pool<'a>(&'a self, _network: &'a NetworkInfo) -> Pending<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    // Instances of deployments.

    /// Creates (not starts) an instance; returns its id.
    fn create_instance<'a>(&'a self, spec: &'a InstanceSpec) -> Pending<'a, String>;
    /// Starts an instance; Ok(false) when it is gone, being removed, or could never start and
    /// was removed (its network holder is gone), which no retry mends: the caller replaces it
    /// instead.
    fn start_instance<'a>(&'a self, id: &'a str) -> Pending<'a, bool>;
    /// How long a runtime that restarts exited instances by itself (Swarm) waits before it
    /// restarts the instances of `id`'s revision; the same delay already set changes nothing.
    /// A runtime whose instances only the supervisor starts (the local engine) ignores it.
    fn pace_restarts<'a>(&'a self, id: &'a str, delay: Duration) -> Pending<'a, ()>;
    /// Kills a running instance at once (liveness failure); not running is fine.
    fn kill_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()>;
    /// Removes an instance, running or not; absent is fine.
    fn remove_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()>;
    /// Every instance (running or not) carrying every label of `labels`.
    fn instances<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<InstanceInfo>>;
    /// One instance, or None if it no longer exists.
    fn instance<'a>(&'a self, id: &'a str) -> Pending<'a, Option<InstanceInfo>>;

    // Observing instances.

    /// Logs of an instance (stdout and stderr, with timestamps). `since`/`until` are Unix
    /// seconds (0 = unbounded), `tail` a line count (None = all).
    fn logs<'a>(
        &'a self,
        id: &'a str,
        since: i64,
        until: i64,
        tail: Option<u64>,
    ) -> Pending<'a, String>;
    /// Follows an instance's stdout and stderr (with timestamps) from `tail` lines back, until it
    /// stops or the stream is dropped (the console's live log view).
    fn follow_logs(&self, id: &str, tail: u64) -> BoxStream<'static, Result<Bytes, RuntimeError>>;
    /// Whether instance `id` accepts a TCP connection at `addr`, its address, within `timeout`
    /// (tcpSocket probe). A runtime whose instance address is not the instance itself (the
    /// Swarm runtime's local tunnel, which accepts every connection) must ask further.
    fn tcp_probe<'a>(
        &'a self,
        _id: &'a str,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(tcp_connect(addr, timeout))
    }
    /// Runs `command` in the instance (exec probe) and waits at most `timeout` for it to exit.
    fn exec_command<'a>(
        &'a self,
        id: &'a str,
        command: &'a [String],
        timeout: Duration,
    ) -> Pending<'a, ExecOutcome>;
    /// Whether the command `exec` that [`Runtime::exec_command`] started in instance `id` (and
    /// left running at its timeout) still runs: asked of the engine that runs it. One the
    /// engine no longer knows (its container gone, the engine restarted) does not.
    fn exec_running<'a>(&'a self, id: &'a str, exec: &'a str) -> Pending<'a, bool>;
    /// A usage sample about every second while the instance runs; ends when it stops.
    fn usage(&self, id: &str) -> BoxStream<'static, Result<Usage, RuntimeError>>;
    /// Lifecycle events (exit, OOM kill, removal) of instances carrying `labels`, as they happen.
    fn events(
        &self,
        labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<InstanceEvent, RuntimeError>>;
}

/// A TCP connection to `addr` within `timeout`, closed at once.
pub async fn tcp_connect(addr: std::net::SocketAddr, timeout: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(connected) => connected.map(drop),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

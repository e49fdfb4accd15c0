//! The local Docker engine as a [`Runtime`]: the only module that knows bollard. One instance
//! is one hardened container, a deployment's network a bridge named for the host firewall.
//! The submodules hold the engine calls as inherent methods over plain data; the trait
//! implementation below only boxes them.

mod containers;
mod holder_image;
mod holder_pool;
mod holders;
mod images;
mod networks;
mod stats;

pub(crate) use networks::one_subnet;

use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use time::OffsetDateTime;

use super::{
    ExecOutcome, HostResources, ImageArchive, InstanceEvent, InstanceInfo, InstanceSpec,
    NetworkInfo, NetworkSpec, Pending, Runtime, RuntimeError, Usage,
};

/// Seconds a Docker call may take (image loads of large packages included).
const DOCKER_TIMEOUT_SECS: u64 = 600;

/// The engine answered 404: the image, container, network or service is not there.
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The engine answered 409: the object exists already (a create lost a race, or an earlier
/// attempt made it), or it is in a state that refuses the call (killing a stopped container).
pub(crate) fn is_conflict(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// A container's address on the first of its networks that gives one.
pub(crate) fn first_ip(
    networks: Option<std::collections::HashMap<String, bollard::models::EndpointSettings>>,
) -> Option<std::net::IpAddr> {
    networks
        .unwrap_or_default()
        .into_values()
        .filter_map(|e| e.ip_address)
        .find_map(|ip| ip.parse().ok())
}

/// The engine's filter for objects carrying every label of `labels`.
pub(crate) fn label_filter(
    labels: &[(&str, &str)],
) -> std::collections::HashMap<String, Vec<String>> {
    let mut filters = std::collections::HashMap::new();
    filters.insert(
        "label".to_owned(),
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    );
    filters
}

impl From<bollard::errors::Error> for RuntimeError {
    fn from(err: bollard::errors::Error) -> RuntimeError {
        RuntimeError::Docker(err.to_string())
    }
}

/// A connection to the local Docker engine.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
    /// The network holder image, once imported ([`holders`]).
    holder_image: std::sync::Arc<tokio::sync::OnceCell<String>>,
    /// Holders claimed lately, by id, with the Unix time of the claim ([`holders`]).
    holder_claims: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// Per network, held while its spare holder is made or its holders removed ([`holders`]).
    spare_work: std::sync::Arc<SpareWork>,
    /// Replicas last listed running in a holder that was not: their start stops them first
    /// (`containers::start_instance`), and only theirs, so a first start costs no inspection.
    cut_off: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Whether new replicas get holders; those of replicas made before stay theirs.
    holders: bool,
    /// The holders started ahead of deployments ([`holder_pool`]).
    holder_pool: std::sync::Arc<std::sync::Mutex<holder_pool::PoolState>>,
    /// With holders off: whether the spares an earlier start made were removed ([`holders`]).
    spares_dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type SpareWork =
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>;

impl DockerEngine {
    /// Connects over the unix socket and negotiates the API version with the engine.
    pub async fn connect(socket: &Path) -> Result<DockerEngine, RuntimeError> {
        Self::connect_with_timeout(socket, DOCKER_TIMEOUT_SECS).await
    }

    /// As [`DockerEngine::connect`], each call's answer (its head: streams then run on) due
    /// within `timeout_secs`.
    pub async fn connect_with_timeout(
        socket: &Path,
        timeout_secs: u64,
    ) -> Result<DockerEngine, RuntimeError> {
        let display = socket.display().to_string();
        let fail = |message: String| RuntimeError::Connect {
            socket: display.clone(),
            message,
        };
        let docker =
            Docker::connect_with_unix(&display, timeout_secs, bollard::API_DEFAULT_VERSION)
                .map_err(|e| fail(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(DockerEngine {
            docker,
            holder_image: Default::default(),
            holder_claims: Default::default(),
            spare_work: Default::default(),
            cut_off: Default::default(),
            holders: true,
            holder_pool: Default::default(),
            spares_dropped: Default::default(),
        })
    }

    /// New replicas join their network directly, without a holder ([`holders`]); a replica
    /// already in one runs on in it until it is replaced.
    pub fn without_holders(self) -> DockerEngine {
        DockerEngine {
            holders: false,
            ..self
        }
    }
}

// Inherent methods take precedence in method resolution: every `self.x(…)` below calls the
// engine code in the submodules, not this impl again.
impl Runtime for DockerEngine {
    fn host_resources(&self) -> Pending<'_, HostResources> {
        Box::pin(self.host_resources())
    }

    fn image_id<'a>(&'a self, reference: &'a str) -> Pending<'a, Option<String>> {
        Box::pin(self.image_id(reference))
    }

    fn image_tags<'a>(&'a self, reference: &'a str) -> Pending<'a, Option<Vec<String>>> {
        Box::pin(self.image_tags(reference))
    }

    fn image_user<'a>(&'a self, reference: &'a str) -> Pending<'a, String> {
        Box::pin(self.image_user(reference))
    }

    fn load_image(&self, archive: ImageArchive) -> Pending<'_, Vec<String>> {
        Box::pin(self.load_image(archive))
    }

    fn tag<'a>(&'a self, image: &'a str, repo: &'a str, tag: &'a str) -> Pending<'a, ()> {
        Box::pin(self.tag(image, repo, tag))
    }

    fn remove_image<'a>(&'a self, reference: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_image(reference))
    }

    fn tags_older_than<'a>(
        &'a self,
        prefix: &'a str,
        before: OffsetDateTime,
    ) -> Pending<'a, Vec<String>> {
        Box::pin(self.tags_older_than(prefix, before))
    }

    fn network<'a>(&'a self, name: &'a str) -> Pending<'a, Option<NetworkInfo>> {
        Box::pin(self.network(name))
    }

    /// With holders off, also removes the spares an earlier start made, once.
    fn networks<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<NetworkInfo>> {
        Box::pin(async move {
            self.drop_spares_once(labels).await;
            self.networks(labels).await
        })
    }

    fn create_network<'a>(&'a self, spec: &'a NetworkSpec) -> Pending<'a, NetworkInfo> {
        Box::pin(self.create_network(spec))
    }

    fn subnets_in_use(&self) -> Pending<'_, Vec<String>> {
        Box::pin(self.subnets_in_use())
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_network(name))
    }

    fn remove_network_and_instances<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_network_and_instances(id))
    }

    fn holder_pool(&self) -> Option<&'static str> {
        self.pools_holders().then_some(holder_pool::POOL_SUFFIX)
    }

    fn fill_holder_pool<'a>(&'a self, network: &'a NetworkInfo) -> Pending<'a, ()> {
        self.fill_holder_pool(network);
        Box::pin(async { Ok(()) })
    }

    fn create_instance<'a>(&'a self, spec: &'a InstanceSpec) -> Pending<'a, String> {
        Box::pin(self.create_instance(spec))
    }

    fn start_instance<'a>(&'a self, id: &'a str) -> Pending<'a, bool> {
        Box::pin(self.start_instance(id))
    }

    /// The local engine restarts nothing by itself: the supervisor starts a crashed
    /// container after its own back-off.
    fn pace_restarts<'a>(&'a self, _id: &'a str, _delay: Duration) -> Pending<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn kill_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(self.kill_instance(id))
    }

    fn remove_instance<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(self.remove_instance(id))
    }

    fn instances<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Pending<'a, Vec<InstanceInfo>> {
        Box::pin(self.instances(labels))
    }

    fn instance<'a>(&'a self, id: &'a str) -> Pending<'a, Option<InstanceInfo>> {
        Box::pin(self.instance(id))
    }

    fn logs<'a>(
        &'a self,
        id: &'a str,
        since: i64,
        until: i64,
        tail: Option<u64>,
    ) -> Pending<'a, String> {
        Box::pin(self.logs(id, since, until, tail))
    }

    fn exec_command<'a>(
        &'a self,
        id: &'a str,
        command: &'a [String],
        timeout: Duration,
    ) -> Pending<'a, ExecOutcome> {
        Box::pin(self.exec_command(id, command, timeout))
    }

    fn exec_running<'a>(&'a self, _id: &'a str, exec: &'a str) -> Pending<'a, bool> {
        Box::pin(self.exec_running(exec))
    }

    fn usage(&self, id: &str) -> BoxStream<'static, Result<Usage, RuntimeError>> {
        self.usage(id).boxed()
    }

    fn follow_logs(
        &self,
        id: &str,
        tail: u64,
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>> {
        self.follow_logs(id, tail).boxed()
    }

    fn events(
        &self,
        labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<InstanceEvent, RuntimeError>> {
        self.events(labels).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that accepts and never answers (a node cut off behind a forwarded socket):
    /// connecting fails at the timeout given instead of waiting for the local engine's.
    #[tokio::test]
    async fn an_engine_that_never_answers_fails_at_the_timeout_given() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(4).collect();
            drop(held);
        });
        let error = DockerEngine::connect_with_timeout(&socket, 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("silent.sock"), "{error}");
    }

    /// Serves one connection of an engine that says its version and then answers nothing.
    fn answer_only_the_version(mut stream: std::os::unix::net::UnixStream) {
        use std::io::{Read, Write};
        let mut head = Vec::new();
        let mut byte = [0u8];
        while stream.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
            if !head.ends_with(b"\r\n\r\n") {
                continue;
            }
            if head.starts_with(b"GET ") && head.windows(8).any(|w| w == b"/version") {
                let body = r#"{"ApiVersion":"1.41","Version":"20.10.0"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            head.clear();
        }
    }

    /// An engine that never answers an exec's creation (overloaded, or a node cut off): the
    /// probe command fails at the probe's timeout, not the client's ten minutes.
    #[tokio::test]
    async fn an_exec_the_engine_never_creates_fails_at_the_probe_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("stuck.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8) {
                let stream = stream.unwrap();
                std::thread::spawn(move || answer_only_the_version(stream));
            }
        });
        let engine = DockerEngine::connect(&socket).await.unwrap();
        let command = ["true".to_owned()];
        // A bound on the test, so a regression fails instead of hanging for ten minutes.
        let outcome = tokio::time::timeout(
            Duration::from_secs(120),
            engine.exec_command("replica", &command, Duration::from_millis(300)),
        )
        .await
        .expect("the probe command ended");
        let error = outcome.unwrap_err().to_string();
        assert!(
            error.contains("did not create the probe command within its timeout"),
            "{error}"
        );
    }
}

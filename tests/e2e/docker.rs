//! The Docker engine as the scenarios use it: a reachability check, container helpers and a cleanup guard.
//!
//! Everything a test creates carries the label `berth.test=1` and a run id in its name, because the engine is
//! shared with other users of the machine; the guard removes exactly what was registered with it.

use std::ffi::OsStr;
use std::process::Command;

use crate::command::{run, run_ok};

/// Label put on every Docker object the suite creates.
pub const TEST_LABEL: &str = "berth.test=1";

/// A Docker engine the CLI can reach.
#[derive(Debug, Clone, Copy)]
pub struct Docker;

impl Docker {
    /// Checks that the engine answers. Panics otherwise: the suite must fail, not skip, without Docker.
    pub fn require() -> Docker {
        let output =
            run(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]));
        assert!(
            output.status.success(),
            "Docker is required by the e2e suite but the engine is not reachable (`docker version` failed: {}). \
             Start the daemon or point DOCKER_HOST at it.",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Docker
    }

    /// A `docker` CLI command.
    pub fn command(self) -> Command {
        Command::new("docker")
    }

    /// Starts a detached container labelled for the suite and registers it with `cleanup` before returning.
    /// `args` are the `docker run` options plus the image and its arguments.
    pub fn run_detached<I>(self, cleanup: &mut DockerCleanup, name: &str, args: I) -> String
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let finished = run_ok(
            self.command()
                .args(["run", "--detach", "--label", TEST_LABEL, "--name", name])
                .args(args),
        );
        let id = finished.stdout.trim().to_string();
        cleanup.container(&id);
        id
    }

    /// The loopback port Docker published for `container_port`/tcp of `container`.
    pub fn published_port(self, container: &str, container_port: u16) -> u16 {
        let finished =
            run_ok(
                self.command()
                    .args(["port", container, &format!("{container_port}/tcp")]),
            );
        let first = finished.stdout.lines().next().unwrap_or_default();
        first
            .rsplit_once(':')
            .and_then(|(_, port)| port.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "`docker port {container} {container_port}` printed {first:?}, not host:port"
                )
            })
    }

    /// Stops `container` the way `docker stop` does (SIGTERM, then SIGKILL after `grace_seconds`) and returns
    /// its exit code.
    pub fn stop(self, container: &str, grace_seconds: u32) -> i64 {
        run_ok(
            self.command()
                .args(["stop", "--time", &grace_seconds.to_string(), container]),
        );
        let finished =
            run_ok(
                self.command()
                    .args(["inspect", "--format", "{{.State.ExitCode}}", container]),
            );
        finished.stdout.trim().parse().unwrap_or_else(|_| {
            panic!(
                "docker inspect {container} printed exit code {:?}",
                finished.stdout
            )
        })
    }

    /// The container's log output, for failure messages.
    pub fn logs(self, container: &str) -> String {
        let output = run(self.command().args(["logs", container]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Number of layers in an image as the engine reports them.
    pub fn image_layer_count(self, image: &str) -> usize {
        let finished = run_ok(self.command().args([
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            image,
        ]));
        finished.stdout.trim().parse().unwrap_or_else(|_| {
            panic!("docker image inspect {image} printed {:?}", finished.stdout)
        })
    }
}

/// Removes the registered containers, then the registered images, when dropped (also when a test panics).
#[derive(Debug, Default)]
pub struct DockerCleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl DockerCleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a container (id or name) for forced removal.
    pub fn container(&mut self, id: &str) {
        self.containers.push(id.to_string());
    }

    /// Registers an image tag for removal; register before building so a failed build is cleaned up too.
    pub fn image(&mut self, tag: &str) {
        self.images.push(tag.to_string());
    }
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        // Containers first: an image still used by a container cannot be removed.
        for (kind, ids) in [("rm", &self.containers), ("rmi", &self.images)] {
            if ids.is_empty() {
                continue;
            }
            let output = Command::new("docker")
                .arg(kind)
                .arg("--force")
                .args(ids.iter())
                .output();
            match output {
                Ok(output) if output.status.success() => {}
                Ok(output) => {
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    // "No such ..." means the goal is met: it never got created or is already gone.
                    if !stderr.lines().all(|line| line.contains("No such")) {
                        eprintln!(
                            "e2e cleanup: docker {kind} {ids:?} failed: {}",
                            stderr.trim()
                        );
                    }
                }
                Err(err) => eprintln!("e2e cleanup: cannot run docker {kind}: {err}"),
            }
        }
    }
}

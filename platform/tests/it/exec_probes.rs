//! Exec probes against the real engine: a probe command that hangs outlives its attempt (Docker
//! cannot kill an exec), and Berth starts no other while it runs, so the container holds one
//! such process, not one per period.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{create_tenant, unique};
use crate::supervisor::{
    HelloImage, HelloLease, deploy, docker, docker_lines, installation, manifest,
    remove_image_when_unused, start_server, status, subscribe, wait_for,
};

/// The exec probe's period: Berth's minimum for exec probes.
const PERIOD: Duration = Duration::from_secs(5);

/// An image `FROM scratch` with the framing binary (built next to hello's by `build.sh`), whose
/// `framing hang` never exits.
struct HangImage {
    tag: String,
    image: HelloImage,
}

impl HangImage {
    fn build() -> HangImage {
        let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
        let target_dir = berth
            .parent()
            .and_then(Path::parent)
            .expect("target directory");
        let binary = target_dir.join("x86_64-unknown-linux-gnu/release/framing");
        assert!(binary.is_file(), "{} missing", binary.display());
        let context = tempfile::tempdir().unwrap();
        std::fs::copy(&binary, context.path().join("framing")).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY framing /framing\nEXPOSE 80\nENTRYPOINT [\"/framing\"]\n",
        )
        .unwrap();
        let tag = format!("berth-it-hang-{}:1.0.0", unique(""));
        let built = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "--label", "berth.test=1", "-t", &tag])
            .arg(context.path())
            .output()
            .expect("docker build");
        assert!(
            built.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let archive_path = context.path().join("image.tar");
        docker(&["save", "-o", archive_path.to_str().unwrap(), &tag]);
        let archive = std::fs::read(&archive_path).unwrap();
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
        HangImage {
            tag,
            image: HelloImage { id, archive },
        }
    }
}

impl Drop for HangImage {
    fn drop(&mut self) {
        remove_image_when_unused(&self.tag);
    }
}

/// The `framing hang` processes in `container` (`docker top`).
fn hanging(container: &str) -> usize {
    docker_lines(&["top", container])
        .iter()
        .filter(|l| l.contains("framing hang"))
        .count()
}

#[test]
fn a_hanging_exec_probe_leaves_one_process_not_one_per_period() {
    let _hello = HelloLease::acquire(); // builds the framing binary along with hello
    let image = HangImage::build();
    let (cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let probes = json!({"readinessProbe": {
        "exec": {"command": ["/framing", "hang"]},
        "periodSeconds": PERIOD.as_secs(), "timeoutSeconds": 1, "failureThreshold": 3,
    }});
    let app = deploy(
        &server,
        &owner,
        &image.image,
        &manifest("MULTI_TENANT", 1, probes),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let label = format!("label=berth.installation={}", installation(&cleanup));
    let container = wait_for(Duration::from_secs(60), "a probe command hanging", || {
        let ids = docker_lines(&["ps", "-q", "--no-trunc", "--filter", &label]);
        let id = ids.first()?.clone();
        (hanging(&id) >= 1).then_some(id)
    });
    // Five periods more: one process all along, where each attempt started one before.
    let end = Instant::now() + 5 * PERIOD;
    while Instant::now() < end {
        let count = hanging(&container);
        assert_eq!(count, 1, "`framing hang` processes in the container");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Still the same run (a restart would have ended its processes), and the attempts say why
    // they fail.
    let ids = docker_lines(&["ps", "-q", "--no-trunc", "--filter", &label]);
    assert_eq!(ids, vec![container.clone()]);
    let s = status(&server, &owner, &app);
    let failure = s["deployments"][0]["lastFailure"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        failure.contains("Readiness probe failed: the last probe command (started ")
            && failure.contains("s ago) is still running"),
        "{s}"
    );
}

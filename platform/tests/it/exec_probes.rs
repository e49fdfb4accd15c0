//! Exec probes against the real engine: a probe command that hangs outlives its attempt (Docker
//! cannot kill an exec), and Berth starts no other while it runs, so the container holds one
//! such process, not one per period.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::create_tenant;
use crate::proxy_framing::FramingImage;
use crate::supervisor::{
    HelloLease, deploy, docker_lines, installation, manifest, start_server, status, subscribe,
    wait_for,
};

/// The exec probe's period: Berth's minimum for exec probes.
const PERIOD: Duration = Duration::from_secs(5);

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
    // `framing hang` never exits.
    let image = FramingImage::build();
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
    // The replica's running container (its network holder carries no application label).
    let running = || {
        docker_lines(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &label,
            "--filter",
            "label=berth.app",
        ])
    };
    let container = wait_for(Duration::from_secs(60), "a probe command hanging", || {
        let ids = running();
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
    assert_eq!(running(), vec![container.clone()]);
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

//! Upgrades on Swarm, on a real 3-node lab: a new version is a new service that takes the
//! traffic once ready (an upstream at every status read), and a version that never gets
//! ready is rolled back while the old service keeps serving.

use std::time::Duration;

use serde_json::{Value, json};

use super::lab::{Lab, serve_on};
use crate::fixture::create_tenant;
use crate::supervisor::{
    deploy, instances, manifest, readiness_on_health, status, subscribe, upload_version, wait_for,
    wait_ready, with_version,
};

const DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn swarm_upgrades_without_downtime_and_rolls_back_an_unready_version() {
    if !super::lab::can_run() {
        return;
    }
    let lab = Lab::up(3);
    let (hello, _cleanup, server) = serve_on(
        &lab,
        &[
            // Long enough for a new service's image pull on a busy machine; the unready version
            // is rolled back after it.
            "--rollout-timeout",
            "30",
        ],
    );
    let owner = create_tenant(&server, "swr");
    let good = manifest("MULTI_TENANT", 2, readiness_on_health());
    let app = deploy(&server, &owner, &hello, &good);
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);

    let serving = |s: &Value| {
        let ups = s["deployments"][0]["upstreams"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(ups >= 1, "no upstream during a rollout: {s}");
    };
    upload_version(&server, &owner, &app, &hello, &with_version(&good, "2.0.0"));
    let upgraded = wait_for(DEADLINE, "version 2.0.0 alone serving", || {
        let s = status(&server, &owner, &app);
        serving(&s);
        let all = instances(&s);
        let done = all.len() == 2
            && all
                .iter()
                .all(|i| i["version"] == "2.0.0" && i["ready"] == true);
        done.then_some(s)
    });
    assert_eq!(upgraded["activeVersion"], "2.0.0");

    let never_ready = manifest(
        "MULTI_TENANT",
        2,
        json!({"readinessProbe": {"httpGet": {"path": "/no-such-path", "port": 80}, "periodSeconds": 1, "failureThreshold": 1}}),
    );
    upload_version(
        &server,
        &owner,
        &app,
        &hello,
        &with_version(&never_ready, "3.0.0"),
    );
    let rolled_back = wait_for(DEADLINE, "rollback to 2.0.0", || {
        let s = status(&server, &owner, &app);
        serving(&s);
        let all = instances(&s);
        let done = s["rolloutMessage"].is_string()
            && s["activeVersion"] == "2.0.0"
            && all.len() == 2
            && all.iter().all(|i| i["version"] == "2.0.0");
        done.then_some(s)
    });
    let message = rolled_back["rolloutMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("3.0.0") && message.contains("rolled back to 2.0.0"),
        "{rolled_back}"
    );
    // The failed version's service is gone from the swarm: one deployment service is left.
    wait_for(DEADLINE, "the 3.0.0 service removed", || {
        let names = lab.docker(
            1,
            &[
                "service",
                "ls",
                "--filter",
                &format!("label=berth.app={app}"),
                "--format",
                "{{.Name}}",
            ],
        );
        let deployments = names.lines().filter(|n| !n.ends_with("-relay")).count();
        (deployments == 1).then_some(())
    });
}

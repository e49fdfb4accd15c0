//! What only a node's own engine gives, through `--swarm-node-engines` on a real 3-node lab:
//! usage samples (the memory the status shows, the autoscaler's input), a live log stream,
//! the OOM-kill record of a task Swarm restarted, CPU autoscaling by the service's replica
//! count (up, and down without a failed request), the kill of a task that fails its liveness
//! probe (recorded as a liveness failure), and exec probes (one whose command hangs leaves one
//! process, not one per period).

use std::time::Duration;

use serde_json::json;

use super::lab::{Lab, serve_on};
use super::watch::{LogFollower, ProxyLoad};
use crate::fixture::{app_name, create_tenant};
use crate::operate::Load;
use crate::supervisor::container_post;
use crate::supervisor::{
    deploy, instances, manifest, readiness_on_health, status, subscribe, wait_for, wait_ready,
};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn swarm_node_engines_give_usage_samples_oom_records_autoscaling_and_liveness_kills() {
    if !super::lab::can_run() {
        return;
    }
    let lab = Lab::up(3);
    let engines = lab.node_engines();
    let (hello, _cleanup, server) = serve_on(
        &lab,
        &[
            "--swarm-node-engines",
            &engines,
            "--autoscale-period",
            "1",
            "--autoscale-scale-down-window",
            "3",
            "--autoscale-max-replicas",
            "2",
            "--drain-period",
            "1",
        ],
    );
    let owner = create_tenant(&server, "swe");
    let app = deploy(
        &server,
        &owner,
        &hello,
        &manifest("MULTI_TENANT", 1, json!({})),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let name = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // Usage samples come from the task's node: the status shows the memory in use.
    wait_for(DEADLINE, "a memory sample from the node's engine", || {
        let s = status(&server, &owner, &app);
        instances(&s)[0]["memory"]["usedBytes"]
            .as_u64()
            .filter(|b| *b > 0)
    });

    // The live log is followed on the task's node: a line the replica writes after the stream
    // opened arrives on it (the manager alone could only give the tail once).
    let instance = instances(&status(&server, &owner, &app))[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let follower = LogFollower::open(&server, &owner, &app, &instance, 5);
    follower.expect("hello: listening", DEADLINE);
    let _ = server
        .req("POST", &format!("/service/{name}/alloc?mb=1"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);
    follower.expect("hello: allocated 1 MiB", DEADLINE);
    drop(follower);

    // 128 MiB against a 64M limit: the kernel kills the task's process; Swarm restarts the
    // task, and Berth records an OOM kill (the node's engine has the flag).
    let _ = server
        .req("POST", &format!("/service/{name}/alloc?mb=128"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send();
    let restarted = wait_for(DEADLINE, "restart after the OOM kill", || {
        let s = status(&server, &owner, &app);
        let i = instances(&s).into_iter().next()?;
        (i["restarts"].as_u64()? >= 1 && i["state"] == "RUNNING").then_some(s)
    });
    let dep = &restarted["deployments"][0];
    assert!(
        dep["lastFailure"]
            .as_str()
            .is_some_and(|f| f.starts_with("OOMKilled")),
        "{restarted}"
    );
    assert!(dep["oomKills"].as_u64() >= Some(1), "{dep}");
    let record = wait_for(DEADLINE, "the OOM-kill audit record", || {
        let page = server
            .req(
                "GET",
                &format!("/audit/auditRecords?application={app}&type=OomKill"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        page["auditRecords"].as_array()?.first().cloned()
    });
    assert_eq!(
        record["details"]["memoryLimitBytes"], 64_000_000,
        "{record}"
    );
    assert!(
        record["details"]["memoryPeakBytes"].as_u64() > Some(0),
        "{record}"
    );

    // CPU autoscaling: load on the one replica (its tunnel address) saturates its 0.1 CPU;
    // the autoscaler, fed by the node's stats, scales the service to 2 replicas, and back to 1
    // once the load stops.
    let mut probes = readiness_on_health();
    probes["scale"] = json!("AUTO");
    probes["resources"] = json!({"cpu": "0.1", "memory": "64M"});
    let auto = deploy(
        &server,
        &owner,
        &hello,
        &manifest("MULTI_TENANT", 1, probes),
    );
    subscribe(&server, &owner.id, &auto).expect(201);
    let ready = wait_ready(&server, &owner, &auto, 1);
    let ip = ready["deployments"][0]["instances"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let load = Load::start(&ip);
    let mut most = 0;
    let scaled = wait_for(DEADLINE, "a second ready replica under load", || {
        let d = status(&server, &owner, &auto)["deployments"][0].clone();
        most = most.max(d["desired"].as_u64().unwrap_or(0));
        let upstreams = d["upstreams"].as_array().map_or(0, Vec::len);
        (d["active"] == 2 && upstreams == 2).then_some(d)
    });
    let nodes: std::collections::HashSet<&str> = scaled["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["node"].as_str())
        .collect();
    eprintln!("swarm autoscale: 2 replicas on {nodes:?}");
    drop(load);
    // Scaling down, under a trickle of requests through the proxy: the drained replica leaves
    // routing before it goes, the one kept serves on, and no request fails.
    let auto_name = app_name(&server, &owner, &auto);
    let trickle = ProxyLoad::start(&server, &owner, &auto_name);
    let down = wait_for(DEADLINE, "back to one replica without load", || {
        let d = status(&server, &owner, &auto)["deployments"][0].clone();
        most = most.max(d["desired"].as_u64().unwrap_or(0));
        let count = d["instances"].as_array().map_or(0, Vec::len);
        (d["desired"] == 1 && count == 1 && d["active"] == 1).then_some(d)
    });
    assert_eq!(most, 2, "never above the maximum");
    let kept = down["instances"][0]["name"].as_str().unwrap().to_owned();
    // Settled: Swarm runs one task, Berth routes to the kept replica only, and keeps serving.
    let settled = wait_for(DEADLINE, "the service settled at one task", || {
        let d = status(&server, &owner, &auto)["deployments"][0].clone();
        let services = lab.docker(
            1,
            &[
                "service",
                "ls",
                "--filter",
                &format!("label=berth.app={auto}"),
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
        );
        let tasks: Vec<&str> = services
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| !name.ends_with("-relay"))
            .map(|(_, replicas)| replicas)
            .collect();
        (tasks == ["1/1"] && d["upstreams"] == json!([kept]) && d["active"] == 1).then_some(d)
    });
    // And it keeps serving once settled.
    let at = trickle.answered();
    wait_for(DEADLINE, "10 answers after settling", || {
        (trickle.answered() >= at + 10).then_some(())
    });
    let answers = trickle.finish();
    let failed = answers.iter().filter(|s| **s != 200).count();
    eprintln!(
        "swarm autoscale: scale-down under load: {failed} failed of {} requests",
        answers.len()
    );
    assert_eq!(failed, 0, "requests failed while scaling down: {answers:?}");
    assert_eq!(
        settled["instances"].as_array().map(Vec::len),
        Some(1),
        "{settled}"
    );

    // Liveness: a task whose liveness probe keeps failing is killed on its node's engine;
    // Swarm starts a new one.
    let probes = json!({
        "readinessProbe": {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3},
    });
    let live = deploy(
        &server,
        &owner,
        &hello,
        &manifest("MULTI_TENANT", 1, probes),
    );
    subscribe(&server, &owner.id, &live).expect(201);
    let ready = wait_ready(&server, &owner, &live, 1);
    let ip = instances(&ready)[0]["ip"].as_str().unwrap().to_owned();
    container_post(&ip, "/health/fail");
    let restarted = wait_for(
        DEADLINE,
        "the failing task killed, restarted and ready",
        || {
            let s = status(&server, &owner, &live);
            let i = instances(&s).into_iter().next()?;
            (i["restarts"].as_u64()? >= 1 && i["ready"] == true).then_some(s)
        },
    );
    // Killed (SIGKILL, 137): the process itself never exits when its health fails, so only the
    // node engine's kill restarts it; the exit is recorded as the liveness failure it was, as
    // on the local engine, and counted once.
    assert_liveness_restart(&server, &owner, &live, &restarted);

    // Exec probes run on the task's node: `/hello check /health` (the FROM-scratch image's own
    // probe command) makes the replica ready, and once /health fails, its liveness exec fails
    // and the task is killed and restarted the same way.
    let check = json!({"exec": {"command": ["/hello", "check", "/health"]}, "periodSeconds": 1, "timeoutSeconds": 2});
    let mut readiness = check.clone();
    readiness["failureThreshold"] = json!(1);
    let mut liveness = check;
    liveness["failureThreshold"] = json!(3);
    let exec = deploy(
        &server,
        &owner,
        &hello,
        &manifest(
            "MULTI_TENANT",
            1,
            json!({"readinessProbe": readiness, "livenessProbe": liveness}),
        ),
    );
    subscribe(&server, &owner.id, &exec).expect(201);
    let ready = wait_ready(&server, &owner, &exec, 1);
    let ip = instances(&ready)[0]["ip"].as_str().unwrap().to_owned();
    container_post(&ip, "/health/fail");
    let restarted = wait_for(
        DEADLINE,
        "the task failing its exec probe killed, restarted and ready",
        || {
            let s = status(&server, &owner, &exec);
            let i = instances(&s).into_iter().next()?;
            (i["restarts"].as_u64()? >= 1 && i["ready"] == true).then_some(s)
        },
    );
    assert_liveness_restart(&server, &owner, &exec, &restarted);
    let failure = restarted["deployments"][0]["lastFailure"]
        .as_str()
        .unwrap_or_default();
    // The liveness reason names the command.
    assert!(
        failure.contains("/hello"),
        "the exec probe's command: {restarted}"
    );

    // An exec probe whose command hangs outlives its attempt (no engine can kill an exec): on
    // the task's node too, Berth starts no other while it runs (asking that node's engine), so
    // the container holds one such process, not one per period.
    let _lease = crate::supervisor::HelloLease::acquire(); // builds the framing binary
    let framing = crate::proxy_framing::FramingImage::build();
    let period = Duration::from_secs(5);
    let probes = json!({"readinessProbe": {
        "exec": {"command": ["/framing", "hang"]},
        "periodSeconds": period.as_secs(), "timeoutSeconds": 1, "failureThreshold": 3,
    }});
    let hangs = deploy(
        &server,
        &owner,
        &framing.image,
        &manifest("MULTI_TENANT", 1, probes),
    );
    subscribe(&server, &owner.id, &hangs).expect(201);
    let label = format!("label=berth.app={hangs}");
    let hanging = |node: u32, container: &str| {
        lab.docker(node, &["top", container])
            .lines()
            .filter(|l| l.contains("framing hang"))
            .count()
    };
    let (node, container) = wait_for(
        DEADLINE,
        "a probe command hanging on the task's node",
        || {
            (1..=3).find_map(|k| {
                let ids = lab.docker(k, &["ps", "-q", "--no-trunc", "--filter", &label]);
                let id = ids.lines().next()?.to_owned();
                (hanging(k, &id) >= 1).then_some((k, id))
            })
        },
    );
    let end = std::time::Instant::now() + 5 * period;
    while std::time::Instant::now() < end {
        assert_eq!(
            hanging(node, &container),
            1,
            "`framing hang` processes in the task's container on node {node}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let s = status(&server, &owner, &hangs);
    let failure = s["deployments"][0]["lastFailure"]
        .as_str()
        .unwrap_or_default();
    assert!(
        failure.contains("is still running"),
        "the probe says why it fails: {s}"
    );
}

/// One restart after a liveness kill, whose reason (status and audit record) is the probe's.
fn assert_liveness_restart(
    server: &crate::fixture::Server,
    owner: &crate::fixture::Tenant,
    app: &str,
    restarted: &serde_json::Value,
) {
    let dep = &restarted["deployments"][0];
    let failure = dep["lastFailure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("Liveness probe failed"),
        "the kill keeps the probe's reason: {restarted}"
    );
    assert_eq!(dep["restarts"], 1, "one kill, one restart: {restarted}");
    let record = wait_for(DEADLINE, "the exit's audit record", || {
        let page = server
            .req(
                "GET",
                &format!("/audit/auditRecords?application={app}&type=ContainerExit"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        let records = page["auditRecords"].as_array()?.clone();
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(record.len(), 1, "one exit recorded: {record:?}");
    assert_eq!(record[0]["details"]["exitCode"], 137, "{record:?}");
    assert!(
        record[0]["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Liveness probe failed")),
        "{record:?}"
    );
}

//! What the platform holds for objects that come and go: a container removed by hand is
//! replaced at once (never retried as a start), a deleted application leaves no
//! Prometheus series behind, and the access log writes only the lines the operator chose
//! (`access_log`), so log volume does not grow with the request rate unless asked to. A Berth
//! restart keeps the autoscaler's scale-down window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Options, Server, Tenant, app_name, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, docker, instances, manifest, plain_agent, readiness_on_health,
    start_server, start_server_with, status, subscribe, wait_for, wait_ready,
};

const DEADLINE: Duration = Duration::from_secs(90);

fn audit(server: &Server, owner: &Tenant, query: &str) -> Vec<Value> {
    server
        .req("GET", &format!("/audit/auditRecords?{query}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["auditRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `/metrics` sample lines that carry `label="value"`.
fn series_with(server: &Server, label: &str, value: &str) -> Vec<String> {
    let needle = format!("{label}=\"{value}\"");
    server
        .admin_get("/metrics")
        .expect(200)
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_container_removed_by_hand_is_replaced_without_a_failed_start() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let mut current = wait_ready(&server, &owner, &app, 1);
    // Several removals: each is a race between Docker finishing the removal and the pass
    // that its `die` event triggers.
    for round in 0..3 {
        let old = instances(&current)[0]["name"].as_str().unwrap().to_owned();
        docker(&["rm", "-f", &old]);
        current = wait_for(DEADLINE, &format!("replacement {round} of {old}"), || {
            let s = status(&server, &owner, &app);
            let all = instances(&s);
            (all.len() == 1 && all[0]["name"] != old.as_str() && all[0]["ready"] == true)
                .then_some(s)
        });
    }
    let records = audit(&server, &owner, &format!("application={app}&pageSize=100"));
    // Docker's refusal reads "status code 409"; a bare "409" also matches image digests.
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["type"] == "ContainerStartFailure"
                || r["text"].as_str().unwrap_or("").contains("status code 409")
        })
        .collect();
    assert!(failed.is_empty(), "no failed start recorded: {failed:?}");
}

#[test]
fn a_deleted_application_leaves_no_metrics_series() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("PER_TENANT", 1, readiness_on_health()),
    );
    let name = app_name(&server, &owner, &app);
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let instance = instances(&ready)[0]["name"].as_str().unwrap().to_owned();
    server
        .req("GET", &format!("/service/{name}/hello"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);
    // Every kind of series exists while the application does: proxy, deployment, instance.
    let before = series_with(&server, "application", &name);
    for metric in [
        "berth_proxy_requests_total",
        "berth_proxy_request_duration_seconds",
        "berth_deployment_replicas_desired",
        "berth_instance_memory_bytes",
    ] {
        assert!(
            before.iter().any(|l| l.starts_with(metric)),
            "{metric} for {name}: {before:?}"
        );
    }
    server
        .req("DELETE", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(204);
    wait_for(
        DEADLINE,
        "the deleted application's containers gone",
        || {
            docker(&["ps", "-aq", "--filter", &format!("name={instance}")])
                .trim()
                .is_empty()
                .then_some(())
        },
    );
    // The supervisor's next pass publishes what exists; until then a series may linger.
    wait_for(DEADLINE, "no series of the deleted application", || {
        let left = series_with(&server, "application", &name);
        let by_instance = series_with(&server, "instance", &instance);
        (left.is_empty() && by_instance.is_empty()).then_some(())
    });
    // Nor does the supervisor keep anything for it (the only application there was).
    wait_for(DEADLINE, "empty supervisor state", || {
        let body = server.admin_get("/metrics").expect(200).body;
        let sizes: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("berth_supervisor_entries{"))
            .collect();
        (sizes.len() >= 10 && sizes.iter().all(|l| l.ends_with(" 0"))).then_some(())
    });
}

/// Access lines in the server's log with `status=<status>`.
fn access_lines(log: &str, status: u16) -> usize {
    log.lines()
        .filter(|l| l.contains("berth::access") && l.contains(&format!("status={status}")))
        .count()
}

#[test]
fn the_access_log_setting_chooses_which_requests_get_a_line() {
    const OK_REQUESTS: usize = 9;
    let image = HelloLease::acquire();
    // (setting, access lines of the 200s, of the one 504)
    let cases = [
        ("all", 9, 1),
        ("sample:3", 3, 1),
        ("errors", 0, 1),
        ("off", 0, 0),
    ];
    for (setting, ok_lines, error_lines) in cases {
        let log = tempfile::NamedTempFile::new().unwrap();
        let (_cleanup, server) = start_server_with(
            &["--proxy-timeout", "1", "--access-log", setting],
            Options {
                log_file: Some(log.path().to_owned()),
                env: vec![("BERTH_LOG".into(), "warn,berth::access=info".into())],
                ..Options::default()
            },
        );
        let owner = create_tenant(&server, "owner");
        let app = deploy(
            &server,
            &owner,
            &image.0,
            &manifest("MULTI_TENANT", 1, readiness_on_health()),
        );
        let name = app_name(&server, &owner, &app);
        subscribe(&server, &owner.id, &app).expect(201);
        wait_ready(&server, &owner, &app, 1);
        let get = |path: &str, status: u16| {
            server
                .req("GET", &format!("/service/{name}{path}"))
                .basic(&owner.admin_login, &owner.admin_password)
                .send()
                .expect(status)
        };
        // Proxied requests are numbered from 1: with sample:3 the 3rd, 6th and 9th are written.
        for _ in 0..OK_REQUESTS {
            get("/hello", 200);
        }
        // Answers after the proxy timeout: a 504, which every setting but `off` writes.
        let failed = get("/sleep?ms=3000", 504);
        let id = failed.header("x-request-id").unwrap().to_owned();
        // Its warn line follows every earlier access line (one writer, in order).
        let text = wait_for(DEADLINE, &format!("{setting}: the 504's log lines"), || {
            let text = std::fs::read_to_string(log.path()).unwrap();
            (text.contains(&format!("request_id={id}")) && access_lines(&text, 504) == error_lines)
                .then_some(text)
        });
        assert_eq!(access_lines(&text, 200), ok_lines, "{setting}: {text}");
    }
}

#[test]
fn a_restart_keeps_the_autoscalers_scale_down_window() {
    let image = HelloLease::acquire();
    // A window far longer than the test: nothing may scale down within it, restart or not.
    let (_cleanup, server) = start_server(&[
        "--autoscale-period",
        "1",
        "--autoscale-scale-down-window",
        "3600",
        "--autoscale-max-replicas",
        "2",
        "--drain-period",
        "1",
    ]);
    let owner = create_tenant(&server, "owner");
    let mut probes = readiness_on_health();
    probes["scale"] = serde_json::json!("AUTO");
    // A small CPU limit so that the load saturates it even when the machine is busy
    // (CI shares two cores with compilers); the autoscaler measures against the limit.
    probes["resources"] = serde_json::json!({"cpu": "0.1", "memory": "64M"});
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, probes),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let ip = ready["deployments"][0]["instances"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    // Burn the replica's CPU until the autoscaler has a second ready replica.
    let stop = Arc::new(AtomicBool::new(false));
    let burner = {
        let (stop, url) = (Arc::clone(&stop), format!("http://{ip}:80/burn?ms=500"));
        std::thread::spawn(move || {
            let agent = plain_agent();
            while !stop.load(Ordering::Relaxed) {
                let _ = agent.get(&url).call();
            }
        })
    };
    wait_for(DEADLINE, "two ready replicas under load", || {
        let d = status(&server, &owner, &app)["deployments"][0].clone();
        (d["active"] == 2 && d["upstreams"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();
    let before_restart = time::OffsetDateTime::now_utc();
    let server = server.restart();
    // The new process holds the old one's recommendations (two replicas, made before the
    // restart) in its window as soon as it has made the autoscaler again.
    let window = wait_for(DEADLINE, "the autoscaler after the restart", || {
        let d = status(&server, &owner, &app)["deployments"][0].clone();
        d["autoscaler"]["recommendations"].as_array().cloned()
    });
    let made_before = |r: &&Value| {
        r["time"].as_str().is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
                < before_restart
        })
    };
    assert!(
        window
            .iter()
            .filter(made_before)
            .any(|r| r["replicas"] == 2),
        "the window kept the scale-up's recommendation: {window:?}"
    );
    // And it acts on it: the decisions after the restart keep two replicas.
    let decision = wait_for(DEADLINE, "a decision after the restart", || {
        let d = status(&server, &owner, &app)["deployments"][0].clone();
        let last = d["autoscaler"]["lastDecision"].clone();
        last["rule"].is_string().then_some(last)
    });
    assert_eq!(decision["desiredReplicas"], 2, "{decision}");
    let down = audit(
        &server,
        &owner,
        &format!("application={app}&type=Autoscaler&pageSize=100"),
    );
    assert!(
        !down.iter().any(|r| r["activity"] == "Scaled down"),
        "nothing scaled down within the window: {down:?}"
    );
}

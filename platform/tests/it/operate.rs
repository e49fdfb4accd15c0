//! Operating microservices against the real Docker engine: the CPU autoscaler scales a
//! CPU-burning hello up within its bounds and back down after the stabilisation window, with
//! every decision in the audit log; the autoscaler's dry run; the audit log's shape and paging;
//! reading the log sees every change already answered; when the `c8y_Application_Down` alarm is
//! raised.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{Options, Server, Tenant, create_tenant, create_user, unique};
use crate::interruptions::Pause;
use crate::supervisor::{
    HelloLease, deploy, docker, instances, manifest, plain_agent, readiness_on_health,
    start_server, status, subscribe, wait_for, wait_ready,
};

const DEADLINE: Duration = Duration::from_secs(90);

fn audit(server: &Server, owner: &Tenant, query: &str) -> Value {
    server
        .req("GET", &format!("/audit/auditRecords?{query}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()
}

/// The audit writer is held before it writes anything: a change is answered at once, and a
/// read of the log that follows waits for the record instead of missing it.
#[test]
fn a_change_is_in_the_audit_log_as_soon_as_it_is_answered() {
    let pause = Pause::new("audit-write");
    let server = Server::start_with(Options {
        env: pause.env(),
        ..Options::default()
    });
    let owner = create_tenant(&server, "owner");
    pause.wait_reached();
    let category = unique("audited");
    server
        .req("POST", "/tenant/options")
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"category": category, "key": "k", "value": "v"}))
        .send()
        .expect(201);
    let read = std::thread::scope(|s| {
        let read = s.spawn(|| audit(&server, &owner, "type=Option"));
        // Long enough for a read that does not wait to have answered already.
        std::thread::sleep(Duration::from_millis(500));
        pause.release();
        read.join().expect("audit read")
    });
    let texts: Vec<&str> = read["auditRecords"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains(&category)),
        "the option change is missing: {read}"
    );
}

/// Keeps one CPU of the container at `ip` busy (one `/burn` at a time) until dropped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(ip: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, url) = (Arc::clone(&stop), format!("http://{ip}:80/burn?ms=500"));
        let thread = std::thread::spawn(move || {
            let agent = plain_agent();
            let end = Instant::now() + DEADLINE;
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                let _ = agent.get(&url).call();
            }
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_cpu_bound_service_scales_up_within_bounds_and_back_down_after_the_window() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[
        "--autoscale-period",
        "1",
        "--autoscale-scale-down-window",
        "3",
        "--autoscale-max-replicas",
        "2",
        "--drain-period",
        "1",
    ]);
    let owner = create_tenant(&server, "owner");
    let mut probes = readiness_on_health();
    probes["scale"] = json!("AUTO");
    // A small CPU limit so that the load saturates it even when the machine is busy
    // (CI shares two cores with compilers); the autoscaler measures against the limit.
    probes["resources"] = json!({"cpu": "0.1", "memory": "64M"});
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, probes),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let dep = &ready["deployments"][0];
    assert_eq!(
        (dep["scale"].as_str(), dep["desired"].as_u64()),
        (Some("AUTO"), Some(1))
    );
    assert_eq!(dep["autoscaler"]["minReplicas"], 1, "{dep}");
    assert_eq!(dep["autoscaler"]["maxReplicas"], 2, "{dep}");
    let ip = dep["instances"][0]["ip"].as_str().unwrap().to_owned();

    let load = Load::start(&ip);
    let mut most = 0;
    let scaled = wait_for(DEADLINE, "a second ready replica under load", || {
        let s = status(&server, &owner, &app);
        let d = s["deployments"][0].clone();
        most = most.max(d["desired"].as_u64().unwrap_or(0));
        let upstreams = d["upstreams"].as_array().map_or(0, Vec::len);
        (d["active"] == 2 && upstreams == 2).then_some(d)
    });
    // The loaded replica reports its CPU against its limit.
    let loaded = scaled["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ip"] == ip.as_str())
        .cloned()
        .unwrap();
    assert!(loaded["cpu"]["ofLimit"].as_f64() > Some(0.0), "{loaded}");
    assert!(loaded["memory"]["usedBytes"].as_u64() > Some(0), "{loaded}");
    drop(load);
    let calm = wait_for(DEADLINE, "back to one replica without load", || {
        let s = status(&server, &owner, &app);
        let d = s["deployments"][0].clone();
        most = most.max(d["desired"].as_u64().unwrap_or(0));
        let count = d["instances"].as_array().map_or(0, Vec::len);
        (d["desired"] == 1 && count == 1 && d["active"] == 1).then_some(d)
    });
    assert_eq!(most, 2, "never above the maximum: {calm}");

    // Both decisions are explained in the audit log.
    let records = wait_for(DEADLINE, "the autoscaler's records", || {
        let page = audit(
            &server,
            &owner,
            &format!("application={app}&type=Autoscaler&pageSize=50"),
        );
        let records = page["auditRecords"].as_array()?.clone();
        let has = |a: &str| records.iter().any(|r| r["activity"] == a);
        (has("Scaled up") && has("Scaled down")).then_some(records)
    });
    let up = records
        .iter()
        .find(|r| r["activity"] == "Scaled up")
        .unwrap();
    let details = &up["details"];
    assert_eq!(details["decision"]["rule"], "scaleUp", "{up}");
    assert_eq!(details["decision"]["desiredReplicas"], 2, "{up}");
    assert!(details["cpu"][0].as_f64() > Some(0.8 * 1.1), "{up}");
    assert_eq!(details["target"], 0.8, "{up}");
    let down = records
        .iter()
        .find(|r| r["activity"] == "Scaled down")
        .unwrap();
    assert_eq!(down["details"]["decision"]["desiredReplicas"], 1, "{down}");
    assert_eq!(down["details"]["scaleDownWindowSeconds"], 3, "{down}");
    // Prometheus sees the same.
    let metrics = server.admin_get("/metrics").expect(200);
    for name in [
        "berth_deployment_replicas_desired",
        "berth_deployment_replicas_active",
        "berth_instance_cpu_cores",
        "berth_instance_memory_bytes",
        "berth_autoscaler_decisions_total",
    ] {
        assert!(metrics.body.contains(name), "{name} in {}", metrics.body);
    }
    // So are the user's actions that led here.
    let actions = audit(&server, &owner, &format!("application={app}&pageSize=100"));
    for activity in ["Created", "Package uploaded", "Subscribed"] {
        assert!(
            actions["auditRecords"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["activity"] == activity),
            "{activity} in {actions}"
        );
    }
    for r in [up, down] {
        for key in [
            "id", "type", "activity", "text", "time", "severity", "user", "tenant",
        ] {
            assert!(r.get(key).is_some_and(|v| !v.is_null()), "{key} in {r}");
        }
        assert_eq!(r["source"]["id"], app.as_str());
        assert_eq!(r["tenant"], owner.id.as_str());
    }
}

#[test]
fn the_dry_run_explains_decisions_and_rejects_bad_numbers() {
    let server = Server::start();
    let owner = create_tenant(&server, "owner");
    let cases = [
        (
            json!({"cpu": [1.0], "target": 0.8, "maxReplicas": 5}),
            200,
            2,
            "scaleUp",
        ),
        (
            json!({"cpu": [0.85, 0.75], "target": 0.8}),
            200,
            2,
            "withinTolerance",
        ),
        (
            json!({"cpu": [0.1, 0.1, 0.1], "recommendations": [3], "target": 0.8}),
            200,
            3,
            "stabilised",
        ),
        (
            json!({"cpu": [1.0, null], "target": 0.8}),
            200,
            2,
            "missingMetricsHold",
        ),
        (
            json!({"cpu": [1.0, 1.0, 1.0, 1.0], "maxReplicas": 4}),
            200,
            4,
            "clampedToMax",
        ),
        (json!({"cpu": []}), 422, 0, ""),
        (json!({"cpu": [1.0], "currentReplicas": 2}), 422, 0, ""),
        (json!({"cpu": [-1.0]}), 422, 0, ""),
        (json!({"cpu": [1.0], "target": 0}), 422, 0, ""),
        (
            json!({"cpu": [1.0], "minReplicas": 3, "maxReplicas": 2}),
            422,
            0,
            "",
        ),
    ];
    for (body, code, desired, rule) in cases {
        let answer = server
            .req("POST", "/application/autoscaler/dryRun")
            .basic(&owner.admin_login, &owner.admin_password)
            .json(&body)
            .send()
            .expect(code)
            .json();
        if code == 200 {
            let d = &answer["decision"];
            assert_eq!(
                (d["desiredReplicas"].as_u64(), d["rule"].as_str()),
                (Some(desired), Some(rule)),
                "{body}: {answer}"
            );
            assert!(d["explanation"].as_str().is_some_and(|e| !e.is_empty()));
        } else {
            assert!(
                answer["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{answer}"
            );
        }
    }
    // Without credentials: 401.
    server
        .req("POST", "/application/autoscaler/dryRun")
        .json(&json!({"cpu": [1.0]}))
        .send()
        .expect(401);
}

#[test]
fn the_audit_log_is_tenant_scoped_paged_and_needs_the_audit_role() {
    let server = Server::start();
    let owner = create_tenant(&server, "owner");
    let other = create_tenant(&server, "other");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let name = unique("audited-");
        let app = server
            .req("POST", "/application/applications")
            .basic(&owner.admin_login, &owner.admin_password)
            .json(&json!({"name": name, "key": format!("{name}-key"), "type": "MICROSERVICE"}))
            .send()
            .expect(201)
            .json();
        ids.push(app["id"].as_str().unwrap().to_owned());
    }
    // Each change is readable in the log as soon as its request has been answered.
    let first = audit(
        &server,
        &owner,
        "type=Application&pageSize=1&withTotalElements=true",
    );
    assert_eq!(first["statistics"]["totalElements"], 3, "{first}");
    // Newest first, one per page, with a next page.
    let record = &first["auditRecords"][0];
    assert_eq!(record["source"]["id"], ids[2].as_str(), "{first}");
    assert_eq!(record["activity"], "Created");
    // Cumulocity names the plain user, without the tenant (`boss`, not `t1/boss`).
    let plain = owner.admin_login.rsplit('/').next().unwrap();
    assert_eq!(record["user"], plain);
    assert!(first["next"].as_str().is_some(), "{first}");
    let by_app = audit(&server, &owner, &format!("application={}", ids[0]));
    assert_eq!(
        by_app["auditRecords"].as_array().map(Vec::len),
        Some(1),
        "{by_app}"
    );
    // Another tenant sees none of it.
    assert_eq!(audit(&server, &other, "")["auditRecords"], json!([]));
    // One record by id, at its self link; unknown ids and another tenant's records are 404.
    let id = record["id"].as_str().unwrap();
    let single = server
        .req("GET", &format!("/audit/auditRecords/{id}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);
    assert!(
        single
            .header("content-type")
            .is_some_and(|t| t.contains("auditRecord+json")),
        "{:?}",
        single.header("content-type")
    );
    assert_eq!(&single.json(), record);
    assert!(
        record["self"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("/audit/auditRecords/{id}"))),
        "{record}"
    );
    for (tenant, path) in [
        (&other, format!("/audit/auditRecords/{id}")),
        (&owner, "/audit/auditRecords/999999".to_owned()),
        (&owner, "/audit/auditRecords/abc".to_owned()),
    ] {
        server
            .req("GET", &path)
            .basic(&tenant.admin_login, &tenant.admin_password)
            .send()
            .expect_error(404, "audit/Not Found");
    }
    // A user without ROLE_AUDIT_READ is refused; a bad filter is a 422.
    let plain = create_user(&server, &owner, "plain", "Plain-User-1");
    for path in [
        "/audit/auditRecords".to_owned(),
        format!("/audit/auditRecords/{id}"),
    ] {
        server
            .req("GET", &path)
            .basic(&plain, "Plain-User-1")
            .send()
            .expect(403);
    }
    // `application` is a name as in Cumulocity (none matches: an empty page); an unparsable
    // date is the caller's mistake.
    let none = audit(&server, &owner, "application=abc");
    assert_eq!(none["auditRecords"], json!([]), "{none}");
    server
        .req("GET", "/audit/auditRecords?dateFrom=yesterday")
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(422);
}

/// The `c8y_Application_Down` records of `app`, oldest first: (activity, severity).
fn down_records(server: &Server, owner: &Tenant, app: &str) -> Vec<(String, String)> {
    let page = audit(
        server,
        owner,
        &format!("application={app}&type=c8y_Application_Down&pageSize=100"),
    );
    let mut records: Vec<(String, String)> = page["auditRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["activity"].as_str().unwrap_or_default().to_owned(),
                r["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    records.reverse();
    records
}

#[test]
fn the_down_alarm_spares_a_first_start_and_follows_a_deployment_that_was_ready() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    // Not ready for its first 2 s, well within its startup grace (2 + 80 × 1 s: a start under
    // the full suite's load may take tens of seconds, and past the grace the alarm is right).
    let slow = json!({"readinessProbe": {"httpGet": {"path": "/health", "port": 80},
        "initialDelaySeconds": 2, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 80}});
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, slow),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    assert_eq!(ready["alarms"], json!([]), "{ready}");
    assert_eq!(ready["deployments"][0]["starting"], false, "{ready}");
    // (A raise at the start would have been recorded seconds ago, when the first pass saw no
    // ready instance.)
    // (The records' text says why, should one be there: the alarm names a network failure.)
    let raised = audit(
        &server,
        &owner,
        &format!("application={app}&type=c8y_Application_Down&pageSize=100"),
    );
    assert_eq!(
        raised["auditRecords"],
        json!([]),
        "no alarm at the first start; status now: {ready}"
    );

    // Once it was ready, losing its only instance is down at once, and cleared when it is back.
    let name = instances(&ready)[0]["name"].as_str().unwrap().to_owned();
    docker(&["kill", &name]);
    let records = wait_for(DEADLINE, "the alarm raised and cleared", || {
        let records = down_records(&server, &owner, &app);
        (records.last()?.0 == "Alarm cleared").then_some(records)
    });
    let expected = [
        ("Alarm raised", "CRITICAL"),
        ("Alarm cleared", "INFORMATION"),
    ]
    .map(|(a, s)| (a.to_owned(), s.to_owned()));
    assert_eq!(records, expected);
    assert_eq!(status(&server, &owner, &app)["alarms"], json!([]));

    // A first start that is not ready within its grace (0 + 2 × 1 s) is down too.
    let never = json!({"readinessProbe": {"httpGet": {"path": "/no-such-path", "port": 80},
        "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2}});
    let stuck = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, never),
    );
    subscribe(&server, &owner.id, &stuck).expect(201);
    let down = wait_for(DEADLINE, "the stuck start's alarm", || {
        let s = status(&server, &owner, &stuck);
        let alarms = s["alarms"].as_array()?.clone();
        alarms
            .iter()
            .any(|a| a["type"] == "c8y_Application_Down" && a["severity"] == "CRITICAL")
            .then_some(s)
    });
    let dep = &down["deployments"][0];
    assert_eq!(
        (dep["starting"].clone(), dep["available"].clone()),
        (json!(false), json!(0)),
        "{dep}"
    );
}

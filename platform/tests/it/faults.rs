//! Faults that must cost the services nothing: a restart of Berth (SIGTERM or SIGKILL) keeps
//! adopted replicas routed without waiting their readiness delay again, and a hung replica
//! (`docker pause`) leaves routing while requests keep succeeding on the others, with a status
//! and an alarm that say so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{Options, app_name, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, docker, instances, manifest, start_server_with, status, subscribe,
    wait_for, wait_ready,
};

/// The readiness delay of the restart test: far longer than Berth may take to route again.
const LONG_DELAY_SECS: u64 = 30;
/// How long after Berth answers a proxied request may take to succeed: well under the delay.
const ROUTED_AGAIN_DEADLINE: Duration = Duration::from_secs(5);

fn plain(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// One GET through the proxy on the plain listener; 0 when Berth did not answer at all.
fn proxied(agent: &ureq::Agent, base: &str, path: &str, auth: &str) -> u16 {
    agent
        .get(&format!("{base}{path}"))
        .header("Authorization", auth)
        .call()
        .map_or(0, |r| r.status().as_u16())
}

/// Requests in a loop through whichever listener `base` names, recording (when, status).
struct Load {
    stop: Arc<AtomicBool>,
    base: Arc<Mutex<String>>,
    log: Arc<Mutex<Vec<(Instant, u16)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, path: String, auth: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let base = Arc::new(Mutex::new(base.to_owned()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, base, log) = (Arc::clone(&stop), Arc::clone(&base), Arc::clone(&log));
            std::thread::spawn(move || {
                let agent = plain(Duration::from_secs(10));
                while !stop.load(Ordering::Relaxed) {
                    let url = base.lock().unwrap().clone();
                    let status = proxied(&agent, &url, &path, &auth);
                    log.lock().unwrap().push((Instant::now(), status));
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Load {
            stop,
            base,
            log,
            thread: Some(thread),
        }
    }

    fn retarget(&self, base: &str) {
        *self.base.lock().unwrap() = base.to_owned();
    }

    fn finish(mut self) -> Vec<(Instant, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[test]
fn a_restart_of_berth_keeps_adopted_replicas_routed_without_their_readiness_delay() {
    let image = HelloLease::acquire();
    let (_cleanup, mut server) = start_server_with(
        &[],
        Options {
            http: true,
            ..Options::default()
        },
    );
    let owner = create_tenant(&server, "owner");
    let probes = json!({"readinessProbe": {
        "httpGet": {"path": "/health", "port": 80},
        "initialDelaySeconds": LONG_DELAY_SECS, "periodSeconds": 1, "timeoutSeconds": 1,
        "failureThreshold": 1,
    }});
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 2, probes),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    // The first start waits its delay, as Kubernetes does.
    let first = wait_for(
        Duration::from_secs(LONG_DELAY_SECS + 60),
        "first start ready",
        || {
            let s = status(&server, &owner, &app);
            (s["deployments"][0]["upstreams"].as_array()?.len() == 2).then_some(s)
        },
    );
    let containers: Vec<String> = instances(&first)
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    let path = format!("/service/{}/hello", app_name(&server, &owner, &app));
    let auth = owner.basic();
    let agent = plain(Duration::from_secs(10));

    for signal in ["SIGTERM", "SIGKILL"] {
        let load = Load::start(server.http.as_ref().unwrap(), path.clone(), auth.clone());
        std::thread::sleep(Duration::from_millis(500));
        let down_at = Instant::now();
        if signal == "SIGKILL" {
            server.crash();
        }
        server = server.restart();
        // Berth answers again: it printed its listening lines.
        let answered = Instant::now();
        let base = server.http.clone().unwrap();
        load.retarget(&base);
        let routed = wait_for(
            ROUTED_AGAIN_DEADLINE,
            &format!("{signal}: a proxied request succeeds right after Berth answers"),
            || (proxied(&agent, &base, &path, &auth) == 200).then(Instant::now),
        );
        std::thread::sleep(Duration::from_secs(2));
        let log = load.finish();
        let after: Vec<u16> = log
            .iter()
            .filter(|(t, _)| *t >= answered)
            .map(|(_, s)| *s)
            .collect();
        let count = |code: u16| after.iter().filter(|s| **s == code).count();
        eprintln!(
            "figure: {signal}: Berth down→answering {:?}; answering→first proxied 200 {:?}; \
             load after answering: {} requests, {} × 200, {} × 503, {} other",
            answered.duration_since(down_at),
            routed.duration_since(answered),
            after.len(),
            count(200),
            count(503),
            after.len() - count(200) - count(503),
        );
        // The same containers serve: adopted, not recreated.
        let s = status(&server, &owner, &app);
        let mut names: Vec<String> = instances(&s)
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        let mut expected = containers.clone();
        expected.sort();
        assert_eq!(names, expected, "{signal}: the replicas were adopted");
        assert!(
            after.iter().rev().take(5).all(|s| *s == 200),
            "{signal}: the load succeeds once routed: {after:?}"
        );
    }
}

/// Unpauses a container when the test ends, however it ends (Docker removes no paused
/// container).
struct Unpause(String);

impl Drop for Unpause {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["unpause", &self.0])
            .output();
    }
}

fn instance<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["deployments"][0]["instances"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

fn has_alarm(status: &Value, kind: &str) -> bool {
    status["alarms"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["type"] == kind))
}

#[test]
fn a_paused_replica_leaves_routing_while_requests_keep_succeeding() {
    let image = HelloLease::acquire();
    // The proxy timeout is the response-header timeout: short, so the test is quick.
    let (_cleanup, server) = start_server_with(
        &["--proxy-timeout", "2"],
        Options {
            http: true,
            ..Options::default()
        },
    );
    let owner = create_tenant(&server, "owner");
    // (what, probes): without probes only the data path can notice the hang; a readiness
    // probe with a long period would notice it only minutes later.
    let cases = [
        ("no probes", json!({})),
        (
            "a slow readiness probe",
            json!({"readinessProbe": {
                "httpGet": {"path": "/health", "port": 80},
                "periodSeconds": 30, "timeoutSeconds": 1, "failureThreshold": 3,
            }}),
        ),
    ];
    for (what, probes) in cases {
        let app = deploy(
            &server,
            &owner,
            &image.0,
            &manifest("MULTI_TENANT", 2, probes),
        );
        subscribe(&server, &owner.id, &app).expect(201);
        let ready = wait_ready(&server, &owner, &app, 1);
        let all = instances(&ready);
        let victim = all[0]["name"].as_str().unwrap().to_owned();
        let other = all[1]["name"].as_str().unwrap().to_owned();
        let base = server.http.clone().unwrap();
        let path = format!("/service/{}/hello", app_name(&server, &owner, &app));
        let auth = owner.basic();
        let agent = plain(Duration::from_secs(30));

        docker(&["pause", &victim]);
        let _unpause = Unpause(victim.clone());
        // Round-robin sends some of these to the paused replica: a safe method is retried on
        // the other one after the response-header timeout, and the hung one leaves routing.
        let started = Instant::now();
        let statuses: Vec<u16> = (0..10)
            .map(|_| proxied(&agent, &base, &path, &auth))
            .collect();
        eprintln!(
            "figure: {what}: 10 GETs with one of two replicas paused took {:?}",
            started.elapsed()
        );
        assert!(statuses.iter().all(|s| *s == 200), "{what}: {statuses:?}");
        let unresponsive = wait_for(
            Duration::from_secs(30),
            &format!("{what}: the status names the hang"),
            || {
                let s = status(&server, &owner, &app);
                let v = instance(&s, &victim)?;
                (v["state"] == "UNRESPONSIVE"
                    && v["ready"] == false
                    && has_alarm(&s, "c8y_Application_Unhealthy"))
                .then_some(s)
            },
        );
        eprintln!(
            "figure: {what}: pause to UNRESPONSIVE in the status {:?}",
            started.elapsed()
        );
        assert_eq!(
            unresponsive["deployments"][0]["upstreams"],
            json!([other]),
            "{what}: {unresponsive}"
        );
        assert!(
            instance(&unresponsive, &victim).unwrap()["lastFailure"]
                .as_str()
                .is_some_and(|f| f.starts_with("Unresponsive")),
            "{what}: {unresponsive}"
        );
        // While it stays paused, nothing more waits on it.
        let started = Instant::now();
        let statuses: Vec<u16> = (0..6)
            .map(|_| proxied(&agent, &base, &path, &auth))
            .collect();
        assert!(statuses.iter().all(|s| *s == 200), "{what}: {statuses:?}");
        eprintln!(
            "figure: {what}: 6 GETs while it stays paused took {:?}",
            started.elapsed()
        );

        docker(&["unpause", &victim]);
        let started = Instant::now();
        let restored = wait_for(
            Duration::from_secs(60),
            &format!("{what}: the replica back"),
            || {
                let s = status(&server, &owner, &app);
                let v = instance(&s, &victim)?;
                (v["state"] == "RUNNING"
                    && v["ready"] == true
                    && s["deployments"][0]["upstreams"].as_array()?.len() == 2
                    && !has_alarm(&s, "c8y_Application_Unhealthy"))
                .then_some(s)
            },
        );
        eprintln!(
            "figure: {what}: unpause to routed again {:?}",
            started.elapsed()
        );
        assert_eq!(instances(&restored).len(), 2, "{what}");
    }
}

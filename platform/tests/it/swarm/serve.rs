//! `berth serve --runtime swarm` against a real 3-node lab: upload, subscribe in both isolation
//! modes, replicas spread over the nodes and served through Berth's proxy once ready; a probe
//! of a port Swarm cannot reach is refused at upload.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::lab::{Lab, serve_on};
use crate::fixture::{Server, Tenant, app_name, create_tenant};
use crate::supervisor::{
    deploy, instances, manifest, readiness_on_health, subscribe, upload_package, wait_for,
    wait_ready,
};

fn get_through_proxy(server: &Server, tenant: &Tenant, name: &str, path: &str) -> (u16, Value) {
    let resp = server
        .req("GET", &format!("/service/{name}{path}"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send();
    let status = resp.status;
    (
        status,
        serde_json::from_str(&resp.body).unwrap_or(Value::Null),
    )
}

#[test]
fn swarm_serves_subscriptions_in_both_isolation_modes_through_the_proxy() {
    if !super::lab::can_run() {
        return;
    }
    let lab = Lab::up(3);
    let engines = lab.node_engines();
    let (hello, _cleanup, server) = serve_on(&lab, &["--swarm-node-engines", &engines]);

    // PER_TENANT, 3 replicas: one service spread over the 3 nodes, served through the proxy.
    let owner = create_tenant(&server, "swo");
    let per_tenant = deploy(
        &server,
        &owner,
        &hello,
        &manifest("PER_TENANT", 3, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &per_tenant).expect(201);
    let status = wait_ready(&server, &owner, &per_tenant, 1);
    let nodes: HashSet<String> = instances(&status)
        .iter()
        .filter_map(|i| i["node"].as_str().map(str::to_owned))
        .collect();
    eprintln!("swarm: PER_TENANT status {status}");
    let name = app_name(&server, &owner, &per_tenant);
    for _ in 0..6 {
        let (code, body) = get_through_proxy(&server, &owner, &name, "/env");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["C8Y_TENANT"], owner.id.as_str(), "{body}");
    }
    assert_eq!(nodes.len(), 3, "replicas on {nodes:?}");

    // The internal API from every node: each replica's bootstrap call (C8Y_BASEURL with its
    // bootstrap credentials, as the SDKs make at startup) goes through its overlay's relay and
    // Berth's gateway and is answered 200. Round robin over the 3 ready replicas: 6 calls
    // reach each one, the ones on worker nodes included.
    let mut answered = HashSet::new();
    for _ in 0..6 {
        let (code, body) = get_through_proxy(&server, &owner, &name, "/platform/subscriptions");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], 200, "the platform's answer: {body}");
        let users = body["body"]["users"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            users.iter().any(|u| u["tenant"] == owner.id.as_str()),
            "the subscribed tenant's service user: {body}"
        );
        let (_, who) = get_through_proxy(&server, &owner, &name, "/whoami");
        answered.insert(who["hostname"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(answered.len(), 3, "replicas answering: {answered:?}");
    // The task's own C8Y_BASEURL names the relay on its overlay, not an address on the nodes'
    // network.
    let (_, env) = get_through_proxy(&server, &owner, &name, "/env");
    assert_eq!(env["C8Y_BASEURL"], "http://berth-platform:8111", "{env}");

    // MULTI_TENANT, 1 replica, subscribed by a second tenant as well; ready by a tcpSocket
    // probe, which asks the relay to connect to the task (the tunnel's own listener would
    // accept any connection).
    let other = create_tenant(&server, "swt");
    let tcp_ready = json!({"readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 1}});
    let shared = deploy(
        &server,
        &owner,
        &hello,
        &manifest("MULTI_TENANT", 1, tcp_ready),
    );
    subscribe(&server, &owner.id, &shared).expect(201);
    // A probe of another port could never pass on Swarm (the tunnel and the relay carry port
    // 80 only): the upload is refused naming the field.
    let other_port = json!({"readinessProbe": {"httpGet": {"path": "/health", "port": 8080}}});
    let unused = crate::upload::create_microservice(&server, &owner)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let refused = upload_package(
        &server,
        &owner,
        &unused,
        &hello,
        &manifest("MULTI_TENANT", 1, other_port),
    )
    .expect_error(422, "applications/Invalid Data");
    assert!(
        refused.body.contains("readinessProbe.httpGet.port is 8080"),
        "{}",
        refused.body
    );
    wait_ready(&server, &owner, &shared, 1);
    let shared_name = app_name(&server, &owner, &shared);
    let (code, _) = get_through_proxy(&server, &owner, &shared_name, "/health");
    assert_eq!(code, 200);
    let (code, _) = get_through_proxy(&server, &other, &shared_name, "/health");
    assert_eq!(code, 403, "not subscribed yet");

    // Every replica's port stays unpublished: the services publish nothing.
    let published = lab.docker(
        1,
        &[
            "service",
            "ls",
            "--filter",
            "label=berth.deployment",
            "--format",
            "{{.Name}} {{.Ports}}",
        ],
    );
    for line in published.lines() {
        assert_eq!(line.split_whitespace().count(), 1, "published: {line}");
    }

    // A relay as a Berth made it before the way to the internal API existed (no gateway in
    // its environment): the replicas' bootstrap calls get no answer from the platform.
    let relay = lab.docker(
        1,
        &[
            "service",
            "ls",
            "--filter",
            &format!("label=berth.app={per_tenant}"),
            "--filter",
            "label=berth.swarm.relay",
            "--format",
            "{{.Name}}",
        ],
    );
    assert!(
        relay.ends_with("-relay") && !relay.contains('\n'),
        "{relay}"
    );
    lab.docker(
        1,
        &[
            "service",
            "update",
            "--quiet",
            "--env-rm",
            "BERTH_RELAY_PLATFORM",
            "--env-rm",
            "BERTH_RELAY_NETWORK",
            "--env-rm",
            "BERTH_RELAY_PLATFORM_LISTEN",
            &relay,
        ],
    );
    wait_for(
        Duration::from_secs(90),
        "the old relay's replicas cut off from the platform",
        || {
            let (code, body) = get_through_proxy(&server, &owner, &name, "/platform/subscriptions");
            // hello's own 502 (the platform unreachable), not the proxy's error body.
            (code == 502 && body["error"].is_string() && body.get("message").is_none())
                .then_some(())
        },
    );

    // A restarted Berth adopts the running services: the same services, none added, and the
    // proxy serves again once the adopted replicas pass their probes. The relay it adopts is
    // brought up to date, so every replica reaches the platform again.
    let services_before = lab.docker(
        1,
        &["service", "ls", "-q", "--filter", "label=berth.deployment"],
    );
    let server = server.restart();
    wait_ready(&server, &owner, &per_tenant, 1);
    let (code, _) = get_through_proxy(&server, &owner, &name, "/health");
    assert_eq!(code, 200);
    let services_after = lab.docker(
        1,
        &["service", "ls", "-q", "--filter", "label=berth.deployment"],
    );
    assert_eq!(
        services_before, services_after,
        "restart changed the services"
    );
    let mut answered = 0;
    wait_for(
        Duration::from_secs(120),
        "every replica reaching the platform through the updated relay",
        || {
            let (code, body) = get_through_proxy(&server, &owner, &name, "/platform/subscriptions");
            answered = if code == 200 && body["status"] == 200 {
                answered + 1
            } else {
                0
            };
            // Round robin over 3 replicas: 6 answers in a row reach each one twice.
            (answered >= 6).then_some(())
        },
    );

    // Unsubscribing removes the service; the relay and the overlay follow.
    let unsub = server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{per_tenant}", owner.id),
        )
        .basic(crate::fixture::MGMT_ADMIN, crate::fixture::ADMIN_PASSWORD)
        .send();
    assert!(unsub.status == 204, "unsubscribe: {}", unsub.status);
    wait_for(
        Duration::from_secs(60),
        "the PER_TENANT service gone",
        || {
            let left = lab.docker(
                1,
                &[
                    "service",
                    "ls",
                    "-q",
                    "--filter",
                    &format!("label=berth.app={per_tenant}"),
                ],
            );
            left.is_empty().then_some(())
        },
    );
}

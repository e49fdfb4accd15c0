//! An application whose stored state Berth cannot use any more (here: its version's manifest
//! no longer validates, as after an upgrade to a stricter rule) keeps what it runs: its
//! container is neither removed nor replaced, it keeps serving through the proxy, across a
//! restart too, and its status says why nothing is deployed; once repaired, the same container
//! is tended again.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Server, Tenant, app_name, create_tenant};
use crate::supervisor::{
    HelloLease, containers_of, deploy, docker, installation, manifest, networks_of,
    readiness_on_health, start_server, status, subscribe, wait_for, wait_ready,
};

/// Sets the CPU of every stored manifest of application `app` (both the version's, which the
/// supervisor deploys, and the application's copy).
fn set_cpu(server: &Server, app: &str, cpu: &str) {
    let conn = rusqlite::Connection::open(server.path(berth::DATABASE_FILE)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let id: i64 = app.parse().unwrap();
    for table in ["application_versions", "applications"] {
        let column = if table == "applications" {
            "id"
        } else {
            "application_id"
        };
        let changed = conn
            .execute(
                &format!(
                    "UPDATE {table} SET manifest = json_set(manifest, '$.resources.cpu', ?2) WHERE {column} = ?1"
                ),
                rusqlite::params![id, cpu],
            )
            .unwrap();
        assert!(changed > 0, "{table}");
    }
}

fn broken_status(server: &Server, owner: &Tenant, app: &str) -> Value {
    wait_for(Duration::from_secs(30), "the broken status", || {
        let status = status(server, owner, app);
        let failure = status["lastFailure"].as_str()?;
        assert!(failure.contains("is invalid"), "{status}");
        Some(status)
    })
}

fn serves(server: &Server, owner: &Tenant, name: &str) -> bool {
    server
        .req("GET", &format!("/service/{name}/hello"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .status
        == 200
}

fn running(id: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", id]) == "true"
}

#[test]
fn a_broken_application_keeps_its_containers_serving() {
    let image = HelloLease::acquire();
    let (cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "held");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let name = app_name(&server, &owner, &app);
    let containers = containers_of(installation(&cleanup));
    let networks = networks_of(installation(&cleanup));
    assert_eq!((containers.len(), networks.len()), (1, 1));
    assert!(serves(&server, &owner, &name));

    // Broken while Berth runs: passes go on (one a second) and touch nothing.
    set_cpu(&server, &app, "lots");
    broken_status(&server, &owner, &app);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        assert!(serves(&server, &owner, &name), "served while broken");
    }
    assert_eq!(containers_of(installation(&cleanup)), containers);
    assert_eq!(networks_of(installation(&cleanup)), networks);
    assert!(running(&containers[0]));

    // Across a restart (an upgrade to a stricter rule is one): the container is adopted as it
    // is, and routed again.
    let server = server.restart();
    broken_status(&server, &owner, &app);
    wait_for(Duration::from_secs(30), "served after the restart", || {
        serves(&server, &owner, &name).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(serves(&server, &owner, &name));
    assert_eq!(containers_of(installation(&cleanup)), containers);
    assert_eq!(networks_of(installation(&cleanup)), networks);
    assert!(running(&containers[0]));

    // Repaired: the same container is tended again.
    set_cpu(&server, &app, "0.5");
    wait_ready(&server, &owner, &app, 1);
    assert_eq!(containers_of(installation(&cleanup)), containers);
    assert!(serves(&server, &owner, &name));
}

//! The usage history behind the console's charts against real Docker: samples of a running
//! instance accumulate one per 2 s, only its owner tenant reads them, and they go with the
//! instance. The application collection carries the status with `withStatus=true`.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, instances, manifest, readiness_on_health, start_server, subscribe,
    wait_for, wait_ready,
};

const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn usage_history(server: &Server, tenant: &Tenant, app: &str) -> Value {
    server
        .req(
            "GET",
            &format!("/application/applications/{app}/usageHistory"),
        )
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()
}

/// The samples of `instance` once it has at least `count`.
pub(crate) fn samples_of(history: &Value, instance: &str, count: usize) -> Option<Vec<Value>> {
    history["instances"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == instance)?["samples"]
        .as_array()
        .filter(|s| s.len() >= count)
        .cloned()
}

#[test]
fn instances_keep_fifteen_minutes_of_usage_for_their_owner_only() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "uowner");
    let other = create_tenant(&server, "uother");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let name = instances(&ready)[0]["name"].as_str().unwrap().to_owned();

    let samples = wait_for(DEADLINE, "three samples", || {
        samples_of(&usage_history(&server, &owner, &app), &name, 3)
    });
    let history = usage_history(&server, &owner, &app);
    assert_eq!(history["stepSeconds"], 2, "{history}");
    assert_eq!(history["spanSeconds"], 900, "{history}");
    assert!(
        samples.iter().all(|s| s["memoryBytes"].as_u64() > Some(0)),
        "{samples:?}"
    );
    let times: Vec<u64> = samples
        .iter()
        .map(|s| s["time"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] >= w[0] + 2000),
        "one sample per 2 s at most: {times:?}"
    );

    // Another tenant cannot read it.
    server
        .req(
            "GET",
            &format!("/application/applications/{app}/usageHistory"),
        )
        .basic(&other.admin_login, &other.admin_password)
        .send()
        .expect(404);

    // The collection carries the same status with `withStatus=true` (one request for the
    // console's list), and none without it.
    let listed = |query: &str| {
        let page = server
            .req(
                "GET",
                &format!("/application/applications?pageSize=100{query}"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        page["applications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == app.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{app} not listed: {page}"))
    };
    let with = listed("&withStatus=true");
    assert_eq!(
        instances(&with["status"])[0]["name"],
        name.as_str(),
        "{with}"
    );
    assert!(listed("").get("status").is_none());

    // Unsubscribed, the instance goes and its history with it.
    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{app}", owner.id),
        )
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(204);
    wait_for(DEADLINE, "the history gone with the instance", || {
        let h = usage_history(&server, &owner, &app);
        h["instances"].as_array()?.is_empty().then_some(())
    });
}

//! The live log stream's bound holds for the whole server: the app is built once per worker
//! thread, and a count made in that factory was one per worker, so a tenant could open the
//! bound's worth on every worker.

use std::time::Duration;

use serde_json::json;

use crate::fixture::create_tenant;
use crate::supervisor::{
    HelloLease, deploy, instances, manifest, start_server, subscribe, wait_ready,
};

/// `console::log_stream::PER_TENANT`.
const STREAMS_PER_TENANT: usize = 8;

#[test]
fn a_tenant_opens_at_most_its_bound_of_log_streams_across_workers() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "streams");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, json!({})),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let instance = instances(&ready)[0]["name"].as_str().unwrap().to_owned();
    let path = format!("/application/applications/{app}/logs/{instance}/stream?tail=1");

    // Each stream on a connection of its own, so the server spreads them over its workers
    // (with one CPU there is one worker, and the test shows nothing but does not fail).
    let open: Vec<_> = (0..STREAMS_PER_TENANT)
        .map(|i| {
            let response = server
                .agent(Some(Duration::from_secs(300)))
                .get(&format!("{}{path}", server.https))
                .header("Authorization", &owner.basic())
                .call()
                .expect("log stream");
            assert_eq!(response.status().as_u16(), 200, "stream {i}");
            response
        })
        .collect();
    // Only the head is read: a stream let through would not end.
    let mut refused = server
        .agent(Some(Duration::from_secs(300)))
        .get(&format!("{}{path}", server.https))
        .header("Authorization", &owner.basic())
        .call()
        .expect("refusal");
    assert_eq!(refused.status().as_u16(), 429, "one stream past the bound");
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value =
        serde_json::from_str(&refused.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"], "applications/Too Many Requests", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("At most {STREAMS_PER_TENANT} log streams")),
        "{message}"
    );
    drop(open);
}

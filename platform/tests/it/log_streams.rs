//! The live log stream's bounds hold for the whole server: per tenant across workers (the app
//! is built once per worker thread, and a count made in that factory was one per worker, so a
//! tenant could open the bound's worth on every worker), and in all, whatever the tenants.

use std::time::Duration;

use serde_json::json;

use crate::fixture::{Server, Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, instances, manifest, start_server, subscribe, wait_for, wait_ready,
};

/// `console::log_stream::PER_TENANT`.
const STREAMS_PER_TENANT: usize = 8;

/// A tenant of `server` running hello, and the path of its one instance's log stream.
fn streaming_instance(server: &Server, image: &HelloLease, label: &str) -> (Tenant, String) {
    let owner = create_tenant(server, label);
    let app = deploy(
        server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, json!({})),
    );
    subscribe(server, &owner.id, &app).expect(201);
    let ready = wait_ready(server, &owner, &app, 1);
    let instance = instances(&ready)[0]["name"].as_str().unwrap().to_owned();
    let path = format!("/application/applications/{app}/logs/{instance}/stream?tail=1");
    (owner, path)
}

/// Opens the stream at `path` as `owner`, on a connection of its own; only the head is read,
/// so a stream let through stays open until the response is dropped (which closes it).
fn open_stream(server: &Server, owner: &Tenant, path: &str) -> ureq::http::Response<ureq::Body> {
    server
        .agent(Some(Duration::from_secs(300)))
        .get(&format!("{}{path}", server.https))
        .header("Authorization", &owner.basic())
        .call()
        .expect("log stream")
}

/// The Cumulocity error body of a refusal.
fn error_body(response: &mut ureq::http::Response<ureq::Body>) -> serde_json::Value {
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn a_tenant_opens_at_most_its_bound_of_log_streams_across_workers() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let (owner, path) = streaming_instance(&server, &image, "streams");

    // Each stream on a connection of its own, so the server spreads them over its workers
    // (with one CPU there is one worker, and the test shows nothing but does not fail).
    let open: Vec<_> = (0..STREAMS_PER_TENANT)
        .map(|i| {
            let response = open_stream(&server, &owner, &path);
            assert_eq!(response.status().as_u16(), 200, "stream {i}");
            response
        })
        .collect();
    let mut refused = open_stream(&server, &owner, &path);
    assert_eq!(refused.status().as_u16(), 429, "one stream past the bound");
    assert!(refused.headers().contains_key("retry-after"));
    let body = error_body(&mut refused);
    assert_eq!(body["error"], "applications/Too Many Requests", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("At most {STREAMS_PER_TENANT} log streams")),
        "{message}"
    );
    drop(open);
}

/// With a platform total below the tenant's own bound, the total is what refuses (503, not
/// the tenant's 429), and a stream the client closes gives its place back.
#[test]
fn log_streams_are_bounded_in_all_and_a_closed_one_frees_its_place() {
    const TOTAL: usize = 2;
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&["--max-log-streams", &TOTAL.to_string()]);
    let (owner, path) = streaming_instance(&server, &image, "streamtotal");

    let mut open: Vec<_> = (0..TOTAL)
        .map(|i| {
            let response = open_stream(&server, &owner, &path);
            assert_eq!(response.status().as_u16(), 200, "stream {i}");
            response
        })
        .collect();
    let mut refused = open_stream(&server, &owner, &path);
    assert_eq!(refused.status().as_u16(), 503, "one stream past the total");
    assert!(refused.headers().contains_key("retry-after"));
    let body = error_body(&mut refused);
    assert_eq!(body["error"], "applications/Service Unavailable", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("The platform has {TOTAL} log streams open")),
        "{message}"
    );
    assert!(message.contains("retry later"), "{message}");

    // The server notices the close when it reads the connection's end or, at the latest,
    // when its next keepalive comment (every 15 s) cannot be written.
    drop(open.pop());
    let reopened = wait_for(Duration::from_secs(60), "the closed stream's place", || {
        let response = open_stream(&server, &owner, &path);
        (response.status().as_u16() == 200).then_some(response)
    });
    drop(reopened);
    drop(open);
}

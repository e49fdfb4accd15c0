//! Requests in flight to containers are bounded (`proxy::slots`): one deployment, and one
//! calling tenant, get at most a quarter of the platform's upstream slots, so a slow
//! microservice, or a tenant whose clients flood one or many, cannot hold the slots other
//! tenants' requests need. Real containers, real Berth.

use std::time::{Duration, Instant};

use crate::fixture::{Resp, Server, Tenant, app_name, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, manifest, readiness_on_health, start_server, subscribe, wait_ready,
};

/// How long the held requests sleep in the container: long enough to see the bounds on a busy
/// machine (CI runs many servers at once), short enough for the test.
const HELD_MS: u64 = 20_000;

fn get(server: &Server, caller: &Tenant, path: &str) -> Resp {
    server
        .req("GET", path)
        .basic(&caller.admin_login, &caller.admin_password)
        .send()
}

/// Asks `path` as `caller` until it is refused with `status` (the held requests may not all be
/// in flight yet); the refusal.
fn refused(server: &Server, caller: &Tenant, path: &str, status: u16) -> Resp {
    let start = Instant::now();
    loop {
        let answer = get(server, caller, path);
        if answer.status == status {
            return answer;
        }
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(
            start.elapsed() < Duration::from_millis(HELD_MS * 3 / 4),
            "{path}: still served with the requests held"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a request to be held in flight; its final status. A probe of the test may hold the
/// place a moment when this one arrives (on a busy machine the threads start late), so a
/// refusal is tried again.
fn held(server: &Server, caller: &Tenant, path: &str) -> u16 {
    let start = Instant::now();
    loop {
        let status = get(server, caller, path).status;
        if matches!(status, 429 | 503) && start.elapsed() < Duration::from_millis(HELD_MS / 2) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return status;
    }
}

#[test]
fn a_deployment_or_a_tenant_cannot_take_every_upstream_slot() {
    let image = HelloLease::acquire();
    // max_connections 12: 12 + 3 (the internal API's quarter) = 15 upstream slots, 4 per
    // deployment and per calling tenant.
    let (_cleanup, server) = start_server(&["--max-connections", "12"]);
    let owner = create_tenant(&server, "slots");
    let guest = create_tenant(&server, "guest");
    let apps: Vec<String> = (0..2)
        .map(|_| {
            let app = deploy(
                &server,
                &owner,
                &image.0,
                &manifest("MULTI_TENANT", 1, readiness_on_health()),
            );
            for tenant in [&owner, &guest] {
                subscribe(&server, &tenant.id, &app).expect(201);
            }
            app
        })
        .collect();
    for app in &apps {
        wait_ready(&server, &owner, app, 1);
    }
    let [slow, other] = [0, 1].map(|i| app_name(&server, &owner, &apps[i]));
    let sleep = |name: &str| format!("/service/{name}/sleep?ms={HELD_MS}");
    let hello = |name: &str| format!("/service/{name}/hello");
    // Both tenants' credentials verified once (cached), so the held requests need no hashing.
    get(&server, &owner, &hello(&slow)).expect(200);
    get(&server, &guest, &hello(&other)).expect(200);

    std::thread::scope(|scope| {
        // Held: two of each tenant on `slow` (its share of 4), two more of the owner on `other`
        // (the owner's share of 4).
        let held: Vec<_> = [
            (&owner, sleep(&slow)),
            (&owner, sleep(&slow)),
            (&guest, sleep(&slow)),
            (&guest, sleep(&slow)),
            (&owner, sleep(&other)),
            (&owner, sleep(&other)),
        ]
        .into_iter()
        .map(|(caller, path)| {
            let server = &server;
            scope.spawn(move || held(server, caller, &path))
        })
        .collect();
        // `slow` is full: the guest, under its own share, is refused there with a 503 ...
        let answer = refused(&server, &guest, &hello(&slow), 503);
        let body = answer.json();
        assert_eq!(body["error"], "service/Service Unavailable", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&slow) && message.contains("4 requests in flight"),
            "{message}"
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        // ... the owner is at its share everywhere: 429, its own doing ...
        let answer = refused(&server, &owner, &hello(&other), 429);
        let body = answer.json();
        assert_eq!(body["error"], "service/Too Many Requests", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&owner.id) && message.contains("4 requests in flight"),
            "{message}"
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        // ... and the guest is served by the other deployment meanwhile.
        get(&server, &guest, &hello(&other)).expect(200);
        for request in held {
            assert_eq!(request.join().unwrap(), 200, "a held request");
        }
    });
    // The slots came back with the answers.
    get(&server, &owner, &hello(&slow)).expect(200);
    get(&server, &owner, &hello(&other)).expect(200);
}

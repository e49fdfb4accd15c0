//! Requests in flight to containers are bounded (`proxy::slots`): one deployment, one calling
//! tenant and one tenant's microservices get at most a quarter of the platform's upstream slots
//! each, so a slow microservice, a tenant whose clients flood one or many, or a tenant owning
//! many slow services, cannot hold the slots other tenants' requests need. Real containers,
//! real Berth.

use std::time::{Duration, Instant};

use crate::fixture::{Resp, Server, Tenant, app_name, create_tenant, management};
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

/// Deploys `count` MULTI_TENANT hello services owned by `owner`, each subscribed by
/// `subscribers`, and waits until they are ready; their names.
fn services(
    server: &Server,
    image: &HelloLease,
    owner: &Tenant,
    subscribers: &[&Tenant],
    count: usize,
) -> Vec<String> {
    let apps: Vec<String> = (0..count)
        .map(|_| {
            let app = deploy(
                server,
                owner,
                &image.0,
                &manifest("MULTI_TENANT", 1, readiness_on_health()),
            );
            for tenant in subscribers {
                subscribe(server, &tenant.id, &app).expect(201);
            }
            app
        })
        .collect();
    apps.iter()
        .map(|app| {
            wait_ready(server, owner, app, 1);
            app_name(server, owner, app)
        })
        .collect()
}

fn sleep(name: &str) -> String {
    format!("/service/{name}/sleep?ms={HELD_MS}")
}

fn hello(name: &str) -> String {
    format!("/service/{name}/hello")
}

#[test]
fn a_deployment_or_a_tenant_cannot_take_every_upstream_slot() {
    let image = HelloLease::acquire();
    // max_connections 12: 12 + 3 (the internal API's quarter) = 15 upstream slots, 4 per
    // deployment and per calling tenant. The services are the operator's (the management
    // tenant's), which are not counted together, so six requests can be held on two of them.
    let (_cleanup, server) = start_server(&["--max-connections", "12"]);
    let heavy = create_tenant(&server, "heavy");
    let guest = create_tenant(&server, "guest");
    let [slow, other] = <[String; 2]>::try_from(services(
        &server,
        &image,
        &management(),
        &[&heavy, &guest],
        2,
    ))
    .unwrap();
    // Both tenants' credentials verified once (cached), so the held requests need no hashing.
    get(&server, &heavy, &hello(&slow)).expect(200);
    get(&server, &guest, &hello(&other)).expect(200);

    std::thread::scope(|scope| {
        // Held: two of each tenant on `slow` (its share of 4), two more of `heavy` on `other`
        // (its share of 4 as a caller).
        let held: Vec<_> = [
            (&heavy, sleep(&slow)),
            (&heavy, sleep(&slow)),
            (&guest, sleep(&slow)),
            (&guest, sleep(&slow)),
            (&heavy, sleep(&other)),
            (&heavy, sleep(&other)),
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
        // ... `heavy` is at its share everywhere: 429, its own doing ...
        let answer = refused(&server, &heavy, &hello(&other), 429);
        let body = answer.json();
        assert_eq!(body["error"], "service/Too Many Requests", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&heavy.id) && message.contains("4 requests in flight"),
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
    get(&server, &heavy, &hello(&slow)).expect(200);
    get(&server, &heavy, &hello(&other)).expect(200);
}

#[test]
fn one_tenants_microservices_cannot_take_every_upstream_slot_together() {
    let image = HelloLease::acquire();
    // 15 upstream slots, 4 for the services of one owning tenant.
    let (_cleanup, server) = start_server(&["--max-connections", "12"]);
    let provider = create_tenant(&server, "provider");
    let first = create_tenant(&server, "first");
    let second = create_tenant(&server, "second");
    let [p, q] =
        <[String; 2]>::try_from(services(&server, &image, &provider, &[&first, &second], 2))
            .unwrap();
    let [operators] =
        <[String; 1]>::try_from(services(&server, &image, &management(), &[&second], 1)).unwrap();
    get(&server, &first, &hello(&p)).expect(200);
    get(&server, &second, &hello(&q)).expect(200);

    std::thread::scope(|scope| {
        // Held: two of each caller, one service each: every caller and deployment under its
        // share, the provider's services at theirs.
        let held: Vec<_> = [
            (&first, sleep(&p)),
            (&first, sleep(&p)),
            (&second, sleep(&q)),
            (&second, sleep(&q)),
        ]
        .into_iter()
        .map(|(caller, path)| {
            let server = &server;
            scope.spawn(move || held(server, caller, &path))
        })
        .collect();
        let answer = refused(&server, &second, &hello(&p), 503);
        let body = answer.json();
        assert_eq!(body["error"], "service/Service Unavailable", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&provider.id) && message.contains("4 requests in flight"),
            "{message}"
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        // The same caller is served by another tenant's service meanwhile.
        get(&server, &second, &hello(&operators)).expect(200);
        for request in held {
            assert_eq!(request.join().unwrap(), 200, "a held request");
        }
    });
    get(&server, &second, &hello(&p)).expect(200);
}

//! Requests in flight to containers are bounded (`proxy::slots`): one deployment gets at most a
//! quarter of the platform's upstream slots, so a slow microservice, or clients flooding one,
//! cannot hold the slots other deployments' requests need. Real containers, real Berth.

use std::time::{Duration, Instant};

use crate::fixture::{Server, Tenant, app_name, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, manifest, readiness_on_health, start_server, subscribe, wait_ready,
};

/// How long the held requests sleep in the container: long enough to see the bound, short
/// enough for the test.
const HELD_MS: u64 = 8_000;

fn get(server: &Server, owner: &Tenant, path: &str) -> crate::fixture::Resp {
    server
        .req("GET", path)
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
}

#[test]
fn one_deployment_cannot_take_every_upstream_slot() {
    let image = HelloLease::acquire();
    // max_connections 12: 12 + 3 (the internal API's quarter) = 15 upstream slots, 4 per
    // deployment.
    let (_cleanup, server) = start_server(&["--max-connections", "12"]);
    let owner = create_tenant(&server, "slots");
    let apps: Vec<String> = (0..2)
        .map(|_| {
            let app = deploy(
                &server,
                &owner,
                &image.0,
                &manifest("MULTI_TENANT", 1, readiness_on_health()),
            );
            subscribe(&server, &owner.id, &app).expect(201);
            app
        })
        .collect();
    for app in &apps {
        wait_ready(&server, &owner, app, 1);
    }
    let [slow, other] = [0, 1].map(|i| app_name(&server, &owner, &apps[i]));
    get(&server, &owner, &format!("/service/{slow}/hello")).expect(200);

    std::thread::scope(|scope| {
        let held: Vec<_> = (0..4)
            .map(|_| {
                let (server, owner, slow) = (&server, &owner, &slow);
                scope.spawn(move || {
                    get(
                        server,
                        owner,
                        &format!("/service/{slow}/sleep?ms={HELD_MS}"),
                    )
                    .status
                })
            })
            .collect();
        // Once the four are in flight, a fifth request to the same deployment is refused at
        // once, with the Cumulocity error body and when to retry.
        let start = Instant::now();
        let refused = loop {
            let answer = get(&server, &owner, &format!("/service/{slow}/hello"));
            if answer.status == 503 {
                break answer;
            }
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(
                start.elapsed() < Duration::from_millis(HELD_MS / 2),
                "four requests in flight and a fifth still served"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let body = refused.json();
        assert_eq!(body["error"], "service/Service Unavailable", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&slow) && message.contains("4 requests in flight"),
            "{message}"
        );
        assert_eq!(refused.header("retry-after"), Some("1"));
        // Another deployment is served meanwhile.
        get(&server, &owner, &format!("/service/{other}/hello")).expect(200);
        for request in held {
            assert_eq!(request.join().unwrap(), 200, "a held request");
        }
    });
    // Their slots came back with their answers.
    get(&server, &owner, &format!("/service/{slow}/hello")).expect(200);
}

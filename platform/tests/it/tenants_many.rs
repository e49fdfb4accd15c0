//! Many tenants: deployment networks come from Berth's own subnet pool, and a deployment whose
//! network cannot be made shows why in its status, raises an alarm and says so in the proxy's
//! 503, until a subnet frees up. The holder pool's network gives its subnet to a deployment.

use serde_json::Value;
use std::time::Duration;

use crate::fixture::{
    ADMIN_PASSWORD, MGMT_ADMIN, Server, Tenant, create_tenant, run_expecting_failure,
};
use crate::supervisor::{
    HelloLease, deploy, docker, docker_lines, is_holder_pool, manifest, readiness_on_health,
    start_server_with, status, subscribe, wait_for, wait_ready,
};

const DEADLINE: Duration = Duration::from_secs(120);

fn proxied(server: &Server, tenant: &Tenant, app: &str) -> crate::fixture::Resp {
    server
        .req("GET", &format!("/service/{app}/hello"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
}

fn deployment_of<'a>(status: &'a Value, tenant: &str) -> Option<&'a Value> {
    status["deployments"]
        .as_array()?
        .iter()
        .find(|d| d["tenant"] == tenant)
}

/// The subnets of the deployment networks of `installation` on the engine.
fn subnets_of(installation: &str) -> Vec<String> {
    crate::supervisor::networks_of(installation)
        .iter()
        .map(|id| {
            docker(&[
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                id,
            ])
            .trim()
            .to_owned()
        })
        .collect()
}

#[test]
fn a_full_network_pool_shows_in_status_alarm_and_proxy_until_a_subnet_frees() {
    let image = HelloLease::acquire();
    // Room for two /28 networks, in a block no default Docker pool uses; per process so
    // parallel runs on one engine do not share it.
    let pool = format!("10.250.{}.0/27", std::process::id() % 250);
    let (cleanup, server) = start_server_with(
        &["--network-pool", &pool, "--network-subnet-prefix", "28"],
        Default::default(),
    );
    let owner = create_tenant(&server, "owner");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("PER_TENANT", 1, readiness_on_health()),
    );
    let name = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenants: Vec<Tenant> = (0..3)
        .map(|i| create_tenant(&server, &format!("many{i}")))
        .collect();
    // The holder pool's network takes one of the two subnets while nothing else needs it.
    let all_networks = || {
        docker_lines(&[
            "network",
            "ls",
            "--filter",
            &format!("label=berth.installation={}", cleanup.0),
            "--format",
            "{{.Name}}",
        ])
    };
    wait_for(DEADLINE, "the holder pool's network", || {
        all_networks()
            .iter()
            .any(|n| is_holder_pool(n))
            .then_some(())
    });
    for t in &tenants[..2] {
        subscribe(&server, &t.id, &app).expect(201);
    }
    // The second deployment gets it: it waits for the pool network's removal, never fails.
    let ready = wait_ready(&server, &owner, &app, 2);
    assert!(
        ready["alarms"].as_array().is_some_and(|a| a.is_empty()),
        "{ready}"
    );
    let networks = all_networks();
    assert!(!networks.iter().any(|n| is_holder_pool(n)), "{networks:?}");
    let pool_prefix = pool.trim_end_matches("0/27");
    let subnets = subnets_of(&cleanup.0);
    assert_eq!(subnets.len(), 2, "{subnets:?}");
    assert!(
        subnets
            .iter()
            .all(|s| s.starts_with(pool_prefix) && s.ends_with("/28")),
        "networks come from the pool {pool}: {subnets:?}"
    );

    // The third tenant's deployment has no subnet left: visible, alarmed, explained.
    let third = &tenants[2];
    subscribe(&server, &third.id, &app).expect(201);
    let failed = wait_for(DEADLINE, "the third deployment's failure", || {
        let s = status(&server, &owner, &app);
        let failure = deployment_of(&s, &third.id)?["lastFailure"]
            .as_str()?
            .to_owned();
        Some((s, failure))
    });
    let (s, failure) = failed;
    assert!(
        failure.contains("network pool") && failure.contains(&pool),
        "{s}"
    );
    assert_eq!(deployment_of(&s, &third.id).unwrap()["active"], 0, "{s}");
    let down = s["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "c8y_Application_Down")
        .unwrap_or_else(|| panic!("no c8y_Application_Down alarm: {s}"));
    assert!(
        down["text"].as_str().unwrap().contains(&third.id)
            && down["text"].as_str().unwrap().contains("network pool"),
        "{down}"
    );
    let refused = proxied(&server, third, &name).expect_error(503, "service/Service Unavailable");
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("network pool"), "{message}");
    // The others keep serving.
    for t in &tenants[..2] {
        proxied(&server, t, &name).expect(200);
    }

    // Unsubscribing one frees its subnet: the third deploys and serves, the alarm clears.
    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{app}", tenants[0].id),
        )
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(204);
    let ready = wait_ready(&server, &owner, &app, 2);
    assert!(deployment_of(&ready, &third.id).is_some(), "{ready}");
    wait_for(DEADLINE, "the third tenant served", || {
        (proxied(&server, third, &name).status == 200).then_some(())
    });
    wait_for(DEADLINE, "the alarm cleared", || {
        status(&server, &owner, &app)["alarms"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    });
    assert_eq!(subnets_of(&cleanup.0).len(), 2);
}

#[test]
fn bad_network_pool_settings_are_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&[&str], Env, &str)] = &[
        (&["--network-pool", "fd00::/64"], &[], "network_pool"),
        (&["--network-pool", "10.213.0.1/16"], &[], "network_pool"),
        (&[], &[("BERTH_NETWORK_POOL", "ten")], "network_pool"),
        (
            &["--network-subnet-prefix", "30"],
            &[],
            "network_subnet_prefix",
        ),
        (
            &[
                "--network-pool",
                "10.9.0.0/24",
                "--network-subnet-prefix",
                "16",
            ],
            &[],
            "network_subnet_prefix",
        ),
    ];
    for (args, env, named) in cases {
        let mut full = vec!["serve", "--data-dir", data.to_str().unwrap()];
        full.extend(args.iter());
        let mut env = env.to_vec();
        env.push(("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD));
        let (code, stderr) = run_expecting_failure(&full, &env);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(!data.exists(), "{args:?} left a data directory");
    }
}

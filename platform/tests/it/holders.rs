//! Network holders on the real engine: a replica runs in the network namespace of a holder of
//! its own on the deployment network, the network keeps one spare holder, a replica whose
//! holder stopped (an engine restart) starts again in it, one whose holder is gone is
//! replaced, and unsubscribing leaves no holder and no network behind. A first replica's
//! holder comes from the installation's pool, started ahead on a network of its own.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Server, Tenant, create_tenant};
use crate::supervisor::{
    DockerCleanup, HelloLease, containers_of, deploy, docker, docker_lines, installation,
    instances, is_holder_pool, manifest, network_container, networks_of, readiness_on_health,
    start_server, subscribe, wait_for, wait_ready,
};

const SETTLE: Duration = Duration::from_secs(60);

/// (name, running) of every holder of `installation`'s deployments (not those of its pool).
fn holders(installation: &str) -> Vec<(String, bool)> {
    all_holders(installation)
        .into_iter()
        .filter(|(name, _)| !is_holder_pool(name))
        .collect()
}

/// (name, running) of every holder of `installation`, its pool's included.
fn all_holders(installation: &str) -> Vec<(String, bool)> {
    docker_lines(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.installation={installation}"),
        "--filter",
        "label=berth.holder",
        "--format",
        "{{.Names}} {{.State}}",
    ])
    .into_iter()
    .filter_map(|line| {
        let (name, state) = line.split_once(' ')?;
        Some((name.to_owned(), state == "running"))
    })
    .collect()
}

fn spares(installation: &str) -> usize {
    holders(installation)
        .iter()
        .filter(|(name, running)| *running && name.contains("-spare-"))
        .count()
}

/// A MULTI_TENANT hello deployed and subscribed on a server started with `extra`, its one
/// replica ready.
struct Deployed {
    _hello: HelloLease,
    cleanup: DockerCleanup,
    server: Server,
    installation: String,
    owner: Tenant,
    app: String,
    status: Value,
    replica: String,
}

fn deployed(extra: &[&str], tenant: &str) -> Deployed {
    deployed_after(extra, tenant, |_| ())
}

/// As [`deployed`], running `first` with the installation's id once the server is up.
fn deployed_after(extra: &[&str], tenant: &str, first: impl FnOnce(&str)) -> Deployed {
    let hello = HelloLease::acquire();
    let (cleanup, server) = start_server(extra);
    let installation = installation(&cleanup).to_owned();
    first(&installation);
    let owner = create_tenant(&server, tenant);
    let app = deploy(
        &server,
        &owner,
        &hello.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let status = wait_ready(&server, &owner, &app, 1);
    let replica = instances(&status)[0]["name"].as_str().unwrap().to_owned();
    Deployed {
        _hello: hello,
        cleanup,
        server,
        installation,
        owner,
        app,
        status,
        replica,
    }
}

/// Checks that `container` is on one network, `installation`'s deployment network, at `ip`.
fn on_its_network_only(container: &str, installation: &str, ip: &str) {
    let network = networks_of(installation);
    assert_eq!(network.len(), 1);
    let on = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.NetworkID}} {{.IPAddress}};{{end}}",
        container,
    ]);
    assert_eq!(on, format!("{} {ip};", network[0]), "{container}");
}

/// Unsubscribes `owner` from `app` and waits until its replicas, holders (spares too) and
/// network are gone.
fn unsubscribe_and_see_nothing_left(
    server: &Server,
    owner: &Tenant,
    app: &str,
    installation: &str,
) {
    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{app}", owner.id),
        )
        .basic(crate::fixture::MGMT_ADMIN, crate::fixture::ADMIN_PASSWORD)
        .send()
        .expect(204);
    wait_for(SETTLE, "nothing of the deployment left", || {
        (holders(installation).is_empty()
            && containers_of(installation).is_empty()
            && networks_of(installation).is_empty())
        .then_some(())
    });
}

#[test]
fn replicas_run_in_holders_that_go_with_them() {
    let Deployed {
        _hello,
        cleanup: _cleanup,
        server,
        installation,
        owner,
        app,
        status,
        replica,
    } = deployed(&[], "holders");
    let ip = instances(&status)[0]["ip"].as_str().unwrap().to_owned();

    // The replica is in its holder's namespace; the holder is on the deployment network, at
    // the address the status gives; a spare waits beside it.
    let holder = network_container(&replica);
    assert_ne!(holder, replica, "the replica joined no holder");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Name}}", &holder]),
        format!("/{replica}-net")
    );
    on_its_network_only(&holder, &installation, &ip);
    wait_for(SETTLE, "one spare holder", || {
        (spares(&installation) == 1).then_some(())
    });
    assert_eq!(
        holders(&installation).len(),
        2,
        "{:?}",
        holders(&installation)
    );

    // Its holder stopped under it, the replica runs on with no network: it is stopped and
    // started again in its holder, which starts first.
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &replica]);
    docker(&["stop", "-t", "0", &holder]);
    wait_for(SETTLE, "the replica started again in its holder", || {
        let holder_runs = docker(&["inspect", "-f", "{{.State.Running}}", &holder]) == "true";
        let again = docker(&["inspect", "-f", "{{.State.StartedAt}}", &replica]) != started;
        (holder_runs && again).then_some(())
    });
    let status = wait_ready(&server, &owner, &app, 1);
    assert_eq!(instances(&status)[0]["name"], replica.as_str());
    assert_eq!(network_container(&replica), holder);

    // An engine restart stops both: the replica starts again in the same holder.
    docker(&["stop", "-t", "0", &replica]);
    docker(&["stop", "-t", "0", &holder]);
    let status = wait_for(SETTLE, "the replica ready again", || {
        let status = wait_ready(&server, &owner, &app, 1);
        (instances(&status)[0]["restarts"].as_u64()? >= 1).then_some(status)
    });
    assert_eq!(instances(&status)[0]["name"], replica.as_str());
    assert_eq!(network_container(&replica), holder);

    // Its holder gone, the replica cannot start again: it is replaced, in a new holder.
    docker(&["rm", "-f", &holder]);
    docker(&["stop", "-t", "0", &replica]);
    let status = wait_for(SETTLE, "a replacement replica", || {
        let status = wait_ready(&server, &owner, &app, 1);
        (instances(&status)[0]["name"] != replica.as_str()).then_some(status)
    });
    let replacement = instances(&status)[0]["name"].as_str().unwrap().to_owned();
    let new_holder = network_container(&replacement);
    assert_ne!(new_holder, replacement);
    assert_ne!(new_holder, holder);
    assert_eq!(containers_of(&installation).len(), 1);

    // Unsubscribed: replicas, holders (the spare too) and the network go.
    unsubscribe_and_see_nothing_left(&server, &owner, &app, &installation);
}

#[test]
fn with_holders_off_replicas_join_their_network() {
    let Deployed {
        _hello,
        cleanup: _cleanup,
        server,
        installation,
        owner,
        app,
        status,
        replica,
    } = deployed(&["--network-holders", "false"], "noholders");
    let ip = instances(&status)[0]["ip"].as_str().unwrap().to_owned();

    // The replica is on the deployment network itself, at the address the status gives, and
    // no holder was made for it or as a spare.
    assert_eq!(network_container(&replica), replica);
    on_its_network_only(&replica, &installation, &ip);
    let name = crate::fixture::app_name(&server, &owner, &app);
    server
        .req("GET", &format!("/service/{name}/hello"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);
    // A replica replaced (its container gone) comes back the same way.
    docker(&["rm", "-f", &replica]);
    let status = wait_for(SETTLE, "a replacement replica", || {
        let status = wait_ready(&server, &owner, &app, 1);
        (instances(&status)[0]["name"] != replica.as_str()).then_some(status)
    });
    let replacement = instances(&status)[0]["name"].as_str().unwrap().to_owned();
    assert_eq!(network_container(&replacement), replacement);
    assert!(
        holders(&installation).is_empty(),
        "{:?}",
        holders(&installation)
    );
}

#[test]
fn turned_off_holders_keep_their_replicas_and_lose_their_spares() {
    let Deployed {
        _hello,
        cleanup: _cleanup,
        server,
        installation,
        owner,
        app,
        status: _,
        replica,
    } = deployed(&[], "holdersoff");
    let holder = network_container(&replica);
    assert_ne!(holder, replica, "the replica joined no holder");
    wait_for(SETTLE, "one spare holder", || {
        (spares(&installation) == 1).then_some(())
    });

    // Restarted with holders off: the spare goes, the replica runs on in its holder.
    let server = server.restart_with_args(&["--network-holders", "false"]);
    wait_for(SETTLE, "the spare removed", || {
        let left = holders(&installation);
        (left.len() == 1 && !left[0].0.contains("-spare-")).then_some(())
    });
    let status = wait_ready(&server, &owner, &app, 1);
    assert_eq!(instances(&status)[0]["name"], replica.as_str());
    assert_eq!(network_container(&replica), holder);

    // Unsubscribed: the replica and its holder go, and the network.
    unsubscribe_and_see_nothing_left(&server, &owner, &app, &installation);
}

/// The ids of `installation`'s pooled holders running on its pool network.
fn pooled(installation: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("label=berth.installation={installation}"),
        "--filter",
        "label=berth.holder",
        "--format",
        "{{.ID}} {{.Names}} {{.Networks}}",
    ])
    .into_iter()
    .filter_map(|line| {
        let mut fields = line.split(' ');
        let (id, name, networks) = (fields.next()?, fields.next()?, fields.next()?);
        let pool = name.split_once("-spare-")?.0;
        (is_holder_pool(name) && networks == pool).then(|| id.to_owned())
    })
    .collect()
}

/// The host's copy of a container's `/etc/hosts`.
fn hosts_file(container: &str) -> String {
    let path = docker(&["inspect", "-f", "{{.HostsPath}}", container]);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_first_replica_takes_its_holder_from_the_pool() {
    // The pool is made with the first pass: one holder, running on the pool network, its hosts
    // file naming its address there.
    let mut ahead = (String::new(), String::new());
    let Deployed {
        _hello,
        cleanup: _cleanup,
        server,
        installation,
        owner,
        app,
        status,
        replica,
    } = deployed_after(&[], "pooled", |installation| {
        let id = wait_for(SETTLE, "a pooled holder", || {
            let pooled = pooled(installation);
            (pooled.len() == 1).then(|| pooled[0].clone())
        });
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ]);
        assert!(hosts_file(&id).contains(&ip), "{}", hosts_file(&id));
        ahead = (id, ip);
    });
    let (ahead, pool_ip) = ahead;
    let ip = instances(&status)[0]["ip"].as_str().unwrap().to_owned();

    // The replica runs in the holder started ahead, now on the deployment network only, and
    // its hosts file names the new address, not the pool's.
    let holder = network_container(&replica);
    assert_eq!(
        holder, ahead,
        "the replica's holder did not come from the pool"
    );
    on_its_network_only(&holder, &installation, &ip);
    let hosts = hosts_file(&holder);
    assert!(hosts.contains(&ip) && !hosts.contains(&pool_ip), "{hosts}");
    let name = crate::fixture::app_name(&server, &owner, &app);
    server
        .req("GET", &format!("/service/{name}/hello"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);

    // The pool fills again, and the network keeps a spare of its own.
    let refilled = wait_for(SETTLE, "the pool refilled", || {
        let pooled = pooled(&installation);
        (pooled.len() == 1 && pooled[0] != ahead).then(|| pooled[0].clone())
    });
    wait_for(SETTLE, "one spare holder", || {
        (spares(&installation) == 1).then_some(())
    });

    // Unsubscribed: the deployment's holders go (the one from the pool too), the pool stays.
    unsubscribe_and_see_nothing_left(&server, &owner, &app, &installation);
    assert_eq!(pooled(&installation), vec![refilled.clone()]);

    // Its holder stopped under it (an engine restart, `docker stop`): within a minute or so
    // the pool sees it, removes it and starts another.
    docker(&["stop", "-t", "0", &refilled]);
    wait_for(
        Duration::from_secs(150),
        "the stopped pooled holder replaced",
        || {
            let pooled = pooled(&installation);
            let gone = all_holders(&installation).len() == 1;
            (pooled.len() == 1 && pooled[0] != refilled && gone).then_some(())
        },
    );

    // Restarted with holders off: the pool's holder and network go.
    let _server = server.restart_with_args(&["--network-holders", "false"]);
    wait_for(SETTLE, "the pool removed", || {
        let pool_networks = docker_lines(&[
            "network",
            "ls",
            "--filter",
            &format!("label=berth.installation={installation}"),
            "--format",
            "{{.Name}}",
        ]);
        (all_holders(&installation).is_empty() && pool_networks.is_empty()).then_some(())
    });
}

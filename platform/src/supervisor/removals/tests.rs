//! Removals off the pass, on the fake runtime: a held removal holds no pass, is not issued
//! twice, and what waits for it follows its end. Networks' are in [`networks`].

mod networks;

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::secrets::{Secrets, bootstrap_context, service_context};
use crate::supervisor::Supervisor;
use crate::supervisor::fake::{FakeRuntime, supervisor};
use crate::supervisor::handle::Leftovers;

/// How long anything the supervisor does at once may take before the test gives up.
const DEADLINE: Duration = Duration::from_secs(30);

/// Tenant t0's PER_TENANT application 1, deployable (one replica per subscriber), with
/// tenants t1 and t2 that may subscribe.
async fn seed(sup: &Supervisor, dir: &Path) {
    let secrets = Secrets::load_or_create(dir).expect("secrets");
    let sealed = secrets
        .seal(&bootstrap_context("t0", "bootstrap"), "secret")
        .expect("seal");
    let manifest = r#"{"apiVersion":"2","name":"svc","version":"1.0.0","provider":{"name":"x"},"isolation":"PER_TENANT"}"#;
    sup.store
        .run(move |c| {
            for t in ["t0", "t1", "t2"] {
                c.execute(
                    "INSERT INTO tenants (id, domain, company, creation_time) VALUES (?1, ?1 || '.example', ?1, 'now')",
                    [t],
                )?;
            }
            c.execute(
                "INSERT INTO applications (id, owner_tenant, name, key, type, manifest, active_version_id, bootstrap_user, bootstrap_password_sealed, creation_time)
                 VALUES (1, 't0', 'svc', 'svc-key', 'MICROSERVICE', ?1, '1.0.0', 'bootstrap', ?2, 'now')",
                [manifest, sealed.as_str()],
            )?;
            c.execute(
                "INSERT INTO application_versions (application_id, version, image_id, image_tag, package_file, manifest, upload_time)
                 VALUES (1, '1.0.0', 'sha256:00', 'svc:1.0.0', 'p', ?1, 'now')",
                [manifest],
            )?;
            Ok(())
        })
        .await
        .expect("seed");
}

async fn subscribe(sup: &Supervisor, dir: &Path, tenant: &'static str) {
    let secrets = Secrets::load_or_create(dir).expect("secrets");
    let sealed = secrets
        .seal(&service_context(tenant, "service"), "secret")
        .expect("seal");
    sup.store
        .run(move |c| {
            c.execute(
                "INSERT INTO subscriptions (application_id, tenant_id, service_user, service_password_sealed, creation_time) VALUES (1, ?1, 'service', ?2, 'now')",
                [tenant, sealed.as_str()],
            )?;
            Ok(())
        })
        .await
        .expect("subscribe");
}

async fn unsubscribe(sup: &Supervisor, tenant: &'static str) {
    sup.store
        .run(move |c| {
            c.execute(
                "DELETE FROM subscriptions WHERE application_id = 1 AND tenant_id = ?1",
                [tenant],
            )?;
            Ok(())
        })
        .await
        .expect("unsubscribe");
}

/// One pass, which must end (a removal it waited for would hold it for good).
async fn pass(sup: &mut Supervisor) -> Leftovers {
    tokio::time::timeout(DEADLINE, sup.pass())
        .await
        .expect("the pass ended")
        .expect("the pass succeeded")
}

/// Waits until no removal runs.
async fn removals_ended(sup: &Supervisor) {
    let deadline = Instant::now() + DEADLINE;
    while sup.state.removals.len() > 0 {
        assert!(Instant::now() < deadline, "the removals did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until removing `id` was asked of the runtime (the task runs off the pass).
async fn asked(runtime: &FakeRuntime, id: &str) {
    let deadline = Instant::now() + DEADLINE;
    while runtime.removals_of(id) == 0 {
        assert!(Instant::now() < deadline, "{id} was not removed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The instances of `deployment`, by id, whether running.
fn instances_of(runtime: &FakeRuntime, deployment: &str) -> Vec<(String, bool)> {
    let mut found: Vec<(String, bool)> = (runtime.lock().values())
        .filter(|c| {
            c.labels
                .get(crate::supervisor::LABEL_DEPLOYMENT)
                .map(String::as_str)
                == Some(deployment)
        })
        .map(|c| (c.id.clone(), c.running))
        .collect();
    found.sort();
    found
}

fn network_of(sup: &Supervisor, tenant: &str) -> String {
    sup.network_name(&crate::routing::DeploymentKey {
        application_id: 1,
        tenant: Some(tenant.to_owned()),
    })
}

/// A supervisor on the fake runtime after its first pass with t1 subscribed, and the id of
/// t1's running replica (the data directory lives as long as the first).
async fn t1_subscribed() -> (tempfile::TempDir, Arc<FakeRuntime>, Supervisor, String) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime::default());
    let mut sup = supervisor(Arc::clone(&runtime), dir.path());
    seed(&sup, dir.path()).await;
    subscribe(&sup, dir.path(), "t1").await;
    pass(&mut sup).await;
    let [(first, true)] = &instances_of(&runtime, "1/t1")[..] else {
        panic!("t1's replica runs");
    };
    let first = first.clone();
    (dir, runtime, sup, first)
}

#[tokio::test]
async fn a_removal_that_does_not_finish_holds_no_other_deployment() {
    let (dir, runtime, mut sup, first) = t1_subscribed().await;
    let first = &first;
    let network = network_of(&sup, "t1");
    assert!(runtime.nets().contains_key(&network));

    // t1 unsubscribes, and removing its container does not finish.
    runtime.hold(first);
    unsubscribe(&sup, "t1").await;
    let left = pass(&mut sup).await;
    asked(&runtime, first).await;
    // What the API's convergence waits for: the container, and the network after it.
    let t1 = Some("1/t1".to_owned());
    let waited = Leftovers {
        containers: HashMap::from([(first.clone(), t1.clone())]),
        networks: HashMap::from([(network.clone(), t1)]),
    };
    assert_eq!(left, waited);

    // t2 subscribes: its deployment is made and started in the next pass, t1's container
    // is not removed a second time, and its network stays while it is being removed.
    subscribe(&sup, dir.path(), "t2").await;
    let left = pass(&mut sup).await;
    let [(_, true)] = instances_of(&runtime, "1/t2")[..] else {
        panic!("t2's replica runs");
    };
    assert!(runtime.nets().contains_key(&network_of(&sup, "t2")));
    assert_eq!(sup.state.removals.tasks(), 1);
    assert_eq!(runtime.removals_of(first), 1);
    assert!(runtime.nets().contains_key(&network));
    assert_eq!(left, waited);

    // The removal ends: the next pass starts removing the network, with nothing left on it,
    // and leaves it while it goes.
    runtime.release(first);
    removals_ended(&sup).await;
    assert!(instances_of(&runtime, "1/t1").is_empty());
    let left = pass(&mut sup).await;
    assert_eq!(left.networks.keys().collect::<Vec<_>>(), [&network]);
    removals_ended(&sup).await;
    assert!(!runtime.nets().contains_key(&network));
    let removed = runtime.removed_networks.lock().unwrap().clone();
    assert_eq!(removed, [(network, 0)]);
    assert_eq!(pass(&mut sup).await, Leftovers::default());
    assert_eq!(runtime.removals_of(first), 1);
}

/// A removal within a deployment (a second instance of a slot) does not hold the pass
/// either, and the slot whose last instance is still being removed waits for it.
#[tokio::test]
async fn a_slot_gets_its_new_instance_once_its_last_one_is_removed() {
    let (_dir, runtime, mut sup, kept) = t1_subscribed().await;
    let kept = &kept;
    let revision = runtime.lock()[kept].labels[crate::supervisor::LABEL_REVISION].clone();
    // A create raced a crash: a second instance of slot 0 (after the first by name), whose
    // removal does not finish.
    runtime.add("x-dup", "1/t1", &revision, 0);
    runtime.hold("x-dup");
    pass(&mut sup).await;
    asked(&runtime, "x-dup").await;
    pass(&mut sup).await;
    assert_eq!(sup.state.removals.tasks(), 1);
    assert_eq!(runtime.removals_of("x-dup"), 1);
    assert_eq!(instances_of(&runtime, "1/t1").len(), 2);

    // The kept one goes (by hand): its slot waits while the other one is being removed.
    let created = runtime.created.load(std::sync::atomic::Ordering::SeqCst);
    runtime.lock().remove(kept);
    pass(&mut sup).await;
    assert_eq!(
        runtime.created.load(std::sync::atomic::Ordering::SeqCst),
        created
    );
    runtime.release("x-dup");
    removals_ended(&sup).await;
    pass(&mut sup).await;
    assert_eq!(
        runtime.created.load(std::sync::atomic::Ordering::SeqCst),
        created + 1
    );
    let [(_, true)] = instances_of(&runtime, "1/t1")[..] else {
        panic!("slot 0 has its new instance");
    };
}

#[test]
fn a_network_removal_refused_for_a_while_is_no_warning_yet() {
    let first = Instant::now();
    // (seconds since the first refusal, a warning)
    for (after, warning) in [
        (0, false),
        (14, false),
        (59, false),
        (60, true),
        (600, true),
    ] {
        let now = first + Duration::from_secs(after);
        assert_eq!(refusal_worth_a_warning(first, now), warning, "{after} s");
    }
}

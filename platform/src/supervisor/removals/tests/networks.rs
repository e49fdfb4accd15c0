//! Network removals off the pass: one that does not finish holds no other deployment, is not
//! issued twice, is waited for by its scope's convergence, and keeps its name and subnet from
//! any other deployment until it ends; a network replaced goes the same way.

use std::collections::HashMap;

use futures_util::FutureExt;

use super::*;
use crate::supervisor::Scope;
use crate::supervisor::status::ApplicationStatus;

/// The subnet of network `name`.
fn subnet_of(runtime: &FakeRuntime, name: &str) -> String {
    runtime.nets()[name].subnets[0].clone()
}

/// One pass published for the API's convergence, which must end.
async fn covered_pass(sup: &mut Supervisor) {
    (tokio::time::timeout(DEADLINE, sup.covered_pass()).await).expect("the pass ended");
}

/// t1 unsubscribed, its replica removed, and the removal of its network begun and held: the
/// network's name and its leftover as the pass left it.
async fn t1_network_held(runtime: &FakeRuntime, sup: &mut Supervisor) -> String {
    let network = network_of(sup, "t1");
    runtime.hold(&network);
    unsubscribe(sup, "t1").await;
    pass(sup).await;
    removals_ended(sup).await;
    let left = pass(sup).await;
    asked(runtime, &network).await;
    let t1 = Some("1/t1".to_owned());
    let waited = Leftovers {
        containers: HashMap::new(),
        networks: HashMap::from([(network.clone(), t1)]),
    };
    assert_eq!(left, waited);
    network
}

#[tokio::test]
async fn a_network_removal_that_does_not_finish_holds_no_pass_and_is_waited_for() {
    let (dir, runtime, mut sup, _) = t1_subscribed().await;
    let network = network_of(&sup, "t1");
    runtime.hold(&network);
    unsubscribe(&sup, "t1").await;
    // What unsubscribing t1 waits for: the pass after the change, then what of t1's
    // deployment that pass left going (its replica, its network after it).
    let scope = Scope::Subscription {
        application: 1,
        tenant: "t1".to_owned(),
    };
    let handle = sup.handle();
    let mut converging = std::pin::pin!(handle.converge(scope, DEADLINE));
    assert_eq!(converging.as_mut().now_or_never(), None);
    covered_pass(&mut sup).await;
    removals_ended(&sup).await;
    covered_pass(&mut sup).await;
    asked(&runtime, &network).await;
    assert_eq!(converging.as_mut().now_or_never(), None, "the network goes");

    // t2 subscribes: its deployment is made and started in the next passes, t1's network is
    // not removed a second time, and the convergence still waits for it.
    subscribe(&sup, dir.path(), "t2").await;
    for _ in 0..2 {
        covered_pass(&mut sup).await;
        let [(_, true)] = instances_of(&runtime, "1/t2")[..] else {
            panic!("t2's replica runs");
        };
        assert!(runtime.nets().contains_key(&network_of(&sup, "t2")));
        assert_eq!(sup.state.removals.tasks(), 1);
        assert_eq!(runtime.removals_of(&network), 1);
        assert!(runtime.nets().contains_key(&network));
        assert_eq!(converging.as_mut().now_or_never(), None, "the network goes");
    }

    // The removal ends: the pass its end brings leaves nothing of t1, and the convergence is
    // done.
    runtime.release(&network);
    removals_ended(&sup).await;
    assert!(!runtime.nets().contains_key(&network));
    covered_pass(&mut sup).await;
    assert_eq!(converging.as_mut().now_or_never(), Some(true));
    assert_eq!(runtime.removals_of(&network), 1);
    let removed = runtime.removed_networks.lock().unwrap().clone();
    assert_eq!(removed, [(network, 0)]);
}

#[tokio::test]
async fn a_resubscription_waits_for_its_networks_removal() {
    let (dir, runtime, mut sup, _) = t1_subscribed().await;
    let network = t1_network_held(&runtime, &mut sup).await;

    // t1 subscribes again while its old network goes: nothing is made on it, nor in its name.
    subscribe(&sup, dir.path(), "t1").await;
    let created = runtime.created.load(std::sync::atomic::Ordering::SeqCst);
    let left = pass(&mut sup).await;
    assert_eq!(left, Leftovers::default(), "a desired deployment's network");
    assert_eq!(
        runtime.created.load(std::sync::atomic::Ordering::SeqCst),
        created
    );
    assert!(instances_of(&runtime, "1/t1").is_empty());
    assert_eq!(runtime.removals_of(&network), 1);
    let Some(ApplicationStatus::Deployed { deployments, .. }) = sup.handle().status(1) else {
        panic!("application 1 is deployed");
    };
    let t1 = (deployments.iter())
        .find(|d| d.tenant.as_deref() == Some("t1"))
        .expect("t1's deployment status");
    assert_eq!((t1.desired, t1.active, t1.starting), (1, 0, true));

    // Its end brings the pass that makes the network anew, and the replica on it.
    runtime.release(&network);
    removals_ended(&sup).await;
    pass(&mut sup).await;
    assert!(runtime.nets().contains_key(&network));
    let [(_, true)] = instances_of(&runtime, "1/t1")[..] else {
        panic!("t1's replica runs again");
    };
}

/// The engine may stop listing a network before its removal ends: its subnet is still not
/// given to another deployment.
#[tokio::test]
async fn a_network_being_removed_keeps_its_subnet() {
    let (dir, runtime, mut sup, _) = t1_subscribed().await;
    let subnet = subnet_of(&runtime, &network_of(&sup, "t1"));
    let network = t1_network_held(&runtime, &mut sup).await;
    runtime.nets().remove(&network);

    subscribe(&sup, dir.path(), "t2").await;
    pass(&mut sup).await;
    assert_ne!(subnet_of(&runtime, &network_of(&sup, "t2")), subnet);
    runtime.release(&network);
    removals_ended(&sup).await;
}

/// A network whose bridge the host firewall does not cover is replaced off the pass: its
/// instances and then it go in one task, and the new one is made in the pass its end brings.
#[tokio::test]
async fn a_network_is_replaced_off_the_pass() {
    let (dir, runtime, mut sup, first) = t1_subscribed().await;
    let network = network_of(&sup, "t1");
    runtime.hold(&network);
    runtime
        .nets()
        .get_mut(&network)
        .expect("t1's network")
        .bridge = Some("docker0".to_owned());
    pass(&mut sup).await;
    asked(&runtime, &network).await;

    // t2 is made meanwhile; t1 gets nothing new, and its replacement is not begun twice.
    subscribe(&sup, dir.path(), "t2").await;
    let left = pass(&mut sup).await;
    assert_eq!(left, Leftovers::default(), "a desired deployment's network");
    let [(_, true)] = instances_of(&runtime, "1/t2")[..] else {
        panic!("t2's replica runs");
    };
    assert_eq!(instances_of(&runtime, "1/t1"), [(first.clone(), true)]);
    assert_eq!(runtime.removals_of(&network), 1);
    assert_eq!(runtime.nets()[&network].bridge.as_deref(), Some("docker0"));

    runtime.release(&network);
    removals_ended(&sup).await;
    assert!(instances_of(&runtime, "1/t1").is_empty());
    pass(&mut sup).await;
    assert_ne!(runtime.nets()[&network].bridge.as_deref(), Some("docker0"));
    let [(replica, true)] = &instances_of(&runtime, "1/t1")[..] else {
        panic!("t1's replica runs on its new network");
    };
    assert_ne!(replica, &first);
    let removed = runtime.removed_networks.lock().unwrap().clone();
    assert_eq!(removed, [(network, 0)]);
}

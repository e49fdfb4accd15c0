//! Garbage: what no desired deployment uses, and the networks that wait for their instances.

use super::*;

#[test]
fn garbage_table() {
    let wanted: HashSet<String> = ["1:t1".to_owned()].into();
    let nets: HashSet<String> = ["net-1".to_owned()].into();
    let inst = |id: &str, d: Option<&str>| (id.to_owned(), d.map(str::to_owned));
    let net = |name: &str, d: &str| (name.to_owned(), Some(d.to_owned()));
    let cases = [
        (
            "wanted: kept",
            vec![inst("a", Some("1:t1"))],
            vec![net("net-1", "1:t1")],
            vec![],
        ),
        (
            "of an unwanted deployment",
            vec![inst("b", Some("2:t1"))],
            vec![],
            vec![remove("b", Removal::Orphan)],
        ),
        (
            "without a deployment label",
            vec![inst("c", None)],
            vec![],
            vec![remove("c", Removal::Orphan)],
        ),
        (
            "an unwanted network",
            vec![],
            vec![net("net-2", "2:t1")],
            vec![Action::RemoveNetwork {
                name: "net-2".to_owned(),
            }],
        ),
        (
            "instances before networks: the network waits for their removal",
            vec![inst("b", Some("2:t1"))],
            vec![net("net-2", "2:t1")],
            vec![
                remove("b", Removal::Orphan),
                Action::DeferNetwork {
                    name: "net-2".to_owned(),
                    deployment: Some("2:t1".to_owned()),
                },
            ],
        ),
    ];
    for (case, instances, networks, expected) in cases {
        assert_eq!(
            garbage(
                &instances,
                &networks,
                &[],
                &HashSet::new(),
                (&wanted, &nets)
            ),
            expected,
            "{case}"
        );
    }
}

#[test]
fn a_network_goes_only_after_every_instance_on_it() {
    let wanted_deployments = HashSet::from(["1/t1".to_owned()]);
    let wanted_networks = HashSet::from(["net-1/t1".to_owned()]);
    let net = |d: &str| (format!("net-{d}"), Some(d.to_owned()));
    let networks = [net("1/t1"), net("1/t2"), net("1/t3"), net("1/t4")];
    let leaving = |d: &str| Leaving {
        deployment: Some(d.to_owned()),
        revision: Some("r1".to_owned()),
        replica: Some(0),
    };
    let listed = |id: &str, d: &str| (id.to_owned(), Some(d.to_owned()));
    let remove_network = |d: &str| Action::RemoveNetwork {
        name: format!("net-{d}"),
    };
    let defer_network = |d: &str| Action::DeferNetwork {
        name: format!("net-{d}"),
        deployment: Some(d.to_owned()),
    };
    // (case, listed instances, instances being removed, networks being removed, expected)
    let cases = [
        (
            "nothing left on them: unwanted networks go",
            vec![listed("a", "1/t1")],
            vec![],
            vec![],
            vec![
                remove_network("1/t2"),
                remove_network("1/t3"),
                remove_network("1/t4"),
            ],
        ),
        (
            "an instance removed now: its network waits",
            vec![listed("a", "1/t1"), listed("b", "1/t2")],
            vec![],
            vec![],
            vec![
                remove("b", Removal::Orphan),
                defer_network("1/t2"),
                remove_network("1/t3"),
                remove_network("1/t4"),
            ],
        ),
        (
            "an instance still being removed: no second removal, its network waits",
            vec![listed("a", "1/t1")],
            vec![leaving("1/t3")],
            vec![],
            vec![
                remove_network("1/t2"),
                defer_network("1/t3"),
                remove_network("1/t4"),
            ],
        ),
        (
            "a wanted deployment's instance being removed keeps nothing else",
            vec![],
            vec![leaving("1/t1")],
            vec![],
            vec![
                remove_network("1/t2"),
                remove_network("1/t3"),
                remove_network("1/t4"),
            ],
        ),
        (
            "a network being removed: not removed again, others go",
            vec![listed("a", "1/t1")],
            vec![],
            vec!["net-1/t2"],
            vec![remove_network("1/t3"), remove_network("1/t4")],
        ),
        (
            "a network being removed and an instance of its deployment too: neither removed nor waiting",
            vec![listed("a", "1/t1")],
            vec![leaving("1/t3")],
            vec!["net-1/t3"],
            vec![remove_network("1/t2"), remove_network("1/t4")],
        ),
    ];
    for (case, instances, removing, networks_removing, expected) in cases {
        let networks_removing: HashSet<&str> = networks_removing.into_iter().collect();
        assert_eq!(
            garbage(
                &instances,
                &networks,
                &removing,
                &networks_removing,
                (&wanted_deployments, &wanted_networks)
            ),
            expected,
            "{case}"
        );
    }
}

#[test]
fn a_deployments_network_is_used_made_replaced_or_waited_for() {
    let bridge = "br-ok";
    // (case, being removed, found with its bridge, expected)
    let cases = [
        ("missing", false, None, NetworkStep::Create),
        (
            "as it should be",
            false,
            Some(Some("br-ok")),
            NetworkStep::Use,
        ),
        (
            "another bridge",
            false,
            Some(Some("br-old")),
            NetworkStep::Replace,
        ),
        ("no bridge name", false, Some(None), NetworkStep::Replace),
        (
            "being removed, still listed",
            true,
            Some(Some("br-ok")),
            NetworkStep::Wait,
        ),
        (
            "being replaced, still listed",
            true,
            Some(Some("br-old")),
            NetworkStep::Wait,
        ),
        (
            "being removed, no longer listed",
            true,
            None,
            NetworkStep::Wait,
        ),
    ];
    for (case, leaving, found, expected) in cases {
        assert_eq!(network_step(leaving, found, bridge), expected, "{case}");
    }
}

//! Rollouts and what is garbage.

use super::*;

#[test]
fn rollout_table() {
    let s = Duration::from_secs;
    let back = |to: &str| Rollout::RollBack { to: to.to_owned() };
    // (case, active, stable, ready, elapsed, deadline, expected)
    let cases = [
        (
            "stable already",
            "2",
            Some("2"),
            false,
            s(999),
            s(60),
            Rollout::Stable,
        ),
        (
            "first version ready",
            "1",
            None,
            true,
            s(1),
            s(60),
            Rollout::MarkStable,
        ),
        (
            "first version never ready: nothing to roll back to",
            "1",
            None,
            false,
            s(999),
            s(60),
            Rollout::Wait,
        ),
        (
            "upgrade ready in time",
            "2",
            Some("1"),
            true,
            s(30),
            s(60),
            Rollout::MarkStable,
        ),
        (
            "upgrade still starting",
            "2",
            Some("1"),
            false,
            s(59),
            s(60),
            Rollout::Wait,
        ),
        (
            "upgrade late: roll back",
            "2",
            Some("1"),
            false,
            s(60),
            s(60),
            back("1"),
        ),
        (
            "ready at the deadline wins over rolling back",
            "2",
            Some("1"),
            true,
            s(61),
            s(60),
            Rollout::MarkStable,
        ),
    ];
    for (case, active, stable, ready, elapsed, deadline, expected) in cases {
        assert_eq!(
            rollout(active, stable, ready, elapsed, deadline),
            expected,
            "{case}"
        );
    }
}

#[test]
fn garbage_table() {
    let wanted: HashSet<String> = ["1:t1".to_owned()].into();
    let nets: HashSet<String> = ["net-1".to_owned()].into();
    let inst = |id: &str, d: Option<&str>| (id.to_owned(), d.map(str::to_owned));
    let cases = [
        (
            "wanted: kept",
            vec![inst("a", Some("1:t1"))],
            vec!["net-1".to_owned()],
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
            vec!["net-2".to_owned()],
            vec![Action::RemoveNetwork {
                name: "net-2".to_owned(),
            }],
        ),
        (
            "instances before networks",
            vec![inst("b", Some("2:t1"))],
            vec!["net-2".to_owned()],
            vec![
                remove("b", Removal::Orphan),
                Action::RemoveNetwork {
                    name: "net-2".to_owned(),
                },
            ],
        ),
    ];
    for (case, instances, networks, expected) in cases {
        assert_eq!(
            garbage(&instances, &networks, &wanted, &nets),
            expected,
            "{case}"
        );
    }
}

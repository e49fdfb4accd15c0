//! Replica slots: how many, which to tend.

use super::*;

#[test]
fn replicas_table() {
    let now = Instant::now();
    let drain = Duration::from_secs(10);
    let later = now + Duration::from_secs(3);
    let past = now - Duration::from_secs(1);
    let none = BTreeMap::new();
    let backing_off = BTreeMap::from([(1, later)]);
    let retry_due = BTreeMap::from([(1, past)]);
    use Action::{Create, Drain, Undrain};
    // (case, replicas, current, create back-off, drain period, expected)
    let cases: Vec<ReplicaCase> = vec![
        (
            "nothing yet: create every slot",
            2,
            vec![],
            &none,
            drain,
            vec![Create { replica: 0 }, Create { replica: 1 }],
        ),
        (
            "all there: tend each",
            2,
            vec![obs("a", Some(0), true), obs("b", Some(1), true)],
            &none,
            drain,
            vec![tend_(0, "a"), tend_(1, "b")],
        ),
        (
            "a stopped one is tended, not replaced",
            1,
            vec![obs("a", Some(0), false)],
            &none,
            drain,
            vec![tend_(0, "a")],
        ),
        (
            "a missing slot is created",
            2,
            vec![obs("a", Some(0), true)],
            &none,
            drain,
            vec![tend_(0, "a"), Create { replica: 1 }],
        ),
        (
            "creation backing off: wait",
            2,
            vec![obs("a", Some(0), true)],
            &backing_off,
            drain,
            vec![tend_(0, "a")],
        ),
        (
            "creation back-off over: try again",
            2,
            vec![obs("a", Some(0), true)],
            &retry_due,
            drain,
            vec![tend_(0, "a"), Create { replica: 1 }],
        ),
        (
            "a duplicate slot: the second goes",
            1,
            vec![obs("a", Some(0), true), obs("b", Some(0), true)],
            &none,
            drain,
            vec![remove("b", Removal::Duplicate), tend_(0, "a")],
        ),
        (
            "no slot label: goes",
            1,
            vec![obs("x", None, true), obs("a", Some(0), true)],
            &none,
            drain,
            vec![remove("x", Removal::Duplicate), tend_(0, "a")],
        ),
        (
            "scaled down, running: drains",
            1,
            vec![obs("a", Some(0), true), obs("b", Some(1), true)],
            &none,
            drain,
            vec![
                Drain {
                    id: "b".into(),
                    until: now + drain,
                },
                tend_(0, "a"),
            ],
        ),
        (
            "still draining: left alone",
            1,
            vec![
                obs("a", Some(0), true),
                draining(obs("b", Some(1), true), later),
            ],
            &none,
            drain,
            vec![tend_(0, "a")],
        ),
        (
            "drained: removed",
            1,
            vec![
                obs("a", Some(0), true),
                draining(obs("b", Some(1), true), past),
            ],
            &none,
            drain,
            vec![remove("b", Removal::Drained), tend_(0, "a")],
        ),
        (
            "no drain period: removed at once",
            1,
            vec![obs("a", Some(0), true), obs("b", Some(1), true)],
            &none,
            Duration::ZERO,
            vec![remove("b", Removal::Drained), tend_(0, "a")],
        ),
        (
            "scaled down, stopped: removed at once",
            1,
            vec![obs("a", Some(0), true), obs("b", Some(1), false)],
            &none,
            drain,
            vec![remove("b", Removal::Drained), tend_(0, "a")],
        ),
        (
            "scaled up again while draining: serves again",
            2,
            vec![
                obs("a", Some(0), true),
                draining(obs("b", Some(1), true), later),
            ],
            &none,
            drain,
            vec![Undrain { id: "b".into() }, tend_(0, "a"), tend_(1, "b")],
        ),
        (
            "zero replicas: everything drains",
            0,
            vec![obs("a", Some(0), true)],
            &none,
            drain,
            vec![Drain {
                id: "a".into(),
                until: now + drain,
            }],
        ),
    ];
    for (case, n, current, backoff, drain_period, expected) in cases {
        assert_eq!(
            replicas(n, &current, backoff, &BTreeSet::new(), drain_period, now),
            expected,
            "{case}"
        );
    }
}

/// A slot whose last instance is still being removed waits for the removal to end; the other
/// slots do not.
#[test]
fn a_slot_waits_while_its_last_instance_is_being_removed() {
    let now = Instant::now();
    let drain = Duration::from_secs(10);
    let none = BTreeMap::new();
    let leaving = |deployment: &str, revision: &str, replica| Leaving {
        deployment: Some(deployment.to_owned()),
        revision: Some(revision.to_owned()),
        replica,
    };
    let removing = [
        leaving("1/t1", "r1", Some(1)),
        // Another revision's slot 0 (an old one retiring), and another deployment's slot 2.
        leaving("1/t1", "r0", Some(0)),
        leaving("1/t2", "r1", Some(2)),
        leaving("1/t1", "r1", None),
    ];
    let slots = leaving_slots(&removing, "1/t1", "r1");
    assert_eq!(slots, BTreeSet::from([1]));
    use Action::Create;
    // (case, replicas, current, expected)
    let cases = [
        (
            "empty slots: all but the leaving one are made",
            3,
            vec![],
            vec![Create { replica: 0 }, Create { replica: 2 }],
        ),
        (
            "the leaving slot's new instance is there already: tended",
            2,
            vec![obs("a", Some(0), true), obs("b", Some(1), true)],
            vec![tend_(0, "a"), tend_(1, "b")],
        ),
        (
            "scaled down meanwhile: nothing waits",
            1,
            vec![obs("a", Some(0), true)],
            vec![tend_(0, "a")],
        ),
    ];
    for (case, n, current, expected) in cases {
        assert_eq!(
            replicas(n, &current, &none, &slots, drain, now),
            expected,
            "{case}"
        );
    }
}

#[test]
fn tend_table() {
    let now = Instant::now();
    let later = now + Duration::from_millis(400);
    let run = |running, liveness_failed, exited, exit_counted, next_start| Run {
        running,
        liveness_failed,
        exited,
        exit_counted,
        next_start,
    };
    // (case, run, expected)
    let cases = [
        (
            "running and live",
            run(true, false, false, false, None),
            Tend::Watch,
        ),
        (
            "running after earlier exits",
            run(true, false, true, true, None),
            Tend::Watch,
        ),
        (
            "liveness failed on this run",
            run(true, true, false, false, None),
            Tend::Kill,
        ),
        (
            "created, never started",
            run(false, false, false, false, None),
            Tend::Start,
        ),
        (
            "a new exit is counted first",
            run(false, false, true, false, None),
            Tend::CountExit,
        ),
        (
            "counted, back-off over",
            run(false, false, true, true, Some(now)),
            Tend::Start,
        ),
        (
            "counted, backing off",
            run(false, false, true, true, Some(later)),
            Tend::Wait(later),
        ),
        (
            "a liveness kill observed as an exit",
            run(false, true, true, false, None),
            Tend::CountExit,
        ),
    ];
    for (case, r, expected) in cases {
        assert_eq!(tend(r, now), expected, "{case}");
    }
    // The first restart of a streak is immediate, later ones back off.
    assert_eq!(
        tend(run(false, false, true, true, Some(next_start(1, now))), now),
        Tend::Start
    );
    assert!(matches!(
        tend(run(false, false, true, true, Some(next_start(2, now))), now),
        Tend::Wait(_)
    ));
}

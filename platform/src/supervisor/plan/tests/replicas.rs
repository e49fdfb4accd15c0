//! Replica slots: how many, which to retire, which to tend.

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
            replicas(n, &current, backoff, drain_period, now),
            expected,
            "{case}"
        );
    }
}

#[test]
fn retire_table() {
    let old = |id: &str, running, ready, stable| Old {
        id: id.to_owned(),
        running,
        ready,
        stable,
    };
    // Of the stable version: serving, unready, stopped.
    let stable = || {
        vec![
            old("s1", true, true, true),
            old("s2", true, false, true),
            old("s3", false, false, true),
        ]
    };
    let retain = |id: &str| Action::Retain { id: id.to_owned() };
    let retired = |id: &str| remove(id, Removal::Retired);
    // (case, replicas, ready current, old, expected)
    let cases = [
        (
            "new revision ready: all retire",
            2,
            2,
            stable(),
            vec![retired("s1"), retired("s2"), retired("s3")],
        ),
        (
            "new revision not ready: running ones of the stable version serve on",
            2,
            1,
            stable(),
            vec![retain("s1"), retain("s2"), retired("s3")],
        ),
        (
            "nothing of the new one ready",
            1,
            0,
            stable(),
            vec![retain("s1"), retain("s2"), retired("s3")],
        ),
        (
            "a version uploaded during a rollout: the previous one, never ready, goes at once",
            1,
            0,
            vec![old("s1", true, true, true), old("v2", true, false, false)],
            vec![retain("s1"), retired("v2")],
        ),
        (
            "one that serves (ready somewhere before the stable mark) stays until replaced",
            1,
            0,
            vec![old("v2", true, true, false)],
            vec![retain("v2")],
        ),
        (
            "and goes once the new revision is ready",
            1,
            1,
            vec![old("v2", true, true, false)],
            vec![retired("v2")],
        ),
    ];
    for (case, n, ready, old, expected) in cases {
        assert_eq!(retire(n, ready, &old), expected, "{case}");
    }
    assert_eq!(retire(1, 1, &[]), vec![], "no old revision");
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

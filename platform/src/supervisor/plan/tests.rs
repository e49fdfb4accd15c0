//! The planner's tables: every rule of [`super`] as cases, no Docker.

use super::*;

/// (case, replicas, current, create back-off, drain period, expected)
type ReplicaCase<'a> = (
    &'a str,
    u32,
    Vec<Observed>,
    &'a BTreeMap<u32, Instant>,
    Duration,
    Vec<Action>,
);

fn obs(id: &str, replica: Option<u32>, running: bool) -> Observed {
    Observed {
        id: id.to_owned(),
        replica,
        running,
        draining: None,
    }
}

fn draining(mut o: Observed, until: Instant) -> Observed {
    o.draining = Some(until);
    o
}

fn remove(id: &str, why: Removal) -> Action {
    Action::Remove {
        id: id.to_owned(),
        why,
    }
}

fn tend_(replica: u32, id: &str) -> Action {
    Action::Tend {
        replica,
        id: id.to_owned(),
    }
}

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

/// OOM, exit code, liveness kill, failures before; reason, failures after.
type ExitCase<'a> = (bool, Option<i64>, Option<&'a str>, u32, &'a str, u32);

#[test]
fn an_exit_counts_with_the_most_telling_reason() {
    let now = Instant::now();
    let kill = "Liveness probe failed: HTTP 500";
    let cases: &[ExitCase<'_>] = &[
        (false, Some(1), None, 0, "exited with code 1", 1),
        (false, None, None, 2, "exited with code -1", 3),
        (
            true,
            Some(137),
            None,
            0,
            "OOMKilled: the memory limit was exceeded",
            1,
        ),
        // Berth's SIGKILL for liveness: its reason, even if the kernel also killed it for memory.
        (false, Some(137), Some(kill), 1, kill, 2),
        (true, Some(137), Some(kill), 1, kill, 2),
        // It exited by itself before the kill landed: recorded as it exited.
        (false, Some(3), Some(kill), 0, "exited with code 3", 1),
        (
            true,
            Some(9),
            Some(kill),
            0,
            "OOMKilled: the memory limit was exceeded",
            1,
        ),
    ];
    for &(oom_killed, exit_code, liveness_kill, before, reason, after) in cases {
        let counted = count_exit(
            Exit {
                oom_killed,
                exit_code,
                liveness_kill,
            },
            before,
            now,
        );
        let case = format!("{oom_killed} {exit_code:?} {liveness_kill:?} {before}");
        assert_eq!(counted.reason, reason, "{case}");
        assert_eq!(counted.failures, after, "{case}");
        assert_eq!(counted.next_start, next_start(after, now), "{case}");
    }
    assert_eq!(failed_start(2), (3, backoff::delay(3)));
    assert!(!streak_over(now, now));
    assert!(streak_over(now, now + backoff::STABLE_AFTER));
}

/// (case, streak, any down, asked, expected)
type PaceCase = (&'static str, u32, bool, Option<Duration>, Option<Duration>);

#[test]
fn restart_pace_table() {
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    let cases: &[PaceCase] = &[
        ("healthy, nothing known: leave it", 0, false, None, None),
        ("healthy at the fast delay", 0, false, Some(ms(200)), None),
        (
            "one crash: the fast restart stays",
            1,
            true,
            Some(ms(200)),
            None,
        ),
        ("two in a row: still fast", 2, true, Some(ms(200)), None),
        (
            "a crash loop: 800 ms",
            3,
            true,
            Some(ms(200)),
            Some(ms(800)),
        ),
        (
            "the loop goes on: doubles",
            4,
            true,
            Some(ms(800)),
            Some(ms(1_600)),
        ),
        (
            "seen running between exits: still raised",
            5,
            false,
            Some(ms(1_600)),
            Some(ms(3_200)),
        ),
        ("already there", 5, true, Some(ms(3_200)), None),
        ("at most a minute", 40, true, Some(ms(51_200)), Some(s(60))),
        ("the minute kept", 41, true, Some(s(60)), None),
        (
            "streak over, all running: the slower delay stays",
            0,
            false,
            Some(s(60)),
            None,
        ),
        (
            "streak over, then an exit: back to fast",
            1,
            true,
            Some(s(60)),
            Some(ms(200)),
        ),
        (
            "after a Berth restart, a loop: raised",
            6,
            false,
            None,
            Some(ms(6_400)),
        ),
        (
            "after a Berth restart, an exit: made sure it is fast",
            1,
            true,
            None,
            Some(ms(200)),
        ),
        (
            "after a Berth restart, all running: untouched",
            0,
            false,
            None,
            None,
        ),
    ];
    for &(case, streak, any_down, asked, expected) in cases {
        let got = restart_pace(Pace {
            streak,
            any_down,
            asked,
        });
        assert_eq!(got, expected, "{case}");
    }
    // The numbers are the local engine's back-off from the crash loop on.
    for streak in backoff::CRASH_LOOP_AFTER..20 {
        let got = restart_pace(Pace {
            streak,
            any_down: true,
            asked: Some(Duration::ZERO),
        });
        assert_eq!(got, Some(backoff::delay(streak + 1)), "{streak}");
    }
}

//! Rollouts and what is garbage.

use super::*;

#[test]
fn rollout_table() {
    let s = Duration::from_secs;
    let back = |to: &str| Rollout::RollBack { to: to.to_owned() };
    // (case, active, stable, replaced, ready, keeps old, elapsed, expected); deadline 60 s.
    let cases = [
        (
            "stable already",
            "2",
            Some("2"),
            false,
            false,
            false,
            999,
            Rollout::Stable,
        ),
        (
            "first version ready",
            "1",
            None,
            false,
            true,
            false,
            1,
            Rollout::MarkStable,
        ),
        (
            "first version never ready: nothing to roll back to",
            "1",
            None,
            false,
            false,
            false,
            999,
            Rollout::Wait,
        ),
        (
            "upgrade ready in time",
            "2",
            Some("1"),
            false,
            true,
            true,
            30,
            Rollout::MarkStable,
        ),
        (
            "upgrade still starting",
            "2",
            Some("1"),
            false,
            false,
            true,
            59,
            Rollout::Wait,
        ),
        (
            "upgrade late: roll back",
            "2",
            Some("1"),
            false,
            false,
            true,
            60,
            back("1"),
        ),
        (
            "ready at the deadline wins over rolling back",
            "2",
            Some("1"),
            false,
            true,
            false,
            61,
            Rollout::MarkStable,
        ),
        (
            "the stable version re-uploaded is a rollout too",
            "1",
            Some("1"),
            true,
            false,
            true,
            59,
            Rollout::Wait,
        ),
        (
            "its new manifest ready: stable, the replaced one no longer charged",
            "1",
            Some("1"),
            true,
            true,
            false,
            5,
            Rollout::MarkStable,
        ),
        (
            "late, and the replaced manifest's instances stopped: no longer charged",
            "1",
            Some("1"),
            true,
            false,
            false,
            60,
            Rollout::Expire,
        ),
        (
            "late, but they still run this pass: charged until they stop",
            "1",
            Some("1"),
            true,
            false,
            true,
            60,
            Rollout::Wait,
        ),
        (
            "a version re-uploaded after another was rolled out and back: a rollback still wins",
            "2",
            Some("1"),
            true,
            false,
            false,
            60,
            back("1"),
        ),
    ];
    for (case, active, stable, replaced, ready, keeps_old, elapsed, expected) in cases {
        let progress = Progress {
            active,
            stable,
            replaced,
            ready,
            keeps_old,
            elapsed: s(elapsed),
            deadline: s(60),
        };
        assert_eq!(rollout(progress), expected, "{case}");
    }
}

//! Exits: the reason counted, and the restart pace.

use super::*;

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

//! Restart back-off: how long a crashed instance waits before its next start.
//!
//! Numbers (why): the first restart after a crash is immediate, as in Kubernetes, because a
//! single crash or OOM kill is usually transient and the contract wants the service back fast
//! (an OOM-killed instance must be running again within 1 s). From the second consecutive
//! failure on the wait starts at 200 ms and doubles (200 ms, 400 ms, 800 ms …) up to 60 s, so a
//! crash-looping service costs the host at most one start a minute instead of a busy loop.
//! Kubernetes waits 10 s → 5 min; ours is faster because starting a local container is cheap
//! and there is no scheduler to protect. An instance that stays up for [`STABLE_AFTER`]
//! (2 min) counts as healthy again and its failure streak resets. From [`CRASH_LOOP_AFTER`]
//! consecutive failures on, the status says `CrashLoopBackOff`.

use std::time::Duration;

/// Wait before the second restart of a failure streak (the first one is immediate).
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest wait between restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Running this long resets the failure streak.
pub const STABLE_AFTER: Duration = Duration::from_secs(120);
/// Consecutive failures after which the instance is reported as crash-looping.
pub const CRASH_LOOP_AFTER: u32 = 3;

/// The wait before restarting after the `failures`-th consecutive failure (1-based).
pub fn delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let doublings = (failures - 2).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_restart_is_immediate_then_delays_double_up_to_a_minute() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 200),
            (3, 400),
            (4, 800),
            (7, 6_400),
            (10, 51_200),
            (11, 60_000),
            (1_000, 60_000),
        ];
        for (failures, millis) in cases {
            assert_eq!(delay(failures), Duration::from_millis(millis), "{failures}");
        }
    }
}

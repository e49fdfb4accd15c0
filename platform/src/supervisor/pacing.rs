//! How soon a pass may follow the previous one. Much wakes the loop that a tenant's service
//! controls (its readiness flipping, the proxy ejecting it again after each readmission, an
//! `oom` event of each child process the kernel kills), and a pass reads every desired
//! application, inspects every container and converges every deployment: back to back, those
//! wake-ups would keep the loop, and what it reaches, busy for everyone.

use std::time::{Duration, Instant};

/// The least idle time after a pass: at most two passes a second however often the loop is
/// woken, while the restart of a crashed replica (its `die` event) or an API change's
/// `converge` waits at most this much longer, so an OOM-killed service is still back within a
/// second (the back-off's first restart is immediate).
pub const MIN_GAP: Duration = Duration::from_millis(500);

/// The most idle time a long pass asks for: waiters on `converge` (an unsubscribe waits for
/// its containers to go) wait at most this beyond their pass.
pub const MAX_GAP: Duration = Duration::from_secs(5);

/// When the next pass may start, woken at `woken` (by a poke, an event or the timer): no
/// sooner than the previous pass, which ended at `ended` after taking `took`, is followed by
/// an idle gap as long as it took, within [`MIN_GAP`]..=[`MAX_GAP`]; so the loop works at
/// most half the time at scale, and every wake-up meanwhile is served by that one pass.
pub fn next_pass(ended: Instant, took: Duration, woken: Instant) -> Instant {
    woken.max(ended + took.clamp(MIN_GAP, MAX_GAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_apart_by_at_least_what_the_last_one_took() {
        let ended = Instant::now();
        let ms = Duration::from_millis;
        // (the last pass took, woken after its end, the next starts after its end)
        let cases = [
            // Woken at once, again and again (a flapping service): twice a second at most.
            (ms(10), ms(0), ms(500)),
            (ms(10), ms(100), ms(500)),
            (ms(10), ms(499), ms(500)),
            // Woken after the gap (the timer, a later poke): at once.
            (ms(10), ms(500), ms(500)),
            (ms(10), ms(1000), ms(1000)),
            // A long pass is followed by as long an idle time…
            (ms(800), ms(0), ms(800)),
            (ms(2000), ms(100), ms(2000)),
            (ms(2000), ms(3000), ms(3000)),
            // …but at most five seconds, whatever it took.
            (ms(60_000), ms(0), ms(5000)),
            (ms(60_000), ms(7000), ms(7000)),
        ];
        for (took, woken, starts) in cases {
            assert_eq!(
                next_pass(ended, took, ended + woken),
                ended + starts,
                "took {took:?}, woken after {woken:?}"
            );
        }
    }
}

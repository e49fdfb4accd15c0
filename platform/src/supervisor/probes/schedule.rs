//! How often and for how long a probe runs: the manifest's numbers within the platform's
//! bounds. Pure, so the probe loop, the start-up grace and the rollout deadline agree.

use std::time::Duration;

use manifests_schema::{Probe, ProbeHandler};

/// The longest one attempt may take, whatever `timeoutSeconds` says (the schema allows 2^31 s):
/// an attempt holds a connection or a `docker exec`, and a probe that needs more than a
/// minute to answer is not telling whether the service is up.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The shortest period of an exec probe. Each attempt is a `runc exec` the engine runs on the
/// host, outside the tenant's CPU limit: at 1 s, two probes on 50 replicas would be 100 execs
/// a second per tenant. At 5 s that is 20, and an exec check (a script, a CLI) rarely says
/// more than every few seconds anyway.
pub const MIN_EXEC_PERIOD: Duration = Duration::from_secs(5);

/// The longest a readiness probe's numbers can make Berth wait for a start, however large the
/// `initialDelaySeconds`, `periodSeconds` and thresholds the schema allows (2^31 − 1 each): an
/// hour is more than any real start needs before its first probe (Cumulocity's own Java
/// services wait 200–300 s). It bounds both waits a probe stretches: a first start's grace
/// without the `c8y_Application_Down` alarm, and how far past `rollout_timeout` a never-ready
/// version keeps rolling out, its stable version running beside it.
pub const MAX_START: Duration = Duration::from_secs(3600);

/// First retry of a readiness probe that has never passed yet (then growing by half up to the
/// period: 20, 30, 45, 68… ms). A fresh replica is seen ready within a few tens of
/// milliseconds of answering, as a deployer polling by hand would; a slow starter costs a
/// dozen probes in its first two seconds.
pub const FIRST_READY_RETRY: Duration = Duration::from_millis(20);

/// How long one attempt of `probe` may take: `timeoutSeconds`, at least 1 s and at most
/// [`MAX_TIMEOUT`].
pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.max(1).into()).min(MAX_TIMEOUT)
}

/// Time between attempts: `periodSeconds`, at least 1 s, and at least [`MIN_EXEC_PERIOD`] for
/// an exec probe.
pub fn period(probe: &Probe) -> Duration {
    let period = Duration::from_secs(probe.period_seconds.max(1).into());
    match probe.handler {
        ProbeHandler::Exec { .. } => period.max(MIN_EXEC_PERIOD),
        _ => period,
    }
}

/// The first quick retry of a readiness probe that has not passed yet, or None when it waits
/// whole periods from the start: an exec probe, whose attempts are what the period bounds.
pub fn first_ready_retry(probe: &Probe) -> Option<Duration> {
    match probe.handler {
        ProbeHandler::Exec { .. } => None,
        _ => Some(FIRST_READY_RETRY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(handler: ProbeHandler, period_seconds: u32, timeout_seconds: u32) -> Probe {
        Probe {
            handler,
            initial_delay_seconds: 0,
            period_seconds,
            success_threshold: 1,
            timeout_seconds,
            failure_threshold: 3,
        }
    }

    fn exec() -> ProbeHandler {
        ProbeHandler::Exec {
            command: vec!["true".to_owned()],
        }
    }

    fn http() -> ProbeHandler {
        ProbeHandler::HttpGet {
            host: None,
            path: "/health".to_owned(),
            port: 80,
            scheme: "HTTPS".to_owned(),
            headers: Vec::new(),
        }
    }

    fn tcp() -> ProbeHandler {
        ProbeHandler::TcpSocket {
            host: None,
            port: 80,
        }
    }

    #[test]
    fn an_attempt_takes_at_most_a_minute() {
        // (timeoutSeconds, effective seconds), the same for every handler
        let cases = [
            (0, 1),
            (1, 1),
            (5, 5),
            (60, 60),
            (61, 60),
            (3600, 60),
            (u32::MAX, 60),
        ];
        for (given, effective) in cases {
            for handler in [exec(), http(), tcp()] {
                let p = probe(handler, 10, given);
                assert_eq!(
                    timeout(&p),
                    Duration::from_secs(effective),
                    "{given} s: {p:?}"
                );
            }
        }
    }

    #[test]
    fn exec_probes_run_at_most_every_five_seconds() {
        // (handler, periodSeconds, effective seconds, quick first retries)
        let cases = [
            (exec(), 0, 5, false),
            (exec(), 1, 5, false),
            (exec(), 4, 5, false),
            (exec(), 5, 5, false),
            (exec(), 30, 30, false),
            (http(), 0, 1, true),
            (http(), 1, 1, true),
            (http(), 30, 30, true),
            (tcp(), 1, 1, true),
            (tcp(), u32::MAX, u64::from(u32::MAX), true),
        ];
        for (handler, given, effective, quick) in cases {
            let p = probe(handler, given, 1);
            assert_eq!(period(&p), Duration::from_secs(effective), "{p:?}");
            assert_eq!(first_ready_retry(&p).is_some(), quick, "{p:?}");
        }
    }
}

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

/// How long the check an ejection by the proxy asks for waits, when the readiness check's last
/// attempt ended `since_last` ago (None: none yet). An HTTP or TCP check (or the plain `GET /`
/// of a replica without a readiness probe) runs at once: it costs the host a connection. An
/// exec probe waits until [`MIN_EXEC_PERIOD`] has passed since its last attempt, as between its
/// periodic ones: otherwise a service that makes the proxy eject it again and again (a request
/// it fails, a connection it resets) could make the host run execs as fast as it fails.
pub fn ejection_check_delay(readiness: Option<&Probe>, since_last: Option<Duration>) -> Duration {
    match (readiness.map(|p| &p.handler), since_last) {
        (Some(ProbeHandler::Exec { .. }), Some(since)) => MIN_EXEC_PERIOD.saturating_sub(since),
        _ => Duration::ZERO,
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

    #[test]
    fn an_ejection_checks_at_once_but_an_exec_probe_not_within_five_seconds() {
        let ms = Duration::from_millis;
        // (readiness handler, the last attempt ended ms ago, wait ms)
        let cases = [
            (None, None, 0),
            (None, Some(0), 0),
            (Some(http()), Some(0), 0),
            (Some(tcp()), Some(10), 0),
            (Some(exec()), None, 0),
            (Some(exec()), Some(0), 5_000),
            (Some(exec()), Some(1), 4_999),
            (Some(exec()), Some(4_000), 1_000),
            (Some(exec()), Some(5_000), 0),
            (Some(exec()), Some(3_600_000), 0),
        ];
        for (handler, since_last, wait) in cases {
            // The period does not matter: the minimum is the bound, not the manifest's period.
            let readiness = handler.map(|h| probe(h, 30, 1));
            assert_eq!(
                ejection_check_delay(readiness.as_ref(), since_last.map(ms)),
                ms(wait),
                "{readiness:?}, {since_last:?} ms"
            );
        }
    }
}

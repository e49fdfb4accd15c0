//! How long a probe runs: the manifest's numbers within the platform's bounds. Pure, so the
//! probe loop and the rollout deadline agree.

use std::time::Duration;

use manifests_schema::Probe;

/// The longest one attempt may take, whatever `timeoutSeconds` says (the schema allows 2^31 s):
/// an attempt holds a connection or a `docker exec`, and a probe that needs more than a
/// minute to answer is not telling whether the service is up.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one attempt of `probe` may take: `timeoutSeconds`, at least 1 s and at most
/// [`MAX_TIMEOUT`].
pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.max(1).into()).min(MAX_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifests_schema::ProbeHandler;

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
}

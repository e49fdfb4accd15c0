//! Liveness and readiness probes with Kubernetes semantics, run by the platform against one
//! container run: `httpGet` (to the container IP; `scheme: HTTPS` is TLS without certificate
//! verification, as in Kubernetes), `tcpSocket`, `exec` (docker exec; [`exec`] bounds the
//! commands a timed-out attempt leaves running).
//! Results land in a shared [`ProbeState`]; the supervisor acts on them (restart, routing).
//! The HTTP(S) requests themselves are [`http`]'s; how often and for how long a probe runs is
//! [`schedule`]'s.

mod exec;
mod http;
pub mod schedule;

use exec::ExecProbe;
use http::{http_answers, http_probe};

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifests_schema::{Probe, ProbeHandler};
use tokio::sync::Notify;

use crate::routing::{Ejection, RoutingTable};
use crate::runtime::{Runtime, RuntimeError};
use crate::sync::MutexExt;

/// Why one probe attempt failed (shown after "Liveness probe failed: " and the like).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connect to {0}: timed out after {1:?}")]
    ConnectTimeout(SocketAddr, Duration),
    #[error("send to {0}: {1}")]
    Send(SocketAddr, std::io::Error),
    #[error("read from {0}: {1}")]
    Read(SocketAddr, std::io::Error),
    #[error("GET {0}: not an HTTP response")]
    NotHttp(String),
    #[error("GET {0} returned {1}")]
    Status(String, u16),
    #[error("GET {0}: timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("GET {0}: {1}")]
    Tls(String, String),
    #[error("command {0:?} failed or timed out")]
    Command(Vec<String>),
    /// The last attempt's command outlived its timeout and still runs: no other is started.
    #[error("the last probe command (started {} s ago) is still running", .0.as_secs())]
    StillRunning(Duration),
    #[error(
        "cannot tell whether the last probe command (started {secs} s ago) is still running: {1}",
        secs = .0.as_secs()
    )]
    Lingering(Duration, RuntimeError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// How often a hung replica without a readiness probe is asked whether it answers again.
const UNRESPONSIVE_RECHECK: Duration = Duration::from_secs(1);

/// What the probes have concluded about one container run.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    /// Readiness: receives traffic.
    pub ready: bool,
    /// Liveness failed `failureThreshold` times in a row: the container must be restarted.
    pub liveness_failed: bool,
    /// The last probe failure, for the status.
    pub last_failure: Option<String>,
    /// The proxy ejected it and it failed the check that followed: hung, not ready until it
    /// answers again (why, for the status).
    pub unresponsive: Option<String>,
}

pub type SharedProbeState = Arc<Mutex<ProbeState>>;

fn update(state: &SharedProbeState, f: impl FnOnce(&mut ProbeState)) {
    f(&mut state.locked());
}

/// What a probe task needs to see the data path: the routing table's ejections of this
/// instance, and how long a replica without a readiness probe may take to answer a plain
/// `GET /` after one before it counts as hung.
#[derive(Debug, Clone)]
pub struct Passive {
    pub routing: RoutingTable,
    pub instance: String,
    pub answer_timeout: Duration,
}

/// The part of a probe's `initialDelaySeconds` still to wait for a container that has been
/// running for `running_for`: the delay counts from the container's start, so a replica
/// adopted after a Berth restart is probed at once, as Kubernetes does not restart probes of
/// running pods when the kubelet restarts.
pub fn remaining_delay(initial_delay_seconds: u32, running_for: Duration) -> Duration {
    Duration::from_secs(initial_delay_seconds.into()).saturating_sub(running_for)
}

/// Runs both probes of one container run until the task is aborted (the run ended) or
/// liveness failed. `changed` is poked whenever the state changes. `running_for`: how long
/// the container has been running already (from Docker's `State.StartedAt`).
#[allow(clippy::too_many_arguments)]
pub async fn watch(
    runtime: Arc<dyn Runtime>,
    container_id: String,
    ip: IpAddr,
    liveness: Option<Probe>,
    readiness: Option<Probe>,
    running_for: Duration,
    passive: Passive,
    state: SharedProbeState,
    changed: Arc<Notify>,
) {
    // Each probe's own exec command left running, if any: at most one each.
    let (ready_exec, live_exec) = (ExecProbe::default(), ExecProbe::default());
    let ready_loop = async {
        // The check that says whether it answers: its readiness probe, or for a replica without
        // one (ready once running), whether port 80 answers HTTP at all.
        let check_now = || async {
            match &readiness {
                Some(probe) => check(runtime.as_ref(), &container_id, ip, probe, &ready_exec).await,
                None => http_answers(SocketAddr::new(ip, 80), passive.answer_timeout).await,
            }
        };
        let (period, success_threshold, failure_threshold) = match &readiness {
            Some(probe) => {
                tokio::time::sleep(remaining_delay(probe.initial_delay_seconds, running_for)).await;
                (
                    schedule::period(probe),
                    probe.success_threshold.max(1),
                    probe.failure_threshold.max(1),
                )
            }
            None => {
                // A new run of a replica the proxy ejected (its last run died) answers first.
                if passive.routing.ejection(&passive.instance).is_none() {
                    update(&state, |s| s.ready = true);
                    changed.notify_one();
                }
                (UNRESPONSIVE_RECHECK, 1, 1)
            }
        };
        let (mut successes, mut failures) = (0u32, 0u32);
        // Until the first time it is ready, probe sooner than the period (20 ms growing up to
        // it): a fresh or restarted replica joins routing as soon as it answers, instead of up
        // to a whole period later. Failures before that count for nothing, so this changes no
        // verdict, only how soon it comes. Not for exec probes, whose period is their bound.
        let quick_retry = match &readiness {
            Some(probe) => schedule::first_ready_retry(probe),
            None => Some(schedule::FIRST_READY_RETRY),
        };
        let mut first_wait = quick_retry;
        let mut handled_ejection = None;
        // An ejection whose check waits out an exec probe's minimum period: checked then, even
        // if the proxy's ejection period is over by that time.
        let mut deferred_ejection: Option<Ejection> = None;
        // When the last attempt of the check ended.
        let mut last_attempt: Option<tokio::time::Instant> = None;
        let mut due = true;
        loop {
            let ejection = deferred_ejection
                .take()
                .or_else(|| passive.routing.ejection(&passive.instance))
                .filter(|e| handled_ejection != Some(e.since));
            let unresponsive = state.locked().unresponsive.is_some();
            // A wake-up for another instance's ejection checks nothing here.
            if (due && (readiness.is_some() || unresponsive)) || ejection.is_some() {
                let outcome = check_now().await;
                last_attempt = Some(tokio::time::Instant::now());
                match outcome {
                    Ok(()) => {
                        successes += 1;
                        failures = 0;
                    }
                    Err(reason) => {
                        failures += 1;
                        successes = 0;
                        let what = if readiness.is_some() {
                            "Readiness probe failed"
                        } else {
                            "Not answering"
                        };
                        update(&state, |s| {
                            s.last_failure = Some(format!("{what}: {reason}"))
                        });
                        // The proxy gave up on it and it does not answer now either: hung.
                        if let Some(e) = &ejection {
                            update(&state, |s| {
                                s.ready = false;
                                s.unresponsive = Some(format!(
                                    "Unresponsive: the proxy ejected it ({}) and {what}: {reason}",
                                    e.reason
                                ));
                            });
                            first_wait = quick_retry;
                            changed.notify_one();
                        }
                    }
                }
                if let Some(e) = &ejection {
                    handled_ejection = Some(e.since);
                }
            }
            let current = state.locked().clone();
            if !current.ready && successes >= success_threshold {
                update(&state, |s| {
                    s.ready = true;
                    s.unresponsive = None;
                });
                // It answers (again): back in routing at once, not at the end of the ejection
                // period (Envoy un-ejects on a passing active check too).
                passive.routing.readmit(&passive.instance);
                changed.notify_one();
            } else if current.ready && readiness.is_some() && failures >= failure_threshold {
                update(&state, |s| s.ready = false);
                changed.notify_one();
            }
            let ready = state.locked().ready;
            let wait = match first_wait {
                // Once it answered, `successThreshold` counts whole periods again.
                Some(w) if !ready && successes == 0 && w < period => {
                    first_wait = Some(w + w / 2);
                    w
                }
                _ => {
                    first_wait = None;
                    period
                }
            };
            // An ejection is looked at at once, not a period later, unless the check is an exec
            // probe that ran less than its minimum period ago: then when that is over.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            due = loop {
                tokio::select! {
                    () = &mut sleep => break true,
                    () = passive.routing.ejected() => {
                        let Some(fresh) = passive
                            .routing
                            .ejection(&passive.instance)
                            .filter(|e| handled_ejection != Some(e.since))
                        else {
                            // Someone else's ejection: sleep on.
                            continue;
                        };
                        let delay = schedule::ejection_check_delay(
                            readiness.as_ref(),
                            last_attempt.map(|at| at.elapsed()),
                        );
                        if delay.is_zero() {
                            break false;
                        }
                        deferred_ejection = Some(fresh);
                        let at = tokio::time::Instant::now() + delay;
                        if at < sleep.deadline() {
                            sleep.as_mut().reset(at);
                        }
                    }
                }
            };
        }
    };
    let live_loop = async {
        let Some(probe) = liveness else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(remaining_delay(probe.initial_delay_seconds, running_for)).await;
        let mut failures = 0u32;
        loop {
            match check(runtime.as_ref(), &container_id, ip, &probe, &live_exec).await {
                Ok(()) => failures = 0,
                Err(reason) => {
                    failures += 1;
                    if failures >= probe.failure_threshold.max(1) {
                        update(&state, |s| {
                            s.liveness_failed = true;
                            s.ready = false;
                            s.last_failure = Some(format!("Liveness probe failed: {reason}"));
                        });
                        changed.notify_one();
                        return;
                    }
                }
            }
            tokio::time::sleep(schedule::period(&probe)).await;
        }
    };
    // Liveness ending means the container is condemned; readiness alone never ends the task.
    tokio::select! {
        () = live_loop => {}
        () = async { ready_loop.await; std::future::pending::<()>().await } => {}
    }
}

/// One probe attempt; Err says why it failed. `exec`: the probe's exec state, for an exec probe.
async fn check(
    runtime: &dyn Runtime,
    id: &str,
    ip: IpAddr,
    probe: &Probe,
    exec: &ExecProbe,
) -> Result<(), ProbeError> {
    let timeout = schedule::timeout(probe);
    match &probe.handler {
        ProbeHandler::HttpGet {
            path,
            port,
            headers,
            scheme,
            ..
        } => http_probe(SocketAddr::new(ip, *port), scheme, path, headers, timeout).await,
        ProbeHandler::TcpSocket { port, .. } => {
            let addr = SocketAddr::new(ip, *port);
            match runtime.tcp_probe(id, addr, timeout).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    Err(ProbeError::ConnectTimeout(addr, timeout))
                }
                Err(e) => Err(ProbeError::Connect(addr, e)),
            }
        }
        ProbeHandler::Exec { command } => exec.check(runtime, id, command, timeout).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::Ordering;

    use crate::supervisor::fake::FakeRuntime;

    /// Watches instance `c1` (at 192.0.2.1, running for a minute) with these probes.
    fn spawn_watch(
        runtime: &Arc<FakeRuntime>,
        liveness: Option<Probe>,
        readiness: Option<Probe>,
        routing: &RoutingTable,
    ) -> (tokio::task::JoinHandle<()>, SharedProbeState) {
        let state = SharedProbeState::default();
        let task = tokio::spawn(watch(
            Arc::clone(runtime) as Arc<dyn Runtime>,
            "c1".to_owned(),
            IpAddr::from([192, 0, 2, 1]),
            liveness,
            readiness,
            Duration::from_secs(60),
            Passive {
                routing: routing.clone(),
                instance: "c1".to_owned(),
                answer_timeout: Duration::from_secs(1),
            },
            Arc::clone(&state),
            Arc::new(Notify::new()),
        ));
        (task, state)
    }

    /// A service the proxy ejects every 100 ms for a minute: its exec readiness probe still
    /// runs at most every 5 s (each ejection's check waits out the minimum, then covers every
    /// ejection since), where it ran once per ejection, 600 times.
    #[tokio::test(start_paused = true)]
    async fn ejections_run_an_exec_probe_at_most_every_five_seconds() {
        let runtime = Arc::new(FakeRuntime::default());
        let routing = RoutingTable::new();
        let readiness = Probe {
            handler: ProbeHandler::Exec {
                command: vec!["true".to_owned()],
            },
            initial_delay_seconds: 0,
            period_seconds: 30,
            success_threshold: 1,
            timeout_seconds: 1,
            failure_threshold: 3,
        };
        let (task, state) = spawn_watch(&runtime, None, Some(readiness), &routing);
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Each a new ejection (the last one ended), as after a readmission.
            routing.readmit("c1");
            routing.eject("c1", "connection reset".to_owned(), Duration::from_secs(10));
        }
        task.abort();
        let execs = runtime.execs.load(Ordering::SeqCst);
        // At 0, 5, 10 … 60 s at most; and ejections are still checked, not dropped.
        assert!((11..=13).contains(&execs), "{execs} execs in 60 s");
        assert!(state.lock().unwrap().ready);
    }

    /// An image whose exec probe commands hang: each attempt times out and its command runs on
    /// (Docker cannot kill it). Over 60 periods each probe starts one command while it hangs,
    /// not 60, and its attempts say why they fail; once it ended, commands run again.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_exec_probe_leaves_one_command_per_probe() {
        let runtime = Arc::new(FakeRuntime::default());
        runtime.exec_hangs.store(true, Ordering::SeqCst);
        let probe = |command: &str| Probe {
            handler: ProbeHandler::Exec {
                command: vec![command.to_owned()],
            },
            initial_delay_seconds: 0,
            period_seconds: 5,
            success_threshold: 1,
            timeout_seconds: 1,
            // Liveness never gives up here: the bound must hold without a restart.
            failure_threshold: 1000,
        };
        let routing = RoutingTable::new();
        let (task, state) = spawn_watch(
            &runtime,
            Some(probe("live")),
            Some(probe("ready")),
            &routing,
        );
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(runtime.execs.load(Ordering::SeqCst), 2, "one per probe");
        let failure = state
            .lock()
            .unwrap()
            .last_failure
            .clone()
            .unwrap_or_default();
        assert!(
            failure.starts_with("Readiness probe failed: the last probe command (started ")
                && failure.ends_with(" s ago) is still running"),
            "{failure}"
        );
        // The commands end (and new ones pass): the probes run them again.
        runtime.exec_hangs.store(false, Ordering::SeqCst);
        runtime.hung.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_secs(12)).await;
        task.abort();
        let execs = runtime.execs.load(Ordering::SeqCst);
        assert!(execs >= 4, "{execs} execs");
        assert!(state.lock().unwrap().ready);
    }

    #[test]
    fn the_initial_delay_counts_from_the_container_start() {
        // (initialDelaySeconds, running for ms, still to wait ms)
        let cases = [
            (0, 0, 0),
            (30, 0, 30_000),
            (30, 12_500, 17_500),
            (30, 30_000, 0),
            (30, 3_600_000, 0),
            (15, 14_999, 1),
        ];
        for (delay, running_ms, wait_ms) in cases {
            assert_eq!(
                remaining_delay(delay, Duration::from_millis(running_ms)),
                Duration::from_millis(wait_ms),
                "{delay} s, running {running_ms} ms"
            );
        }
    }
}

//! Liveness and readiness probes with Kubernetes semantics, run by the platform against one
//! container run: `httpGet` (to the container IP), `tcpSocket`, `exec` (docker exec).
//! Results land in a shared [`ProbeState`]; the supervisor acts on them (restart, routing).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifests_schema::{Probe, ProbeHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::runtime::Runtime;

/// First retry of a readiness probe that has never passed yet (then doubling up to the period).
const FIRST_READY_RETRY: Duration = Duration::from_millis(100);

/// What the probes have concluded about one container run.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    /// Readiness: receives traffic.
    pub ready: bool,
    /// Liveness failed `failureThreshold` times in a row: the container must be restarted.
    pub liveness_failed: bool,
    /// The last probe failure, for the status.
    pub last_failure: Option<String>,
}

pub type SharedProbeState = Arc<Mutex<ProbeState>>;

fn update(state: &SharedProbeState, f: impl FnOnce(&mut ProbeState)) {
    f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Runs both probes of one container run until the task is aborted (the run ended) or
/// liveness failed. `changed` is poked whenever the state changes.
pub async fn watch(
    runtime: Runtime,
    container_id: String,
    ip: IpAddr,
    liveness: Option<Probe>,
    readiness: Option<Probe>,
    state: SharedProbeState,
    changed: Arc<Notify>,
) {
    let ready_loop = async {
        let Some(probe) = readiness else {
            // No readiness probe: ready once running.
            update(&state, |s| s.ready = true);
            changed.notify_one();
            return;
        };
        tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.into())).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        let period = Duration::from_secs(probe.period_seconds.max(1).into());
        // Until the first time it is ready, probe sooner than the period (100 ms doubling up to
        // it): a fresh or restarted replica joins routing as soon as it answers, instead of up
        // to a whole period later. Failures before that count for nothing, so this changes no
        // verdict, only how soon it comes.
        let mut first_wait = Some(FIRST_READY_RETRY);
        loop {
            match check(&runtime, &container_id, ip, &probe).await {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                }
                Err(reason) => {
                    failures += 1;
                    successes = 0;
                    update(&state, |s| {
                        s.last_failure = Some(format!("Readiness probe failed: {reason}"))
                    });
                }
            }
            let ready = state.lock().unwrap_or_else(|p| p.into_inner()).ready;
            if !ready && successes >= probe.success_threshold.max(1) {
                update(&state, |s| s.ready = true);
                changed.notify_one();
            } else if ready && failures >= probe.failure_threshold.max(1) {
                update(&state, |s| s.ready = false);
                changed.notify_one();
            }
            let ready = state.lock().unwrap_or_else(|p| p.into_inner()).ready;
            let wait = match first_wait {
                // Once it answered, `successThreshold` counts whole periods again.
                Some(w) if !ready && successes == 0 && w < period => {
                    first_wait = Some(w * 2);
                    w
                }
                _ => {
                    first_wait = None;
                    period
                }
            };
            tokio::time::sleep(wait).await;
        }
    };
    let live_loop = async {
        let Some(probe) = liveness else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.into())).await;
        let mut failures = 0u32;
        loop {
            match check(&runtime, &container_id, ip, &probe).await {
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
            tokio::time::sleep(Duration::from_secs(probe.period_seconds.max(1).into())).await;
        }
    };
    // Liveness ending means the container is condemned; readiness alone never ends the task.
    tokio::select! {
        () = live_loop => {}
        () = async { ready_loop.await; std::future::pending::<()>().await } => {}
    }
}

/// One probe attempt; Err says why it failed.
async fn check(runtime: &Runtime, id: &str, ip: IpAddr, probe: &Probe) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.max(1).into());
    match &probe.handler {
        ProbeHandler::HttpGet {
            path,
            port,
            headers,
            scheme,
            ..
        } => {
            let addr = SocketAddr::new(ip, *port);
            if scheme.eq_ignore_ascii_case("HTTPS") {
                // No TLS client here: an HTTPS endpoint counts as up when it accepts connections.
                return tcp_connect(addr, timeout).await;
            }
            http_get(addr, path, headers, timeout).await
        }
        ProbeHandler::TcpSocket { port, .. } => {
            tcp_connect(SocketAddr::new(ip, *port), timeout).await
        }
        ProbeHandler::Exec { command } => match runtime.exec_succeeds(id, command, timeout).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("command {command:?} failed or timed out")),
            Err(e) => Err(e.to_string()),
        },
    }
}

async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
        Err(_) => Err(format!("connect to {addr}: timed out after {timeout:?}")),
    }
}

/// A minimal HTTP/1.1 GET: success is a 2xx or 3xx status, as in Kubernetes.
async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: berth-probe\r\nConnection: close\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < 12 {
            let n = stream
                .read(&mut head[read..])
                .await
                .map_err(|e| format!("read from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&head[..read]);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("GET http://{addr}{path}: not an HTTP response"))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("GET http://{addr}{path} returned {status}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "GET http://{addr}{path}: timed out after {timeout:?}"
        )),
    }
}

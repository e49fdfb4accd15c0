//! Liveness and readiness probes with Kubernetes semantics, run by the platform against one
//! container run: `httpGet` (to the container IP; `scheme: HTTPS` is TLS without certificate
//! verification, as in Kubernetes), `tcpSocket`, `exec` (docker exec).
//! Results land in a shared [`ProbeState`]; the supervisor acts on them (restart, routing).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifests_schema::{Probe, ProbeHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::routing::RoutingTable;
use crate::runtime::{Runtime, RuntimeError};

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
    #[error("GET {0}: probe task failed: {1}")]
    Task(String, String),
    #[error("command {0:?} failed or timed out")]
    Command(Vec<String>),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// First retry of a readiness probe that has never passed yet (then growing by half up to the
/// period: 20, 30, 45, 68… ms). A fresh replica is seen ready within a few tens of
/// milliseconds of answering, as a deployer polling by hand would; a slow starter costs a
/// dozen probes in its first two seconds.
const FIRST_READY_RETRY: Duration = Duration::from_millis(20);
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
    f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
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
    let ready_loop = async {
        // The check that says whether it answers: its readiness probe, or for a replica without
        // one (ready once running), whether port 80 answers HTTP at all.
        let check_now = || async {
            match &readiness {
                Some(probe) => check(runtime.as_ref(), &container_id, ip, probe).await,
                None => http_answers(SocketAddr::new(ip, 80), passive.answer_timeout).await,
            }
        };
        let (period, success_threshold, failure_threshold) = match &readiness {
            Some(probe) => {
                tokio::time::sleep(remaining_delay(probe.initial_delay_seconds, running_for)).await;
                (
                    Duration::from_secs(probe.period_seconds.max(1).into()),
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
        // verdict, only how soon it comes.
        let mut first_wait = Some(FIRST_READY_RETRY);
        let mut handled_ejection = None;
        let mut due = true;
        loop {
            let ejection = passive
                .routing
                .ejection(&passive.instance)
                .filter(|e| handled_ejection != Some(e.since));
            let unresponsive = state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unresponsive
                .is_some();
            // A wake-up for another instance's ejection checks nothing here.
            if (due && (readiness.is_some() || unresponsive)) || ejection.is_some() {
                match check_now().await {
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
                            first_wait = Some(FIRST_READY_RETRY);
                            changed.notify_one();
                        }
                    }
                }
                if let Some(e) = &ejection {
                    handled_ejection = Some(e.since);
                }
            }
            let current = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
            let ready = state.lock().unwrap_or_else(|p| p.into_inner()).ready;
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
            // An ejection is looked at at once, not a period later.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            due = loop {
                tokio::select! {
                    () = &mut sleep => break true,
                    () = passive.routing.ejected() => {
                        let fresh = passive
                            .routing
                            .ejection(&passive.instance)
                            .is_some_and(|e| handled_ejection != Some(e.since));
                        // Someone else's ejection: sleep on.
                        if fresh {
                            break false;
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
            match check(runtime.as_ref(), &container_id, ip, &probe).await {
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
async fn check(
    runtime: &dyn Runtime,
    id: &str,
    ip: IpAddr,
    probe: &Probe,
) -> Result<(), ProbeError> {
    let timeout = Duration::from_secs(probe.timeout_seconds.max(1).into());
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
        ProbeHandler::Exec { command } => match runtime.exec_succeeds(id, command, timeout).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ProbeError::Command(command.clone())),
            Err(e) => Err(ProbeError::Runtime(e)),
        },
    }
}

/// An `httpGet` probe: `scheme` is HTTP or HTTPS (any case, as Kubernetes accepts).
async fn http_probe(
    addr: SocketAddr,
    scheme: &str,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), ProbeError> {
    if scheme.eq_ignore_ascii_case("HTTPS") {
        https_get(addr, path, headers, timeout).await
    } else {
        http_get(addr, path, headers, timeout).await
    }
}

/// The request line and headers of a probe's GET.
fn get_request(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: berth-probe\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// The verdict on the first bytes of a response to `GET url`: success is a 2xx or 3xx status,
/// as in Kubernetes.
fn status_verdict(head: &[u8], url: &str) -> Result<(), ProbeError> {
    let status = parse_status(head).ok_or_else(|| ProbeError::NotHttp(url.to_owned()))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(ProbeError::Status(url.to_owned(), status))
    }
}

/// The status code of a response's first bytes ("HTTP/1.1 200 …").
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = String::from_utf8_lossy(head);
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// How many bytes of a response hold the status code ("HTTP/1.1 200").
const STATUS_BYTES: usize = 12;

/// Whether `addr` answers `GET /` with any HTTP status (a 404 or 500 is an answer too): the
/// check of a replica without readiness probe after the proxy ejected it.
async fn http_answers(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let url = format!("http://{addr}/");
    let head = http_head(addr, "/", &[], timeout).await?;
    parse_status(&head)
        .map(|_| ())
        .ok_or(ProbeError::NotHttp(url))
}

/// A minimal HTTP/1.1 GET over plain TCP.
async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let head = http_head(addr, path, headers, timeout).await?;
    status_verdict(&head, &format!("http://{addr}{path}"))
}

/// The first bytes (status line) of the answer to a GET over plain TCP.
async fn http_head(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<u8>, ProbeError> {
    let url = format!("http://{addr}{path}");
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ProbeError::Connect(addr, e))?;
        stream
            .write_all(get_request(addr, path, headers).as_bytes())
            .await
            .map_err(|e| ProbeError::Send(addr, e))?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < STATUS_BYTES {
            let n = stream
                .read(&mut head[read..])
                .await
                .map_err(|e| ProbeError::Read(addr, e))?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok(head[..read].to_vec())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(url, timeout)),
    }
}

/// The same GET over TLS that verifies no certificate ([`crate::tls::probe_client_config`]).
/// It runs on a blocking thread with rustls' blocking stream (the platform has no async TLS
/// client), whose every read and write is bounded by what is left of `timeout`
/// ([`Deadlined`]), so the thread ends by the time the verdict is given: a service trickling
/// bytes cannot keep probe threads alive and fill the blocking pool the store shares.
async fn https_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let url = format!("https://{addr}{path}");
    let request = get_request(addr, path, headers);
    let blocking_url = url.clone();
    let attempt = tokio::task::spawn_blocking(move || {
        https_get_blocking(addr, &request, blocking_url, timeout)
    });
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(ProbeError::Task(url, e.to_string())),
        Err(_) => Err(ProbeError::Timeout(url, timeout)),
    }
}

fn https_get_blocking(
    addr: SocketAddr,
    request: &str,
    url: String,
    timeout: Duration,
) -> Result<(), ProbeError> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    let tcp = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| ProbeError::Connect(addr, e))?;
    let server_name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(crate::tls::probe_client_config(), server_name)
        .map_err(|e| ProbeError::Tls(url.clone(), e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(connection, Deadlined { tcp, deadline });
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| ProbeError::Tls(url.clone(), e.to_string()))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < STATUS_BYTES {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            // A server that closes without close_notify after the status line still answered.
            Err(_) if read > 0 => break,
            Err(e) => return Err(ProbeError::Tls(url, e.to_string())),
        }
    }
    status_verdict(&head[..read], &url)
}

/// A socket whose reads and writes all end by `deadline` (a socket timeout bounds only one
/// call, and a peer sending a byte at a time makes rustls call again and again).
struct Deadlined {
    tcp: std::net::TcpStream,
    deadline: std::time::Instant,
}

impl Deadlined {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl std::io::Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        self.tcp.read(buf)
    }
}

impl std::io::Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    // The sleeping thread plays a slow server; no runtime runs on it.
    #[allow(clippy::disallowed_methods)]
    fn a_trickling_tls_server_cannot_hold_a_probe_thread_past_its_timeout() {
        // Announces a 16 KiB handshake record, then sends it a byte every 50 ms: each read
        // returns within any per-read timeout, and the record would take 14 minutes.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = conn.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            while conn.write_all(&[0]).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let (done, verdict) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let request = get_request(addr, "/health", &[]);
            let url = format!("https://{addr}/health");
            let _ = done.send(https_get_blocking(
                addr,
                &request,
                url,
                Duration::from_millis(300),
            ));
        });
        // Liveness, not speed: without the deadline it would not return for minutes.
        let verdict = verdict
            .recv_timeout(Duration::from_secs(30))
            .expect("the probe thread ended");
        assert!(verdict.is_err(), "{verdict:?}");
    }

    /// Serves `HTTP/1.1 <code>` for `GET /status/<code>` on a loopback port, over TLS with a
    /// fresh self-signed certificate (which no client could verify) or over plain TCP.
    fn serve(tls: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = tls.then(|| {
            let certified = rcgen::generate_simple_self_signed(vec!["elsewhere".into()]).unwrap();
            let key =
                rustls_pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
                    .unwrap();
            Arc::new(
                rustls::ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
                .unwrap(),
            )
        });
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || match config {
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config).unwrap();
                        let mut stream = rustls::StreamOwned::new(connection, tcp);
                        answer(&mut stream);
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                    }
                    None => answer(&mut { tcp }),
                });
            }
        });
        addr
    }

    fn answer(stream: &mut (impl Read + Write)) {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&request);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/status/"))
            .unwrap_or("404");
        let _ = write!(
            stream,
            "HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
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

    #[tokio::test]
    async fn a_replica_answers_with_any_status_but_not_with_garbage() {
        let plain = serve(false);
        let timeout = Duration::from_secs(5);
        assert!(
            http_answers(plain, timeout).await.is_ok(),
            "404 is an answer"
        );
        assert_eq!(parse_status(b"HTTP/1.1 503 x"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[tokio::test]
    async fn https_probes_speak_tls_without_verifying_and_judge_the_status() {
        let (tls, plain) = (serve(true), serve(false));
        let timeout = Duration::from_secs(5);
        // (server, scheme, code, passes): the status rule is the same over TLS and TCP; a
        // scheme that does not match the server fails.
        let cases = [
            (tls, "HTTPS", 200, true),
            (tls, "HTTPS", 302, true),
            (tls, "HTTPS", 399, true),
            (tls, "HTTPS", 404, false),
            (tls, "HTTPS", 500, false),
            (plain, "HTTP", 200, true),
            (plain, "HTTP", 500, false),
            (plain, "HTTPS", 200, false),
        ];
        for (addr, scheme, code, passes) in cases {
            let path = format!("/status/{code}");
            let result = http_probe(addr, scheme, &path, &[], timeout).await;
            assert_eq!(result.is_ok(), passes, "{scheme} {code}: {result:?}");
        }
    }
}

//! The HTTP side of probes: an `httpGet` probe over HTTP or HTTPS (TLS without verifying the
//! certificate, as Kubernetes does), and whether a replica without a readiness probe answers
//! HTTP. Both are futures on the runtime's sockets: when the timeout drops one, its connection
//! goes with it, and no thread waits on a service that keeps silent.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ProbeError;

/// An `httpGet` probe: `scheme` is HTTP or HTTPS (any case, as Kubernetes accepts).
pub(super) async fn http_probe(
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
pub(super) async fn http_answers(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
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

/// The same GET over TLS that verifies no certificate ([`crate::tls::probe_client_config`]),
/// with tokio-rustls: a blocking client would hold a thread of the pool the store shares for
/// as long as a silent service lets it, one per probe.
async fn https_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let url = format!("https://{addr}{path}");
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ProbeError::Connect(addr, e))?;
        let server_name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let mut stream = tokio_rustls::TlsConnector::from(crate::tls::probe_client_config())
            .connect(server_name, tcp)
            .await
            .map_err(|e| ProbeError::Tls(url.clone(), e.to_string()))?;
        stream
            .write_all(get_request(addr, path, headers).as_bytes())
            .await
            .map_err(|e| ProbeError::Tls(url.clone(), e.to_string()))?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < STATUS_BYTES {
            match stream.read(&mut head[read..]).await {
                Ok(0) => break,
                Ok(n) => read += n,
                // A server that closes without close_notify after the status line still answered.
                Err(_) if read > 0 => break,
                Err(e) => return Err(ProbeError::Tls(url.clone(), e.to_string())),
            }
        }
        status_verdict(&head[..read], &url)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(url, timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::schedule;
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    #[tokio::test]
    // The sleeping thread plays a slow server; no runtime runs on it.
    #[allow(clippy::disallowed_methods)]
    async fn a_trickling_tls_server_cannot_hold_a_probe_past_its_timeout() {
        // Announces a 16 KiB handshake record, then sends it a byte every 50 ms: each read
        // returns soon, and the record would take 14 minutes.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = conn.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            while conn.write_all(&[0]).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let probe = http_probe(addr, "HTTPS", "/health", &[], Duration::from_millis(300));
        // Liveness, not speed: without the timeout it would not return for minutes.
        let verdict = tokio::time::timeout(Duration::from_secs(30), probe)
            .await
            .expect("the probe ended");
        assert!(
            matches!(verdict, Err(ProbeError::Timeout(..))),
            "{verdict:?}"
        );
    }

    /// The probe of a service that accepts connections and never says a word, with
    /// `timeoutSeconds` at the schema's maximum: it fails at the cap (on a paused clock, which
    /// moves on whenever the test waits only for the timer and the silent peer), and its
    /// connection is closed then, which the peer sees: nothing was left waiting on it.
    #[tokio::test(start_paused = true)]
    async fn a_silent_tls_peer_fails_the_probe_at_the_cap_and_keeps_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Reads the ClientHello and whatever follows, answers nothing, until the end.
            let mut buf = [0u8; 1024];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed.send(());
        });
        let probe = manifests_schema::Probe {
            handler: manifests_schema::ProbeHandler::HttpGet {
                host: None,
                path: "/health".to_owned(),
                port: addr.port(),
                scheme: "HTTPS".to_owned(),
                headers: Vec::new(),
            },
            initial_delay_seconds: 0,
            period_seconds: 10,
            success_threshold: 1,
            timeout_seconds: u32::MAX,
            failure_threshold: 3,
        };
        let started = tokio::time::Instant::now();
        let verdict = http_probe(addr, "HTTPS", "/health", &[], schedule::timeout(&probe)).await;
        assert!(
            matches!(verdict, Err(ProbeError::Timeout(_, t)) if t == schedule::MAX_TIMEOUT),
            "{verdict:?}"
        );
        assert_eq!(started.elapsed(), schedule::MAX_TIMEOUT);
        seen.recv_timeout(Duration::from_secs(30))
            .expect("the probe's connection was closed when it failed");
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

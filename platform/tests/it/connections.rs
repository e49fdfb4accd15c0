//! The HTTPS listener bounds the connections a client can hold: idle ones (HTTP/1.1 that never
//! sent a request, HTTP/2 without a stream) are closed after `idle_timeout`, a request in
//! progress longer than that is not cut, and connections of one address beyond
//! `max_client_connections` are closed unread while other addresses are still served. The
//! internal API bounds each container address (`max_container_connections`) and all of them
//! together (a quarter of `max_connections`) the same way.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Options, Server, basic_auth, unique};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// How long a closed connection may take to be seen closed (the idle timeout is 2 s).
const SEEN_CLOSED: Duration = Duration::from_secs(20);

fn server_addr(server: &Server) -> SocketAddr {
    server
        .https
        .trim_start_matches("https://")
        .parse()
        .expect("https address")
}

/// A TCP connection to the server from `source` (any loopback address is this host's).
fn connect_from(server: &Server, source: IpAddr) -> TcpStream {
    connect(source, server_addr(server))
}

/// A TCP connection from `source` to `target`.
fn connect(source: IpAddr, target: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let tcp = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(source, 0)).expect("bind");
        socket.connect(target).await.expect("connect")
    });
    let tcp = tcp.into_std().expect("std stream");
    tcp.set_nonblocking(false).expect("blocking");
    tcp.set_read_timeout(Some(SEEN_CLOSED)).expect("timeout");
    tcp
}

/// A TLS client of the server from `source`, offering `alpn`; the handshake is not done yet.
fn tls_from(server: &Server, source: IpAddr, alpn: &[u8]) -> Tls {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(client_config(server, alpn), name).expect("client");
    rustls::StreamOwned::new(conn, connect_from(server, source))
}

/// A TLS client configuration trusting the server's certificate, offering `alpn`.
fn client_config(server: &Server, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(server.path("tls/cert.pem")).expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Completes the handshake (true), or sees the server close the connection instead (false).
fn handshake(tls: &mut Tls) -> bool {
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return false;
        }
    }
    true
}

/// Reads until the server closes the connection; panics if it stays open.
fn wait_closed(tls: &mut Tls, what: &str) {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: still open after {:?}", start.elapsed())
            }
            Err(_) => return,
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[test]
fn idle_connections_are_closed_and_one_client_cannot_hold_them_all() {
    let server = Server::start_with(Options {
        extra_args: vec![
            "--idle-timeout".into(),
            "2".into(),
            "--max-client-connections".into(),
            "3".into(),
        ],
        ..Options::default()
    });
    // Addresses of their own: the fixture's own client (127.0.0.1) keeps connections too.
    let here: IpAddr = "127.0.0.3".parse().unwrap();
    let elsewhere: IpAddr = "127.0.0.2".parse().unwrap();

    // 1. HTTP/1.1 that never sends a request, and HTTP/2 without a stream.
    let mut silent = tls_from(&server, here, b"http/1.1");
    assert!(handshake(&mut silent));
    let mut h2 = tls_from(&server, here, b"h2");
    assert!(handshake(&mut h2));
    h2.write_all(H2_PREFACE).unwrap();
    h2.flush().unwrap();

    // 2. A request whose body takes longer than the idle timeout to arrive.
    let mut slow = tls_from(&server, here, b"http/1.1");
    assert!(handshake(&mut slow));
    let body = format!(
        r#"{{"category":"{}","key":"slow","value":"{}"}}"#,
        unique("conn"),
        "v".repeat(40)
    );
    write!(
        slow,
        "POST /tenant/options HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        basic_auth(MGMT_ADMIN, ADMIN_PASSWORD),
        body.len()
    )
    .unwrap();
    slow.flush().unwrap();

    // 3. A fourth connection of the same address is closed unread; another address is served.
    let mut fourth = tls_from(&server, here, b"http/1.1");
    assert!(!handshake(&mut fourth), "a fourth connection was taken");
    let mut other = tls_from(&server, elsewhere, b"http/1.1");
    assert!(handshake(&mut other), "another address was refused");
    write!(
        other,
        "GET /tenant/currentTenant HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic_auth(MGMT_ADMIN, ADMIN_PASSWORD)
    )
    .unwrap();
    let mut answer = String::new();
    let _ = other.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The slow body trickles in over 4 s, twice the idle timeout, and is answered.
    for part in body.as_bytes().chunks(body.len().div_ceil(4)) {
        std::thread::sleep(Duration::from_secs(1));
        slow.write_all(part).unwrap();
        slow.flush().unwrap();
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        slow.read_exact(&mut byte)
            .expect("the slow request's answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");

    // The idle ones were closed by now (or are, shortly) ...
    wait_closed(&mut silent, "an HTTP/1.1 connection without a request");
    wait_closed(&mut h2, "an HTTP/2 connection without a stream");
    wait_closed(
        &mut slow,
        "the slow request's connection, idle after its answer",
    );
    // ... which gave the address its places back.
    let mut again = tls_from(&server, here, b"http/1.1");
    assert!(handshake(&mut again), "the address got no place back");
}

/// The port of the server's internal API (on every address, as containers need).
fn internal_port(server: &Server) -> u16 {
    std::fs::read_to_string(server.path("internal-port"))
        .expect("internal-port")
        .trim()
        .parse()
        .expect("port")
}

/// A plain TCP connection to the internal API from `source`.
fn internal_from(port: u16, source: IpAddr) -> TcpStream {
    connect(source, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Sends one keep-alive request; the answer's status line, or None when the connection was
/// closed without one.
fn ask(tcp: &mut TcpStream) -> Option<String> {
    if tcp
        .write_all(b"GET /tenant/currentTenant HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return None;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no answer and no close within {SEEN_CLOSED:?}")
            }
            Err(_) => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    // Skip the body, so the next answer starts clean.
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).ok()?;
    Some(head.lines().next().unwrap_or_default().to_owned())
}

#[test]
fn one_container_cannot_hold_all_of_the_internal_apis_connections() {
    // max_connections 16 gives the internal API 4 in all; 3 per address.
    let server = Server::start_with(Options {
        extra_args: vec![
            "--max-connections".into(),
            "16".into(),
            "--max-container-connections".into(),
            "3".into(),
        ],
        ..Options::default()
    });
    let port = internal_port(&server);
    let [one, two, three]: [IpAddr; 3] =
        ["127.0.0.5", "127.0.0.6", "127.0.0.7"].map(|a| a.parse().unwrap());
    // Loopback addresses are no container's: every answer is the peer check's 403, which is
    // enough to tell a served connection from a refused one. Each is answered before the next
    // opens, so the order the server takes them in is the order they were opened in.
    let served = |tcp: &mut TcpStream, what: &str| {
        let status = ask(tcp);
        assert!(
            status.as_deref().is_some_and(|s| s.contains(" 403")),
            "{what}: {status:?}"
        );
    };
    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut tcp = internal_from(port, one);
            served(&mut tcp, &format!("connection {i} of one address"));
            tcp
        })
        .collect();
    let mut fourth = internal_from(port, one);
    assert_eq!(ask(&mut fourth), None, "a fourth connection of one address");
    let mut other = internal_from(port, two);
    served(&mut other, "another address");
    // Four are open now: the internal API's whole share.
    let mut fifth = internal_from(port, three);
    assert_eq!(ask(&mut fifth), None, "a fifth connection in all");
    // The places come back when connections end.
    held.truncate(1);
    let start = Instant::now();
    loop {
        let mut again = internal_from(port, three);
        if ask(&mut again).is_some_and(|s| s.contains(" 403")) {
            break;
        }
        assert!(
            start.elapsed() < SEEN_CLOSED,
            "no place came back after two connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    served(&mut held[0], "a connection kept open all along");
}

type H2Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;
type H2Sender = hyper::client::conn::http2::SendRequest<H2Body>;

/// An HTTP/2 client of the server from `source`.
async fn h2_from(server: &Server, source: IpAddr) -> H2Sender {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    let tcp = socket.connect(server_addr(server)).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(client_config(server, b"h2"))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let (send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    send
}

/// Sends a GET of `path` as the management admin; the status and the body.
async fn h2_get(send: &mut H2Sender, path: &str) -> (u16, String, Option<String>) {
    use http_body_util::BodyExt;
    send.ready().await.expect("connection open");
    let request = hyper::Request::get(format!("https://localhost{path}"))
        .header("authorization", basic_auth(MGMT_ADMIN, ADMIN_PASSWORD))
        .body(http_body_util::Empty::new().boxed())
        .expect("request");
    let response = send.send_request(request).await.expect("answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        retry_after,
    )
}

#[test]
fn one_client_cannot_keep_more_api_requests_in_progress_than_its_share() {
    use http_body_util::BodyExt;
    let server = Server::start_with(Options {
        extra_args: vec!["--max-client-connections".into(), "3".into()],
        ..Options::default()
    });
    let here: IpAddr = "127.0.0.8".parse().unwrap();
    let elsewhere: IpAddr = "127.0.0.9".parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut h2 = h2_from(&server, here).await;
        // Three requests on one connection whose bodies have not arrived: in progress at the app.
        let category = unique("inprog");
        let hold = |h2: &mut H2Sender, i: usize| {
            let body = format!(r#"{{"category":"{category}","key":"held{i}","value":"v"}}"#);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
            let stream = futures_util::stream::poll_fn(move |cx| {
                rx.poll_recv(cx)
                    .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
            });
            let request = hyper::Request::post("https://localhost/tenant/options")
                .header("authorization", basic_auth(MGMT_ADMIN, ADMIN_PASSWORD))
                .header("content-type", "application/json")
                .header("content-length", body.len())
                .body(http_body_util::StreamBody::new(stream).boxed())
                .expect("request");
            (tokio::spawn(h2.send_request(request)), (tx, body))
        };
        let mut held = Vec::new();
        let mut bodies = Vec::new();
        for i in 0..3 {
            h2.ready().await.expect("connection open");
            let (answer, body) = hold(&mut h2, i);
            held.push(answer);
            bodies.push(body);
        }
        // A fourth request of the same client, on the same connection, is refused as its own.
        let start = Instant::now();
        loop {
            let (status, answer, retry_after) = h2_get(&mut h2, "/tenant/currentTenant").await;
            if status == 429 {
                assert!(answer.contains("general/Too Many Requests"), "{answer}");
                assert!(answer.contains("3 requests in progress"), "{answer}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                break;
            }
            assert_eq!(status, 200, "{answer}");
            assert!(
                start.elapsed() < SEEN_CLOSED,
                "three requests in progress and a fourth still served"
            );
            // A probe can reach the front before a held request does, which is then the one
            // refused: it is sent again.
            for i in 0..held.len() {
                if held[i].is_finished() {
                    h2.ready().await.expect("connection open");
                    let (answer, body) = hold(&mut h2, i);
                    let refused = std::mem::replace(&mut held[i], answer);
                    bodies[i] = body;
                    let refused = refused.await.expect("task").expect("answer");
                    assert_eq!(
                        refused.status().as_u16(),
                        429,
                        "a held request was answered"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Another client is served meanwhile.
        let mut other = h2_from(&server, elsewhere).await;
        let (status, answer, _) = h2_get(&mut other, "/tenant/currentTenant").await;
        assert_eq!(status, 200, "{answer}");
        // The held requests finish and give their places back.
        for (tx, body) in &bodies {
            tx.send(bytes::Bytes::from(body.clone()))
                .await
                .expect("body sent");
        }
        drop(bodies);
        for request in held {
            let response = request.await.expect("task").expect("answer");
            assert_eq!(response.status().as_u16(), 201);
        }
        let start = Instant::now();
        loop {
            let (status, answer, _) = h2_get(&mut h2, "/tenant/currentTenant").await;
            if status == 200 {
                break;
            }
            assert!(
                start.elapsed() < SEEN_CLOSED,
                "no place came back: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// The HTTP/2 streams one connection may have open, as the server's SETTINGS tell a client.
#[test]
fn an_http2_connection_may_open_as_many_streams_as_nginx_allows() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server_addr(&server))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(client_config(&server, b"h2"))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake");
        let (send, mut connection) = h2::client::handshake(tls).await.expect("HTTP/2");
        let mut send = send.ready().await.expect("connection open");
        let request = hyper::Request::get("https://localhost/tenant/currentTenant")
            .header("authorization", basic_auth(MGMT_ADMIN, ADMIN_PASSWORD))
            .body(())
            .expect("request");
        let (answer, _) = send.send_request(request, true).expect("sent");
        // The server's SETTINGS come first on the connection, so they are in force once the
        // answer is.
        let answer = tokio::select! {
            answer = answer => answer.expect("answer"),
            ended = &mut connection => panic!("connection ended first: {ended:?}"),
        };
        assert_eq!(answer.status().as_u16(), 200);
        assert_eq!(connection.max_concurrent_send_streams(), 128);
    });
}

/// Uploads in progress each hold a temporary file of up to the upload limit: one tenant keeps
/// at most 4 at once, the fifth is refused at once (429 with `Retry-After`), another tenant
/// still uploads, and the places come back when the held uploads end.
#[test]
fn one_tenant_cannot_keep_more_uploads_in_progress_than_its_share() {
    use crate::fixture::create_tenant;
    use crate::upload::{create_microservice, upload};
    let server = Server::start();
    let (greedy, other) = (
        create_tenant(&server, "greedy"),
        create_tenant(&server, "other"),
    );
    let app = create_microservice(&server, &greedy);
    let id = app["id"].as_str().unwrap();
    let other_app = create_microservice(&server, &other);
    let other_id = other_app["id"].as_str().unwrap();
    // Four uploads whose bodies stop after the start of the file part.
    let here: IpAddr = "127.0.0.10".parse().unwrap();
    let head = |length: usize| {
        format!(
            "POST /application/applications/{id}/binaries HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: {}\r\nContent-Type: multipart/form-data; boundary=b\r\n\
             Content-Length: {length}\r\n\r\n\
             --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.zip\"\r\n\r\nPK",
            basic_auth(&greedy.admin_login, &greedy.admin_password)
        )
    };
    // Their credential verified once first: the cache is keyed by the header and the host, so
    // otherwise each held upload waits for a password hash, which a loaded machine can stretch
    // past the deadline below.
    let mut warm = tls_from(&server, here, b"http/1.1");
    write!(
        warm,
        "GET /tenant/currentTenant HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic_auth(&greedy.admin_login, &greedy.admin_password)
    )
    .unwrap();
    let mut answer = String::new();
    let _ = warm.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let hold = || {
        let mut tls = tls_from(&server, here, b"http/1.1");
        tls.write_all(head(1 << 20).as_bytes())
            .expect("held upload");
        tls.flush().expect("flush");
        tls
    };
    let mut held: Vec<Tls> = (0..4).map(|_| hold()).collect();
    // The fifth is refused as soon as the four are in progress. A probe that comes first is
    // answered 422 for its broken package and frees its place at once; while it held one, a
    // held upload arriving was refused (429), and is sent again.
    let start = Instant::now();
    loop {
        for tls in held.iter_mut() {
            if answered(tls) {
                *tls = hold();
            }
        }
        let answer = upload(&server, &greedy, id, "file", b"PK");
        if answer.status == 429 {
            let body = answer.json();
            assert_eq!(body["error"], "applications/Too Many Requests", "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("4 uploads in progress"),
                "{body}"
            );
            assert_eq!(answer.header("retry-after"), Some("5"));
            break;
        }
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert!(
            start.elapsed() < SEEN_CLOSED,
            "four uploads in progress and a fifth still taken"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another tenant's upload is taken meanwhile (and refused for its package, not its share).
    upload(&server, &other, other_id, "file", b"PK").expect(422);
    // The held uploads break off; their places come back.
    drop(held);
    let start = Instant::now();
    loop {
        let answer = upload(&server, &greedy, id, "file", b"PK");
        if answer.status == 422 {
            break;
        }
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert!(start.elapsed() < SEEN_CLOSED, "no place came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server has answered on `tls` (without waiting for it).
fn answered(tls: &mut Tls) -> bool {
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let answered = match tls.read(&mut byte) {
        Ok(n) => n > 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    tls.sock.set_read_timeout(None).expect("timeout");
    answered
}

/// An upload whose client stops sending is refused after `body_timeout` with 408, undone
/// (nothing of it left on disk) and its place freed: a client trickling a package cannot hold
/// one of its tenant's few upload places for ever.
#[test]
fn an_upload_that_stops_arriving_is_refused_and_undone() {
    use crate::fixture::create_tenant;
    use crate::upload::create_microservice;
    let server = Server::start_with(Options {
        extra_args: vec!["--body-timeout".into(), "2".into()],
        ..Options::default()
    });
    let tenant = create_tenant(&server, "trickle");
    let app = create_microservice(&server, &tenant);
    let id = app["id"].as_str().unwrap();
    let here: IpAddr = "127.0.0.11".parse().unwrap();
    let mut tls = tls_from(&server, here, b"http/1.1");
    let head = format!(
        "POST /application/applications/{id}/binaries HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: {}\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: 1048576\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.zip\"\r\n\r\nPK",
        basic_auth(&tenant.admin_login, &tenant.admin_password)
    );
    tls.write_all(head.as_bytes()).expect("upload head");
    tls.flush().expect("flush");
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("body_timeout") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to the stalled upload: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("applications/Request Timeout"), "{answer}");
    assert!(start.elapsed() < SEEN_CLOSED);
    // Undone: no temporary file left.
    let tmp = server.path("tmp");
    let deadline = Instant::now() + SEEN_CLOSED;
    while std::fs::read_dir(&tmp).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "left in {}", tmp.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Every legal HTTP/1.x response framing through `/service/…`, on HTTP/1.1 and HTTP/2 (curl):
//! the `framing` upstream (examples/hello/src/bin/framing.rs, a raw-socket server in a scratch
//! image) answers with Content-Length, chunked with a trailer, close-delimited, HTTP/1.0, HEAD,
//! 204, 304, `Expect: 100-continue`, an upgrade, and bodies cut off halfway, which must reach
//! the client as an aborted response (curl fails), never a clean short one, with a warn line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::fixture::{Options, Server, Tenant, app_name, create_tenant, unique};
use crate::supervisor::{
    HelloImage, HelloLease, deploy, docker, manifest, readiness_on_health,
    remove_image_when_unused, start_server_with, subscribe, wait_for, wait_ready,
};

/// What `framing` generates: 300 000 bytes, byte i = i mod 251.
fn generated() -> Vec<u8> {
    (0..300_000usize).map(|i| (i % 251) as u8).collect()
}

/// The framing image, built from the binary `build.sh` compiled next to hello's (hold a
/// `HelloLease` first): `FROM scratch`, its entrypoint the framing server.
pub struct FramingImage {
    tag: String,
    pub image: HelloImage,
}

impl FramingImage {
    pub fn build() -> FramingImage {
        let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
        let target_dir = berth
            .parent()
            .and_then(Path::parent)
            .expect("target directory");
        let binary = target_dir.join("x86_64-unknown-linux-gnu/release/framing");
        assert!(binary.is_file(), "{} missing", binary.display());
        let context = tempfile::tempdir().unwrap();
        std::fs::copy(&binary, context.path().join("framing")).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY framing /framing\nEXPOSE 80\nENTRYPOINT [\"/framing\"]\n",
        )
        .unwrap();
        let tag = format!("berth-it-framing-{}:1.0.0", unique(""));
        let built = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "--label", "berth.test=1", "-t", &tag])
            .arg(context.path())
            .output()
            .expect("docker build");
        assert!(
            built.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let archive_path = context.path().join("image.tar");
        let archive_arg = archive_path.to_str().unwrap();
        docker(&["save", "-o", archive_arg, &tag]);
        let archive = std::fs::read(&archive_path).unwrap();
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
        FramingImage {
            tag,
            image: HelloImage { id, archive },
        }
    }
}

impl Drop for FramingImage {
    fn drop(&mut self) {
        remove_image_when_unused(&self.tag);
    }
}

/// The framing service deployed for `owner` (one replica, ready): its name and its
/// `/service/…` base URL.
fn deploy_framing(server: &Server, owner: &Tenant, image: &FramingImage) -> (String, String) {
    let app = deploy(
        server,
        owner,
        &image.image,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(server, &owner.id, &app).expect(201);
    wait_ready(server, owner, &app, 1);
    let name = app_name(server, owner, &app);
    let base = format!("{}/service/{name}", server.https);
    (name, base)
}

/// One request with curl; its exit code, status, response headers and body.
struct Fetched {
    exit: i32,
    status: u16,
    version: String,
    headers: String,
    body: Vec<u8>,
}

fn fetch(server: &Server, http: &str, auth: (&str, &str), url: &str, extra: &[&str]) -> Fetched {
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    let headers_path = dir.path().join("headers");
    let output = Command::new("curl")
        .args([
            http,
            "-sS",
            "--max-time",
            "30",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(server.path("tls/cert.pem"))
        .arg("-u")
        .arg(format!("{}:{}", auth.0, auth.1))
        .arg("-o")
        .arg(&body_path)
        .arg("-D")
        .arg(&headers_path)
        .args(extra)
        .arg(url)
        .output()
        .expect("the curl CLI must be installed for these tests");
    let written = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut parts = written.split_whitespace();
    Fetched {
        exit: output.status.code().unwrap_or(-1),
        status: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        version: parts.next().unwrap_or("").to_owned(),
        headers: std::fs::read_to_string(&headers_path)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: std::fs::read(&body_path).unwrap_or_default(),
    }
}

struct Case {
    what: &'static str,
    path: &'static str,
    extra: &'static [&'static str],
    status: u16,
    body: Expected,
}

enum Expected {
    Generated,
    Empty,
    /// `curl -I` writes the head where the body goes: nothing may follow it.
    HeadOnly,
    Echo,
    /// The transfer must fail: the upstream broke off.
    Aborted,
}

fn cases() -> Vec<Case> {
    use Expected::*;
    let case = |what, path, extra, status, body| Case {
        what,
        path,
        extra,
        status,
        body,
    };
    vec![
        case("content-length", "/cl", &[], 200, Generated),
        case("chunked with trailer", "/chunked", &[], 200, Generated),
        case("close-delimited HTTP/1.1", "/close", &[], 200, Generated),
        case("HTTP/1.0 upstream", "/http10", &[], 200, Generated),
        case("HEAD with length", "/cl", &["-I"], 200, HeadOnly),
        case("HEAD close-delimited", "/close", &["-I"], 200, HeadOnly),
        case("204", "/no-content", &[], 204, Empty),
        case("304", "/not-modified", &[], 304, Empty),
        case(
            "POST with length",
            "/echo",
            &["--data-binary", "@BODY"],
            200,
            Echo,
        ),
        case(
            "POST with Expect: 100-continue",
            "/echo",
            &["--data-binary", "@BODY", "-H", "Expect: 100-continue"],
            200,
            Echo,
        ),
        case(
            "POST chunked",
            "/echo",
            &["--data-binary", "@BODY", "-H", "Transfer-Encoding: chunked"],
            200,
            Echo,
        ),
        case("aborted content-length", "/abort-cl", &[], 200, Aborted),
        case("aborted chunked", "/abort-chunked", &[], 200, Aborted),
    ]
}

#[test]
fn every_response_framing_is_relayed_whole_and_aborts_stay_aborts() {
    let _hello = HelloLease::acquire(); // builds the framing binary along with hello
    let image = FramingImage::build();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("berth.log");
    let (_cleanup, server) = start_server_with(
        &[],
        Options {
            log_file: Some(log.clone()),
            ..Options::default()
        },
    );
    let owner = create_tenant(&server, "owner");
    let (name, base) = deploy_framing(&server, &owner, &image);
    let auth = (owner.admin_login.as_str(), owner.admin_password.as_str());
    let upload_dir = tempfile::tempdir().unwrap();
    let upload_path = upload_dir.path().join("upload");
    let upload: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&upload_path, &upload).unwrap();
    let upload_arg = format!("@{}", upload_path.display());
    let generated = generated();
    // An OAI-Secure cookie session of the owner's admin, as curl header arguments.
    let session = {
        let cookies = server
            .req("POST", &format!("/tenant/oauth?tenant_id={}", owner.id))
            .form(&[
                ("grant_type", "PASSWORD"),
                ("username", "boss"),
                ("password", owner.admin_password.as_str()),
            ])
            .send()
            .expect(200)
            .cookies();
        (
            format!(
                "Cookie: authorization={}; XSRF-TOKEN={}",
                cookies["authorization"], cookies["XSRF-TOKEN"]
            ),
            format!("X-XSRF-TOKEN: {}", cookies["XSRF-TOKEN"]),
        )
    };

    let mut failures = Vec::new();
    for (http, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        for case in cases() {
            let extra: Vec<&str> = case
                .extra
                .iter()
                .map(|a| {
                    if *a == "@BODY" {
                        upload_arg.as_str()
                    } else {
                        a
                    }
                })
                .collect();
            if version == "2" && case.what == "POST chunked" {
                continue; // HTTP/2 has no chunked encoding: "POST with length" and streams cover it
            }
            let got = fetch(&server, http, auth, &format!("{base}{}", case.path), &extra);
            let label = format!("HTTP/{version} {}", case.what);
            let ok = match case.body {
                Expected::Aborted => got.exit != 0,
                _ => got.exit == 0 && got.status == case.status && got.version == version,
            };
            let body_ok = match case.body {
                Expected::Generated => got.body == generated,
                Expected::Empty => got.body.is_empty(),
                Expected::HeadOnly => {
                    got.body.starts_with(b"HTTP/") && got.body.ends_with(b"\r\n\r\n")
                }
                Expected::Echo => got.body == upload,
                Expected::Aborted => got.body.len() < generated.len(),
            };
            if !ok || !body_ok {
                failures.push(format!(
                    "{label}: curl exit {}, status {}, HTTP/{}, {} body bytes",
                    got.exit,
                    got.status,
                    got.version,
                    got.body.len()
                ));
            }
            // HEAD tells the length of what GET would send, when the upstream knows it.
            if case.what == "HEAD with length" && !got.headers.contains("content-length: 300000") {
                failures.push(format!("{label}: no content-length: {}", got.headers));
            }
            if case.what == "304" && !got.headers.contains("etag: \"v1\"") {
                failures.push(format!("{label}: the ETag is lost: {}", got.headers));
            }
        }
        // A service answers on the platform's origin: it may set cookies, not the platform's,
        // under no name a browser or Berth could read as theirs. Basic credentials Berth has
        // verified take the front's direct path; a cookie session always the actix app's.
        let (cookie, xsrf) = &session;
        let cookie_auth = ["-H", "Authorization:", "-H", cookie, "-H", xsrf];
        for (path, extra) in [("direct", &[][..]), ("actix", &cookie_auth[..])] {
            let got = fetch(&server, http, auth, &format!("{base}/cookies"), extra);
            let planted = got.headers.lines().any(|l| {
                l.starts_with("set-cookie:") && !l.starts_with("set-cookie: session=kept")
            });
            if got.status != 204 || !got.headers.contains("set-cookie: session=kept") || planted {
                failures.push(format!(
                    "HTTP/{version} cookies ({path} path): status {}, {}",
                    got.status, got.headers
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Each abort left a warn line naming what happened (the log is written in batches).
    let warned = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("WARN") && l.contains("upstream broke off the response body"))
            .count()
    };
    wait_for(Duration::from_secs(20), "a warn line per abort", || {
        (warned() >= 4).then_some(())
    });

    upgrade_echo(&server, &name, &owner);
    abandoned_upgrades_leave_nothing(&server, &name, &owner);
    stale_connections(&server, &base, auth);
}

/// Two requests on one client connection (so one front thread and its upstream pool): the
/// first is `/stale-next`, after which the upstream closes its pooled connection on the next
/// request without answering. An idempotent request goes again on a new connection and gets
/// its answer; a POST cannot (it may have been processed) and gets 502. Last, since the 502
/// ejects the only replica.
fn stale_connections(server: &Server, base: &str, auth: (&str, &str)) {
    let pair = |second: &[&str]| -> String {
        let cert = server.path("tls/cert.pem");
        let user = format!("{}:{}", auth.0, auth.1);
        let common = |c: &mut Command| {
            c.args(["--http1.1", "-sS", "--max-time", "30", "-o", "/dev/null"])
                .args(["-w", "%{http_code}:%{num_connects} "])
                .arg("--cacert")
                .arg(&cert)
                .args(["-u", &user]);
        };
        let mut curl = Command::new("curl");
        common(&mut curl);
        curl.arg(format!("{base}/stale-next")).arg("--next");
        common(&mut curl);
        curl.args(second).arg(format!("{base}/health"));
        let output = curl.output().expect("curl");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    // 200 on one connection each (num_connects 0: curl reused its connection to Berth).
    assert_eq!(
        pair(&[]),
        "200:1 200:0",
        "a GET after the upstream dropped the connection"
    );
    assert_eq!(
        pair(&["-I"]),
        "200:1 200:0",
        "a HEAD after the upstream dropped the connection"
    );
    assert_eq!(
        pair(&["-X", "POST", "--data", "x"]),
        "200:1 502:0",
        "a POST whose connection dropped under it is not sent twice"
    );
}

/// An `Upgrade` handshake through the proxy, then bytes both ways over the tunnel (HTTP/1.1:
/// HTTP/2 has no `Upgrade`).
type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to Berth with an upgrade request for `path` of service `name` sent.
fn open_upgrade(server: &Server, name: &str, owner: &Tenant, path: &str) -> Tls {
    open_request(
        server,
        owner,
        &format!("GET /service/{name}/{path}"),
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
}

/// A TLS connection to Berth with a request head sent: `request` is the method and target,
/// `extra` more header lines (each ending in CRLF); the owner's Basic credentials go along.
fn open_request(server: &Server, owner: &Tenant, request: &str, extra: &str) -> Tls {
    use base64::Engine;
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let pem = std::fs::read(server.path("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = server.https.trim_start_matches("https://").to_owned();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", owner.admin_login, owner.admin_password));
    write!(
        tls,
        "{request} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n{extra}\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    tls
}

/// The response head on `tls`.
fn read_response_head(tls: &mut Tls) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn upgrade_echo(server: &Server, name: &str, owner: &Tenant) {
    let mut tls = open_upgrade(server, name, owner, "upgrade");
    let head = read_response_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let payload = b"bytes after the upgrade, both ways";
    tls.write_all(payload).unwrap();
    tls.flush().unwrap();
    let mut echoed = vec![0u8; payload.len()];
    tls.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, payload);
}

/// Upgrades whose client left while the service held on (a tunnel it never closes, a refusal
/// whose announced body never comes) leave no connection behind in Berth: before, each kept
/// the app's connection, its handler and the upstream socket until Berth stopped.
fn abandoned_upgrades_leave_nothing(server: &Server, name: &str, owner: &Tenant) {
    let pid = server.pid().expect("the server's pid");
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = descriptors();
    for _ in 0..20 {
        let mut held = open_upgrade(server, name, owner, "upgrade-hold");
        let head = read_response_head(&mut held);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut refused = open_upgrade(server, name, owner, "upgrade-refuse-stall");
        // Nothing comes back: Berth waits for the body the service announced.
        refused
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(refused.read(&mut byte).is_err(), "an answer came");
    }
    let mut now = descriptors();
    wait_for(Duration::from_secs(30), "Berth's descriptors back", || {
        now = descriptors();
        (now <= before + 8).then_some(())
    });
    eprintln!("abandoned upgrades: {before} descriptors before, {now} after");
}

/// With a 2 s proxy timeout: an upload that takes longer as a whole but keeps coming is relayed
/// (the timeout is for a replica that stops answering, not for a slow client), and a
/// connection whose replica answered before reading a body the client stopped sending does
/// not hold up the requests after it (before: each waited out the timeout, got 504, and the
/// replica was ejected).
#[test]
fn slow_uploads_and_early_answers_hold_up_nothing() {
    let _hello = HelloLease::acquire();
    let image = FramingImage::build();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("berth.log");
    let (_cleanup, server) = start_server_with(
        &["--proxy-timeout", "2", "--proxy-read-timeout", "2"],
        Options {
            log_file: Some(log.clone()),
            ..Options::default()
        },
    );
    let owner = create_tenant(&server, "slow");
    let (name, base) = deploy_framing(&server, &owner, &image);
    let auth = (owner.admin_login.as_str(), owner.admin_password.as_str());

    // About 5 s of upload at 20 KB/s, over twice the timeout.
    let dir = tempfile::tempdir().unwrap();
    let upload: Vec<u8> = (0..100_000u32).map(|i| (i % 239) as u8).collect();
    let path = dir.path().join("upload");
    std::fs::write(&path, &upload).unwrap();
    let data = format!("@{}", path.display());
    let got = fetch(
        &server,
        "--http1.1",
        auth,
        &format!("{base}/echo"),
        &["--data-binary", &data, "--limit-rate", "20k"],
    );
    assert_eq!((got.exit, got.status), (0, 200), "slow upload");
    assert!(got.body == upload, "{} bytes echoed", got.body.len());

    // Early answers whose clients then stall, on every front thread's pool.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut tls = open_request(
            &server,
            &owner,
            &format!("POST /service/{name}/early"),
            "Content-Length: 10000000\r\n",
        );
        tls.write_all(&[b'x'; 1024]).unwrap();
        tls.flush().unwrap();
        let head = read_response_head(&mut tls);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stalled.push(tls);
    }
    for n in 0..10 {
        let got = fetch(&server, "--http1.1", auth, &format!("{base}/health"), &[]);
        assert_eq!(
            (got.exit, got.status),
            (0, 200),
            "request {n} after the stalls"
        );
    }
    drop(stalled);

    // The read timeout counts a body's silence, not its length: six bytes over six seconds
    // arrive whole, a body that stops is aborted by the proxy (curl's own limit, exit 28,
    // is 30 s) with a warn line, on both HTTP versions.
    for http in ["--http1.1", "--http2"] {
        let got = fetch(&server, http, auth, &format!("{base}/trickle"), &[]);
        assert_eq!((got.exit, got.status), (0, 200), "{http} trickle");
        assert_eq!(got.body, b"slowly", "{http} trickle");
        let got = fetch(&server, http, auth, &format!("{base}/stall-body"), &[]);
        assert!(
            got.exit != 0 && got.exit != 28 && got.body.len() < 300_000,
            "{http} stalled body: curl exit {}, {} bytes",
            got.exit,
            got.body.len()
        );
    }
    wait_for(
        Duration::from_secs(20),
        "a warn line per stalled body",
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text
                .lines()
                .filter(|l| l.contains("WARN") && l.contains("proxy_read_timeout"))
                .count()
                >= 2)
                .then_some(())
        },
    );
}

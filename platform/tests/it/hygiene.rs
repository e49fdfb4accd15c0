//! HTTP hygiene against hostile clients (issue 10, items 10, 13 and 17): control characters
//! in names, forwarding headers from untrusted peers, and the security headers of responses.

use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, create_tenant};

/// Caller (login, password), method, path, body and the expected error.
type Case<'a> = ((&'a str, &'a str), &'a str, String, Value, &'a str);

/// `totalElements` of a collection the management admin (or `login`) lists.
fn total(server: &Server, login: (&str, &str), path: &str) -> i64 {
    let sep = if path.contains('?') { '&' } else { '?' };
    server
        .req(
            "GET",
            &format!("{path}{sep}withTotalElements=true&pageSize=1"),
        )
        .basic(login.0, login.1)
        .send()
        .expect(200)
        .json()["statistics"]["totalElements"]
        .as_i64()
        .expect("totalElements")
}

#[test]
fn control_characters_in_names_are_refused_before_anything_is_written() {
    let server = Server::start();
    let t = create_tenant(&server, "ctl");
    let tid = t.id.clone();
    let boss = (t.admin_login.as_str(), t.admin_password.as_str());
    let mgmt = (MGMT_ADMIN, ADMIN_PASSWORD);
    let group = server
        .req("POST", &format!("/user/{tid}/groups"))
        .basic(boss.0, boss.1)
        .json(&json!({"name": "clean"}))
        .send()
        .expect(201)
        .json()["id"]
        .as_i64()
        .unwrap();
    let counted = [
        (boss, format!("/user/{tid}/users")),
        (boss, format!("/user/{tid}/groups")),
        (boss, "/tenant/options".to_owned()),
        (mgmt, "/tenant/tenants".to_owned()),
        (mgmt, "/application/applications".to_owned()),
    ];
    let before: Vec<i64> = counted.iter().map(|(l, p)| total(&server, *l, p)).collect();
    let tenant = |field: &str, value: &str| {
        let mut body = json!({"company": "Ctl", "domain": "ctl-x.example.com", "adminName": "boss",
                              "adminEmail": "b@example.com", "adminPass": "Tenant-Admin-1"});
        body[field] = json!(value);
        body
    };
    let bad = ["a\u{0}b", "a\u{1}b", "a\u{7f}b"];
    // (who, method, path, body, error)
    let mut cases: Vec<Case<'_>> = Vec::new();
    for text in bad {
        cases.extend([
            (
                boss,
                "POST",
                format!("/user/{tid}/users"),
                json!({"userName": text, "password": "Jane-Pass-1"}),
                "users/Invalid Data",
            ),
            (
                boss,
                "POST",
                "/tenant/options".to_owned(),
                json!({"category": text, "key": "k", "value": "v"}),
                "options/Invalid Data",
            ),
            (
                boss,
                "POST",
                "/tenant/options".to_owned(),
                json!({"category": "c", "key": text, "value": "v"}),
                "options/Invalid Data",
            ),
            (
                boss,
                "PUT",
                "/tenant/options/c".to_owned(),
                json!({ text: "v" }),
                "options/Invalid Data",
            ),
            (
                boss,
                "POST",
                format!("/user/{tid}/groups"),
                json!({"name": text}),
                "groups/Invalid Data",
            ),
            (
                boss,
                "PUT",
                format!("/user/{tid}/groups/{group}"),
                json!({"name": text}),
                "groups/Invalid Data",
            ),
            (
                mgmt,
                "POST",
                "/application/applications".to_owned(),
                json!({"name": text, "key": "k-key", "type": "MICROSERVICE"}),
                "applications/Invalid Data",
            ),
            (
                mgmt,
                "POST",
                "/tenant/tenants".to_owned(),
                tenant("adminName", text),
                "tenants/Invalid Data",
            ),
            (
                mgmt,
                "POST",
                "/tenant/tenants".to_owned(),
                tenant("domain", &format!("{text}.example.com")),
                "tenants/Invalid Data",
            ),
            (
                mgmt,
                "POST",
                "/tenant/tenants".to_owned(),
                tenant("id", text),
                "tenants/Invalid Data",
            ),
        ]);
    }
    // Control characters percent-encoded in a path segment.
    for encoded in ["%00", "%01", "%7F"] {
        cases.push((
            boss,
            "PUT",
            format!("/tenant/options/c{encoded}x/key"),
            json!({"value": "v"}),
            "options/Invalid Data",
        ));
        cases.push((
            boss,
            "PUT",
            format!("/tenant/options/c/k{encoded}x"),
            json!({"value": "v"}),
            "options/Invalid Data",
        ));
    }
    for ((login, password), method, path, body, error) in cases {
        let resp = server
            .req(method, &path)
            .basic(login, password)
            .json(&body)
            .send();
        assert_eq!(resp.status, 422, "{method} {path} {body}: {}", resp.body);
        let message = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        resp.expect_error(422, error);
        assert!(!message.is_empty(), "{method} {path}");
    }
    // Nothing was written, and the server still serves.
    let after: Vec<i64> = counted.iter().map(|(l, p)| total(&server, *l, p)).collect();
    assert_eq!(before, after, "{counted:?}");
    server.admin_get("/user/currentUser").expect(200);
}

#[test]
fn every_api_response_carries_the_security_headers() {
    use crate::fixture::Options;
    let server = Server::start_with(Options {
        http: true,
        ..Options::default()
    });
    let mgmt = (MGMT_ADMIN, ADMIN_PASSWORD);
    let app = server
        .req("POST", "/application/applications")
        .basic(mgmt.0, mgmt.1)
        .json(&json!({"name": "hdrsvc", "key": "hdrsvc-key", "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .map(str::to_owned)
        .expect("application id");
    let login = [
        ("grant_type", "PASSWORD"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
    ];
    // (method, path, authenticated, form body, expected status); credentials of every kind.
    let cases: &[(&str, String, bool, bool, u16)] = &[
        (
            "POST",
            "/tenant/oauth/token?tenant_id=management".into(),
            false,
            true,
            200,
        ),
        (
            "POST",
            "/tenant/oauth?tenant_id=management".into(),
            false,
            true,
            200,
        ),
        ("GET", "/user/currentUser".into(), true, false, 200),
        ("GET", "/user/management/users".into(), true, false, 200),
        ("GET", "/tenant/options".into(), true, false, 200),
        (
            "GET",
            format!("/application/applications/{app}/bootstrapUser"),
            true,
            false,
            200,
        ),
        ("GET", "/user/currentUser".into(), false, false, 401),
        ("GET", "/no/such/resource".into(), true, false, 404),
    ];
    for https in [true, false] {
        for (method, path, authenticated, form, status) in cases {
            let mut req = if https {
                server.req(method, path)
            } else {
                server.req_http(method, path)
            };
            if *authenticated {
                req = req.basic(mgmt.0, mgmt.1);
            }
            if *form {
                req = req.form(&login);
            }
            let resp = req.send();
            let context = format!("https={https} {method} {path}: {:?}", resp.headers);
            assert_eq!(resp.status, *status, "{context}");
            assert_eq!(resp.header("cache-control"), Some("no-store"), "{context}");
            assert_eq!(
                resp.header("x-content-type-options"),
                Some("nosniff"),
                "{context}"
            );
            let hsts = resp.header("strict-transport-security");
            if https {
                assert_eq!(hsts, Some("max-age=31536000"), "{context}");
            } else {
                assert_eq!(hsts, None, "{context}");
            }
        }
    }
    // Under /service/ Berth only adds what is missing (a microservice's own headers are kept:
    // unit table in api::security_headers); its own proxy error gets nosniff and HSTS.
    let resp = server
        .req("GET", "/service/no-such-service/x")
        .basic(mgmt.0, mgmt.1)
        .send();
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        resp.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}

/// Completes a TLS handshake with `sni` as the server name, with OpenSSL's client (rustls's
/// refuses to send an IP address).
fn handshake_with_sni(server: &Server, sni: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let addr = server.https.trim_start_matches("https://");
    let mut child = Command::new("openssl")
        .args(["s_client", "-brief", "-connect", addr, "-servername", sni])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let _ = child.stdin.take().unwrap().write_all(b"Q\n");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("CONNECTION ESTABLISHED"), "{text}");
}

/// Sends `raw` to the plain-HTTP listener and returns the status and body of the answer.
fn raw_exchange(server: &Server, raw: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = server
        .http
        .as_deref()
        .expect("--http")
        .trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before reading everything: ignore write errors.
    let _ = stream.write_all(raw);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn low_level_rejections_answer_4xx_with_a_body_where_berth_sees_them() {
    use crate::fixture::Options;
    let server = Server::start_with(Options {
        http: true,
        ..Options::default()
    });
    let head = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").into_bytes()
    };
    let long_url = format!("/user/currentUser?q={}", "a".repeat(9 * 1024));
    let big_header = format!("X-Big: {}\r\n", "x".repeat(40 * 1024));
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    // With Host and Connection: 93 fields.
    let fields_93: String = (0..91).map(|i| format!("X-H{i}: v\r\n")).collect();
    let auth = format!("Authorization: Basic {}\r\n", base64_login());
    let post = |framing: &str, body: &str| {
        format!("POST /tenant/options HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n{framing}Connection: close\r\n\r\n{body}").into_bytes()
    };
    // (what, request, status, Some(error) when Berth can give a Cumulocity body)
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        (
            "URL over 8 KiB",
            head(&long_url, ""),
            414,
            Some("general/URI Too Long"),
        ),
        (
            "headers over 32 KiB",
            head("/user/currentUser", &big_header),
            431,
            Some("general/Request Header Fields Too Large"),
        ),
        (
            "bad chunk size in a body Berth reads",
            post(
                "Transfer-Encoding: chunked\r\n",
                "2\r\n{}\r\nzz\r\n0\r\n\r\n",
            ),
            400,
            Some("general/Bad Request"),
        ),
        (
            "more than 90 header fields",
            head("/user/currentUser", &fields_93),
            431,
            Some("general/Request Header Fields Too Large"),
        ),
        // Rejected by actix-http's dispatcher before any service runs: empty bodies.
        (
            "more than 96 headers",
            head("/user/currentUser", &many_headers),
            431,
            None,
        ),
        (
            "URL over 64 KiB",
            head(&format!("/{}", "a".repeat(70_000)), ""),
            400,
            None,
        ),
        (
            "Content-Length with Transfer-Encoding",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
            None,
        ),
        (
            "two Content-Lengths",
            post("Content-Length: 2\r\nContent-Length: 3\r\n", "{}"),
            400,
            None,
        ),
        (
            "bad chunk size first",
            post("Transfer-Encoding: chunked\r\n", "zz\r\n{}\r\n0\r\n\r\n"),
            400,
            None,
        ),
    ];
    for (what, raw, status, error) in cases {
        let (got, body) = raw_exchange(&server, &raw);
        assert_eq!(got, status, "{what}: {body}");
        if let Some(error) = error {
            let json: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
            assert_eq!(json["error"], error, "{what}: {json}");
            assert!(
                json["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}"
            );
            assert!(json["info"].is_string(), "{what}");
        }
        // Still serving after each.
        server.admin_get("/user/currentUser").expect(200);
    }
}

/// The HTTPS front refuses more header fields than the app takes with a Cumulocity body, over
/// HTTP/1.1 up to the 100 its parser reads and over HTTP/2 at any count; past 100 over HTTP/1.1
/// hyper's own bodiless 431 remains.
#[test]
fn the_https_front_refuses_too_many_header_fields_with_a_body() {
    let server = Server::start();
    let cert = server.path("tls/cert.pem");
    // (protocol, header fields curl sends in all, a Cumulocity body expected)
    for (protocol, fields, body) in [
        ("--http1.1", 90, None),
        ("--http1.1", 95, Some(95)),
        ("--http2", 95, Some(95)),
        ("--http2", 150, Some(150)),
        ("--http1.1", 150, None),
    ] {
        let mut command = std::process::Command::new("curl");
        command
            .args([
                "-s",
                protocol,
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(&cert)
            .args(["-u", &format!("{MGMT_ADMIN}:{ADMIN_PASSWORD}")]);
        // curl adds Host, Authorization, User-Agent and Accept.
        for i in 0..fields - 4 {
            command.args(["-H", &format!("X-H{i}: v")]);
        }
        let output = command
            .arg(format!("{}/tenant/currentTenant", server.https))
            .output()
            .expect("the curl CLI must be installed for these tests");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (answer, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let what = format!("{protocol} {fields} fields");
        if fields <= 90 {
            assert_eq!(status, "200", "{what}: {answer}");
            continue;
        }
        assert_eq!(status, "431", "{what}: {answer}");
        match body {
            Some(count) => {
                let json: Value = serde_json::from_str(answer)
                    .unwrap_or_else(|e| panic!("{what}: {e}: {answer:?}"));
                assert_eq!(
                    json["error"], "general/Request Header Fields Too Large",
                    "{what}"
                );
                assert!(
                    json["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("has {count} header fields"))),
                    "{what}: {json}"
                );
            }
            None => assert_eq!(answer, "", "{what}"),
        }
    }
    server.admin_get("/user/currentUser").expect(200);
}

fn base64_login() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{MGMT_ADMIN}:{ADMIN_PASSWORD}"))
}

#[test]
fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    use crate::fixture::Options;
    // The test client connects from 127.0.0.1: trusted by the second server only.
    let servers = [
        (
            false,
            Server::start_with(Options {
                http: true,
                ..Options::default()
            }),
        ),
        (
            true,
            Server::start_with(Options {
                http: true,
                extra_args: vec![
                    "--trusted-proxies".into(),
                    "192.0.2.0/24,127.0.0.1/32".into(),
                ],
                ..Options::default()
            }),
        ),
    ];
    for (trusted, server) in &servers {
        let trusted = *trusted;
        let t = create_tenant(server, "fwd");
        let domain = server
            .admin_get(&format!("/tenant/tenants/{}", t.id))
            .expect(200)
            .json()["domain"]
            .as_str()
            .unwrap()
            .to_owned();
        let https_port = server.https.rsplit(':').next().unwrap().to_owned();
        let login = [
            ("grant_type", "PASSWORD"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ];

        // Cookies keep Secure over HTTPS unless a trusted proxy says the client used HTTP.
        let resp = server
            .req("POST", "/tenant/oauth?tenant_id=management")
            .header("X-Forwarded-Proto", "http")
            .form(&login)
            .send()
            .expect(200);
        let cookies = resp.all_headers("set-cookie").join(" | ");
        assert_eq!(
            cookies.contains("Secure"),
            !trusted,
            "trusted={trusted}: {cookies}"
        );

        // Links: the connection's scheme and host, or the trusted proxy's.
        for headers in [
            vec![
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "links.example.com"),
            ],
            vec![("Forwarded", "proto=https;host=links.example.com")],
        ] {
            let mut req = server
                .req_http("GET", "/user/currentUser")
                .basic(MGMT_ADMIN, ADMIN_PASSWORD);
            for (name, value) in &headers {
                req = req.header(name, value);
            }
            let resp = req.send().expect(200);
            let link = resp.json()["self"].as_str().unwrap().to_owned();
            let expected = if trusted {
                "https://links.example.com/"
            } else {
                "http://127.0.0.1:"
            };
            assert!(
                link.starts_with(expected),
                "trusted={trusted} {headers:?}: {link}"
            );
            assert_eq!(
                resp.header("strict-transport-security").is_some(),
                trusted,
                "HSTS only when a trusted proxy says HTTPS: {headers:?}"
            );
        }

        // A forwarded host selects the tenant of a login without tenant only from a trusted proxy.
        for (name, value) in [
            ("X-Forwarded-Host", domain.clone()),
            ("Forwarded", format!("host={domain}:{https_port}")),
        ] {
            let status = server
                .req("GET", "/user/currentUser")
                .basic("boss", &t.admin_password)
                .header(name, &value)
                .send()
                .status;
            assert_eq!(
                status,
                if trusted { 200 } else { 401 },
                "trusted={trusted} {name}: {value}"
            );
        }
    }
}

#[test]
fn floods_of_malformed_requests_and_shed_logins_leave_no_error_line() {
    use crate::fixture::Options;
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut server = Server::start_with(Options {
        http: true,
        log_file: Some(log.path().to_owned()),
        env: vec![
            ("BERTH_PASSWORD_HASH_CONCURRENCY".into(), "1".into()),
            ("BERTH_PASSWORD_HASH_QUEUE".into(), "1".into()),
            // The logins below come from many clients (one client gets its share, 429).
            ("BERTH_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
        ],
        ..Options::default()
    });
    // Requests actix-http refuses before Berth sees them (each logged at ERROR by actix-http).
    let malformed: [(&str, &[u8]); 3] = [
        (
            "header line without a colon",
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        ),
        ("request line of garbage", b"\x01\x02 garbage \xff\r\n\r\n"),
        ("bad version", b"GET / HTTP/9.7\r\nHost: x\r\n\r\n"),
    ];
    const ROUNDS: usize = 10;
    let internal = server
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("berth: internal api on http://"))
        .expect("the internal API's address")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    for _ in 0..ROUNDS {
        for (what, raw) in malformed {
            let (status, _) = raw_exchange(&server, raw);
            assert!(status == 400 || status == 0, "{what}: {status}");
        }
        // A TLS handshake naming an IP address as SNI (rustls warns about each one).
        handshake_with_sni(&server, "127.0.0.1");
        // A request to the internal API from outside the container networks.
        let refused = crate::supervisor::plain_agent()
            .get(&format!("http://127.0.0.1:{internal}/tenant/currentTenant"))
            .call()
            .unwrap();
        assert_eq!(refused.status(), 403);
    }
    // Wrong passwords in parallel past a queue of one, from 48 clients: some are shed with 503.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    server
                        .req("GET", "/user/currentUser")
                        .basic(&format!("management/nobody{i}"), "Wrong-Pass-1")
                        .header("X-Forwarded-For", &format!("198.51.100.{i}"))
                        .send()
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shed = statuses.iter().filter(|s| **s == 503).count();
    assert!(shed > 0, "no login was shed: {statuses:?}");
    let read_log = || std::fs::read_to_string(log.path()).unwrap();
    // Both kinds end up in a summary line.
    crate::supervisor::wait_for(
        std::time::Duration::from_secs(60),
        "a summary of the noise in the log",
        || {
            let text = read_log();
            (text.contains("malformed request")
                && text.contains("shed load")
                && text.contains("as SNI")
                && text.contains("internal API requests refused"))
            .then_some(())
        },
    );
    server.admin_get("/user/currentUser").expect(200);
    server.stop();
    let text = read_log();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
    // Fewer lines than events: counted, not one line each.
    let noise_lines = text
        .lines()
        .filter(|l| {
            l.contains("stream error")
                || l.contains("shed load")
                || l.contains("Illegal SNI")
                || l.contains("refused a peer outside")
        })
        .count();
    assert!(
        noise_lines < ROUNDS * malformed.len(),
        "{noise_lines} lines for {} malformed requests and {shed} shed logins:\n{text}",
        ROUNDS * malformed.len()
    );
}

//! The `/service/<name>/…` proxy against real hello containers: routing per isolation mode,
//! every authentication method, the headers a container sees, and each failure status
//! (401, 403 not subscribed, 404 unknown, 503 + Retry-After, 502, 504), plus `/metrics` access.

use serde_json::json;

use std::time::Duration;

use crate::fixture::{ADMIN_PASSWORD, Options, Server, app_name, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, docker, instances, manifest, readiness_on_health, start_server_with,
    subscribe, wait_for, wait_ready,
};

/// Logs in with the OAI-Secure cookie flow; returns (token, xsrf).
fn cookie_login(server: &Server, tenant: &str, user: &str, password: &str) -> (String, String) {
    let resp = server
        .req("POST", &format!("/tenant/oauth?tenant_id={tenant}"))
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .expect(200);
    let cookies = resp.cookies();
    (
        cookies["authorization"].clone(),
        cookies["XSRF-TOKEN"].clone(),
    )
}

fn bearer_login(server: &Server) -> String {
    server
        .req("POST", "/tenant/oauth/token?tenant_id=management")
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .expect(200)
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn proxy_authenticates_routes_by_isolation_and_reports_each_failure() {
    let image = HelloLease::acquire();
    let log = tempfile::NamedTempFile::new().unwrap();
    let (_cleanup, server) = start_server_with(
        &["--proxy-timeout", "2"],
        Options {
            log_file: Some(log.path().to_owned()),
            env: vec![("BERTH_LOG".into(), "warn,berth::access=info".into())],
            ..Options::default()
        },
    );
    let owner = create_tenant(&server, "owner");
    let (a, b) = (create_tenant(&server, "pa"), create_tenant(&server, "pb"));
    let per = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("PER_TENANT", 1, readiness_on_health()),
    );
    let multi = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    // Never ready: its readiness probe asks for a path hello does not serve.
    let never = deploy(
        &server,
        &owner,
        &image.0,
        &manifest(
            "MULTI_TENANT",
            1,
            json!({"readinessProbe": {"httpGet": {"path": "/nowhere", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}}),
        ),
    );
    for t in [&a.id, &b.id] {
        subscribe(&server, t, &per).expect(201);
    }
    for t in [&a.id, "management"] {
        subscribe(&server, t, &multi).expect(201);
    }
    subscribe(&server, &a.id, &never).expect(201);
    let per_status = wait_ready(&server, &owner, &per, 2);
    let multi_status = wait_ready(&server, &owner, &multi, 1);
    let (per_name, multi_name, never_name) = (
        app_name(&server, &owner, &per),
        app_name(&server, &owner, &multi),
        app_name(&server, &owner, &never),
    );
    let get = |path: &str| server.req("GET", path);

    // PER_TENANT: each tenant reaches its own container, never the other's.
    for t in [&a, &b] {
        let env = get(&format!("/service/{per_name}/env"))
            .basic(&t.admin_login, &t.admin_password)
            .send()
            .expect(200)
            .json();
        assert_eq!(env["C8Y_TENANT"], t.id.as_str(), "{env}");
    }
    assert_eq!(instances(&per_status).len(), 2);

    // Every authentication method reaches the MULTI_TENANT service.
    let hello = format!("/service/{multi_name}/hello");
    let token = bearer_login(&server);
    let (cookie_token, xsrf) = cookie_login(&server, &a.id, "boss", &a.admin_password);
    let cookie = format!("authorization={cookie_token}; XSRF-TOKEN={xsrf}");
    let cases: Vec<(&str, crate::fixture::Req<'_>, u16)> = vec![
        (
            "basic with tenant",
            get(&hello).basic(&a.admin_login, &a.admin_password),
            200,
        ),
        (
            "basic without tenant (host = management)",
            get(&hello).basic("admin", ADMIN_PASSWORD),
            200,
        ),
        ("bearer", get(&hello).bearer(&token), 200),
        (
            "cookie with xsrf",
            get(&hello)
                .header("Cookie", &cookie)
                .header("X-XSRF-TOKEN", &xsrf),
            200,
        ),
        (
            "cookie without xsrf",
            get(&hello).header("Cookie", &cookie),
            401,
        ),
        // A name Berth never sets, which percent-decodes to the session cookie's, is no session.
        (
            "cookie with a percent-encoded name",
            get(&hello)
                .header(
                    "Cookie",
                    &format!("authorizatio%6E={cookie_token}; XSRF-TOKEN={xsrf}"),
                )
                .header("X-XSRF-TOKEN", &xsrf),
            401,
        ),
        // Two different session cookies: one was planted, and Berth cannot tell which.
        (
            "two session cookies",
            get(&hello)
                .header("Cookie", &format!("{cookie}; authorization={token}"))
                .header("X-XSRF-TOKEN", &xsrf),
            401,
        ),
        ("no credentials", get(&hello), 401),
        (
            "wrong password",
            get(&hello).basic(&a.admin_login, "wrong-password-1"),
            401,
        ),
    ];
    for (what, req, status) in cases {
        let resp = req.send();
        assert_eq!(resp.status, status, "{what}: {}", resp.body);
        if status == 401 {
            resp.expect_error(401, "security/Unauthorized");
        } else {
            assert!(resp.header("x-request-id").is_some(), "{what}");
        }
    }

    // Failures, each with its own status and error.
    get(&hello)
        .basic(&b.admin_login, &b.admin_password)
        .send()
        .expect_error(403, "service/Forbidden");
    get("/service/no-such-service/x")
        .basic(&a.admin_login, &a.admin_password)
        .send()
        .expect_error(404, "service/Not Found");
    let unready = get(&format!("/service/{never_name}/hello"))
        .basic(&a.admin_login, &a.admin_password)
        .send()
        .expect_error(503, "service/Service Unavailable");
    assert_eq!(unready.header("retry-after"), Some("5"));
    get(&format!("/service/{multi_name}/sleep?ms=5000"))
        .basic(&a.admin_login, &a.admin_password)
        .send()
        .expect_error(504, "service/Gateway Timeout");

    // What the container sees: credentials and cookies unchanged (but the platform's session
    // cookies, which are not this request's credentials), prefix stripped, query kept,
    // forwarding headers set by Berth (none of the client's), hop-by-hop headers gone. On both
    // paths: Basic credentials Berth has verified take the front's direct path, a cookie
    // session always the actix app's.
    let host = server.https.trim_start_matches("https://");
    let port = host.rsplit_once(':').unwrap().1;
    let spoofed = [
        ("X-Forwarded-Host", "spoofed.example.com"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Ssl", "off"),
        ("X-Forwarded-Scheme", "http"),
        ("X-Forwarded-Server", "spoofed.example.com"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-Client-IP", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("CF-Connecting-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6;proto=http"),
    ];
    let mut seen_by_path = Vec::new();
    for path in ["direct", "actix"] {
        let mut req = get(&format!("/service/{multi_name}/headers?x=1&y=two"))
            .header("tfatoken", "123456")
            // Only Berth's HTTPS front may say who the client is (to the app behind it).
            .header("X-Berth-Front-Peer", "6.6.6.6:1")
            .header("Connection", "keep-alive, x-hop")
            .header("X-Hop", "must not pass");
        for (name, value) in spoofed {
            req = req.header(name, value);
        }
        req = if path == "direct" {
            req.basic(&a.admin_login, &a.admin_password).header(
                "Cookie",
                "session=abc; authorization=someone.elses.token; XSRF-TOKEN=theirs",
            )
        } else {
            req.header("Cookie", &format!("session=abc; {cookie}"))
                .header("X-XSRF-TOKEN", &xsrf)
        };
        let seen = req.send().expect(200).json();
        assert_eq!(seen["path"], "/headers", "{path}");
        assert_eq!(seen["query"], "x=1&y=two", "{path}");
        let h = &seen["headers"];
        if path == "direct" {
            assert!(
                h["authorization"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("Basic ")),
                "{h}"
            );
            assert_eq!(h["cookie"], "session=abc", "{path}");
        } else {
            // The cookie is the credential: it goes on whole, as the SDKs expect.
            assert_eq!(h["cookie"], format!("session=abc; {cookie}"), "{path}");
        }
        assert_eq!(h["tfatoken"], "123456", "{path}");
        assert_eq!(h["x-forwarded-prefix"], format!("/service/{multi_name}"));
        assert_eq!(h["x-forwarded-proto"], "https", "{path}");
        assert_eq!(h["x-real-ip"], "127.0.0.1", "{path}");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{path}");
        assert_eq!(h["x-forwarded-host"], host, "{path}");
        assert_eq!(h["x-forwarded-port"], port, "{path}");
        assert!(h["x-request-id"].as_str().is_some_and(|v| !v.is_empty()));
        for absent in [
            "x-hop",
            "x-berth-front-peer",
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded-server",
            "x_forwarded_for",
            "x-original-url",
            "x-rewrite-url",
            "x-client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "forwarded",
        ] {
            assert!(h.get(absent).is_none(), "{path}: {absent} passed: {h}");
        }
        assert_ne!(h["host"], host, "Host names the container");
        seen_by_path.push(seen);
    }
    let h = &seen_by_path[0]["headers"];

    // A bare Basic user name (the tenant chosen by the Host, as the `microservice` script and
    // go-c8y-cli send it) reaches the service as `tenant/user`, password kept: c8y-api's
    // MultiTenantCumulocityApp reads the tenant from it, and a service forwarding it to
    // C8Y_BASEURL (no tenant host there) is answered for this user, not management's `boss`.
    // The first request goes through the actix app (the credential is not cached yet), the
    // second through the front's direct path.
    let domain = server
        .req("GET", &format!("/tenant/tenants/{}", a.id))
        .basic(crate::fixture::MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200)
        .json()["domain"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant_host = format!("{domain}:{port}");
    let qualified = crate::fixture::basic_auth(&a.admin_login, &a.admin_password);
    for path in ["actix", "direct"] {
        let seen = get(&format!("/service/{multi_name}/headers"))
            .header("Host", &tenant_host)
            .basic("boss", &a.admin_password)
            .send()
            .expect(200)
            .json();
        assert_eq!(seen["headers"]["authorization"], qualified, "{path}");
    }
    let hello = get(&format!("/service/{multi_name}/hello"))
        .header("Host", &tenant_host)
        .basic("boss", &a.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(hello["tenant"], a.id.as_str(), "{hello}");
    // Already `tenant/user`: forwarded as sent.
    assert_eq!(
        h["authorization"],
        crate::fixture::basic_auth(&a.admin_login, &a.admin_password)
    );

    // The access line of that request: one line with every field, no colour codes in a file.
    let request_id = h["x-request-id"].as_str().unwrap();
    let line = wait_for(Duration::from_secs(10), "the access line", || {
        std::fs::read_to_string(log.path())
            .unwrap()
            .lines()
            .find(|l| l.contains(&format!("request_id={request_id} ")))
            .map(str::to_owned)
    });
    for field in [
        "berth::access".to_owned(),
        "method=GET".to_owned(),
        format!("path=/service/{multi_name}/headers "),
        format!("tenant={} ", a.id),
        format!("application={multi_name} "),
        format!(
            "upstream={} ",
            instances(&multi_status)[0]["name"].as_str().unwrap()
        ),
        "status=200".to_owned(),
        "micros=".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing from {line:?}");
    }
    assert!(!line.contains('\x1b'), "{line:?}");

    // A container that dies under a request: 502.
    let container = instances(&multi_status)[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let slow = {
        let path = format!("/service/{multi_name}/sleep?ms=1500");
        let login = a.admin_login.clone();
        let password = a.admin_password.clone();
        let server = &server;
        std::thread::scope(|scope| {
            let handle =
                scope.spawn(move || server.req("GET", &path).basic(&login, &password).send());
            docker(&["kill", &container]);
            handle.join().unwrap()
        })
    };
    assert!(
        slow.status == 502 || slow.status == 503,
        "a killed upstream is a gateway error: {} {}",
        slow.status,
        slow.body
    );
    if slow.status == 502 {
        slow.expect_error(502, "service/Bad Gateway");
    }

    // Metrics: management operators only.
    let metrics = server.admin_get("/metrics").expect(200);
    for name in [
        "berth_proxy_requests_total",
        "berth_proxy_request_duration_seconds_bucket",
        "berth_proxy_upstream_errors_total",
    ] {
        assert!(metrics.body.contains(name), "{name} in {}", metrics.body);
    }
    get("/metrics")
        .basic(&a.admin_login, &a.admin_password)
        .send()
        .expect(403);
}

/// Another tenant's microservice given a subscribed service's name as its context path does
/// not take that service's calls (and the credentials they carry): the segment is refused as
/// ambiguous, on the first request and on a repeated one (the direct path's cached caller).
#[test]
fn a_context_path_cannot_take_another_services_calls() {
    let server = Server::start();
    let (honest, thief, victim) = (
        create_tenant(&server, "honest"),
        create_tenant(&server, "thief"),
        create_tenant(&server, "victim"),
    );
    let create = |owner: &crate::fixture::Tenant, name: &str| -> String {
        let login = (owner.admin_login.as_str(), owner.admin_password.as_str());
        let fields = json!({"availability": "MARKET"});
        crate::upload::create_microservice_as(&server, login, name, fields)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mail = crate::fixture::unique("mail");
    let (real, fake) = (
        create(&honest, &mail),
        create(&thief, &crate::fixture::unique("tool")),
    );
    for app in [&real, &fake] {
        subscribe(&server, &victim.id, app).expect(201);
    }
    let call = || {
        server
            .req("GET", &format!("/service/{mail}/inbox"))
            .basic(&victim.admin_login, &victim.admin_password)
            .send()
    };
    // Before: the honest service (not deployed here: 503 naming it).
    let before = call();
    assert_eq!(before.status, 503, "{}", before.body);
    assert!(before.body.contains(&mail), "{}", before.body);
    server
        .req("PUT", &format!("/application/applications/{fake}"))
        .basic(&thief.admin_login, &thief.admin_password)
        .json(&json!({"contextPath": mail}))
        .send()
        .expect(200);
    for attempt in 0..2 {
        let refused = call().expect_error(409, "service/Conflict").json();
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{}/{mail}", honest.id)) && message.contains(&thief.id),
            "attempt {attempt}: {message}"
        );
    }
}

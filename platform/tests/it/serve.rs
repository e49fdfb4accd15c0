//! Startup, configuration errors, listeners, the current tenant/user and error bodies.

use serde_json::json;

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Options, Server, run_expecting_failure};

#[test]
fn bad_settings_exit_non_zero_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    let data_arg = data.to_str().unwrap();
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "htps = \"127.0.0.1:1\"\n").unwrap();
    let bad_limit = dir.path().join("limit.toml");
    std::fs::write(&bad_limit, "upload_limit = \"lots\"\n").unwrap();
    type Env<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Vec<&str>, Env, &str)> = vec![
        (vec!["--https", "nonsense"], vec![], "https"),
        (vec!["--http", "127.0.0.1"], vec![], "http"),
        (vec!["--upload-limit", "5XB"], vec![], "upload_limit"),
        (vec![], vec![("BERTH_HTTPS", "not-an-address")], "https"),
        (
            vec!["--config", "/nonexistent/berth.toml"],
            vec![],
            "/nonexistent/berth.toml",
        ),
        (
            vec!["--config", unknown_key.to_str().unwrap()],
            vec![],
            "htps",
        ),
        (
            vec!["--config", bad_limit.to_str().unwrap()],
            vec![],
            "upload_limit",
        ),
        (
            vec![
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            vec![],
            "tls_cert",
        ),
        (vec!["--admin-user", "bad/name"], vec![], "admin_user"),
        (
            vec!["--trusted-proxies", "10.0.0.0/33"],
            vec![],
            "trusted_proxies",
        ),
        (
            vec![],
            vec![("BERTH_TRUSTED_PROXIES", "10.0.0.1,proxy.local")],
            "trusted_proxies",
        ),
        (
            vec![],
            vec![("BERTH_ADMIN_PASSWORD", "short")],
            "BERTH_ADMIN_PASSWORD",
        ),
        // More connections than the descriptor limit can carry (checked before anything else).
        (
            vec!["--max-connections", "100000000"],
            vec![],
            "max_connections = 100000000",
        ),
        (vec!["--idle-timeout", "0"], vec![], "idle_timeout"),
    ];
    for (args, env, named) in cases {
        let mut full = vec!["serve", "--data-dir", data_arg];
        full.extend(&args);
        let (code, stderr) = run_expecting_failure(&full, &env);
        assert_ne!(code, 0, "{args:?} {env:?} should fail");
        assert!(
            stderr.contains(named),
            "{args:?} {env:?}: stderr should name {named}: {stderr}"
        );
        assert!(
            !data.exists(),
            "{args:?}: nothing may be written before the config is valid"
        );
    }
}

#[test]
fn first_start_generates_and_prints_the_admin_password_once() {
    let server = Server::start_with(Options {
        no_admin_password: true,
        ..Options::default()
    });
    let password = server
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("berth: admin password "))
        .expect("generated password line")
        .to_owned();
    assert!(
        server
            .lines
            .contains(&"berth: management tenant management".to_owned())
    );
    server
        .req("GET", "/user/currentUser")
        .basic(MGMT_ADMIN, &password)
        .send()
        .expect(200);
    let server = server.restart();
    assert!(
        server.lines.iter().all(|l| !l.contains("password")),
        "printed again: {:?}",
        server.lines
    );
    server
        .req("GET", "/user/currentUser")
        .basic(MGMT_ADMIN, &password)
        .send()
        .expect(200);
}

#[test]
fn current_tenant_and_current_user() {
    let server = Server::start();
    let tenant = server.admin_get("/tenant/currentTenant").expect(200);
    assert!(
        tenant
            .header("content-type")
            .unwrap()
            .starts_with("application/vnd.com.nsn.cumulocity.currentTenant+json")
    );
    let tenant = tenant.json();
    assert_eq!(tenant["name"], "management");
    assert_eq!(tenant["allowCreateTenants"], true);
    assert!(
        tenant["self"]
            .as_str()
            .unwrap()
            .ends_with("/tenant/currentTenant")
    );

    let user = server.admin_get("/user/currentUser").expect(200).json();
    assert_eq!(user["userName"], "admin");
    let roles: Vec<&str> = user["effectiveRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for role in [
        "ROLE_TENANT_MANAGEMENT_ADMIN",
        "ROLE_USER_MANAGEMENT_ADMIN",
        "ROLE_APPLICATION_MANAGEMENT_ADMIN",
        "ROLE_OPTION_MANAGEMENT_ADMIN",
    ] {
        assert!(roles.contains(&role), "{role} in {roles:?}");
    }
    // Without the tenant prefix the Host (127.0.0.1) names no tenant: management is used.
    server
        .req("GET", "/user/currentUser")
        .basic("admin", ADMIN_PASSWORD)
        .send()
        .expect(200);
}

#[test]
fn authentication_failures_are_401_error_bodies() {
    let server = Server::start();
    type Login<'a> = Option<(&'a str, &'a str)>;
    let cases: Vec<(&str, Login, Option<&str>)> = vec![
        ("no credentials", None, None),
        ("wrong password", Some((MGMT_ADMIN, "wrong-password")), None),
        (
            "unknown user",
            Some(("management/nobody", ADMIN_PASSWORD)),
            None,
        ),
        ("unknown tenant", Some(("t999/admin", ADMIN_PASSWORD)), None),
        ("unknown scheme", None, Some("Digest abc")),
        ("garbage basic", None, Some("Basic %%%")),
        ("garbage bearer", None, Some("Bearer not.a.jwt")),
    ];
    for (name, basic, header) in cases {
        let mut req = server.req("GET", "/user/currentUser");
        if let Some((login, password)) = basic {
            req = req.basic(login, password);
        }
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let resp = req.send();
        assert_eq!(resp.status, 401, "{name}: {}", resp.body);
        // Clients that send Basic only when challenged (Apache HttpClient) need the challenge.
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"Cumulocity\""),
            "{name}"
        );
        resp.expect_error(401, "security/Unauthorized");
    }
    // Cumulocity's web clients ask for a scheme browsers show no dialog for.
    let resp = server
        .req("GET", "/user/currentUser")
        .header("UseXBasic", "true")
        .send();
    assert_eq!(
        resp.header("www-authenticate"),
        Some("XBasic realm=\"Cumulocity\"")
    );
    resp.expect_error(401, "security/Unauthorized");
}

/// The Java SDK's platform health indicator reads `/tenant/health` (its `detailsPath`) and
/// reports the microservice DOWN when it fails.
#[test]
fn the_platform_says_it_is_healthy_to_anyone() {
    let server = Server::start();
    let resp = server.req("GET", "/tenant/health").send().expect(200);
    assert_eq!(resp.json(), serde_json::json!({"status": "UP"}));
}

#[test]
fn unknown_routes_and_bad_bodies_get_error_bodies() {
    let server = Server::start();
    server
        .admin_get("/no/such/thing")
        .expect_error(404, "general/Not Found");
    server
        .req("POST", "/tenant/tenants")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .raw("application/json", b"{not json".to_vec())
        .send()
        .expect_error(400, "general/Bad Request");
    server
        .req("POST", "/tenant/tenants")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({"company": 5}))
        .send()
        .expect_error(422, "general/Invalid Data");
    server
        .admin_get("/tenant/tenants?pageSize=zero")
        .expect_error(422, "general/Invalid Data");
}

#[test]
fn plain_http_listener_only_when_asked() {
    let https_only = Server::start();
    assert!(https_only.http.is_none());
    assert_eq!(
        https_only
            .lines
            .iter()
            .filter(|l| l.starts_with("berth: listening on"))
            .count(),
        1
    );
    let both = Server::start_with(Options {
        http: true,
        ..Options::default()
    });
    let body = both
        .req_http("GET", "/tenant/currentTenant")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200)
        .json();
    assert!(body["self"].as_str().unwrap().starts_with("http://"));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    server.admin_get("/tenant/currentTenant").expect(200);
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn operator_certificates_are_used_instead_of_a_generated_one() {
    // Borrow a certificate/key pair from a first server, then hand it to a second one as
    // operator PEM files.
    let first = Server::start();
    let pems = tempfile::tempdir().unwrap();
    let (cert, key) = (
        pems.path().join("operator-cert.pem"),
        pems.path().join("operator-key.pem"),
    );
    std::fs::copy(first.path("tls/cert.pem"), &cert).unwrap();
    std::fs::copy(first.path("tls/key.pem"), &key).unwrap();
    let options = Options {
        extra_args: vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
        trust_cert: Some(cert.clone()),
        ..Options::default()
    };
    let second = Server::start_with(options);
    second.admin_get("/tenant/currentTenant").expect(200);
    assert!(
        !second.path("tls/cert.pem").exists(),
        "no certificate is generated when the operator provides one"
    );
}

#[test]
fn an_unreachable_docker_engine_stops_startup_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--https",
        "127.0.0.1:0",
        "--docker-socket",
        "/nonexistent/docker.sock",
    ];
    let (code, stderr) = run_expecting_failure(&args, &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("/nonexistent/docker.sock"), "{stderr}");
    assert!(!data.exists());
}

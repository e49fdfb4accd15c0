//! Hostile callers against authentication: password guessing and user enumeration (throttling,
//! lockout, one code path for unknown users, a bound on concurrent hashes), and the password
//! policy on every path that sets a password.

use serde_json::{Value, json};

use crate::fixture::{
    ADMIN_PASSWORD, MGMT_ADMIN, Options, Resp, Server, create_tenant, create_user,
    run_expecting_failure,
};

/// A way to present a password.
#[derive(Debug, Clone, Copy)]
enum Via {
    Basic,
    /// OAI-Secure login form, cookie answer.
    Cookie,
    /// OAI-Secure login form, JSON token answer.
    Token,
}

/// Presents `login` (`tenant/user`) and `password` on `via`, asking for the current user.
fn attempt(server: &Server, via: Via, login: &str, password: &str) -> Resp {
    match via {
        Via::Basic => server
            .req("GET", "/user/currentUser")
            .basic(login, password)
            .send(),
        Via::Cookie => server
            .req("POST", "/tenant/oauth")
            .form(&[
                ("grant_type", "PASSWORD"),
                ("username", login),
                ("password", password),
            ])
            .send(),
        Via::Token => server
            .req("POST", "/tenant/oauth/token")
            .form(&[
                ("grant_type", "PASSWORD"),
                ("username", login),
                ("password", password),
            ])
            .send(),
    }
}

/// A Bearer token for `login`.
fn token(server: &Server, login: &str, password: &str) -> String {
    attempt(server, Via::Token, login, password)
        .expect(200)
        .json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A numeric sample of `/metrics` (read with a Bearer token, which spends no hash); 0 if absent.
fn metric(server: &Server, admin_token: &str, name: &str) -> f64 {
    let body = server
        .req("GET", "/metrics")
        .bearer(admin_token)
        .send()
        .expect(200)
        .body;
    body.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .unwrap_or(0.0)
}

#[track_caller]
fn expect_retry_after(resp: &Resp, max: u64) {
    let value = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on {} {}", resp.status, resp.body));
    let seconds: u64 = value.parse().expect("Retry-After in seconds");
    assert!((1..=max).contains(&seconds), "Retry-After {seconds}");
}

#[test]
fn unknown_users_and_wrong_passwords_take_the_same_path() {
    let server = Server::start();
    let t = create_tenant(&server, "enum");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let off = create_user(&server, &t, "off", "Off-Pass-12");
    server
        .req("PUT", &format!("/user/{}/users/off", t.id))
        .basic(&t.admin_login, &t.admin_password)
        .json(&json!({"enabled": false}))
        .send()
        .expect(200);
    let admin = token(&server, MGMT_ADMIN, ADMIN_PASSWORD);
    let counter = "berth_password_verifications_total";
    let unknown_tenant = "nosuchtenant/jane".to_owned();
    let ghost = format!("{}/ghost", t.id);
    let cases = [
        ("wrong password", &jane, "Wrong-Pass-1"),
        ("unknown user", &ghost, "Wrong-Pass-1"),
        ("unknown tenant", &unknown_tenant, "Wrong-Pass-1"),
        ("disabled user, right password", &off, "Off-Pass-12"),
    ];
    for via in [Via::Basic, Via::Cookie, Via::Token] {
        let mut answers = Vec::new();
        for (name, login, password) in &cases {
            let before = metric(&server, &admin, counter);
            let resp =
                attempt(&server, via, login, password).expect_error(401, "security/Unauthorized");
            let after = metric(&server, &admin, counter);
            assert_eq!(after - before, 1.0, "{via:?} {name}: one password hash");
            let body = resp.json();
            answers.push((body["error"].clone(), body["message"].clone()));
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{via:?}: the answers tell the cases apart: {answers:?}"
        );
    }
}

#[test]
fn repeated_failures_lock_the_user_then_the_source_with_retry_after() {
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_LOGIN_USER_FAILURES".into(), "3".into()),
            ("BERTH_LOGIN_SOURCE_FAILURES".into(), "9".into()),
            ("BERTH_LOGIN_LOCKOUT".into(), "600".into()),
        ],
        ..Options::default()
    });
    let t = create_tenant(&server, "guess");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let joe = create_user(&server, &t, "joe", "Joe-Pass-12");
    let ghost = format!("{}/ghost", t.id);
    let (ghost2, ghost3) = (format!("{}/ghost2", t.id), format!("{}/ghost3", t.id));
    // Tokens are not password checks: a session opened before keeps working throughout.
    let session = token(&server, &joe, "Joe-Pass-12");
    let (wrong, jane_pw, joe_pw) = ("Wrong-Pass-1", "Jane-Pass-1", "Joe-Pass-12");
    use Via::*;
    // (via, login, password, expected status, locked what). Failures so far from this source
    // are counted in the comments; a 429 spends no hash and counts nothing.
    let steps: &[(Via, &str, &str, u16, Option<&str>)] = &[
        (Basic, &jane, wrong, 401, None),           // jane 1, source 1
        (Cookie, &jane, wrong, 401, None),          // jane 2, source 2
        (Basic, &jane, jane_pw, 200, None),         // a success clears jane's count
        (Basic, &jane, "Wrong-Pass-2", 401, None),  // jane 1, source 3
        (Token, &jane, wrong, 401, None),           // jane 2, source 4
        (Cookie, &jane, "Wrong-Pass-3", 401, None), // jane 3: locked; source 5
        (Basic, &jane, "Wrong-Pass-4", 429, Some("this user")),
        (Token, &jane, jane_pw, 429, Some("this user")), // locked even with the right one
        (Basic, &joe, joe_pw, 200, None),                // another user from the same source
        (Basic, &ghost, wrong, 401, None),               // unknown users lock alike; source 6
        (Cookie, &ghost, wrong, 401, None),              // source 7
        (Token, &ghost, wrong, 401, None),               // ghost locked; source 8
        (Basic, &ghost, wrong, 429, Some("this user")),
        (Basic, &ghost2, wrong, 401, None), // source 9: the source is locked
        (Basic, &joe, "Joe-Pass-99", 429, Some("this address")),
        (Cookie, &ghost3, wrong, 429, Some("this address")),
    ];
    for (i, (via, login, password, status, locked)) in steps.iter().enumerate() {
        let resp = attempt(&server, *via, login, password);
        assert_eq!(
            resp.status, *status,
            "step {i} {via:?} {login}: {}",
            resp.body
        );
        match locked {
            Some(what) => {
                let resp = resp.expect_error(429, "security/Too Many Requests");
                expect_retry_after(&resp, 600);
                let message = resp.json()["message"].as_str().unwrap().to_owned();
                assert!(message.contains(what), "step {i}: {message}");
            }
            None if *status == 401 => {
                resp.expect_error(401, "security/Unauthorized");
            }
            None => {}
        }
    }
    server
        .req("GET", "/user/currentUser")
        .bearer(&session)
        .send()
        .expect(200);
}

#[test]
fn concurrent_password_hashes_are_bounded() {
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_PASSWORD_HASH_CONCURRENCY".into(), "1".into()),
            ("BERTH_PASSWORD_HASH_QUEUE".into(), "2".into()),
        ],
        ..Options::default()
    });
    let admin = token(&server, MGMT_ADMIN, ADMIN_PASSWORD);
    let statuses: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let resp = attempt(
                        server,
                        Via::Basic,
                        &format!("management/nobody{i}"),
                        "Wrong-Pass-1",
                    );
                    (
                        resp.status,
                        resp.header("retry-after").map(str::to_owned),
                        resp.body,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, retry_after, body) in &statuses {
        match status {
            401 => {}
            503 => {
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                let body: Value = serde_json::from_str(body).unwrap();
                assert_eq!(body["error"], "security/Service Unavailable", "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        metric(&server, &admin, "berth_password_hashes_in_flight_peak"),
        1.0,
        "at most one hash at a time"
    );
    // Still serving.
    server.admin_get("/user/currentUser").expect(200);
}

#[test]
fn weak_passwords_are_refused_on_every_path_and_nothing_changes() {
    let server = Server::start();
    let t = create_tenant(&server, "weak");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let users = format!("/user/{}/users", t.id);
    // (weak password, what the message says to fix); the user is "jane", jane@example.com.
    let weak = [
        ("aaaaaaaa", "different characters"),
        ("password", "common"),
        ("Password1", "common"),
        ("12345678", "common"),
        ("qwertyuiop", "common"),
        ("short1!", "at least 8"),
        ("jane@example.com", "user name or e-mail"),
    ];
    for (password, fix) in weak {
        let resps = [
            (
                "create",
                admin("POST", &users)
                    .json(&json!({"userName": "newbie", "password": password, "email": "jane@example.com"}))
                    .send(),
            ),
            (
                "update",
                admin("PUT", &format!("{users}/jane"))
                    .json(&json!({"password": password}))
                    .send(),
            ),
            (
                "admin reset",
                admin("PUT", &format!("{users}/jane/password"))
                    .json(&json!({"currentUserPassword": t.admin_password, "newPassword": password}))
                    .send(),
            ),
            (
                "own change",
                server
                    .req("PUT", "/user/currentUser/password")
                    .basic(&jane, "Jane-Pass-1")
                    .json(&json!({"currentUserPassword": "Jane-Pass-1", "newPassword": password}))
                    .send(),
            ),
        ];
        for (path, resp) in resps {
            let resp = resp.expect_error(422, "users/Invalid Data");
            let message = resp.json()["message"].as_str().unwrap().to_owned();
            assert!(message.contains(fix), "{path} {password:?}: {message}");
        }
        let resp = server
            .req("POST", "/tenant/tenants")
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .json(&json!({"company": "Weak Inc", "domain": format!("weak-{}.example.com", password.len()), "adminName": "chief", "adminEmail": "jane@example.com", "adminPass": password}))
            .send()
            .expect_error(422, "tenants/Invalid Data");
        let message = resp.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(fix), "tenant {password:?}: {message}");
    }
    // A password equal to the user's own name (also ignoring case).
    for (name, password) in [
        ("walter.white", "walter.white"),
        ("Heisenberg", "heisenberg"),
    ] {
        admin("POST", &users)
            .json(&json!({"userName": name, "password": password}))
            .send()
            .expect_error(422, "users/Invalid Data");
    }
    // Nothing was written: no new users, jane's password unchanged, no tenant.
    admin("GET", &format!("{users}/newbie"))
        .send()
        .expect_error(404, "users/Not Found");
    admin("GET", &format!("{users}/walter.white"))
        .send()
        .expect_error(404, "users/Not Found");
    attempt(&server, Via::Basic, &jane, "Jane-Pass-1").expect(200);
    let tenants = server
        .admin_get("/tenant/tenants?pageSize=100")
        .expect(200)
        .json();
    assert!(
        !tenants.to_string().contains("Weak Inc"),
        "no tenant was created: {tenants}"
    );

    // A weak BERTH_ADMIN_PASSWORD is a configuration error.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for password in ["password", "aaaaaaaaaa", "admin123", "admin"] {
        let args = [
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--https",
            "127.0.0.1:0",
        ];
        let (code, stderr) = run_expecting_failure(&args, &[("BERTH_ADMIN_PASSWORD", password)]);
        assert_ne!(code, 0, "{password} accepted");
        assert!(
            stderr.contains("BERTH_ADMIN_PASSWORD"),
            "{password}: {stderr}"
        );
        assert!(!data.exists(), "nothing written for {password}");
    }
}

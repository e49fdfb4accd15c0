//! Hostile callers against authentication: password guessing and user enumeration (throttling,
//! lockout, one code path for unknown users, a bound on concurrent hashes), which tenants own or
//! subscribe to which microservice not told by logins as its users, tokens that must not
//! outlive a password reset or a re-created user, a revocation not undone by a verification in
//! flight, logout of all users, and the password policy on every path that sets a password.

use serde_json::{Value, json};

use crate::fixture::{
    ADMIN_PASSWORD, MGMT_ADMIN, Options, Resp, Server, Tenant, create_tenant, create_user,
    run_expecting_failure,
};
use crate::interruptions::Pause;

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

/// A cookie session for `login`: (Cookie header, XSRF token).
fn cookie_session(server: &Server, login: &str, password: &str) -> (String, String) {
    let cookies = attempt(server, Via::Cookie, login, password)
        .expect(200)
        .cookies();
    let (auth, xsrf) = (&cookies["authorization"], &cookies["XSRF-TOKEN"]);
    (
        format!("authorization={auth}; XSRF-TOKEN={xsrf}"),
        xsrf.clone(),
    )
}

/// Status of `GET /user/currentUser` with a Bearer token and with a cookie session.
fn session_statuses(server: &Server, bearer: &str, cookie: &(String, String)) -> (u16, u16) {
    let with_bearer = server
        .req("GET", "/user/currentUser")
        .bearer(bearer)
        .send()
        .status;
    let with_cookie = server
        .req("GET", "/user/currentUser")
        .header("Cookie", &cookie.0)
        .header("X-XSRF-TOKEN", &cookie.1)
        .send()
        .status;
    (with_bearer, with_cookie)
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

/// Logins as a microservice's bootstrap user (`servicebootstrap_<app>`, in its owner's tenant)
/// or service user (`service_<app>`, in each subscriber's) must not tell whether the tenant owns
/// or subscribes to that microservice: a missing one is answered as an existing one with a
/// wrong password, a 401, never locked out, and checked alike without a password hash (the
/// counter, not a time, shows the path taken). People may not take such names.
#[test]
fn logins_as_a_microservices_users_do_not_tell_whether_they_exist() {
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_LOGIN_USER_FAILURES".into(), "3".into()),
            ("BERTH_LOGIN_SOURCE_FAILURES".into(), "1000".into()),
        ],
        ..Options::default()
    });
    let t = create_tenant(&server, "owner");
    let app = crate::upload::create_microservice(&server, &t);
    let name = app["name"].as_str().expect("name");
    let admin = token(&server, MGMT_ADMIN, ADMIN_PASSWORD);
    let counter = "berth_password_verifications_total";
    let logins = [
        (
            "the bootstrap user",
            format!("{}/servicebootstrap_{name}", t.id),
        ),
        (
            "a missing bootstrap user",
            format!("{}/servicebootstrap_none", t.id),
        ),
        ("a missing service user", format!("{}/service_{name}", t.id)),
        (
            "in a missing tenant",
            format!("nosuchtenant/service_{name}"),
        ),
    ];
    for (what, login) in &logins {
        let before = metric(&server, &admin, counter);
        // Twice the user limit: a lockable user would be refused with 429 by now.
        for i in 0..6 {
            attempt(&server, Via::Basic, login, "Wrong-Pass-1")
                .expect_error(401, "security/Unauthorized");
            assert_eq!(
                metric(&server, &admin, counter),
                before,
                "{what}, attempt {i}: a password hash was spent"
            );
        }
    }
    for (path, body, field) in [
        (
            format!("/user/{}/users", t.id),
            json!({"userName": format!("service_{name}"), "password": "Sneaky-Pass-1"}),
            "userName",
        ),
        (
            "/tenant/tenants".to_owned(),
            json!({"company": "Sneaky", "domain": "sneaky.example.com",
                   "adminName": "servicebootstrap_x", "adminPass": "Sneaky-Pass-1"}),
            "adminName",
        ),
    ] {
        let login = if field == "userName" {
            (t.admin_login.as_str(), t.admin_password.as_str())
        } else {
            (MGMT_ADMIN, ADMIN_PASSWORD)
        };
        let resp = server
            .req("POST", &path)
            .basic(login.0, login.1)
            .json(&body)
            .send();
        assert_eq!(resp.status, 422, "{path}: {}", resp.body);
        let message = resp.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(field) && message.contains("reserved"),
            "{message}"
        );
    }
}

/// A tenant admin's Basic verification reads her record, and is held before it caches what it
/// read; another admin removes her from `admins`, then it goes on. The request in flight was
/// authorized before the change; her next one, with the same credential, must be authorized
/// with the roles she holds now, not served from the cache with the old ones for its 5 minutes.
#[test]
fn a_revocation_during_a_verification_is_not_undone_by_caching_it() {
    let pause = Pause::on_demand("auth-verified");
    let server = Server::start_with(Options {
        env: pause.env(),
        ..Options::default()
    });
    let t = create_tenant(&server, "revoke");
    let boss = (t.admin_login.as_str(), t.admin_password.as_str());
    let admins = server
        .req("GET", &format!("/user/{}/groupByName/admins", t.id))
        .basic(boss.0, boss.1)
        .send()
        .expect(200)
        .json()["id"]
        .as_i64()
        .expect("group id");
    let eve = create_user(&server, &t, "eve", "Eve-Pass-123");
    server
        .req("POST", &format!("/user/{}/groups/{admins}/users", t.id))
        .basic(boss.0, boss.1)
        .json(&json!({"user": {"id": "eve"}}))
        .send()
        .expect(201);
    let users = format!("/user/{}/users", t.id);
    let as_eve = || server.req("GET", &users).basic(&eve, "Eve-Pass-123").send();
    pause.arm();
    let held = std::thread::scope(|s| {
        let held = s.spawn(as_eve);
        pause.wait_reached();
        pause.disarm();
        server
            .req(
                "DELETE",
                &format!("/user/{}/groups/{admins}/users/eve", t.id),
            )
            .basic(boss.0, boss.1)
            .send()
            .expect(204);
        pause.release();
        held.join().expect("eve's request")
    });
    held.expect(200);
    as_eve().expect_error(403, "security/Forbidden");
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
fn concurrent_guesses_stop_at_the_limit() {
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_LOGIN_USER_FAILURES".into(), "3".into()),
            ("BERTH_PASSWORD_HASH_CONCURRENCY".into(), "1".into()),
            ("BERTH_PASSWORD_HASH_QUEUE".into(), "64".into()),
        ],
        ..Options::default()
    });
    let t = create_tenant(&server, "burst");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (server, jane) = (&server, &jane);
                scope.spawn(move || {
                    attempt(server, Via::Basic, jane, &format!("Wrong-Pass-{i}")).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((count(401), count(429)), (3, 17), "{statuses:?}");
}

/// Login attempts from `clients` at once (24 in all), each client named by the address a
/// trusted proxy forwards for: (status, Retry-After, body) of each.
fn concurrent_logins(server: &Server, clients: &[&str]) -> Vec<(u16, Option<String>, String)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let client = clients[i % clients.len()];
                scope.spawn(move || {
                    let resp = server
                        .req("GET", "/user/currentUser")
                        .basic(&format!("management/nobody{i}"), "Wrong-Pass-1")
                        .header("X-Forwarded-For", client)
                        .send();
                    (
                        resp.status,
                        resp.header("retry-after").map(str::to_owned),
                        resp.body,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_password_hashes_are_bounded() {
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_PASSWORD_HASH_CONCURRENCY".into(), "1".into()),
            ("BERTH_PASSWORD_HASH_QUEUE".into(), "2".into()),
            ("BERTH_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
        ],
        ..Options::default()
    });
    let admin = token(&server, MGMT_ADMIN, ADMIN_PASSWORD);
    // 24 clients: the process-wide bound, not a client's share, refuses.
    let clients: Vec<String> = (0..24).map(|i| format!("198.51.100.{i}")).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let statuses = concurrent_logins(&server, &clients);
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
fn one_client_gets_its_share_of_the_hashing_queue_not_all_of_it() {
    // 1 hash at a time, 8 waiting: one client may have 2 of them.
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_PASSWORD_HASH_CONCURRENCY".into(), "1".into()),
            ("BERTH_PASSWORD_HASH_QUEUE".into(), "8".into()),
            ("BERTH_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
            ("BERTH_LOGIN_SOURCE_FAILURES".into(), "1000".into()),
        ],
        ..Options::default()
    });
    let (greedy, other) = ("203.0.113.7", "198.51.100.9");
    let (statuses, others) = std::thread::scope(|scope| {
        let greedy = scope.spawn(|| concurrent_logins(&server, &[greedy]));
        let others = scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            (0..3)
                .map(|i| {
                    server
                        .req("GET", "/user/currentUser")
                        .basic(&format!("management/other{i}"), "Wrong-Pass-1")
                        .header("X-Forwarded-For", other)
                        .send()
                        .status
                })
                .collect::<Vec<u16>>()
        });
        (greedy.join().unwrap(), others.join().unwrap())
    });
    let mut refused = 0;
    for (status, retry_after, body) in &statuses {
        match status {
            401 => {}
            429 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                let body: Value = serde_json::from_str(body).unwrap();
                assert_eq!(body["error"], "security/Too Many Requests", "{body}");
                assert!(
                    body["message"].as_str().unwrap().contains("This client"),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "24 attempts at once all got a hash: {statuses:?}"
    );
    // Another client's attempts reach a hash all the same (401: checked and wrong).
    assert_eq!(others, vec![401, 401, 401]);
}

/// A burst of requests with one credential nobody verified yet (a new client, or every
/// client at once when the cache's entry expires) costs one hash: the others wait for it and
/// take its result from the cache, instead of each spending ~19 MiB and a core's time.
#[test]
fn a_burst_of_one_credential_costs_one_hash() {
    let server = Server::start();
    let t = create_tenant(&server, "herd");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let admin = token(&server, MGMT_ADMIN, ADMIN_PASSWORD);
    let before = metric(&server, &admin, "berth_password_verifications_total");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| attempt(&server, Via::Basic, &jane, "Jane-Pass-1").status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = metric(&server, &admin, "berth_password_verifications_total");
    assert_eq!(after - before, 1.0, "one hash for 16 requests");
}

/// Logs `jane` in both ways, runs `action`, and returns what her old sessions get afterwards.
fn sessions_after(
    server: &Server,
    jane: &str,
    password: &str,
    action: impl FnOnce(),
) -> (u16, u16) {
    let bearer = token(server, jane, password);
    let cookie = cookie_session(server, jane, password);
    assert_eq!(session_statuses(server, &bearer, &cookie), (200, 200));
    action();
    session_statuses(server, &bearer, &cookie)
}

#[test]
fn tokens_end_with_a_password_change_disable_or_recreated_user() {
    let server = Server::start();
    let t = create_tenant(&server, "gen");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let users = format!("/user/{}/users", t.id);
    let put_jane = |body: Value| {
        admin("PUT", &format!("{users}/jane"))
            .json(&body)
            .send()
            .expect(200);
    };
    type Action<'a> = Box<dyn Fn(&str) -> String + 'a>;
    // (name, action given jane's password and returning her new one, old sessions' status).
    let cases: Vec<(&str, Action, u16)> = vec![
        (
            "profile change keeps sessions",
            Box::new(|pw: &str| {
                put_jane(json!({"lastName": "Doe"}));
                pw.to_owned()
            }),
            200,
        ),
        (
            "admin resets the password",
            Box::new(|_| {
                admin("PUT", &format!("{users}/jane/password"))
                    .json(&json!({"currentUserPassword": t.admin_password, "newPassword": "Jane-Pass-2"}))
                    .send()
                    .expect(200);
                "Jane-Pass-2".to_owned()
            }),
            401,
        ),
        (
            "admin sets the password in the user",
            Box::new(|_| {
                put_jane(json!({"password": "Jane-Pass-3"}));
                "Jane-Pass-3".to_owned()
            }),
            401,
        ),
        (
            "own password change",
            Box::new(|pw: &str| {
                server
                    .req("PUT", "/user/currentUser/password")
                    .basic(&jane, pw)
                    .json(&json!({"currentUserPassword": pw, "newPassword": "Jane-Pass-4"}))
                    .send()
                    .expect(200);
                "Jane-Pass-4".to_owned()
            }),
            401,
        ),
        (
            "disabled and enabled again",
            Box::new(|pw: &str| {
                put_jane(json!({"enabled": false}));
                put_jane(json!({"enabled": true}));
                pw.to_owned()
            }),
            401,
        ),
        (
            "deleted and re-created with the same password",
            Box::new(|pw: &str| {
                admin("DELETE", &format!("{users}/jane")).send().expect(204);
                admin("POST", &users)
                    .json(&json!({"userName": "jane", "password": pw}))
                    .send()
                    .expect(201);
                pw.to_owned()
            }),
            401,
        ),
    ];
    let mut password = "Jane-Pass-1".to_owned();
    for (name, action, expected) in &cases {
        let mut next = String::new();
        let got = sessions_after(&server, &jane, &password, || next = action(&password));
        assert_eq!(
            got,
            (*expected, *expected),
            "{name}: old (bearer, cookie) sessions"
        );
        password = next;
        // The new credentials open a new session.
        token(&server, &jane, &password);
    }
    // What a revoked token is told.
    let bearer = token(&server, &jane, &password);
    put_jane(json!({"password": "Jane-Pass-5"}));
    let resp = server
        .req("GET", "/user/currentUser")
        .bearer(&bearer)
        .send()
        .expect_error(401, "security/Unauthorized");
    assert_eq!(resp.json()["message"], "User has been logged out");

    // Changing one's own password in a cookie session ends the old cookie and sets a new one.
    let old = cookie_session(&server, &jane, "Jane-Pass-5");
    let changed = server
        .req("PUT", "/user/currentUser/password")
        .header("Cookie", &old.0)
        .header("X-XSRF-TOKEN", &old.1)
        .json(&json!({"currentUserPassword": "Jane-Pass-5", "newPassword": "Jane-Pass-6"}))
        .send()
        .expect(200)
        .cookies();
    let renewed = (
        format!(
            "authorization={}; XSRF-TOKEN={}",
            changed["authorization"], changed["XSRF-TOKEN"]
        ),
        changed["XSRF-TOKEN"].clone(),
    );
    let status = |session: &(String, String)| {
        server
            .req("GET", "/user/currentUser")
            .header("Cookie", &session.0)
            .header("X-XSRF-TOKEN", &session.1)
            .send()
            .status
    };
    assert_eq!((status(&old), status(&renewed)), (401, 200));
}

#[test]
fn logout_all_users_ends_every_session_of_the_tenant_only() {
    let server = Server::start();
    let t = create_tenant(&server, "allout");
    let other = create_tenant(&server, "bystander");
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let path = |tenant: &Tenant| format!("/user/logout/{}/allUsers", tenant.id);
    // Who may: (caller login, password, tenant, status).
    let permissions = [
        (jane.as_str(), "Jane-Pass-1", &t, 403),
        (
            other.admin_login.as_str(),
            other.admin_password.as_str(),
            &t,
            403,
        ),
    ];
    for (login, password, tenant, status) in permissions {
        let resp = server
            .req("POST", &path(tenant))
            .basic(login, password)
            .json(&json!({}))
            .send();
        assert_eq!(
            resp.status, status,
            "{login} on {}: {}",
            tenant.id, resp.body
        );
    }
    server
        .req("POST", "/user/logout/nosuchtenant/allUsers")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({}))
        .send()
        .expect_error(404, "security/Not Found");

    // (login, password, tenant logged out) per round: the tenant's admin for itself, then the
    // management admin for the subtenant.
    let rounds = [
        (t.admin_login.as_str(), t.admin_password.as_str()),
        (MGMT_ADMIN, ADMIN_PASSWORD),
    ];
    for (caller, caller_password) in rounds {
        let sessions = [
            (jane.as_str(), "Jane-Pass-1"),
            (t.admin_login.as_str(), t.admin_password.as_str()),
            (other.admin_login.as_str(), other.admin_password.as_str()),
        ]
        .map(|(login, pw)| {
            (
                login,
                pw,
                token(&server, login, pw),
                cookie_session(&server, login, pw),
            )
        });
        server
            .req("POST", &path(&t))
            .basic(caller, caller_password)
            .json(&json!({}))
            .send()
            .expect(200);
        for (login, password, bearer, cookie) in &sessions {
            let expected = if login.starts_with(&format!("{}/", t.id)) {
                401
            } else {
                200
            };
            assert_eq!(
                session_statuses(&server, bearer, cookie),
                (expected, expected),
                "{caller} logged out {}: sessions of {login}",
                t.id
            );
            // Basic credentials are unaffected, and new sessions open.
            attempt(&server, Via::Basic, login, password).expect(200);
            token(&server, login, password);
        }
    }
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

/// A container the test runs itself on a Berth network, removed on drop.
struct Probe(String);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn guessing_on_the_internal_api_locks_the_source_not_the_service() {
    use crate::supervisor::{
        HelloLease, deploy, docker, instances, manifest, readiness_on_health, start_server_with,
        subscribe, wait_for, wait_ready,
    };
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server_with(
        &[],
        Options {
            env: vec![
                ("BERTH_LOGIN_USER_FAILURES".into(), "2".into()),
                ("BERTH_LOGIN_SOURCE_FAILURES".into(), "3".into()),
                // A load balancer's block that happens to cover the container networks: the
                // internal API must still count a container's own address, whatever it forwards.
                ("BERTH_TRUSTED_PROXIES".into(), "10.0.0.0/8".into()),
            ],
            ..Options::default()
        },
    );
    let owner = create_tenant(&server, "internal");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let service = instances(&wait_ready(&server, &owner, &app, 1))[0].clone();
    let (service_ip, service_name) = (
        service["ip"].as_str().unwrap().to_owned(),
        service["name"].as_str().unwrap().to_owned(),
    );
    let env = crate::supervisor::container_get(&service_ip, "/env");
    let network = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
        &crate::supervisor::network_container(&service_name),
    ]);
    // A hostile container on the same network knows the bootstrap user's name, not its password.
    let var = |name: &str| format!("{name}={}", env[name].as_str().unwrap());
    let probe = Probe(docker(&[
        "run",
        "-d",
        "--label",
        "berth.test=1",
        "--network",
        &network,
        "--add-host",
        "berth-platform:host-gateway",
        "-e",
        &var("C8Y_BASEURL"),
        "-e",
        &var("C8Y_BOOTSTRAP_TENANT"),
        "-e",
        &var("C8Y_BOOTSTRAP_USER"),
        "-e",
        "C8Y_BOOTSTRAP_PASSWORD=Wrong-Pass-1",
        &image.0.id,
    ]));
    let probe_ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &probe.0,
    ]);
    wait_for(
        std::time::Duration::from_secs(30),
        "probe container",
        || {
            crate::supervisor::plain_agent()
                .get(&format!("http://{probe_ip}:80/health"))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
        },
    );
    // Each call of the probe claims to forward for another client.
    let calls = std::cell::Cell::new(0);
    let platform_status = |ip: &str| {
        calls.set(calls.get() + 1);
        let path = format!(
            "/platform/subscriptions?forwardedFor=203.0.113.{}",
            calls.get()
        );
        let answer = crate::supervisor::container_get(ip, &path);
        answer["status"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer}"))
    };
    // (container, status it gets from the internal API): three failures lock the probe's
    // address; the service's own (never cached) login still works, so its user is not locked.
    let steps = [
        (&probe_ip, 401),
        (&probe_ip, 401),
        (&probe_ip, 401),
        (&probe_ip, 429),
        (&service_ip, 200),
        (&probe_ip, 429),
    ];
    for (i, (ip, expected)) in steps.iter().enumerate() {
        assert_eq!(platform_status(ip), *expected, "step {i} from {ip}");
    }
    drop(probe);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy() {
    // The test client connects from 127.0.0.1, a trusted proxy here: the source counted must be
    // the client it forwards for, or one guesser would lock out everyone behind the proxy.
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_LOGIN_USER_FAILURES".into(), "100".into()),
            ("BERTH_LOGIN_SOURCE_FAILURES".into(), "3".into()),
            ("BERTH_LOGIN_LOCKOUT".into(), "600".into()),
            ("BERTH_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
        ],
        ..Options::default()
    });
    let t = create_tenant(&server, "proxied");
    let ann = create_user(&server, &t, "ann", "Ann-Pass-12");
    let (wrong, ann_pw) = ("Wrong-Pass-1", "Ann-Pass-12");
    let (guesser, other) = ("203.0.113.7", "198.51.100.9");
    let guesser_v6 = "2001:db8:1:2::7";
    // (forwarding header, value, password, expected status, locked what)
    type Step<'a> = (&'a str, String, &'a str, u16, Option<&'a str>);
    let steps: &[Step] = &[
        ("X-Forwarded-For", guesser.into(), wrong, 401, None), // guesser 1
        ("X-Forwarded-For", guesser.into(), wrong, 401, None), // guesser 2
        ("X-Forwarded-For", guesser.into(), wrong, 401, None), // guesser 3: locked
        (
            "X-Forwarded-For",
            guesser.into(),
            ann_pw,
            429,
            Some("this address"),
        ),
        // Forwarded (RFC 7239) names the same client.
        (
            "Forwarded",
            format!("for={guesser}"),
            ann_pw,
            429,
            Some("this address"),
        ),
        // Another client behind the same proxy is not locked, nor the proxy's own requests.
        ("X-Forwarded-For", other.into(), ann_pw, 200, None),
        (
            "X-Forwarded-For",
            format!("{guesser}, {other}"),
            ann_pw,
            200,
            None,
        ),
        ("X-Nothing", String::new(), ann_pw, 200, None),
        // An IPv6 client is counted by its /64 (wrong passwords from here on: the right one is
        // cached since steps 5-7 and needs no password check).
        (
            "Forwarded",
            format!("for=\"[{guesser_v6}]\""),
            wrong,
            401,
            None,
        ),
        (
            "Forwarded",
            "for=\"[2001:db8:1:2::8]\"".into(),
            wrong,
            401,
            None,
        ),
        (
            "X-Forwarded-For",
            "2001:db8:1:2::9".into(),
            wrong,
            401,
            None,
        ),
        (
            "X-Forwarded-For",
            "2001:db8:1:2::a".into(),
            wrong,
            429,
            Some("this address"),
        ),
        (
            "X-Forwarded-For",
            "2001:db8:1:3::a".into(),
            wrong,
            401,
            None,
        ),
    ];
    for (i, (name, value, password, status, locked)) in steps.iter().enumerate() {
        let resp = server
            .req("GET", "/user/currentUser")
            .header(name, value)
            .basic(&ann, password)
            .send();
        assert_eq!(
            resp.status, *status,
            "step {i} {name}: {value}: {}",
            resp.body
        );
        if let Some(what) = locked {
            let resp = resp.expect_error(429, "security/Too Many Requests");
            let message = resp.json()["message"].as_str().unwrap().to_owned();
            assert!(message.contains(what), "step {i}: {message}");
        }
    }
}

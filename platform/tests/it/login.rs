//! Login options, OAI-Secure cookie login with XSRF, token login, Bearer, bad tokens, logout.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, Server, create_tenant};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Signs `claims` with HS256 and `key`, the way the server does.
fn sign(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[test]
fn login_options_need_no_authentication() {
    let server = Server::start();
    let options = server
        .req("GET", "/tenant/loginOptions")
        .send()
        .expect(200)
        .json();
    let types: Vec<&str> = options["loginOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["BASIC", "OAUTH2_INTERNAL"]);
    assert!(
        options["loginOptions"][1]["initRequest"]
            .as_str()
            .unwrap()
            .ends_with("/tenant/oauth?tenant_id=management")
    );
    server
        .req(
            "GET",
            "/tenant/loginOptions?tenantId=management&management=true",
        )
        .send()
        .expect_error(400, "LoginOptions/Bad Request");
    server
        .req("GET", "/tenant/loginOptions?tenantId=t000")
        .send()
        .expect_error(404, "LoginOptions/Not Found");

    // The options name TOTP as the strategy; Berth offers no second factor, and its TOTP calls
    // say so: never active, enrolment refused with an error body.
    assert_eq!(options["loginOptions"][0]["tfaStrategy"], "TOTP");
    let activity = server
        .req("GET", "/user/currentUser/totpSecret/activity")
        .basic(crate::fixture::MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200)
        .json();
    assert_eq!(activity, json!({"isActive": false}));
    for path in [
        "/user/currentUser/totpSecret",
        "/user/currentUser/totpSecret/verify",
        "/user/currentUser/totpSecret/activity",
    ] {
        let refused = server
            .req("POST", path)
            .basic(crate::fixture::MGMT_ADMIN, ADMIN_PASSWORD)
            .json(&json!({"code": "123456", "isActive": true}))
            .send()
            .expect_error(422, "users/Invalid Data")
            .json();
        assert_eq!(
            refused["message"], "TFA with TOTP is not supported",
            "{path}"
        );
    }
    server
        .req("GET", "/user/currentUser/totpSecret/activity")
        .send()
        .expect_error(401, "security/Unauthorized");
}

#[test]
fn cookie_login_requires_the_xsrf_header() {
    let server = Server::start();
    let t = create_tenant(&server, "cookie");
    let resp = server
        .req("POST", &format!("/tenant/oauth?tenant_id={}", t.id))
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", "boss"),
            ("password", &t.admin_password),
        ])
        .send()
        .expect(200);
    let cookies = resp.cookies();
    let token = cookies
        .get("authorization")
        .expect("authorization cookie")
        .clone();
    let xsrf = cookies
        .get("XSRF-TOKEN")
        .expect("XSRF-TOKEN cookie")
        .clone();
    let set_cookie = resp.all_headers("set-cookie").join("\n");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("Secure"),
        "{set_cookie}"
    );
    let claims = claims_of(&token);
    for claim in [
        "iss",
        "aud",
        "sub",
        "ten",
        "xsrfToken",
        "jti",
        "iat",
        "nbf",
        "exp",
    ] {
        assert!(claims.get(claim).is_some(), "{claim} in {claims}");
    }
    assert_eq!(claims["ten"], t.id.as_str());
    assert_eq!(claims["sub"], "boss");
    assert_eq!(claims["xsrfToken"], xsrf.as_str());
    // Token-only clients (pyc8y) take the platform's address from `aud`: the base URL the
    // client addressed (real tokens, always on port 443, carry the bare host).
    assert_eq!(claims["aud"], server.https.as_str());

    let cookie_header = format!("authorization={token}; XSRF-TOKEN={xsrf}");
    let cases = [
        (Some(xsrf.as_str()), 200),
        (None, 401),
        (Some("wrong"), 401),
    ];
    for (header, expected) in cases {
        let mut req = server
            .req("GET", "/user/currentUser")
            .header("Cookie", &cookie_header);
        if let Some(h) = header {
            req = req.header("X-XSRF-TOKEN", h);
        }
        let resp = req.send();
        assert_eq!(resp.status, expected, "xsrf {header:?}: {}", resp.body);
    }
    // The user name may carry the tenant instead of the query.
    server
        .req("POST", "/tenant/oauth")
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", &t.admin_login),
            ("password", &t.admin_password),
        ])
        .send()
        .expect(200);
}

/// Login CSRF: a form on another site's page must not sign the visitor in (to the attacker's
/// account). Browsers name the page's origin; scripts and SDKs send none.
#[test]
fn cookie_login_from_another_sites_page_is_refused() {
    let server = Server::start();
    let t = create_tenant(&server, "csrf");
    let ours = server.https.clone();
    let cases: &[(Option<&str>, u16)] = &[
        (None, 200),
        (Some(ours.as_str()), 200),
        (Some(&ours.to_uppercase()), 200),
        (Some("https://evil.example.com"), 403),
        (Some("null"), 403),
        (Some(&ours.replace("https://", "http://")), 403),
    ];
    for (origin, expected) in cases {
        let mut req = server
            .req("POST", &format!("/tenant/oauth?tenant_id={}", t.id))
            .form(&[
                ("grant_type", "PASSWORD"),
                ("username", "boss"),
                ("password", &t.admin_password),
            ]);
        if let Some(origin) = origin {
            req = req.header("Origin", origin);
        }
        let resp = req.send();
        assert_eq!(resp.status, *expected, "Origin {origin:?}: {}", resp.body);
        let cookies: Vec<String> = resp
            .all_headers("set-cookie")
            .into_iter()
            .map(str::to_owned)
            .collect();
        if *expected == 403 {
            resp.expect_error(403, "security/Forbidden");
            assert!(cookies.is_empty(), "Origin {origin:?} got {cookies:?}");
        } else {
            assert!(!cookies.is_empty(), "Origin {origin:?}");
        }
    }
}

#[test]
fn token_login_and_bearer_and_logout() {
    let server = Server::start();
    let resp = server
        .req("POST", "/tenant/oauth/token?tenant_id=management")
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .expect(200)
        .json();
    let token = resp["access_token"].as_str().unwrap().to_owned();
    let me = server
        .req("GET", "/user/currentUser")
        .bearer(&token)
        .send()
        .expect(200)
        .json();
    assert_eq!(me["userName"], "admin");
    server
        .req("GET", "/tenant/tenants")
        .bearer(&token)
        .send()
        .expect(200);

    let failures = [
        (
            "wrong password",
            vec![
                ("grant_type", "PASSWORD"),
                ("username", "admin"),
                ("password", "nope-nope"),
            ],
            401,
        ),
        (
            "unknown user",
            vec![
                ("grant_type", "PASSWORD"),
                ("username", "ghost"),
                ("password", ADMIN_PASSWORD),
            ],
            401,
        ),
        (
            "wrong grant",
            vec![
                ("grant_type", "CLIENT"),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
            400,
        ),
        (
            "no password",
            vec![("grant_type", "PASSWORD"), ("username", "admin")],
            401,
        ),
    ];
    for (name, form, status) in failures {
        let resp = server.req("POST", "/tenant/oauth/token").form(&form).send();
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
    }

    server
        .req("POST", "/user/logout")
        .bearer(&token)
        .send()
        .expect(200);
    server
        .req("GET", "/user/currentUser")
        .bearer(&token)
        .send()
        .expect_error(401, "security/Unauthorized");
    // Basic keeps working after a token logout.
    server.admin_get("/user/currentUser").expect(200);
}

#[test]
fn forged_expired_and_unsigned_tokens_are_rejected() {
    let server = Server::start();
    let resp = server
        .req("POST", "/tenant/oauth/token")
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", "management/admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .expect(200)
        .json();
    let token = resp["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    let key = std::fs::read(server.path("keys/jwt.key")).unwrap();
    let now = claims["iat"].as_u64().unwrap();

    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut future = claims.clone();
    future["nbf"] = json!(now + 3600);
    future["exp"] = json!(now + 7200);
    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("someone-else");
    let (header, payload, _) = {
        let mut parts = token.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let cases = vec![
        ("control: re-signed original", sign(&key, &claims), 200),
        ("expired", sign(&key, &expired), 401),
        ("not yet valid", sign(&key, &future), 401),
        ("wrong issuer", sign(&key, &other_issuer), 401),
        (
            "wrong key",
            sign(b"another-key-another-key-another!!", &claims),
            401,
        ),
        ("alg none", format!("{none_header}.{payload}."), 401),
        (
            "tampered payload",
            format!(
                "{header}.{}.{}",
                URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "ten": "management"}).to_string()),
                token.rsplit('.').next().unwrap()
            ),
            401,
        ),
    ];
    for (name, forged, expected) in cases {
        let resp = server
            .req("GET", "/user/currentUser")
            .bearer(&forged)
            .send();
        assert_eq!(resp.status, expected, "{name}: {}", resp.body);
    }
}

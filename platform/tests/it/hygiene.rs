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

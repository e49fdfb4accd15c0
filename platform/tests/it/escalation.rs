//! Escalation inside a tenant: nobody grants a role or a group carrying roles they lack, and
//! nobody edits, deletes or sets the password of a user with more rights (issue 10, item 8).

use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, create_tenant, create_user};

/// Caller (login, password), method, path, body, expected status and error.
type Case<'a> = (
    (&'a str, &'a str),
    &'a str,
    String,
    Option<Value>,
    u16,
    Option<&'a str>,
);

const UM_PASSWORD: &str = "Manager-Pass-1";
const NEW_PASSWORD: &str = "Taken-Over-99";

fn group_id(server: &Server, login: &str, password: &str, tenant: &str, name: &str) -> i64 {
    server
        .req(
            "GET",
            &format!("/user/{tenant}/groupByName/{}", name.replace(' ', "%20")),
        )
        .basic(login, password)
        .send()
        .expect(200)
        .json()["id"]
        .as_i64()
        .expect("group id")
}

#[test]
fn nobody_grants_or_touches_more_rights_than_they_hold() {
    let server = Server::start();
    let t = create_tenant(&server, "escalate");
    let tid = t.id.clone();
    let boss = (t.admin_login.as_str(), t.admin_password.as_str());
    let admins = group_id(&server, boss.0, boss.1, &tid, "admins");
    let managers = group_id(&server, boss.0, boss.1, &tid, "Global User Manager");
    let business = group_id(&server, boss.0, boss.1, &tid, "business");
    // A member of "Global User Manager" (user management roles only).
    let um = create_user(&server, &t, "um", UM_PASSWORD);
    server
        .req("POST", &format!("/user/{tid}/groups/{managers}/users"))
        .basic(boss.0, boss.1)
        .json(&json!({"user": {"id": "um"}}))
        .send()
        .expect(201);
    let worker = create_user(&server, &t, "worker", "Worker-Pass-1");
    let um = (um.as_str(), UM_PASSWORD);
    let mgmt = (MGMT_ADMIN, ADMIN_PASSWORD);
    let role = |r: &str| json!({"role": {"id": r}});
    let password_change =
        |current: &str| json!({"currentUserPassword": current, "newPassword": NEW_PASSWORD});
    let with_groups = |name: &str, group: i64| {
        json!({"userName": name, "password": "Sneaky-Pass-1",
               "groups": {"references": [{"group": {"id": group}}]}})
    };

    // (who, method, path, body, expected status, error) in order; later rows rely on earlier.
    let cases: Vec<Case<'_>> = vec![
        // The reported attacks.
        (
            um,
            "POST",
            format!("/user/{tid}/groups/{admins}/users"),
            Some(json!({"user": {"id": "um"}})),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "PUT",
            format!("/user/{tid}/users/boss/password"),
            Some(password_change(UM_PASSWORD)),
            403,
            Some("security/Forbidden"),
        ),
        (
            boss,
            "POST",
            format!("/user/{tid}/users/boss/roles"),
            Some(role("ROLE_TENANT_MANAGEMENT_ADMIN")),
            422,
            Some("roles/Invalid Data"),
        ),
        (
            boss,
            "POST",
            format!("/user/{tid}/groups/{admins}/roles"),
            Some(role("ROLE_TENANT_MANAGEMENT_ADMIN")),
            422,
            Some("roles/Invalid Data"),
        ),
        // Users' role references.
        (
            um,
            "POST",
            format!("/user/{tid}/users/um/roles"),
            Some(role("ROLE_TENANT_ADMIN")),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "POST",
            format!("/user/{tid}/users/worker/roles"),
            Some(role("ROLE_AUDIT_ADMIN")),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "DELETE",
            format!("/user/{tid}/users/boss/roles/ROLE_TENANT_ADMIN"),
            None,
            403,
            Some("security/Forbidden"),
        ),
        // Editing or deleting someone with more rights.
        (
            um,
            "PUT",
            format!("/user/{tid}/users/boss"),
            Some(json!({"enabled": false})),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "PUT",
            format!("/user/{tid}/users/boss"),
            Some(json!({"password": NEW_PASSWORD})),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "DELETE",
            format!("/user/{tid}/users/boss"),
            None,
            403,
            Some("security/Forbidden"),
        ),
        // Groups' members and roles.
        (
            um,
            "DELETE",
            format!("/user/{tid}/groups/{admins}/users/boss"),
            None,
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "POST",
            format!("/user/{tid}/groups/{managers}/roles"),
            Some(role("ROLE_TENANT_ADMIN")),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "DELETE",
            format!("/user/{tid}/groups/{admins}/roles/ROLE_ALARM_READ"),
            None,
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "PUT",
            format!("/user/{tid}/groups/{admins}"),
            Some(json!({"name": "mine"})),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "DELETE",
            format!("/user/{tid}/groups/{admins}"),
            None,
            403,
            Some("security/Forbidden"),
        ),
        // User create with groups or roles.
        (
            um,
            "POST",
            format!("/user/{tid}/users"),
            Some(with_groups("sock", admins)),
            403,
            Some("security/Forbidden"),
        ),
        (
            um,
            "POST",
            format!("/user/{tid}/users"),
            Some(
                json!({"userName": "sock", "password": "Sneaky-Pass-1", "roles": {"references": [role("ROLE_TENANT_ADMIN")]}}),
            ),
            403,
            Some("security/Forbidden"),
        ),
        // What stays allowed: rights the caller holds, over users with no more rights.
        (
            um,
            "POST",
            format!("/user/{tid}/users"),
            Some(with_groups("clerk", business)),
            201,
            None,
        ),
        (
            um,
            "POST",
            format!("/user/{tid}/users/worker/roles"),
            Some(role("ROLE_USER_MANAGEMENT_READ")),
            201,
            None,
        ),
        (
            um,
            "PUT",
            format!("/user/{tid}/users/worker/password"),
            Some(password_change(UM_PASSWORD)),
            200,
            None,
        ),
        (
            um,
            "POST",
            format!("/user/{tid}/groups/{business}/users"),
            Some(json!({"user": {"id": "worker"}})),
            201,
            None,
        ),
        (
            boss,
            "PUT",
            format!("/user/{tid}/users/um"),
            Some(json!({"lastName": "Manager"})),
            200,
            None,
        ),
        (
            boss,
            "POST",
            format!("/user/{tid}/users/um/roles"),
            Some(role("ROLE_AUDIT_READ")),
            201,
            None,
        ),
        // Tenant-management roles stay out of tenants that may not create subtenants, even
        // when granted by someone holding them.
        (
            mgmt,
            "POST",
            format!("/user/{tid}/users/worker/roles"),
            Some(role("ROLE_TENANT_MANAGEMENT_READ")),
            422,
            Some("roles/Invalid Data"),
        ),
        // The management tenant's admin still manages the subtenant's users.
        (
            mgmt,
            "PUT",
            format!("/user/{tid}/users/boss"),
            Some(json!({"lastName": "Boss"})),
            200,
            None,
        ),
        (
            mgmt,
            "POST",
            format!("/user/{tid}/users/worker/roles"),
            Some(role("ROLE_ALARM_ADMIN")),
            201,
            None,
        ),
    ];
    for (i, ((login, password), method, path, body, status, error)) in cases.into_iter().enumerate()
    {
        let mut req = server.req(method, &path).basic(login, password);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let resp = req.send();
        let context = format!(
            "case {i}: {login} {method} {path} {body:?} -> {} {}",
            resp.status, resp.body
        );
        assert_eq!(resp.status, status, "{context}");
        if let Some(error) = error {
            resp.expect_error(status, error);
        }
    }

    // Nothing was half-done: um holds no admin rights, boss keeps password and groups, no sock.
    let me = server
        .req("GET", "/user/currentUser")
        .basic(um.0, um.1)
        .send()
        .expect(200)
        .json();
    let effective: Vec<&str> = me["effectiveRoles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(!effective.contains(&"ROLE_TENANT_ADMIN"), "{effective:?}");
    let boss_user = server
        .req("GET", &format!("/user/{tid}/users/boss"))
        .basic(boss.0, boss.1)
        .send()
        .expect(200)
        .json();
    assert_eq!(boss_user["enabled"], true);
    let boss_groups = boss_user["groups"]["references"].to_string();
    assert!(boss_groups.contains("\"admins\""), "{boss_groups}");
    let admins_group = server
        .req("GET", &format!("/user/{tid}/groups/{admins}"))
        .basic(boss.0, boss.1)
        .send()
        .expect(200)
        .json();
    assert_eq!(admins_group["name"], "admins");
    assert!(
        admins_group["roles"]
            .to_string()
            .contains("ROLE_ALARM_READ")
    );
    assert!(
        !admins_group["roles"]
            .to_string()
            .contains("ROLE_TENANT_MANAGEMENT")
    );
    server
        .req("GET", &format!("/user/{tid}/users/sock"))
        .basic(boss.0, boss.1)
        .send()
        .expect(404);
    // The permitted create with a group did add the membership.
    let clerk = server
        .req("GET", &format!("/user/{tid}/users/clerk"))
        .basic(boss.0, boss.1)
        .send()
        .expect(200)
        .json();
    assert!(
        clerk["groups"]["references"]
            .to_string()
            .contains("\"business\"")
    );
    server
        .req("GET", "/user/currentUser")
        .basic(&worker, NEW_PASSWORD)
        .send()
        .expect(200);
}

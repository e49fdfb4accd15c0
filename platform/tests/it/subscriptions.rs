//! The subscription API without containers (applications without an uploaded version have no
//! deployment): who may subscribe, list and unsubscribe, 409/404 cases, and the roles a
//! subscription makes assignable in the subscribing tenant.

use serde_json::{Value, json};

use crate::fixture::{
    ADMIN_PASSWORD, MGMT_ADMIN, Server, Tenant, create_tenant, create_user, unique,
};

fn create_app(server: &Server, owner: &Tenant, availability: &str) -> String {
    let name = unique("sub-");
    server
        .req("POST", "/application/applications")
        .basic(&owner.admin_login, &owner.admin_password)
        .json(
            &json!({"name": name, "key": format!("{name}-key"), "type": "MICROSERVICE",
                      "availability": availability, "roles": ["ROLE_SUBTEST_READ"]}),
        )
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (caller login and password, method, path, body, expected status)
type Case = ((String, String), &'static str, String, Option<Value>, u16);

#[test]
fn who_may_subscribe_list_and_unsubscribe() {
    let server = Server::start();
    let (a, b) = (create_tenant(&server, "sa"), create_tenant(&server, "sb"));
    let app = create_app(&server, &a, "PRIVATE");
    let plain = create_user(&server, &a, "plain", "Plain-Passw0rd");
    let mgmt = (MGMT_ADMIN.to_owned(), ADMIN_PASSWORD.to_owned());
    let admin_a = (a.admin_login.clone(), a.admin_password.clone());
    let admin_b = (b.admin_login.clone(), b.admin_password.clone());
    let plain_a = (plain, "Plain-Passw0rd".to_owned());
    let by_id = json!({"application": {"id": app}});
    let by_self =
        json!({"application": {"self": format!("https://x/application/applications/{app}")}});
    let cases: Vec<Case> = vec![
        (
            plain_a.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", a.id),
            Some(by_id.clone()),
            403,
        ),
        (
            admin_a.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", b.id),
            Some(by_id.clone()),
            403,
        ),
        (
            admin_b.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", b.id),
            Some(by_id.clone()),
            404,
        ),
        (
            admin_a.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", a.id),
            Some(json!({"application": {}})),
            422,
        ),
        (
            admin_a.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", a.id),
            Some(by_self.clone()),
            201,
        ),
        (
            admin_a.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", a.id),
            Some(by_id.clone()),
            409,
        ),
        (
            mgmt.clone(),
            "POST",
            format!("/tenant/tenants/{}/applications", b.id),
            Some(by_id.clone()),
            201,
        ),
        (
            mgmt.clone(),
            "POST",
            "/tenant/tenants/nosuchtenant/applications".to_owned(),
            Some(by_id.clone()),
            404,
        ),
        (
            admin_b.clone(),
            "GET",
            format!("/tenant/tenants/{}/applications", b.id),
            None,
            200,
        ),
        (
            admin_a.clone(),
            "GET",
            format!("/tenant/tenants/{}/applications", b.id),
            None,
            403,
        ),
        (
            admin_a.clone(),
            "DELETE",
            format!("/tenant/tenants/{}/applications/{app}", b.id),
            None,
            403,
        ),
        (
            mgmt.clone(),
            "DELETE",
            format!("/tenant/tenants/{}/applications/{app}", b.id),
            None,
            204,
        ),
        (
            mgmt.clone(),
            "DELETE",
            format!("/tenant/tenants/{}/applications/{app}", b.id),
            None,
            404,
        ),
        // Only bootstrap users may ask for the current application's subscriptions.
        (
            admin_a.clone(),
            "GET",
            "/application/currentApplication/subscriptions".to_owned(),
            None,
            403,
        ),
        (
            admin_a.clone(),
            "GET",
            "/application/currentApplication/settings".to_owned(),
            None,
            403,
        ),
    ];
    for ((login, password), method, path, body, status) in cases {
        let mut req = server.req(method, &path).basic(&login, &password);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let resp = req.send();
        assert_eq!(
            resp.status, status,
            "{login} {method} {path}: {}",
            resp.body
        );
    }
    let list = server
        .req("GET", &format!("/tenant/tenants/{}/applications", a.id))
        .basic(&a.admin_login, &a.admin_password)
        .send()
        .expect(200)
        .json();
    let refs = list["references"].as_array().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["application"]["id"], app.as_str());
}

#[test]
fn subscribing_makes_the_application_roles_assignable() {
    let server = Server::start();
    let (owner, other) = (create_tenant(&server, "so"), create_tenant(&server, "sx"));
    let app = create_app(&server, &owner, "MARKET");
    let assign = |tenant: &Tenant| {
        let user = create_user(&server, tenant, &unique("u"), "User-Passw0rd");
        let name = user.split('/').nth(1).unwrap().to_owned();
        server
            .req("POST", &format!("/user/{}/users/{name}/roles", tenant.id))
            .basic(&tenant.admin_login, &tenant.admin_password)
            .json(&json!({"role": {"id": "ROLE_SUBTEST_READ"}}))
            .send()
            .status
    };
    assert_eq!(assign(&other), 422, "not subscribed: unknown role");
    // A MARKET application may be subscribed by any tenant's admin.
    server
        .req(
            "POST",
            &format!("/tenant/tenants/{}/applications", other.id),
        )
        .basic(&other.admin_login, &other.admin_password)
        .json(&json!({"application": {"id": app}}))
        .send()
        .expect(201);
    assert_eq!(assign(&other), 201);
    // The service user exists in the subscribing tenant but is hidden from the user API.
    let users = server
        .req("GET", &format!("/user/{}/users?pageSize=100", other.id))
        .basic(&other.admin_login, &other.admin_password)
        .send()
        .expect(200)
        .json();
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| !u["userName"]
                .as_str()
                .unwrap_or_default()
                .starts_with("service_")),
        "{users}"
    );
}

/// Makes `child` a subtenant of `parent` in the database of a running server: the API lets
/// only the management tenant create tenants, so a sub-subtenant cannot be made through it.
/// (SQLite serialises this write with the server's own connection.)
fn set_parent(server: &Server, child: &Tenant, parent: &Tenant) {
    let store = berth::store::Store::open(&server.path(berth::store::DATABASE_FILE)).unwrap();
    store
        .run_now(|c| {
            c.execute(
                "UPDATE tenants SET parent = ?1 WHERE id = ?2",
                [&parent.id, &child.id],
            )?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn availability_decides_who_may_subscribe() {
    let server = Server::start();
    let mgmt = Tenant {
        id: "management".into(),
        admin_login: MGMT_ADMIN.into(),
        admin_password: ADMIN_PASSWORD.into(),
    };
    // management ─┬─ a ── g (a sub-subtenant of management, a subtenant of a)
    //             └─ b
    let (a, b, g) = (
        create_tenant(&server, "ava"),
        create_tenant(&server, "avb"),
        create_tenant(&server, "avg"),
    );
    set_parent(&server, &g, &a);
    // (owner, availability, subscribing tenant (its admin subscribes it), status)
    let cases: &[(&Tenant, &str, &Tenant, u16)] = &[
        (&mgmt, "PRIVATE", &mgmt, 201),
        (&mgmt, "PRIVATE", &a, 404),
        (&mgmt, "PRIVATE", &g, 404),
        (&mgmt, "SHARED", &a, 201),
        (&mgmt, "SHARED", &g, 404),
        (&mgmt, "MARKET", &g, 201),
        (&a, "PRIVATE", &a, 201),
        (&a, "PRIVATE", &g, 404),
        (&a, "PRIVATE", &b, 404),
        (&a, "SHARED", &a, 201),
        (&a, "SHARED", &g, 201),
        (&a, "SHARED", &b, 404),
        (&a, "MARKET", &b, 201),
        (&a, "MARKET", &g, 201),
    ];
    let mut expected: Vec<(String, String)> = Vec::new();
    for (owner, availability, subscriber, status) in cases {
        let app = create_app(&server, owner, availability);
        let resp = server
            .req(
                "POST",
                &format!("/tenant/tenants/{}/applications", subscriber.id),
            )
            .basic(&subscriber.admin_login, &subscriber.admin_password)
            .json(&json!({"application": {"id": app}}))
            .send();
        let case = format!("{} {availability} → {}", owner.id, subscriber.id);
        assert_eq!(resp.status, *status, "{case}: {}", resp.body);
        if *status == 201 {
            expected.push((subscriber.id.clone(), app));
        } else {
            let body = resp.expect_error(*status, "applications/Not Found").json();
            assert_eq!(
                body["message"],
                format!("Could not find application by ID {app}"),
                "{case}"
            );
        }
    }
    // Nothing was written for a refused subscription.
    for tenant in [&mgmt, &a, &b, &g] {
        let refs = server
            .req(
                "GET",
                &format!("/tenant/tenants/{}/applications?pageSize=100", tenant.id),
            )
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .send()
            .expect(200)
            .json();
        let mut listed: Vec<String> = refs["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["application"]["id"].as_str().unwrap().to_owned())
            .collect();
        let mut want: Vec<String> = expected
            .iter()
            .filter(|(t, _)| *t == tenant.id)
            .map(|(_, app)| app.clone())
            .collect();
        listed.sort();
        want.sort();
        assert_eq!(listed, want, "subscriptions of {}", tenant.id);
    }
}

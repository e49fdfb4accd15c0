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

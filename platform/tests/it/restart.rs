//! A restarted server keeps every tenant, user, group, application and option.

use serde_json::json;

use crate::fixture::{Req, Server, create_tenant, create_user};

fn as_admin<'a>(
    server: &'a Server,
    login: &str,
    password: &str,
    method: &str,
    path: &str,
) -> Req<'a> {
    server.req(method, path).basic(login, password)
}

#[test]
fn restart_keeps_all_state() {
    let server = Server::start();
    let t = create_tenant(&server, "persist");
    let admin_login = t.admin_login.clone();
    let jane = create_user(&server, &t, "jane", "Jane-Pass-1");
    let group = as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "POST",
        &format!("/user/{}/groups", t.id),
    )
    .json(&json!({"name": "keepers"}))
    .send()
    .expect(201)
    .json();
    let gid = group["id"].as_i64().unwrap();
    as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "POST",
        &format!("/user/{}/groups/{gid}/users", t.id),
    )
    .json(&json!({"user": {"id": "jane"}}))
    .send()
    .expect(201);
    as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "POST",
        &format!("/user/{}/groups/{gid}/roles", t.id),
    )
    .json(&json!({"role": {"id": "ROLE_OPTION_MANAGEMENT_READ"}}))
    .send()
    .expect(201);
    let app = as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "POST",
        "/application/applications",
    )
    .json(&json!({"name": "kept", "key": "kept-key", "type": "MICROSERVICE"}))
    .send()
    .expect(201)
    .json();
    let app_id = app["id"].as_str().unwrap().to_owned();
    let bootstrap = as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "GET",
        &format!("/application/applications/{app_id}/bootstrapUser"),
    )
    .send()
    .expect(200)
    .json();
    as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "POST",
        "/tenant/options",
    )
    .json(&json!({"category": "kept", "key": "plain", "value": "v1"}))
    .send()
    .expect(201);
    as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "POST",
        "/tenant/options",
    )
    .json(&json!({"category": "kept", "key": "credentials.pw", "value": "hidden"}))
    .send()
    .expect(201);

    let server = server.restart();

    server
        .admin_get(&format!("/tenant/tenants/{}", t.id))
        .expect(200);
    let me = server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-1")
        .send()
        .expect(200)
        .json();
    assert_eq!(me["effectiveRoles"][0]["id"], "ROLE_OPTION_MANAGEMENT_READ");
    as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "GET",
        &format!("/user/{}/groups/{gid}", t.id),
    )
    .send()
    .expect(200);
    let kept = as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "GET",
        &format!("/application/applications/{app_id}"),
    )
    .send()
    .expect(200)
    .json();
    assert_eq!(kept["name"], "kept");
    let again = as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "GET",
        &format!("/application/applications/{app_id}/bootstrapUser"),
    )
    .send()
    .expect(200)
    .json();
    assert_eq!(
        again, bootstrap,
        "the sealed bootstrap password still opens after a restart"
    );
    let options = as_admin(
        &server,
        &admin_login,
        &t.admin_password,
        "GET",
        "/tenant/options/kept",
    )
    .send()
    .expect(200)
    .json();
    assert_eq!(
        options,
        json!({"credentials.pw": "<<Encrypted>>", "plain": "v1"})
    );
    let cert_before = std::fs::read(server.path("tls/cert.pem")).unwrap();
    let server = server.restart();
    assert_eq!(
        std::fs::read(server.path("tls/cert.pem")).unwrap(),
        cert_before,
        "the certificate is generated once"
    );
}

//! Users, groups and roles; the permission matrix; tenant isolation.

use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, create_tenant, create_user, management};

fn role_ids(user: &Value) -> Vec<String> {
    user["effectiveRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn user_lifecycle_and_password_changes() {
    let server = Server::start();
    let t = create_tenant(&server, "users");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let created = admin("POST", &format!("/user/{}/users", t.id))
        .json(&json!({"userName": "jane", "password": "Jane-Pass-1", "email": "jane@example.com", "firstName": "Jane"}))
        .send()
        .expect(201);
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with(&format!("/user/{}/users/jane", t.id))
    );
    let user = created.json();
    assert_eq!(user["userName"], "jane");
    assert!(user.get("password").is_none());

    admin("POST", &format!("/user/{}/users", t.id))
        .json(&json!({"userName": "jane", "password": "Jane-Pass-1"}))
        .send()
        .expect_error(409, "users/Duplicate");
    let bad_cases = [
        json!({"password": "Jane-Pass-1"}),
        json!({"userName": "a b", "password": "Jane-Pass-1"}),
        json!({"userName": "joe", "password": "short"}),
    ];
    for body in bad_cases {
        admin("POST", &format!("/user/{}/users", t.id))
            .json(&body)
            .send()
            .expect_error(422, "users/Invalid Data");
    }
    // Cumulocity's invitation e-mail instead of a password (what pyc8y sends for a `User` made
    // without one): Berth sends no e-mail, says so, and makes no user who could never sign in.
    for body in [
        json!({"userName": "invited", "email": "invited@example.com", "sendPasswordResetEmail": true}),
        json!({"userName": "invited", "email": "invited@example.com"}),
    ] {
        let refused = admin("POST", &format!("/user/{}/users", t.id))
            .json(&body)
            .send()
            .expect_error(422, "users/Invalid Data")
            .json();
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("password is required") && message.contains("sends no e-mail"),
            "{message}"
        );
    }
    admin("GET", &format!("/user/{}/users/invited", t.id))
        .send()
        .expect_error(404, "users/Not Found");

    let list = admin(
        "GET",
        &format!("/user/{}/users?username=ja&withTotalElements=true", t.id),
    )
    .send()
    .expect(200)
    .json();
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    assert_eq!(list["statistics"]["totalElements"], 1);
    admin("GET", &format!("/user/{}/userByName/jane", t.id))
        .send()
        .expect(200);

    let updated = admin("PUT", &format!("/user/{}/users/jane", t.id))
        .json(&json!({"lastName": "Doe"}))
        .send()
        .expect(200)
        .json();
    assert_eq!(updated["lastName"], "Doe");
    assert_eq!(updated["firstName"], "Jane");

    let jane = format!("{}/jane", t.id);
    server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-1")
        .send()
        .expect(200);
    // Own password change needs the current password; the cached credential stops working.
    server
        .req("PUT", "/user/currentUser/password")
        .basic(&jane, "Jane-Pass-1")
        .json(&json!({"currentUserPassword": "wrong-one", "newPassword": "Jane-Pass-2"}))
        .send()
        .expect(401);
    server
        .req("PUT", "/user/currentUser/password")
        .basic(&jane, "Jane-Pass-1")
        .json(&json!({"currentUserPassword": "Jane-Pass-1", "newPassword": "Jane-Pass-2"}))
        .send()
        .expect(200);
    server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-1")
        .send()
        .expect(401);
    server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-2")
        .send()
        .expect(200);
    // An admin resets it, confirming with their own password.
    admin("PUT", &format!("/user/{}/users/jane/password", t.id))
        .json(&json!({"currentUserPassword": t.admin_password, "newPassword": "Jane-Pass-3"}))
        .send()
        .expect(200);
    server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-2")
        .send()
        .expect(401);
    server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-3")
        .send()
        .expect(200);
    // Disabled users cannot log in.
    admin("PUT", &format!("/user/{}/users/jane", t.id))
        .json(&json!({"enabled": false}))
        .send()
        .expect(200);
    server
        .req("GET", "/user/currentUser")
        .basic(&jane, "Jane-Pass-3")
        .send()
        .expect(401);

    admin("DELETE", &format!("/user/{}/users/boss", t.id))
        .send()
        .expect_error(422, "users/Invalid Data");
    admin("DELETE", &format!("/user/{}/users/jane", t.id))
        .send()
        .expect(204);
    admin("GET", &format!("/user/{}/users/jane", t.id))
        .send()
        .expect_error(404, "users/Not Found");
}

#[test]
fn groups_members_and_roles_drive_effective_roles() {
    let server = Server::start();
    let t = create_tenant(&server, "groups");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let sam = create_user(&server, &t, "sam", "Sam-Pass-1");
    let me = || {
        server
            .req("GET", "/user/currentUser")
            .basic(&sam, "Sam-Pass-1")
            .send()
            .expect(200)
            .json()
    };
    assert!(role_ids(&me()).is_empty());

    let group = admin("POST", &format!("/user/{}/groups", t.id))
        .json(&json!({"name": "operators", "description": "ops"}))
        .send()
        .expect(201)
        .json();
    let gid = group["id"].as_i64().expect("integer group id");
    admin("POST", &format!("/user/{}/groups", t.id))
        .json(&json!({"name": "operators"}))
        .send()
        .expect_error(409, "groups/Duplicate");
    admin("POST", &format!("/user/{}/groups", t.id))
        .json(&json!({"description": "no name"}))
        .send()
        .expect_error(422, "groups/Invalid Data");

    let role_ref =
        json!({"role": {"self": "https://elsewhere/user/roles/ROLE_APPLICATION_MANAGEMENT_READ"}});
    admin("POST", &format!("/user/{}/groups/{gid}/roles", t.id))
        .json(&role_ref)
        .send()
        .expect(201);
    admin("POST", &format!("/user/{}/groups/{gid}/roles", t.id))
        .json(&role_ref)
        .send()
        .expect_error(409, "roles/Duplicate");
    admin("POST", &format!("/user/{}/groups/{gid}/roles", t.id))
        .json(&json!({"role": {"id": "ROLE_MADE_UP"}}))
        .send()
        .expect_error(422, "roles/Invalid Data");
    // Relative self, as the Python client sends it.
    admin("POST", &format!("/user/{}/groups/{gid}/users", t.id))
        .json(&json!({"user": {"self": format!("/user/{}/users/sam", t.id)}}))
        .send()
        .expect(201);
    assert_eq!(role_ids(&me()), vec!["ROLE_APPLICATION_MANAGEMENT_READ"]);
    let members = admin("GET", &format!("/user/{}/groups/{gid}/users", t.id))
        .send()
        .expect(200)
        .json();
    assert_eq!(members["references"][0]["user"]["userName"], "sam");
    let sam_groups = admin("GET", &format!("/user/{}/users/sam/groups", t.id))
        .send()
        .expect(200)
        .json();
    assert_eq!(sam_groups["references"][0]["group"]["name"], "operators");

    admin("POST", &format!("/user/{}/users/sam/roles", t.id))
        .json(&json!({"role": {"self": "user/roles/ROLE_OPTION_MANAGEMENT_READ"}}))
        .send()
        .expect(201);
    assert_eq!(
        role_ids(&me()),
        vec![
            "ROLE_APPLICATION_MANAGEMENT_READ",
            "ROLE_OPTION_MANAGEMENT_READ"
        ]
    );
    let direct = admin("GET", &format!("/user/{}/users/sam/roles", t.id))
        .send()
        .expect(200)
        .json();
    assert_eq!(
        direct["references"][0]["role"]["id"],
        "ROLE_OPTION_MANAGEMENT_READ"
    );
    admin(
        "DELETE",
        &format!("/user/{}/users/sam/roles/ROLE_OPTION_MANAGEMENT_READ", t.id),
    )
    .send()
    .expect(204);
    admin("DELETE", &format!("/user/{}/groups/{gid}/users/sam", t.id))
        .send()
        .expect(204);
    assert!(role_ids(&me()).is_empty());

    let renamed = admin("PUT", &format!("/user/{}/groups/{gid}", t.id))
        .json(&json!({"name": "operations"}))
        .send()
        .expect(200)
        .json();
    assert_eq!(renamed["name"], "operations");
    admin("GET", &format!("/user/{}/groupByName/operations", t.id))
        .send()
        .expect(200);
    let admins = admin("GET", &format!("/user/{}/groupByName/admins", t.id))
        .send()
        .expect(200)
        .json();
    admin("DELETE", &format!("/user/{}/groups/{}", t.id, admins["id"]))
        .send()
        .expect_error(422, "groups/Invalid Data");
    admin("DELETE", &format!("/user/{}/groups/{gid}", t.id))
        .send()
        .expect(204);
    admin("GET", &format!("/user/{}/groups/{gid}", t.id))
        .send()
        .expect_error(404, "groups/Not Found");

    let roles = admin("GET", "/user/roles?pageSize=2000")
        .send()
        .expect(200)
        .json();
    let names: Vec<&str> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ROLE_TENANT_MANAGEMENT_READ")
            && names.contains(&"ROLE_USER_MANAGEMENT_OWN_READ")
    );
    admin("GET", "/user/roles/ROLE_ALARM_READ")
        .send()
        .expect(200);
    admin("GET", "/user/roles/ROLE_NOPE")
        .send()
        .expect_error(404, "roles/Not Found");
}

/// Who may call what: nobody (401), a user without roles (403), a reader (read only), the admin.
#[test]
fn permission_matrix() {
    let server = Server::start();
    let t = create_tenant(&server, "perm");
    let plain = create_user(&server, &t, "plain", "Plain-Pass-1");
    let reader = create_user(&server, &t, "reader", "Reader-Pass-1");
    let readers = server
        .req(
            "GET",
            &format!("/user/{}/groupByName/Global%20Reader", t.id),
        )
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect(200)
        .json();
    server
        .req(
            "POST",
            &format!("/user/{}/groups/{}/users", t.id, readers["id"]),
        )
        .basic(&t.admin_login, &t.admin_password)
        .json(&json!({"user": {"id": "reader"}}))
        .send()
        .expect(201);
    let tid = &t.id;
    let new_user = json!({"userName": "x1", "password": "X1-Pass-123"});
    let new_app = json!({"name": "permapp", "key": "permapp-key", "type": "HOSTED"});
    let option = json!({"category": "c", "key": "k", "value": "v"});
    // (method, path, body, [status for plain, for reader, for admin])
    let cases: Vec<(&str, String, Option<Value>, [u16; 3])> = vec![
        ("GET", "/user/currentUser".into(), None, [200, 200, 200]),
        ("GET", "/tenant/currentTenant".into(), None, [200, 200, 200]),
        ("GET", format!("/user/{tid}/users"), None, [403, 200, 200]),
        (
            "POST",
            format!("/user/{tid}/users"),
            Some(new_user),
            [403, 403, 201],
        ),
        ("GET", format!("/user/{tid}/groups"), None, [403, 200, 200]),
        (
            "POST",
            format!("/user/{tid}/groups"),
            Some(json!({"name": "g1"})),
            [403, 403, 201],
        ),
        ("GET", "/user/roles".into(), None, [403, 200, 200]),
        (
            "GET",
            "/application/applications".into(),
            None,
            [403, 200, 200],
        ),
        (
            "POST",
            "/application/applications".into(),
            Some(new_app),
            [403, 403, 201],
        ),
        ("GET", "/tenant/options".into(), None, [403, 200, 200]),
        (
            "POST",
            "/tenant/options".into(),
            Some(option),
            [403, 403, 201],
        ),
        ("GET", "/tenant/tenants".into(), None, [403, 403, 403]),
        (
            "GET",
            "/user/management/users".into(),
            None,
            [403, 403, 403],
        ),
    ];
    for (method, path, body, [plain_status, reader_status, admin_status]) in cases {
        for (who, login, password, expected) in [
            ("nobody", None, "", 401),
            ("plain", Some(plain.as_str()), "Plain-Pass-1", plain_status),
            (
                "reader",
                Some(reader.as_str()),
                "Reader-Pass-1",
                reader_status,
            ),
            (
                "admin",
                Some(t.admin_login.as_str()),
                t.admin_password.as_str(),
                admin_status,
            ),
        ] {
            let mut req = server.req(method, &path);
            if let Some(login) = login {
                req = req.basic(login, password);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send();
            assert_eq!(
                resp.status, expected,
                "{who} {method} {path}: {}",
                resp.body
            );
            if expected == 403 {
                resp.expect_error(403, "security/Forbidden");
            }
        }
    }
}

#[test]
fn tenants_never_see_each_others_objects() {
    let server = Server::start();
    let a = create_tenant(&server, "iso-a");
    let b = create_tenant(&server, "iso-b");
    create_user(&server, &b, "bob", "Bob-Pass-12");
    let as_a = |m: &str, p: &str| server.req(m, p).basic(&a.admin_login, &a.admin_password);
    let as_b = |m: &str, p: &str| server.req(m, p).basic(&b.admin_login, &b.admin_password);
    let app = as_b("POST", "/application/applications")
        .json(&json!({"name": "secret-app", "key": "secret-key", "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json();
    let app_id = app["id"].as_str().unwrap();
    as_b("POST", "/tenant/options")
        .json(&json!({"category": "b-only", "key": "k", "value": "b-value"}))
        .send()
        .expect(201);

    as_a("GET", &format!("/user/{}/users", b.id))
        .send()
        .expect_error(403, "security/Forbidden");
    as_a("GET", &format!("/user/{}/users/bob", b.id))
        .send()
        .expect_error(403, "security/Forbidden");
    as_a("GET", &format!("/user/{}/groups", b.id))
        .send()
        .expect_error(403, "security/Forbidden");
    as_a("GET", &format!("/application/applications/{app_id}"))
        .send()
        .expect_error(404, "applications/Not Found");
    as_a(
        "GET",
        &format!("/application/applications/{app_id}/bootstrapUser"),
    )
    .send()
    .expect_error(404, "applications/Not Found");
    as_a("DELETE", &format!("/application/applications/{app_id}"))
        .send()
        .expect_error(404, "applications/Not Found");
    let apps = as_a("GET", "/application/applications?pageSize=2000")
        .send()
        .expect(200)
        .json();
    assert!(
        apps["applications"].as_array().unwrap().is_empty(),
        "{apps}"
    );
    let by_name = as_a("GET", "/application/applicationsByName/secret-app")
        .send()
        .expect(200)
        .json();
    assert!(by_name["applications"].as_array().unwrap().is_empty());
    as_a("GET", "/tenant/options/b-only/k")
        .send()
        .expect_error(404, "options/Not Found");
    let options = as_a("GET", "/tenant/options").send().expect(200).json();
    assert!(
        options["options"].as_array().unwrap().is_empty(),
        "{options}"
    );
    // The same names are free in another tenant.
    as_a("POST", "/application/applications")
        .json(&json!({"name": "secret-app", "key": "secret-key", "type": "MICROSERVICE"}))
        .send()
        .expect(201);
    // A tenant's user cannot log in to another tenant.
    server
        .req("GET", "/user/currentUser")
        .basic(&format!("{}/bob", a.id), "Bob-Pass-12")
        .send()
        .expect(401);
}

#[test]
fn the_management_tenant_administers_its_subtenants_users() {
    let server = Server::start();
    let t = create_tenant(&server, "managed");
    let other = create_tenant(&server, "neighbour");
    let tid = &t.id;
    let as_mgmt = |m: &str, p: &str| server.req(m, p).basic(MGMT_ADMIN, ADMIN_PASSWORD);
    // Create, list, read, update (profile, password, roles) and delete a subtenant's user. It
    // is named like the management admin, who is still not deleting themselves.
    as_mgmt("POST", &format!("/user/{tid}/users"))
        .json(&json!({"userName": "admin", "password": "Sub-Admin-123", "email": "a@example.com"}))
        .send()
        .expect(201);
    let list = as_mgmt("GET", &format!("/user/{tid}/users"))
        .send()
        .expect(200)
        .json();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["userName"].as_str())
        .collect();
    assert!(
        names.contains(&"admin") && names.contains(&"boss"),
        "{list}"
    );
    let user = as_mgmt("GET", &format!("/user/{tid}/users/admin"))
        .send()
        .expect(200)
        .json();
    assert!(
        user["self"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("/user/{tid}/users/admin"))),
        "{user}"
    );
    let updated = as_mgmt("PUT", &format!("/user/{tid}/users/admin"))
        .json(&json!({"email": "changed@example.com"}))
        .send()
        .expect(200)
        .json();
    assert_eq!(updated["email"], "changed@example.com", "{updated}");
    as_mgmt("PUT", &format!("/user/{tid}/users/admin/password"))
        .json(&json!({"currentUserPassword": ADMIN_PASSWORD, "newPassword": "Sub-Admin-456"}))
        .send()
        .expect(200);
    as_mgmt("POST", &format!("/user/{tid}/users/admin/roles"))
        .json(&json!({"role": {"id": "ROLE_AUDIT_READ"}}))
        .send()
        .expect(201);
    let me = server
        .req("GET", "/user/currentUser")
        .basic(&format!("{tid}/admin"), "Sub-Admin-456")
        .send()
        .expect(200)
        .json();
    assert!(
        role_ids(&me).contains(&"ROLE_AUDIT_READ".to_owned()),
        "{me}"
    );
    as_mgmt("DELETE", &format!("/user/{tid}/users/admin"))
        .send()
        .expect(204);
    as_mgmt("GET", &format!("/user/{tid}/users/admin"))
        .send()
        .expect_error(404, "users/Not Found");
    // The subtenant's first administrator stays undeletable.
    as_mgmt("DELETE", &format!("/user/{tid}/users/boss"))
        .send()
        .expect(422);
    // A tenant that does not exist is a 404 for the management tenant.
    as_mgmt("GET", "/user/t999999999/users")
        .send()
        .expect_error(404, "security/Not Found");

    // Who may reach another tenant's users: (who, method, path, body, status).
    let usermgr = create_user(&server, &management(), "usermgr", "User-Mgr-123");
    as_mgmt("POST", "/user/management/users/usermgr/roles")
        .json(&json!({"role": {"id": "ROLE_USER_MANAGEMENT_ADMIN"}}))
        .send()
        .expect(201);
    let new_user = json!({"userName": "x2", "password": "X2-Pass-123"});
    let oid = &other.id;
    // (who, login, password, method, path, body, status)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        String,
        Option<Value>,
        u16,
    );
    let cases: Vec<Case> = vec![
        // A subtenant's admin: never another tenant's users, neither a sibling's nor management's.
        (
            "sub admin",
            &t.admin_login,
            &t.admin_password,
            "GET",
            format!("/user/{oid}/users"),
            None,
            403,
        ),
        (
            "sub admin",
            &t.admin_login,
            &t.admin_password,
            "POST",
            format!("/user/{oid}/users"),
            Some(new_user.clone()),
            403,
        ),
        (
            "sub admin",
            &t.admin_login,
            &t.admin_password,
            "PUT",
            format!("/user/{oid}/users/boss"),
            Some(json!({"email": "x@example.com"})),
            403,
        ),
        (
            "sub admin",
            &t.admin_login,
            &t.admin_password,
            "DELETE",
            format!("/user/{oid}/users/boss"),
            None,
            403,
        ),
        (
            "sub admin",
            &t.admin_login,
            &t.admin_password,
            "GET",
            "/user/management/users".to_owned(),
            None,
            403,
        ),
        // A management user administering users but not tenants: only the management tenant's.
        (
            "mgmt user admin",
            &usermgr,
            "User-Mgr-123",
            "GET",
            format!("/user/{oid}/users"),
            None,
            403,
        ),
        (
            "mgmt user admin",
            &usermgr,
            "User-Mgr-123",
            "POST",
            format!("/user/{oid}/users"),
            Some(new_user.clone()),
            403,
        ),
        (
            "mgmt user admin",
            &usermgr,
            "User-Mgr-123",
            "GET",
            "/user/management/users".to_owned(),
            None,
            200,
        ),
        // The management admin: yes.
        (
            "mgmt admin",
            MGMT_ADMIN,
            ADMIN_PASSWORD,
            "POST",
            format!("/user/{oid}/users"),
            Some(new_user),
            201,
        ),
        (
            "mgmt admin",
            MGMT_ADMIN,
            ADMIN_PASSWORD,
            "DELETE",
            format!("/user/{oid}/users/x2"),
            None,
            204,
        ),
    ];
    for (who, login, password, method, path, body, expected) in cases {
        let mut req = server.req(method, &path).basic(login, password);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send();
        assert_eq!(
            resp.status, expected,
            "{who} {method} {path}: {}",
            resp.body
        );
        if expected == 403 {
            resp.expect_error(403, "security/Forbidden");
        }
    }
}

/// The Java SDK's `UserApi` takes its URLs from `GET /platform` and fills the templates in
/// itself (`{realm}`, `{userName}`); what it builds must reach the user. The roots of the
/// other APIs follow their resources' read roles; nobody anonymous reads any.
#[test]
fn the_api_roots_give_the_templates_the_java_sdk_fills_in() {
    let server = Server::start();
    let t = create_tenant(&server, "roots");
    let plain = create_user(&server, &t, "plain", "Plain-Passw0rd-1");
    let platform = server
        .req("GET", "/platform")
        .basic(&plain, "Plain-Passw0rd-1")
        .header(
            "Accept",
            "application/vnd.com.nsn.cumulocity.platformApi+json",
        )
        .send()
        .expect(200)
        .json();
    let path_of = |url: &Value| {
        let url = url.as_str().unwrap();
        url[url.find("://").unwrap() + 3..]
            .split_once('/')
            .map(|(_, path)| format!("/{path}"))
            .unwrap()
    };
    let admin = t.admin_login.split_once('/').unwrap().1.to_owned();
    let by_name = path_of(&platform["user"]["userByName"])
        .replace("{realm}", &t.id)
        .replace("{userName}", &admin);
    let user = server
        .req("GET", &by_name)
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(user["userName"], admin.as_str(), "{by_name}");
    let users = path_of(&platform["user"]["users"]).replace("{realm}", &t.id);
    assert_eq!(users, format!("/user/{}/users", t.id));
    let current = path_of(&platform["user"]["currentUser"]);
    let me = server
        .req("GET", &current)
        .basic(&plain, "Plain-Passw0rd-1")
        .send()
        .expect(200)
        .json();
    assert_eq!(me["userName"], "plain");

    for root in ["/tenant", "/user", "/application"] {
        let body = server
            .req("GET", root)
            .basic(&t.admin_login, &t.admin_password)
            .send()
            .expect(200)
            .json();
        assert!(body["self"].as_str().unwrap().ends_with(root), "{body}");
        // A user without the resource's read role.
        server
            .req("GET", root)
            .basic(&plain, "Plain-Passw0rd-1")
            .send()
            .expect_error(403, "security/Forbidden");
        server.req("GET", root).send().expect(401);
    }
    server.req("GET", "/platform").send().expect(401);
}

/// Users named `device_…` are devices' credentials in Cumulocity: listings leave them out
/// unless `onlyDevices=true`, which shows only them; `withSubusersCount=true` adds the
/// (always zero: no user hierarchy) count; other values are a 422.
#[test]
fn user_listings_tell_devices_from_people() {
    let server = Server::start();
    let t = create_tenant(&server, "devices");
    create_user(&server, &t, "device_sensor1", "Device-Passw0rd-1");
    create_user(&server, &t, "person1", "Person-Passw0rd-1");
    let names = |query: &str| -> Vec<Value> {
        server
            .req("GET", &format!("/user/{}/users?pageSize=100&{query}", t.id))
            .basic(&t.admin_login, &t.admin_password)
            .send()
            .expect(200)
            .json()["users"]
            .as_array()
            .unwrap()
            .clone()
    };
    let user_names = |users: &[Value]| -> Vec<String> {
        users
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect()
    };
    let people = user_names(&names(""));
    assert!(people.contains(&"person1".to_owned()), "{people:?}");
    assert!(
        !people.iter().any(|n| n.starts_with("device_")),
        "{people:?}"
    );
    assert_eq!(user_names(&names("onlyDevices=true")), ["device_sensor1"]);
    assert_eq!(user_names(&names("onlyDevices=false")), people);
    let counted = names("withSubusersCount=true");
    assert!(
        counted.iter().all(|u| u["subusersCount"] == 0),
        "{counted:?}"
    );
    assert!(names("").iter().all(|u| u.get("subusersCount").is_none()));
    // No user hierarchy: nobody is owned by anyone (an empty page, not every user), and the
    // calls that would set an owner or a delegate (c8y-api's and pyc8y's `set_owner`,
    // `set_delegate`) say so.
    for owner in ["boss", "person1", ""] {
        assert_eq!(
            names(&format!("owner={owner}")),
            Vec::<Value>::new(),
            "{owner}"
        );
    }
    for (method, path, body) in [
        ("PUT", "owner", json!({"owner": "boss"})),
        ("DELETE", "owner", json!({})),
        ("PUT", "delegatedby", json!({"delegatedBy": "boss"})),
        ("DELETE", "delegatedby", json!({})),
    ] {
        let refused = server
            .req(method, &format!("/user/{}/users/person1/{path}", t.id))
            .basic(&t.admin_login, &t.admin_password)
            .json(&body)
            .send()
            .expect_error(422, "users/Invalid Data")
            .json();
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("no user hierarchy"),
            "{method} {path}: {message}"
        );
    }
    server
        .req("GET", &format!("/user/{}/users?onlyDevices=maybe", t.id))
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect_error(422, "users/Invalid Data");
}

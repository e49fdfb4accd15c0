//! The subscription API without containers (applications without an uploaded version have no
//! deployment): who may subscribe, list and unsubscribe, 409/404 cases, and the roles a
//! subscription makes assignable in the subscribing tenant.

use serde_json::{Value, json};

use crate::fixture::SETTINGS_VALUES;
use crate::fixture::{
    ADMIN_PASSWORD, MGMT_ADMIN, Server, Tenant, create_tenant, create_user, files_under, unique,
};
use crate::upload::{self, TestImage};

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
    // The role catalogue a tenant reads lists the roles its subscriptions bring, as Cumulocity's.
    let listed = |tenant: &Tenant| -> (bool, u16) {
        let list = server
            .req("GET", "/user/roles?pageSize=2000")
            .basic(&tenant.admin_login, &tenant.admin_password)
            .send()
            .expect(200)
            .json();
        let named = list["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "ROLE_SUBTEST_READ");
        let one = server
            .req("GET", "/user/roles/ROLE_SUBTEST_READ")
            .basic(&tenant.admin_login, &tenant.admin_password)
            .send()
            .status;
        (named, one)
    };
    assert_eq!(listed(&other), (false, 404));
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
    assert_eq!(listed(&other), (true, 200));
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
    let store = berth::Store::open(&server.path(berth::DATABASE_FILE)).unwrap();
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
    let mgmt = crate::fixture::management();
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
    let mut refused: Vec<(String, String)> = Vec::new();
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
        // A tenant may read by id what it may subscribe to (SDKs look an application up by
        // id); the rest is as absent as an id that does not exist.
        let read = server
            .req("GET", &format!("/application/applications/{app}"))
            .basic(&subscriber.admin_login, &subscriber.admin_password)
            .send();
        let readable = if *status == 201 { 200 } else { 404 };
        assert_eq!(read.status, readable, "{case}: read {}", read.body);
        if readable == 200 {
            let body = read.json();
            assert_eq!(body["id"], app.as_str(), "{case}");
            // How it runs is shown to its owner only.
            assert_eq!(
                body.get("status").is_some(),
                owner.id == subscriber.id,
                "{case}"
            );
        }
        if *status == 201 {
            expected.push((subscriber.id.clone(), app));
        } else {
            refused.push((subscriber.id.clone(), app.clone()));
            let body = resp.expect_error(*status, "applications/Not Found").json();
            assert_eq!(
                body["message"],
                format!("Could not find application by ID {app}"),
                "{case}"
            );
        }
    }
    // `providedFor` lists exactly what each tenant may subscribe to.
    let mut offered: Vec<(String, String)> = Vec::new();
    for tenant in [&mgmt, &a, &b, &g] {
        let list = server
            .req(
                "GET",
                &format!(
                    "/application/applications?providedFor={}&pageSize=100",
                    tenant.id
                ),
            )
            .basic(&tenant.admin_login, &tenant.admin_password)
            .send()
            .expect(200)
            .json();
        for app in list["applications"].as_array().unwrap() {
            offered.push((tenant.id.clone(), app["id"].as_str().unwrap().to_owned()));
        }
    }
    for pair in &expected {
        assert!(offered.contains(pair), "{pair:?} not listed: {offered:?}");
    }
    for (tenant, app) in &refused {
        assert!(
            !offered.contains(&(tenant.clone(), app.clone())),
            "{app} listed for {tenant}"
        );
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
    // The owner's log records b's subscriptions as b's doing, naming none of b's users.
    let log = server
        .req("GET", "/audit/auditRecords?type=Subscription&pageSize=100")
        .basic(&a.admin_login, &a.admin_password)
        .send()
        .expect(200)
        .json();
    let by_b: Vec<&Value> = log["auditRecords"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["text"].as_str().unwrap_or_default().contains(&b.id))
        .collect();
    assert!(!by_b.is_empty(), "{log}");
    for record in by_b {
        assert_eq!(record["user"], b.id.as_str(), "{record}");
    }
}

/// A microservice of `owner` with this availability and name.
fn create_named(server: &Server, owner: &Tenant, name: &str, availability: &str) -> String {
    server
        .req("POST", "/application/applications")
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"name": name, "key": format!("{name}-key"), "type": "MICROSERVICE", "availability": availability}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A package of the test image with `extra` merged into the manifest.
fn package_with(image: &TestImage, version: &str, extra: Value) -> Vec<u8> {
    let mut manifest: Value = serde_json::from_str(&upload::manifest(version)).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            manifest.as_object_mut().unwrap().remove(k);
        } else {
            manifest[k] = v.clone();
        }
    }
    upload::zip_of(&[
        ("cumulocity.json", manifest.to_string().as_bytes()),
        ("image.tar", &image.archive),
    ])
}

fn options_of(server: &Server, tenant: &Tenant, category: &str) -> Value {
    server
        .req("GET", &format!("/tenant/options/{category}"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()
}

#[test]
fn settings_live_only_in_a_category_of_the_applications_own() {
    let server = Server::start();
    let (provider, victim) = (
        create_tenant(&server, "prov"),
        create_tenant(&server, "vict"),
    );
    let image = TestImage::build(0);
    // The victim's own microservices: one naming its settings category, one whose name is
    // its category.
    let victim_category = format!("victim{}", unique("").replace('-', ""));
    let victim_app = create_named(&server, &victim, &unique("vapp"), "PRIVATE");
    upload::upload(
        &server,
        &victim,
        &victim_app,
        "file",
        &package_with(
            &image,
            "1.0.0",
            json!({"settingsCategory": victim_category, "settings": [{"key": "url", "defaultValue": "v"}]}),
        ),
    )
    .expect(201);
    let bare_name = format!("bare{}", unique(""));
    let bare_app = create_named(&server, &victim, &bare_name, "PRIVATE");
    upload::upload(
        &server,
        &victim,
        &bare_app,
        "file",
        &package_with(&image, "1.0.0", json!({"contextPath": null})),
    )
    .expect(201);
    server
        .req("PUT", "/tenant/options/microservice.runtime")
        .basic(&victim.admin_login, &victim.admin_password)
        .json(&json!({"proxy.http.host": "egress.victim"}))
        .send()
        .expect(200);

    let app = create_named(&server, &provider, &unique("papp"), "MARKET");
    let settings =
        json!([{"key": "proxy.http.host", "defaultValue": "evil.example", "editable": false}]);
    // (manifest fields, the category the refusal names)
    let refused = [
        (
            json!({"settingsCategory": "microservice.runtime"}),
            "microservice.runtime",
        ),
        (
            json!({"settingsCategory": "Microservice.Runtime"}),
            "Microservice.Runtime",
        ),
        (
            json!({"settingsCategory": "microservice.other"}),
            "microservice.other",
        ),
        (json!({"settingsCategory": "system"}), "system"),
        (
            json!({"settingsCategory": "configuration"}),
            "configuration",
        ),
        (
            json!({"settingsCategory": "access.control"}),
            "access.control",
        ),
        (
            json!({"settingsCategory": "alarm.type.mapping"}),
            "alarm.type.mapping",
        ),
        (json!({"settingsCategory": "password"}), "password"),
        (
            json!({"contextPath": "microservice.runtime"}),
            "microservice.runtime",
        ),
        (
            json!({"settingsCategory": victim_category}),
            victim_category.as_str(),
        ),
        (
            json!({"settingsCategory": victim_category.to_uppercase()}),
            &victim_category.to_uppercase(),
        ),
        (json!({"settingsCategory": bare_name}), bare_name.as_str()),
        (json!({"contextPath": bare_name}), bare_name.as_str()),
    ];
    for (fields, category) in &refused {
        let mut extra = fields.clone();
        extra["settings"] = settings.clone();
        let body = upload::upload(
            &server,
            &provider,
            &app,
            "file",
            &package_with(&image, "1.0.0", extra),
        )
        .expect_error(422, "applications/Invalid Data")
        .json();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{category:?}")) && message.contains("settingsCategory"),
            "{fields}: {message}"
        );
    }
    let app_now = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&provider.admin_login, &provider.admin_password)
        .send()
        .expect(200)
        .json();
    assert!(
        app_now.get("activeVersionId").is_none(),
        "no version recorded: {app_now}"
    );
    // Refused before anything was kept: no package, no temporary file.
    assert!(files_under(&server.path(&format!("packages/{}", provider.id))).is_empty());
    assert!(files_under(&server.path("tmp")).is_empty());

    // A category of its own is accepted; the victim subscribing keeps its platform options.
    // (An earlier version with another category is kept.)
    let spare = format!("spare{}", unique(""));
    upload::upload(
        &server,
        &provider,
        &app,
        "file",
        &package_with(&image, "0.9.0", json!({"settingsCategory": spare})),
    )
    .expect(201);
    let own = format!("prov{}", unique(""));
    upload::upload(
        &server,
        &provider,
        &app,
        "file",
        &package_with(
            &image,
            "1.0.0",
            json!({"settingsCategory": own, "settings": settings}),
        ),
    )
    .expect(201);
    server
        .req(
            "POST",
            &format!("/tenant/tenants/{}/applications", victim.id),
        )
        .basic(&victim.admin_login, &victim.admin_password)
        .json(&json!({"application": {"id": app}}))
        .send()
        .expect(201);
    assert_eq!(
        options_of(&server, &victim, "microservice.runtime"),
        json!({"proxy.http.host": "egress.victim"})
    );
    assert_eq!(
        options_of(&server, &victim, &own),
        json!({"proxy.http.host": "evil.example"})
    );

    // Subscribed to, the provider cannot move its category onto the victim's other options:
    // not by a new version, nor by activating a kept one of another category.
    let mail = format!("mail{}", unique("").replace('-', ""));
    server
        .req("PUT", &format!("/tenant/options/{mail}"))
        .basic(&victim.admin_login, &victim.admin_password)
        .json(&json!({"credentials.password": "victim-secret"}))
        .send()
        .expect(200);
    let refused = upload::upload(
        &server,
        &provider,
        &app,
        "file",
        &package_with(&image, "1.0.1", json!({"settingsCategory": mail})),
    )
    .expect_error(422, "applications/Invalid Data")
    .json();
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{own:?}"))
            && message.contains(&format!("{mail:?}"))
            && message.contains("subscribed"),
        "{message}"
    );
    let versions = server
        .req("GET", &format!("/application/applications/{app}/versions"))
        .basic(&provider.admin_login, &provider.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(
        versions["applicationVersions"].as_array().map(Vec::len),
        Some(2),
        "nothing kept of the refused version: {versions}"
    );
    let refused = server
        .req(
            "PUT",
            &format!("/application/applications/{app}/versions/0.9.0"),
        )
        .basic(&provider.admin_login, &provider.admin_password)
        .json(&json!({"tags": ["latest"]}))
        .send()
        .expect_error(422, "applications/Invalid Data")
        .json();
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains(&format!("{spare:?}")), "{message}");
    // Keeping the category, a new version is taken.
    upload::upload(
        &server,
        &provider,
        &app,
        "file",
        &package_with(
            &image,
            "1.0.2",
            json!({"settingsCategory": own, "settings": settings}),
        ),
    )
    .expect(201);

    // An application without a manifest has no settings: its service does not read the
    // subscriber's options of the category its name would be.
    let bare_provider = format!("leak{}", unique(""));
    let leaky = create_named(&server, &provider, &bare_provider, "MARKET");
    server
        .req("PUT", &format!("/tenant/options/{bare_provider}"))
        .basic(&victim.admin_login, &victim.admin_password)
        .json(&json!({"credentials.secret": "hidden", "plain": "x"}))
        .send()
        .expect(200);
    server
        .req(
            "POST",
            &format!("/tenant/tenants/{}/applications", victim.id),
        )
        .basic(&victim.admin_login, &victim.admin_password)
        .json(&json!({"application": {"id": leaky}}))
        .send()
        .expect(201);
    let (login, password) = upload::service_login(&server, &provider, &leaky, &victim.id);
    let read = server
        .req("GET", "/application/currentApplication/settings")
        .header("Accept", SETTINGS_VALUES)
        .basic(&login, &password)
        .send()
        .expect(200)
        .json();
    assert_eq!(read, json!({}));
    for (tenant, id) in [
        (&provider, &app),
        (&provider, &leaky),
        (&victim, &victim_app),
        (&victim, &bare_app),
    ] {
        server
            .req("DELETE", &format!("/application/applications/{id}"))
            .basic(&tenant.admin_login, &tenant.admin_password)
            .send()
            .expect(204);
    }
}

#[test]
fn a_providers_versions_never_touch_a_subscribers_own_options() {
    let server = Server::start();
    let (provider, sub) = (
        create_tenant(&server, "pown"),
        create_tenant(&server, "sown"),
    );
    let image = TestImage::build(0);
    let category = format!("cat{}", unique(""));
    let app = create_named(&server, &provider, &unique("papp"), "MARKET");
    let put = |key: &str, value: &str| {
        server
            .req("PUT", &format!("/tenant/options/{category}/{key}"))
            .basic(&sub.admin_login, &sub.admin_password)
            .json(&json!({"value": value}))
            .send()
    };
    // The subscriber's own values before it subscribes.
    put("locked", "mine").expect(200);
    put("dropped", "mine").expect(200);
    let version = |v: &str, settings: Value| {
        upload::upload(
            &server,
            &provider,
            &app,
            "file",
            &package_with(
                &image,
                v,
                json!({"settingsCategory": category, "settings": settings}),
            ),
        )
        .expect(201);
    };
    version(
        "1.0.0",
        json!([
            {"key": "locked", "defaultValue": "p", "editable": false},
            {"key": "dropped", "defaultValue": "p"},
            {"key": "edited", "defaultValue": "p", "editable": true},
            {"key": "seeded", "defaultValue": "p"}
        ]),
    );
    server
        .req("POST", &format!("/tenant/tenants/{}/applications", sub.id))
        .basic(&sub.admin_login, &sub.admin_password)
        .json(&json!({"application": {"id": app}}))
        .send()
        .expect(201);
    assert_eq!(
        options_of(&server, &sub, &category),
        json!({"locked": "mine", "dropped": "mine", "edited": "p", "seeded": "p"})
    );
    // Its own option stays its own: still editable.
    put("locked", "mine").expect(200);
    put("edited", "mine").expect(200);
    // A new version drops keys, locks and resets others.
    version(
        "1.0.1",
        json!([
            {"key": "locked", "defaultValue": "p2", "editable": false},
            {"key": "edited", "defaultValue": "p2", "editable": false, "overwriteOnUpdate": true},
            {"key": "seeded", "defaultValue": "p2"},
            {"key": "added", "defaultValue": "p2"}
        ]),
    );
    assert_eq!(
        options_of(&server, &sub, &category),
        json!({"locked": "mine", "dropped": "mine", "edited": "mine", "seeded": "p2", "added": "p2"})
    );
    put("edited", "mine").expect(200);
    // Unsubscribing removes what Berth wrote, nothing the subscriber wrote.
    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{app}", sub.id),
        )
        .basic(&sub.admin_login, &sub.admin_password)
        .send()
        .expect(204);
    assert_eq!(
        options_of(&server, &sub, &category),
        json!({"locked": "mine", "dropped": "mine", "edited": "mine"})
    );
    server
        .req("DELETE", &format!("/application/applications/{app}"))
        .basic(&provider.admin_login, &provider.admin_password)
        .send()
        .expect(204);
}

/// A service user holds the application's `requiredRoles` as they are now: changed after the
/// subscription (here by `PUT`; an upload or an activation does the same), the service's next
/// request is authorized with the new set, without subscribing again.
#[test]
fn service_users_follow_the_required_roles() {
    let server = Server::start();
    let owner = create_tenant(&server, "rrown");
    let sub = create_tenant(&server, "rrsub");
    let app = create_app(&server, &owner, "MARKET");
    let require = |roles: &[&str]| {
        server
            .req("PUT", &format!("/application/applications/{app}"))
            .basic(&owner.admin_login, &owner.admin_password)
            .json(&json!({"requiredRoles": roles}))
            .send()
            .expect(200);
    };
    require(&["ROLE_INVENTORY_READ", "ROLE_AUDIT_READ"]);
    server
        .req("POST", &format!("/tenant/tenants/{}/applications", sub.id))
        .basic(&sub.admin_login, &sub.admin_password)
        .json(&json!({"application": {"id": app}}))
        .send()
        .expect(201);
    let (login, password) = crate::upload::service_login(&server, &owner, &app, &sub.id);
    let held = || effective_roles(&server, &login, &password);
    assert_eq!(held(), ["ROLE_AUDIT_READ", "ROLE_INVENTORY_READ"]);
    // Fewer roles reach the subscriber's service user at once (more would be refused while it
    // is subscribed: `nobody_raises_what_a_subscribers_service_user_may_do`).
    require(&["ROLE_AUDIT_READ"]);
    assert_eq!(held(), ["ROLE_AUDIT_READ"]);
    require(&[]);
    assert!(held().is_empty());
}

/// The roles `login` holds, sorted, as `/user/currentUser` tells them.
fn effective_roles(server: &Server, login: &str, password: &str) -> Vec<String> {
    let me = server
        .req("GET", "/user/currentUser")
        .basic(login, password)
        .send()
        .expect(200)
        .json();
    let mut roles: Vec<String> = me["effectiveRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    roles.sort();
    roles
}

/// Creates a MARKET microservice (as `login`) asking for `required` roles; its id.
fn create_requiring(server: &Server, login: (&str, &str), required: &[&str]) -> String {
    let fields = json!({"availability": "MARKET", "requiredRoles": required});
    upload::create_microservice_as(server, login, &unique("req-"), fields)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn nobody_raises_what_a_subscribers_service_user_may_do() {
    let server = Server::start();
    let (provider, victim) = (
        create_tenant(&server, "prov"),
        create_tenant(&server, "vict"),
    );
    let provider_login = (
        provider.admin_login.as_str(),
        provider.admin_password.as_str(),
    );
    let victim_login = (victim.admin_login.as_str(), victim.admin_password.as_str());
    let subscribe = |login: (&str, &str), app: &str| {
        server
            .req(
                "POST",
                &format!("/tenant/tenants/{}/applications", victim.id),
            )
            .basic(login.0, login.1)
            .json(&json!({"application": {"id": app}}))
            .send()
    };
    // The victim subscribes to a service that reads its inventory.
    let app = create_requiring(&server, provider_login, &["ROLE_INVENTORY_READ"]);
    subscribe(victim_login, &app).expect(201);
    // Its provider asking for more afterwards is refused, naming what; asking for less is not.
    let put = |required: &[&str]| {
        server
            .req("PUT", &format!("/application/applications/{app}"))
            .basic(provider_login.0, provider_login.1)
            .json(&json!({"requiredRoles": required}))
            .send()
    };
    let refused = put(&["ROLE_INVENTORY_READ", "ROLE_USER_MANAGEMENT_ADMIN"])
        .expect_error(422, "applications/Invalid Data")
        .json();
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("ROLE_USER_MANAGEMENT_ADMIN") && message.contains("subscribed"),
        "{message}"
    );
    let kept = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(provider_login.0, provider_login.1)
        .send()
        .expect(200)
        .json();
    assert_eq!(kept["requiredRoles"], json!(["ROLE_INVENTORY_READ"]));
    put(&[]).expect(200);

    // Nobody subscribes a service user to roles they do not hold: an application manager's
    // own service asking for user administration.
    create_user(&server, &victim, "appman", "Appman-Pass-1");
    server
        .req("POST", &format!("/user/{}/users/appman/roles", victim.id))
        .basic(victim_login.0, victim_login.1)
        .json(&json!({"role": {"id": "ROLE_APPLICATION_MANAGEMENT_ADMIN"}}))
        .send()
        .expect(201);
    let appman = (format!("{}/appman", victim.id), "Appman-Pass-1".to_owned());
    let own = create_requiring(
        &server,
        (&appman.0, &appman.1),
        &["ROLE_USER_MANAGEMENT_ADMIN"],
    );
    let refused = subscribe((&appman.0, &appman.1), &own)
        .expect_error(403, "security/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("ROLE_USER_MANAGEMENT_ADMIN"),
        "{refused}"
    );
    // The tenant's administrator, who holds it, may.
    subscribe(victim_login, &own).expect(201);
}

/// Names repeat across owners: another owner's hosted application named like a subscribed
/// microservice must not reach that microservice's service user in the subscriber (its roles
/// follow only their own application's `requiredRoles`, and only its deletion removes it).
#[test]
fn a_hosted_namesake_never_reaches_a_microservices_service_user() {
    let server = Server::start();
    let (provider, attacker, victim) = (
        create_tenant(&server, "nsprov"),
        create_tenant(&server, "nsatt"),
        create_tenant(&server, "nsvict"),
    );
    let name = unique("namesake-");
    let service = upload::create_microservice_as(
        &server,
        (&provider.admin_login, &provider.admin_password),
        &name,
        json!({"availability": "MARKET", "requiredRoles": ["ROLE_INVENTORY_READ"]}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attacker_req = |method: &str, path: &str| {
        server
            .req(method, path)
            .basic(&attacker.admin_login, &attacker.admin_password)
    };
    let hosted = attacker_req("POST", "/application/applications")
        .json(
            &json!({"name": name, "key": format!("{name}-hosted"), "type": "HOSTED",
                      "availability": "MARKET", "requiredRoles": ["ROLE_USER_MANAGEMENT_ADMIN"]}),
        )
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for app in [&service, &hosted] {
        server
            .req(
                "POST",
                &format!("/tenant/tenants/{}/applications", victim.id),
            )
            .basic(&victim.admin_login, &victim.admin_password)
            .json(&json!({"application": {"id": app}}))
            .send()
            .expect(201);
    }
    let (login, password) = upload::service_login(&server, &provider, &service, &victim.id);
    let held = || effective_roles(&server, &login, &password);
    let inventory = ["ROLE_INVENTORY_READ"];
    assert_eq!(held(), inventory);
    // Its own roles again (no growth, so no subscriber is asked), then none.
    for required in [json!(["ROLE_USER_MANAGEMENT_ADMIN"]), json!([])] {
        attacker_req("PUT", &format!("/application/applications/{hosted}"))
            .json(&json!({"requiredRoles": required}))
            .send()
            .expect(200);
        assert_eq!(held(), inventory, "after the namesake asked for {required}");
    }
    // Unsubscribing from the namesake, and deleting it, leave the service user.
    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{hosted}", victim.id),
        )
        .basic(&victim.admin_login, &victim.admin_password)
        .send()
        .expect(204);
    assert_eq!(held(), inventory);
    server
        .req(
            "POST",
            &format!("/tenant/tenants/{}/applications", victim.id),
        )
        .basic(&victim.admin_login, &victim.admin_password)
        .json(&json!({"application": {"id": hosted}}))
        .send()
        .expect(201);
    attacker_req("DELETE", &format!("/application/applications/{hosted}"))
        .send()
        .expect(204);
    assert_eq!(held(), inventory);
}

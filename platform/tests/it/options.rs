//! Tenant options, including encryption of `credentials.*` values at rest.

use serde_json::json;

use crate::fixture::SETTINGS_VALUES;
use crate::fixture::{Server, create_tenant};

#[test]
fn option_crud_by_key_and_category() {
    let server = Server::start();
    let t = create_tenant(&server, "opts");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let created = admin("POST", "/tenant/options")
        .json(&json!({"category": "alarm", "key": "type.mapping", "value": "critical"}))
        .send()
        .expect(201);
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with("/tenant/options/alarm/type.mapping")
    );
    assert_eq!(created.json()["value"], "critical");
    let one = admin("GET", "/tenant/options/alarm/type.mapping")
        .send()
        .expect(200);
    assert!(
        one.header("content-type")
            .unwrap()
            .starts_with("application/vnd.com.nsn.cumulocity.option+json")
    );
    assert_eq!(one.json()["value"], "critical");
    admin("PUT", "/tenant/options/alarm/type.mapping")
        .json(&json!({"value": "major"}))
        .send()
        .expect(200);
    admin("PUT", "/tenant/options/alarm")
        .json(&json!({"other": "x", "third": "y"}))
        .send()
        .expect(200);
    let category = admin("GET", "/tenant/options/alarm")
        .send()
        .expect(200)
        .json();
    assert_eq!(
        category,
        json!({"other": "x", "third": "y", "type.mapping": "major"})
    );
    let list = admin("GET", "/tenant/options?pageSize=2&withTotalElements=true")
        .send()
        .expect(200)
        .json();
    assert_eq!(list["options"].as_array().unwrap().len(), 2);
    assert_eq!(list["statistics"]["totalElements"], 3);
    assert!(
        list["options"][0]["self"]
            .as_str()
            .unwrap()
            .contains("/tenant/options/alarm/")
    );

    let invalid = [
        json!({"key": "k", "value": "v"}),
        json!({"category": "c", "value": "v"}),
        json!({"category": "c", "key": "k"}),
        json!({"category": "c", "key": "k", "value": {"nested": 1}}),
        json!({"category": "a/b", "key": "k", "value": "v"}),
    ];
    for body in invalid {
        admin("POST", "/tenant/options")
            .json(&body)
            .send()
            .expect_error(422, "options/Invalid Data");
    }
    admin("DELETE", "/tenant/options/alarm/other")
        .send()
        .expect(204);
    admin("DELETE", "/tenant/options/alarm/other")
        .send()
        .expect_error(404, "options/Not Found");
    admin("GET", "/tenant/options/alarm/other")
        .send()
        .expect_error(404, "options/Not Found");
}

#[test]
fn credentials_options_are_encrypted_at_rest_and_never_returned() {
    let server = Server::start();
    let t = create_tenant(&server, "secret");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let clear = format!("clear-secret-{}", uuid::Uuid::new_v4().simple());
    let created = admin("POST", "/tenant/options")
        .json(&json!({"category": "mysvc", "key": "credentials.api.key", "value": clear}))
        .send()
        .expect(201)
        .json();
    assert_eq!(created["value"], "<<Encrypted>>");
    admin("POST", "/tenant/options")
        .json(&json!({"category": "mysvc", "key": "plain", "value": "visible"}))
        .send()
        .expect(201);
    assert_eq!(
        admin("GET", "/tenant/options/mysvc/credentials.api.key")
            .send()
            .expect(200)
            .json()["value"],
        "<<Encrypted>>"
    );
    assert_eq!(
        admin("GET", "/tenant/options/mysvc")
            .send()
            .expect(200)
            .json(),
        json!({"credentials.api.key": "<<Encrypted>>", "plain": "visible"})
    );
    let listed = admin("GET", "/tenant/options?pageSize=100")
        .send()
        .expect(200)
        .body;
    assert!(!listed.contains(&clear));

    // Neither the database nor its WAL holds the clear value.
    let mut server = server;
    server.stop();
    let mut raw = Vec::new();
    for file in ["berth.sqlite3", "berth.sqlite3-wal"] {
        if let Ok(bytes) = std::fs::read(server.path(file)) {
            raw.extend(bytes);
        }
    }
    assert!(
        !raw.windows(clear.len()).any(|w| w == clear.as_bytes()),
        "clear value found in the database files"
    );
    assert!(
        raw.windows(7).any(|w| w == b"visible"),
        "the plain option is stored as is"
    );
}

#[test]
fn encryption_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    for file in ["keys/master.key", "keys/jwt.key", "tls/key.pem"] {
        let mode = std::fs::metadata(server.path(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn credentials_defaults_of_a_manifest_are_sealed_and_masked() {
    use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN};
    use crate::upload::{self, TestImage};
    let server = Server::start();
    let (owner, sub) = (create_tenant(&server, "cdo"), create_tenant(&server, "cds"));
    let image = TestImage::build(0);
    let clear = format!("clear-default-{}", uuid::Uuid::new_v4().simple());
    let category = format!("cd{}", uuid::Uuid::new_v4().simple());
    let app = upload::create_microservice(&server, &owner);
    let id = app["id"].as_str().unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&upload::manifest("1.0.0")).unwrap();
    manifest["settingsCategory"] = json!(category);
    manifest["settings"] = json!([
        {"key": "credentials.apiKey", "defaultValue": clear},
        {"key": "plain", "defaultValue": "visible"}
    ]);
    let zip = upload::zip_of(&[
        ("cumulocity.json", manifest.to_string().as_bytes()),
        ("image.tar", &image.archive),
    ]);
    let mut bodies = vec![
        upload::upload(&server, &owner, id, "file", &zip)
            .expect(201)
            .body,
    ];
    server
        .req("POST", &format!("/tenant/tenants/{}/applications", sub.id))
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({"application": {"id": id}}))
        .send()
        .expect(201);
    let shown = server
        .req("GET", &format!("/application/applications/{id}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);
    assert_eq!(
        shown.json()["manifest"]["settings"],
        json!([
            {"key": "credentials.apiKey", "defaultValue": "<<Encrypted>>", "editable": false, "overwriteOnUpdate": true, "inheritFromOwner": true},
            {"key": "plain", "defaultValue": "visible", "editable": false, "overwriteOnUpdate": true, "inheritFromOwner": true}
        ])
    );
    bodies.push(shown.body);
    let boot = server
        .req(
            "GET",
            &format!("/application/applications/{id}/bootstrapUser"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    let boot_login = format!("{}/{}", owner.id, boot["name"].as_str().unwrap());
    let boot_password = boot["password"].as_str().unwrap();
    let (service_login, service_password) = upload::service_login(&server, &owner, id, &sub.id);
    // What tenants and the application see: masked; what the service reads: the value.
    let reads = [
        (
            &owner.admin_login,
            owner.admin_password.as_str(),
            "/application/applications?pageSize=100".to_owned(),
        ),
        (
            &boot_login,
            boot_password,
            "/application/currentApplication".to_owned(),
        ),
        (
            &sub.admin_login,
            sub.admin_password.as_str(),
            format!("/tenant/options/{category}"),
        ),
        (
            &sub.admin_login,
            sub.admin_password.as_str(),
            "/tenant/options?pageSize=100".to_owned(),
        ),
        (
            &sub.admin_login,
            sub.admin_password.as_str(),
            format!("/tenant/tenants/{}/applications", sub.id),
        ),
    ];
    for (login, password, path) in reads {
        bodies.push(
            server
                .req("GET", &path)
                .basic(login, password)
                .send()
                .expect(200)
                .body,
        );
    }
    for body in &bodies {
        assert!(!body.contains(&clear), "clear default in {body}");
    }
    for (login, password) in [
        (service_login.as_str(), service_password.as_str()),
        (boot_login.as_str(), boot_password),
    ] {
        let settings = server
            .req("GET", "/application/currentApplication/settings")
            .header("Accept", SETTINGS_VALUES)
            .basic(login, password)
            .send()
            .expect(200)
            .json();
        assert_eq!(
            settings,
            json!({"apiKey": clear, "plain": "visible"}),
            "{login}"
        );
        // `application/json` gets the same values from the Java SDK (and any other client) but
        // the definitions from c8y-api, which reads a list.
        for (agent, expected) in [
            ("Apache-HttpClient/4.5.14 (Java/17.0.9)", settings.clone()),
            ("curl/7.88.1", settings.clone()),
            // A script of its own written with requests, not c8y-api.
            ("python-requests/2.32.3", settings.clone()),
            (
                "python-urllib3/2.8.0",
                json!([
                    {"key": "credentials.apiKey", "defaultValue": clear},
                    {"key": "plain", "defaultValue": "visible"}
                ]),
            ),
        ] {
            let mut answer = server
                .req("GET", "/application/currentApplication/settings")
                .header("Accept", "application/json")
                .header("User-Agent", agent)
                .basic(login, password)
                .send()
                .expect(200)
                .json();
            if let Some(list) = answer.as_array_mut() {
                for item in list {
                    item.as_object_mut()
                        .unwrap()
                        .retain(|k, _| k == "key" || k == "defaultValue");
                }
            }
            assert_eq!(answer, expected, "{login} {agent}");
        }
    }

    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{id}", sub.id),
        )
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(204);
    // Neither the application, its version nor the subscriber's option holds it in clear.
    let mut server = server;
    server.stop();
    let mut raw = Vec::new();
    for file in ["berth.sqlite3", "berth.sqlite3-wal"] {
        if let Ok(bytes) = std::fs::read(server.path(file)) {
            raw.extend(bytes);
        }
    }
    assert!(
        !raw.windows(clear.len()).any(|w| w == clear.as_bytes()),
        "clear default found in the database files"
    );
    let server = server.restart();
    server
        .req("DELETE", &format!("/application/applications/{id}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(204);
}

/// A manifest's settings are options in each subscribed tenant, so they count against its
/// caps: a subscription, or a new version, whose settings would take a tenant past one is
/// refused naming the tenant and the cap, and writes nothing.
#[test]
fn settings_past_a_subscribers_options_caps_are_refused() {
    use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN};
    use crate::upload::{self, TestImage};
    const VALUE: usize = 64 * 1024;
    // One logical setting of 200 KiB: four defaults of 50 KiB (a default may have 64 KiB).
    const PARTS: usize = 4;
    const SETTING: usize = 50 * 1024;
    // The subscription deploys the version: its network goes with the cleanup.
    let (_cleanup, server) = crate::supervisor::start_server(&[]);
    let (owner, sub) = (create_tenant(&server, "cpo"), create_tenant(&server, "cps"));
    let image = TestImage::build(0);
    let category = format!("cp{}", uuid::Uuid::new_v4().simple());
    let app = upload::create_microservice(&server, &owner);
    let id = app["id"].as_str().unwrap();
    let package = |version: &str, keys: &[&str]| {
        let mut manifest: serde_json::Value =
            serde_json::from_str(&upload::manifest(version)).unwrap();
        manifest["settingsCategory"] = json!(category);
        manifest["settings"] = keys
            .iter()
            .flat_map(|k| {
                (0..PARTS).map(
                    move |p| json!({"key": format!("{k}{p}"), "defaultValue": "s".repeat(SETTING)}),
                )
            })
            .collect();
        upload::zip_of(&[
            ("cumulocity.json", manifest.to_string().as_bytes()),
            ("image.tar", &image.archive),
        ])
    };
    upload::upload(&server, &owner, id, "file", &package("1.0.0", &["big"])).expect(201);
    // The subscriber's own options, up to 150 KiB short of 16 MiB (categories, keys and
    // values): 15 values of 64 KiB a request, and one that pads.
    let full = 16 << 20;
    let room = 150 * 1024;
    let sub_login = (sub.admin_login.as_str(), sub.admin_password.as_str());
    let put = |name: &str, body: &serde_json::Value| {
        server
            .req("PUT", &format!("/tenant/options/{name}"))
            .basic(sub_login.0, sub_login.1)
            .json(body)
            .send()
            .expect(200);
    };
    let weight = "own".len() + "k000".len() + VALUE;
    let values = (full - room) / weight;
    for chunk in (0..values).collect::<Vec<_>>().chunks(15) {
        let body: serde_json::Map<String, serde_json::Value> = chunk
            .iter()
            .map(|i| (format!("k{i:03}"), json!("v".repeat(VALUE))))
            .collect();
        put("own", &json!(body));
    }
    let pad = full - room - values * weight - "own".len() - "pad".len();
    put("own", &json!({"pad": "v".repeat(pad)}));

    let subscribe = || {
        server
            .req("POST", &format!("/tenant/tenants/{}/applications", sub.id))
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .json(&json!({"application": {"id": id}}))
            .send()
    };
    let settings = || {
        server
            .req("GET", &format!("/tenant/options/{category}"))
            .basic(sub_login.0, sub_login.1)
            .send()
            .expect(200)
            .json()
    };
    let subscribed = || {
        server
            .req("GET", &format!("/tenant/tenants/{}/applications", sub.id))
            .basic(sub_login.0, sub_login.1)
            .send()
            .expect(200)
            .json()["references"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["application"]["id"] == id)
    };
    let refused = subscribe()
        .expect_error(422, "applications/Invalid Data")
        .json();
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Tenant {}", sub.id)) && message.contains("16 MiB"),
        "{message}"
    );
    assert!(!subscribed());
    assert_eq!(settings(), json!({}));

    // Room for the one setting: the subscription goes through.
    server
        .req("DELETE", "/tenant/options/own/k000")
        .basic(sub_login.0, sub_login.1)
        .send()
        .expect(204);
    subscribe().expect(201);
    assert!(subscribed());
    assert_eq!(settings().as_object().unwrap().len(), PARTS);

    // A version with one setting more does not fit.
    let refused = upload::upload(
        &server,
        &owner,
        id,
        "file",
        &package("2.0.0", &["big", "more"]),
    )
    .expect_error(422, "applications/Invalid Data")
    .json();
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Tenant {}", sub.id)) && message.contains("16 MiB"),
        "{message}"
    );
    let shown = server
        .req("GET", &format!("/application/applications/{id}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(shown["manifest"]["version"], "1.0.0");
    assert_eq!(settings().as_object().unwrap().len(), PARTS);
}

/// go-c8y-cli reads the platform's version right after logging in; any user may, nobody
/// anonymous, and no other system option exists.
#[test]
fn the_system_version_option_names_berths_version() {
    let server = Server::start();
    let tenant = create_tenant(&server, "sysopt");
    let version = server
        .req("GET", "/tenant/system/options/system/version")
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(version["category"], "system");
    assert_eq!(version["key"], "version");
    assert_eq!(version["value"], env!("CARGO_PKG_VERSION"));
    assert!(
        version["self"]
            .as_str()
            .unwrap()
            .ends_with("/tenant/system/options/system/version"),
        "{version}"
    );
    server
        .req("GET", "/tenant/system/options/system/password")
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect_error(404, "options/Not Found");
    server
        .req("GET", "/tenant/system/options/system/version")
        .send()
        .expect(401);
}

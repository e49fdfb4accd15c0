//! Cross-site request forgery through a browser's cached Basic login: once a user typed their
//! credentials into the dialog an API challenge opened, the browser sends them again with any
//! request to Berth, whoever's page made it. A page of another site auto-submitting a form
//! (`enctype="text/plain"`, a field crafted into JSON) must create nothing; the platform's own
//! pages, SDKs and scripts (no `Origin`) go on as before.

use serde_json::json;

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, app_name, management, unique};
use crate::supervisor::{
    HelloLease, deploy, manifest, readiness_on_health, start_server, subscribe, wait_ready,
};

const EVIL: &str = "https://evil.example.com";

/// What a browser sends for `<form method=post enctype="text/plain">` with one field whose name
/// is `json` but its last two characters and whose value is those two (`"}`): `name=value`,
/// which is `json` with `=` inside its last string.
fn text_plain_form(json: &str) -> Vec<u8> {
    let (name, value) = json.split_at(json.len() - 2);
    format!("{name}={value}\r\n").into_bytes()
}

/// The headers a browser adds to a form it submits for a page of `origin`.
fn browser_form<'a>(
    req: crate::fixture::Req<'a>,
    origin: &str,
    site: &str,
) -> crate::fixture::Req<'a> {
    req.header("Origin", origin)
        .header("Sec-Fetch-Site", site)
        .header("Sec-Fetch-Mode", "navigate")
        .header("Sec-Fetch-Dest", "document")
}

#[test]
fn a_form_of_another_sites_page_creates_nothing_with_the_browsers_basic_login() {
    let server = Server::start();
    let ours = server.https.clone();
    let user = |name: &str| {
        format!(
            r#"{{"userName":"{name}","email":"{name}@example.com","password":"Tr0ub4dor-and-3","pad":""}}"#
        )
    };
    let post_user = |name: &str| {
        server
            .req("POST", "/user/management/users")
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .raw("text/plain", text_plain_form(&user(name)))
    };
    let exists = |name: &str| {
        let status = server
            .admin_get(&format!("/user/management/userByName/{name}"))
            .status;
        assert!(status == 200 || status == 404, "{status}");
        status == 200
    };

    // Another site's page, as the browser says it in either header, or in both.
    let refused: &[(&str, Option<&str>, Option<&str>)] = &[
        ("intruder1", Some(EVIL), Some("cross-site")),
        ("intruder2", Some(EVIL), None),
        ("intruder3", None, Some("cross-site")),
        ("intruder4", Some("null"), Some("cross-site")),
        (
            "intruder5",
            Some("https://sibling.localhost"),
            Some("same-site"),
        ),
        (
            "intruder6",
            Some(&ours.replace("https://", "http://")),
            None,
        ),
    ];
    for (name, origin, site) in refused {
        let mut req = post_user(name);
        if let Some(origin) = origin {
            req = req.header("Origin", origin);
        }
        if let Some(site) = site {
            req = req
                .header("Sec-Fetch-Site", site)
                .header("Sec-Fetch-Mode", "navigate");
        }
        let resp = req.send().expect_error(403, "security/Forbidden");
        assert!(resp.body.contains("another site"), "{}", resp.body);
        assert!(!exists(name), "{name} was created ({origin:?}, {site:?})");
    }

    // The same body without Origin (an SDK, a script) or from the platform's own page.
    post_user("scripted").send().expect(201);
    assert!(exists("scripted"));
    browser_form(post_user("console"), &ours, "same-origin")
        .send()
        .expect(201);
    assert!(exists("console"));
    post_user("typed")
        .header("Sec-Fetch-Site", "none")
        .send()
        .expect(201);

    // A subtenant, an option, a package upload: every write, whatever its body.
    let tenant = unique("csrf");
    let tenant_body = format!(
        r#"{{"company":"{tenant}","domain":"{tenant}.example.com","adminName":"boss","adminEmail":"boss@example.com","adminPass":"Tr0ub4dor-and-3","pad":""}}"#
    );
    let option_body = r#"{"category":"csrf","key":"planted","value":"yes","pad":""}"#;
    let app = server
        .req("POST", "/application/applications")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({"name": unique("csrf-"), "key": unique("csrf-key-"), "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writes: [(&str, String, &str, Vec<u8>); 4] = [
        ("POST", "/tenant/tenants".into(), "text/plain", text_plain_form(&tenant_body)),
        ("POST", "/tenant/options".into(), "text/plain", text_plain_form(option_body)),
        (
            "POST",
            format!("/application/applications/{app}/binaries"),
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\n\r\nPK\r\n--x--\r\n".to_vec(),
        ),
        ("DELETE", format!("/application/applications/{app}"), "text/plain", Vec::new()),
    ];
    for (method, path, content_type, body) in writes {
        let resp = browser_form(
            server
                .req(method, &path)
                .basic(MGMT_ADMIN, ADMIN_PASSWORD)
                .raw(content_type, body),
            EVIL,
            "cross-site",
        )
        .send();
        resp.expect_error(403, "security/Forbidden");
    }
    server
        .admin_get("/tenant/tenants?pageSize=2000")
        .expect(200)
        .json()["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(|t| assert_ne!(t["company"], tenant.as_str(), "{t}"));
    server.admin_get("/tenant/options/csrf/planted").expect(404);
    let kept = server
        .admin_get(&format!("/application/applications/{app}"))
        .expect(200)
        .json();
    assert!(kept["activeVersionId"].is_null(), "{kept}");

    // Reading stays the same-origin policy's business: another site cannot read the answer.
    browser_form(server.req("GET", "/user/currentUser"), EVIL, "cross-site")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200);
}

/// A service behind the proxy receives the browser's Basic credentials too (and may act as the
/// user with them): another site's page cannot post to it or open a WebSocket to it, on the
/// front's direct path (credentials cached) as on the app's.
#[test]
fn a_service_takes_no_write_from_another_sites_page() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = management();
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, "management", &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let name = app_name(&server, &owner, &app);
    let upload = format!("/service/{name}/upload");
    let post = |origin: Option<&str>| {
        let mut req = server
            .req("POST", &upload)
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .raw("text/plain", text_plain_form(r#"{"a":"b"}"#));
        if let Some(origin) = origin {
            req = browser_form(
                req,
                origin,
                if origin == EVIL {
                    "cross-site"
                } else {
                    "same-origin"
                },
            );
        }
        req.send()
    };
    // The first request verifies the credentials (the app's path), later ones take the direct path.
    for _ in 0..2 {
        let resp = post(Some(EVIL)).expect_error(403, "security/Forbidden");
        assert!(resp.body.contains("another site"), "{}", resp.body);
        let sent = text_plain_form(r#"{"a":"b"}"#).len();
        assert_eq!(post(None).expect(200).json()["bytes"], sent);
        post(Some(&server.https)).expect(200);
    }
    // Reading through the proxy is unchanged.
    browser_form(
        server.req("GET", &format!("/service/{name}/hello")),
        EVIL,
        "cross-site",
    )
    .basic(MGMT_ADMIN, ADMIN_PASSWORD)
    .send()
    .expect(200);
    // A WebSocket is read and written by the page that opens it.
    let upgrade = |origin: &str| {
        server
            .req("GET", &format!("/service/{name}/ws"))
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .header("Origin", origin)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    upgrade(EVIL).expect_error(403, "security/Forbidden");
}

/// The login dialog opens for what the user typed, never over another site's page.
#[test]
fn another_sites_page_cannot_open_the_login_dialog() {
    let server = Server::start();
    // (Sec-Fetch-Site, the challenge)
    for (site, challenge) in [
        (None, "Basic realm=\"Cumulocity\""),
        (Some("none"), "Basic realm=\"Cumulocity\""),
        (Some("same-origin"), "Basic realm=\"Cumulocity\""),
        (Some("cross-site"), "XBasic realm=\"Cumulocity\""),
        (Some("same-site"), "XBasic realm=\"Cumulocity\""),
    ] {
        let mut req = server.req("GET", "/user/currentUser");
        if let Some(site) = site {
            req = req
                .header("Sec-Fetch-Site", site)
                .header("Sec-Fetch-Mode", "navigate");
        }
        let resp = req.send().expect(401);
        assert_eq!(resp.header("www-authenticate"), Some(challenge), "{site:?}");
    }
}

//! The console's versions table in a real browser: the active version marked, an older version
//! activated (the deployment rolls back to it), a version that no longer runs deleted.

use serde_json::{Value, json};

use crate::fixture::{Server, Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, instances, manifest, readiness_on_health, start_server, status, subscribe,
    wait_for, wait_ready,
};
use crate::upload::{multipart, zip_of};
use crate::webdriver::{Browser, DEADLINE};

fn with_version(manifest: &str, version: &str) -> String {
    let mut m: Value = serde_json::from_str(manifest).unwrap();
    m["version"] = json!(version);
    m.to_string()
}

fn running(server: &Server, owner: &Tenant, app: &str, version: &str) -> bool {
    let s = status(server, owner, app);
    let all = instances(&s);
    all.len() == 1 && all[0]["version"] == version && all[0]["ready"] == true
}

#[test]
fn the_console_activates_an_older_version_and_deletes_one() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "cversions");
    let base = manifest("MULTI_TENANT", 1, readiness_on_health());
    let app = deploy(&server, &owner, &image.0, &with_version(&base, "1.0.0"));
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let zip = zip_of(&[
        ("cumulocity.json", with_version(&base, "2.0.0").as_bytes()),
        ("image.tar", &image.0.archive),
    ]);
    let (content_type, body) = multipart("file", &zip);
    server
        .req("POST", &format!("/application/applications/{app}/binaries"))
        .basic(&owner.admin_login, &owner.admin_password)
        .raw(&content_type, body)
        .send()
        .expect(201);
    wait_for(DEADLINE, "2.0.0 running", || {
        running(&server, &owner, &app, "2.0.0").then_some(())
    });

    // The charts open with the server's history: wait for a few samples first.
    let name = instances(&status(&server, &owner, &app))[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = wait_for(DEADLINE, "five usage samples", || {
        crate::usage_history::samples_of(
            &crate::usage_history::usage_history(&server, &owner, &app),
            &name,
            5,
        )
    })
    .len();

    let browser = Browser::start(&server.https, 1280, 800);
    let user = owner.admin_login.split_once('/').unwrap().1;
    browser.sign_in(&owner.id, user, &owner.admin_password);
    browser.goto(&format!("/console/applications/{app}"));
    // The first rendering of the memory chart already holds the server's samples.
    let points = browser.wait("the memory chart", || {
        let v = browser.script(
            "const s = document.querySelector('#deployments svg.spark[aria-label^=\"Memory\"]'); return s ? Number(s.dataset.points) : null;",
            json!([]),
        );
        v.as_u64()
    });
    assert!(
        points as usize >= kept,
        "{points} points, server had {kept}"
    );
    let table = browser.wait_text("#versions", "2.0.0 (active)");
    assert!(table.contains("1.0.0"), "{table}");
    // The active version offers neither action.
    assert!(
        browser
            .find_now("#versions button[data-version='2.0.0']")
            .is_none()
    );
    browser.screenshot("versions");

    // Activate 1.0.0: it is marked active and the deployment is replaced by it.
    browser.click("#versions button.activate[data-version='1.0.0']");
    browser.wait_text("#versions-result", "Version 1.0.0 activated");
    browser.wait_text("#versions", "1.0.0 (active)");
    wait_for(DEADLINE, "1.0.0 running", || {
        running(&server, &owner, &app, "1.0.0").then_some(())
    });
    browser.wait_text("#deployments", "version 1.0.0");
    browser.wait_text("#deployments", "RUNNING, ready");
    browser.script(
        "document.getElementById('deployments-title').scrollIntoView(); return true;",
        json!([]),
    );
    browser.screenshot("version-activated");

    // Once 1.0.0 is the stable version, 2.0.0 runs nowhere and can be deleted.
    wait_for(DEADLINE, "1.0.0 stable", || {
        let one = server
            .req(
                "GET",
                &format!("/application/applications/{app}/versions?version=1.0.0"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        (one["stable"] == true).then_some(())
    });
    browser.click("#versions button.delete-version[data-version='2.0.0']");
    browser.accept_dialog();
    browser.wait_text("#versions-result", "Version 2.0.0 deleted");
    browser.wait("2.0.0 gone from the table", || {
        (!browser.text("#versions").contains("2.0.0")).then_some(())
    });
    let listed = server
        .req("GET", &format!("/application/applications/{app}/versions"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    let versions: Vec<&str> = listed["applicationVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0"], "{listed}");
}

//! The console's user administration in a real browser: a tenant admin creates a user, changes
//! it and manages its group membership, all through the public user API (checked there).

use serde_json::Value;

use crate::fixture::{Server, Tenant, create_tenant, unique};
use crate::supervisor::start_server;
use crate::webdriver::Browser;

fn user(server: &Server, tenant: &Tenant, name: &str) -> Value {
    server
        .req("GET", &format!("/user/{}/users/{name}", tenant.id))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()
}

fn groups_of(user: &Value) -> Vec<String> {
    user["groups"]["references"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["group"]["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_console_creates_and_changes_users_and_their_groups() {
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "cadmin");
    let browser = Browser::start(&server.https, 1280, 800);
    let admin = owner.admin_login.split_once('/').unwrap().1;
    browser.sign_in(&owner.id, admin, &owner.admin_password);
    browser.goto("/console/users");
    browser.wait_text("#user-list", admin);

    // Create.
    let name = unique("jane");
    browser.fill("#user-name", &name);
    browser.fill("#user-email", "jane@example.com");
    browser.fill("#user-password", "Jane-Passw0rd-long");
    browser.click("#user-form button[type=submit]");
    browser.wait_text("#user-result", &format!("Created user {name}"));
    browser.wait_text("#user-list", "jane@example.com");
    let created = user(&server, &owner, &name);
    assert_eq!(created["email"], "jane@example.com", "{created}");
    assert_eq!(created["enabled"], true, "{created}");

    // A refusal is shown in words: the user exists already.
    browser.click("#user-form button[type=submit]");
    browser.wait("the refusal", || {
        let text = browser.text("#user-result");
        (!text.contains("Created")).then_some(text)
    });

    // Change: another email, disabled; the empty password stays as it was.
    browser.fill("#user-email", "jane.doe@example.com");
    browser.fill("#user-password", "");
    browser.click("#user-enabled");
    browser.click("#user-update");
    browser.wait_text("#user-result", &format!("Saved user {name}"));
    browser.wait_text("#user-list", "jane.doe@example.com");
    let changed = user(&server, &owner, &name);
    assert_eq!(changed["email"], "jane.doe@example.com", "{changed}");
    assert_eq!(changed["enabled"], false, "{changed}");

    // Group membership: add to the first group offered, then remove.
    let group = browser
        .script(
            "const o = document.querySelector('#member-group option'); return o ? o.textContent : null;",
            serde_json::json!([]),
        )
        .as_str()
        .expect("a group to choose")
        .to_owned();
    browser.fill("#member-user", &name);
    browser.click("#member-form button[type=submit]");
    browser.wait_text("#member-result", &format!("Added {name} to {group}"));
    assert_eq!(
        groups_of(&user(&server, &owner, &name)),
        vec![group.clone()]
    );
    browser.wait_text("#user-list", &group);
    browser.script("window.scrollTo(0, 0); return true;", serde_json::json!([]));
    browser.screenshot("users-admin");
    browser.click("#member-remove");
    browser.wait_text("#member-result", &format!("Removed {name} from {group}"));
    assert!(groups_of(&user(&server, &owner, &name)).is_empty());
}

//! The web console in a real browser (headless Chromium through chromedriver) against a real
//! server and Docker: sign in, create and upload (a refused package shows the validator's
//! line:column diagnostics), subscribe and watch the deployment become ready, follow an
//! instance's log as a new line arrives, see an OOM kill and its audit record, set tenant
//! options (credentials masked), sign out; a tenant admin sees nothing of another tenant.
//! Every flow leaves PNG screenshots under `target/console-screenshots/`.

use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, Server, Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, instances, manifest, plain_agent, readiness_on_health, start_server, status,
    wait_for,
};
use crate::upload::zip_of;
use crate::webdriver::{Browser, DEADLINE};

/// A package file on disk for the browser's file input.
fn package_file(dir: &std::path::Path, name: &str, manifest: &str, image: &[u8]) -> String {
    let path = dir.join(name);
    let zip = zip_of(&[
        ("cumulocity.json", manifest.as_bytes()),
        ("image.tar", image),
    ]);
    std::fs::write(&path, zip).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A manifest the validator refuses (an unknown isolation), and the line:column of the bad
/// value in its pretty-printed text.
fn refused_manifest() -> (String, String) {
    let mut m: Value = serde_json::from_str(&manifest("MULTI_TENANT", 1, json!({}))).unwrap();
    m["isolation"] = json!("SOMETIMES");
    let text = serde_json::to_string_pretty(&m).unwrap();
    let (line, content) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("SOMETIMES"))
        .unwrap();
    let column = content.find("\"SOMETIMES").unwrap() + 1;
    (text, format!("{}:{column}", line + 1))
}

fn owner_login(browser: &Browser, owner: &Tenant) {
    let user = owner.admin_login.split_once('/').unwrap().1;
    browser.sign_in(&owner.id, user, &owner.admin_password);
}

#[test]
fn the_console_deploys_follows_logs_shows_oom_kills_and_options() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "console");
    let files = tempfile::tempdir().unwrap();
    let good = package_file(
        files.path(),
        "hello.zip",
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
        &image.0.archive,
    );
    let (refused, position) = refused_manifest();
    let bad = package_file(files.path(), "refused.zip", &refused, &image.0.archive);

    let browser = Browser::start(&server.https, 1280, 800);
    owner_login(&browser, &owner);
    browser.wait_text("#apps", "No applications yet.");

    // Create a microservice; the console moves to its page.
    let name = crate::fixture::unique("web-");
    browser.fill("#new-app-name", &name);
    browser.click("#new-app button[type=submit]");
    let url = browser.wait("the application page", || {
        let url = browser.url();
        url.contains("/console/applications/").then_some(url)
    });
    let app = url.rsplit('/').next().unwrap().to_owned();
    browser.wait_text("#title", &name);

    // A refused package: the validator's diagnostic with its line and column.
    browser.fill("#upload-file", &bad);
    browser.click("#upload button[type=submit]");
    let diagnostics = browser.wait_text("#diagnostics", "isolation");
    assert!(
        diagnostics.contains(&format!("error at {position}")),
        "line:column {position} of the bad value in {diagnostics:?}"
    );
    browser.screenshot("refused-package");

    // The hello package (from a fresh page), then a subscription of the owner's tenant: the
    // deployment gets ready.
    browser.goto(&format!("/console/applications/{app}"));
    browser.wait_text("#title", &name);
    browser.fill("#upload-file", &good);
    browser.click("#upload button[type=submit]");
    browser.wait_text("#upload-result", "Uploaded hello.zip");
    browser.fill("#sub-tenant", &owner.id);
    browser.click("#subscribe button[type=submit]");
    browser.wait_text("#sub-result", &format!("Subscribed {}", owner.id));
    browser.wait_text("#deployments", "RUNNING, ready");
    browser.wait_text("#app-summary", "ready");
    // A few samples for the charts.
    std::thread::sleep(std::time::Duration::from_secs(6));
    browser.script("window.scrollTo(0, 0); return true;", json!([]));
    browser.screenshot("application-ready");

    // The instance's log: a line written after the page opened arrives live.
    browser.click("#deployments a[href*='/logs/']");
    browser.wait_text("#log-state", "Following");
    browser.wait_text("#log-lines", "listening on");
    let ready = status(&server, &owner, &app);
    let ip = instances(&ready)[0]["ip"].as_str().unwrap().to_owned();
    let _ = plain_agent()
        .post(&format!("http://{ip}:80/alloc?mb=3"))
        .send_empty();
    browser.wait_text("#log-lines", "allocating 3 MiB");
    browser.fill("#log-search", "allocating");
    browser.screenshot("logs-live");

    // An OOM kill: counted on the application's page, recorded in the audit log.
    browser.goto(&format!("/console/applications/{app}"));
    browser.wait_text("#deployments", "RUNNING, ready");
    wait_for(DEADLINE, "a memory sample", || {
        instances(&status(&server, &owner, &app))[0]["memory"]["usedBytes"]
            .as_u64()
            .filter(|b| *b > 0)
    });
    let _ = plain_agent()
        .post(&format!("http://{ip}:80/alloc?mb=128"))
        .send_empty();
    browser.wait_text("#deployments", "OOM kills 1");
    browser.goto("/console/audit");
    browser.fill("#audit-type", "OomKill");
    browser.click("#audit-filter button[type=submit]");
    let audit = browser.wait_text("#audit-list", "OomKill");
    assert!(audit.contains("MAJOR"), "{audit}");
    browser.screenshot("oom-audit");

    // Tenant options: a plain one shown as set, a credential masked.
    browser.goto("/console/options");
    browser.wait_text("#option-list", "");
    for (key, value) in [("colour", "teal"), ("credentials.apiKey", "hunter2-secret")] {
        browser.fill("#opt-category", "console");
        browser.fill("#opt-key", key);
        browser.fill("#opt-value", value);
        browser.click("#option-form button[type=submit]");
        browser.wait_text("#option-result", &format!("Saved console.{key}"));
    }
    let options = browser.wait_text("#option-list", "credentials.apiKey");
    assert!(options.contains("teal"), "{options}");
    assert!(
        !options.contains("hunter2"),
        "credentials are masked: {options}"
    );
    browser.screenshot("options");

    // Phone width: the application page still lays out.
    browser.resize(390, 844);
    browser.goto(&format!("/console/applications/{app}"));
    browser.wait_text("#deployments", "RUNNING");
    browser.screenshot("phone-application");
    browser.resize(1280, 800);

    // Signing out ends the session: the console sends the browser back to the sign-in page.
    browser.click("#signout");
    browser.wait("the sign-in page", || {
        browser.url().ends_with("/console/login").then_some(())
    });
    browser.goto("/console/applications");
    browser.wait("a redirect to sign in", || {
        browser.url().contains("/console/login?next=").then_some(())
    });
}

/// Logs in with the OAI-Secure cookie outside the browser; returns (cookie header, xsrf).
fn cookie_session(server: &Server, tenant: &str, user: &str, password: &str) -> (String, String) {
    let response = server
        .req("POST", &format!("/tenant/oauth?tenant_id={tenant}"))
        .form(&[
            ("grant_type", "PASSWORD"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .expect(200);
    let cookies = response.cookies();
    let header = format!(
        "authorization={}; XSRF-TOKEN={}",
        cookies["authorization"], cookies["XSRF-TOKEN"]
    );
    (header, cookies["XSRF-TOKEN"].clone())
}

#[test]
fn a_tenant_admin_sees_only_its_tenant_and_pages_are_locked_down() {
    let (_cleanup, server) = start_server(&[]);
    let mine = create_tenant(&server, "mine");
    let theirs = create_tenant(&server, "theirs");
    let secret_name = crate::fixture::unique("theirs-");
    let hidden = server
        .req("POST", "/application/applications")
        .basic(&theirs.admin_login, &theirs.admin_password)
        .json(&json!({"name": secret_name, "key": format!("{secret_name}-key"), "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Pages carry a strict policy and no inline script.
    let page = server
        .req("GET", "/console/applications")
        .send()
        .expect(200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(!page.body.contains("<script>"), "no inline script");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    server.req("GET", "/").send().expect(303);
    server
        .req("GET", "/console/applications/1%3Cx")
        .send()
        .expect(404);

    // The log stream is the API's: a cookie without the XSRF header is refused.
    let (cookie, xsrf) = cookie_session(&server, &mine.id, "boss", &mine.admin_password);
    let stream = format!("/application/applications/{hidden}/logs/x/stream");
    server
        .req("GET", &stream)
        .header("Cookie", &cookie)
        .send()
        .expect_error(401, "security/Unauthorized");
    // With it, another tenant's application does not exist for this tenant.
    server
        .req("GET", &stream)
        .header("Cookie", &cookie)
        .header("X-XSRF-TOKEN", &xsrf)
        .send()
        .expect(404);

    let browser = Browser::start(&server.https, 1280, 800);
    let user = mine.admin_login.split_once('/').unwrap().1;
    browser.sign_in(&mine.id, user, &mine.admin_password);
    let list = browser.wait_text("#apps", "No applications yet.");
    assert!(!list.contains(&secret_name), "{list}");
    browser.goto(&format!("/console/applications/{hidden}"));
    let flash = browser.wait_text("#flash", "");
    browser.wait("an error in words", || {
        let text = browser.text("#flash");
        (!text.is_empty()).then_some(text)
    });
    let shown = browser.text("#flash");
    assert!(!shown.contains(&secret_name), "{flash} {shown}");
    assert!(shown.contains(&hidden), "the error names the id: {shown}");
    browser.screenshot("other-tenant-refused");
    // A subtenant admin may not list tenants: the API's refusal is shown.
    browser.goto("/console/tenants");
    browser.wait("the refusal", || {
        let text = browser.text("#flash");
        (!text.is_empty()).then_some(text)
    });

    // The management admin sees both tenants.
    browser.click("#signout");
    browser.wait("the sign-in page", || {
        browser.url().ends_with("/console/login").then_some(())
    });
    browser.sign_in("management", "admin", ADMIN_PASSWORD);
    browser.goto("/console/tenants");
    let tenants = browser.wait_text("#tenant-list", &mine.id);
    assert!(tenants.contains(&theirs.id), "{tenants}");
    browser.screenshot("tenants");
}

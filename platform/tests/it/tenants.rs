//! Subtenants: lifecycle, validation, and who may manage them.

use serde_json::json;

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, create_tenant, unique};

#[test]
fn management_creates_reads_updates_lists_and_deletes_subtenants() {
    let server = Server::start();
    let domain = format!("{}.example.com", unique("acme"));
    let body = json!({"company": "ACME", "domain": domain, "adminName": "boss", "adminEmail": "boss@acme.test", "adminPass": "Acme-Admin-1", "customProperties": {"language": "en"}});
    let created = server
        .req("POST", "/tenant/tenants")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&body)
        .send()
        .expect(201);
    assert!(
        created
            .header("content-type")
            .unwrap()
            .starts_with("application/vnd.com.nsn.cumulocity.tenant+json")
    );
    let tenant = created.json();
    let id = tenant["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with('t') && id[1..].chars().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with(&format!("/tenant/tenants/{id}"))
    );
    assert_eq!(tenant["parent"], "management");
    assert_eq!(tenant["status"], "ACTIVE");
    assert!(tenant.get("adminPass").is_none());

    let login = format!("{id}/boss");
    let current = server
        .req("GET", "/tenant/currentTenant")
        .basic(&login, "Acme-Admin-1")
        .send()
        .expect(200)
        .json();
    assert_eq!(current["name"], id.as_str());
    assert_eq!(current["domainName"], domain.as_str());
    let groups = server
        .req("GET", &format!("/user/{id}/groups?pageSize=100"))
        .basic(&login, "Acme-Admin-1")
        .send()
        .expect(200)
        .json();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for expected in ["admins", "devices", "Global Reader", "Global User Manager"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }

    let got = server
        .admin_get(&format!("/tenant/tenants/{id}"))
        .expect(200)
        .json();
    assert_eq!(got["company"], "ACME");
    let updated = server
        .req("PUT", &format!("/tenant/tenants/{id}"))
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({"company": "ACME 2", "contactName": "Jo"}))
        .send()
        .expect(200)
        .json();
    assert_eq!(updated["company"], "ACME 2");
    assert_eq!(updated["contactName"], "Jo");

    let list = server
        .admin_get("/tenant/tenants?withTotalElements=true&pageSize=2000")
        .expect(200)
        .json();
    assert!(
        list["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str())
    );
    assert!(list["statistics"]["totalElements"].as_u64().unwrap() >= 1);

    server
        .req("DELETE", &format!("/tenant/tenants/{id}"))
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(204);
    server
        .admin_get(&format!("/tenant/tenants/{id}"))
        .expect_error(404, "security/Not Found");
    server
        .req("GET", "/tenant/currentTenant")
        .basic(&login, "Acme-Admin-1")
        .send()
        .expect_error(401, "security/Unauthorized");
}

#[test]
fn tenant_bodies_are_validated() {
    let server = Server::start();
    let existing = create_tenant(&server, "dup");
    let existing_domain = server
        .admin_get(&format!("/tenant/tenants/{}", existing.id))
        .json()["domain"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = |domain: &str| json!({"company": "C", "domain": domain, "adminName": "boss", "adminPass": "Good-Pass-1"});
    let mut missing_company = good("missing.example.com");
    missing_company.as_object_mut().unwrap().remove("company");
    let mut short_pass = good("short.example.com");
    short_pass["adminPass"] = json!("short");
    let mut bad_admin = good("badadmin.example.com");
    bad_admin["adminName"] = json!("a/b");
    let mut bad_id = good("badid.example.com");
    bad_id["id"] = json!("Management");
    let cases = vec![
        (
            "missing company",
            missing_company,
            422,
            "tenants/Invalid Data",
        ),
        (
            "bad domain",
            good("Not A Domain"),
            422,
            "tenants/Invalid Data",
        ),
        (
            "short admin password",
            short_pass,
            422,
            "tenants/Invalid Data",
        ),
        ("bad admin name", bad_admin, 422, "tenants/Invalid Data"),
        ("bad id", bad_id, 422, "tenants/Invalid Data"),
        (
            "duplicate domain",
            good(&existing_domain),
            409,
            "tenants/Duplicate",
        ),
    ];
    for (name, body, status, error) in cases {
        let resp = server
            .req("POST", "/tenant/tenants")
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .json(&body)
            .send();
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        resp.expect_error(status, error);
    }
}

#[test]
fn post_without_accept_returns_only_location() {
    let server = Server::start();
    let body = json!({"company": "Quiet", "domain": format!("{}.example.com", unique("quiet")), "adminName": "boss", "adminPass": "Quiet-Pass-1"});
    let resp = server
        .req("POST", "/tenant/tenants")
        .no_accept()
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&body)
        .send()
        .expect(201);
    assert!(resp.body.is_empty(), "{}", resp.body);
    let location = resp.header("location").unwrap().to_owned();
    let path = location
        .split_once("/tenant/")
        .map(|(_, p)| format!("/tenant/{p}"))
        .unwrap();
    server.admin_get(&path).expect(200);
}

#[test]
fn subtenant_admins_cannot_manage_tenants() {
    let server = Server::start();
    let a = create_tenant(&server, "a");
    let b = create_tenant(&server, "b");
    let body = json!({"company": "X", "domain": format!("{}.example.com", unique("x")), "adminName": "boss", "adminPass": "Good-Pass-1"});
    let cases = vec![
        ("GET", "/tenant/tenants".to_owned(), None),
        ("POST", "/tenant/tenants".to_owned(), Some(body)),
        ("GET", format!("/tenant/tenants/{}", b.id), None),
        (
            "PUT",
            format!("/tenant/tenants/{}", b.id),
            Some(json!({"company": "hijacked"})),
        ),
        ("DELETE", format!("/tenant/tenants/{}", b.id), None),
    ];
    for (method, path, body) in cases {
        let mut req = server
            .req(method, &path)
            .basic(&a.admin_login, &a.admin_password);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send();
        assert_eq!(resp.status, 403, "{method} {path}: {}", resp.body);
        resp.expect_error(403, "security/Forbidden");
    }
    assert_ne!(
        server
            .admin_get(&format!("/tenant/tenants/{}", b.id))
            .json()["company"],
        "hijacked"
    );
}

#[test]
fn bare_user_names_take_the_tenant_from_the_host() {
    let server = Server::start();
    let label = unique("host");
    let body = json!({"company": "Hosted", "domain": format!("{label}.example.com"), "adminName": "boss", "adminPass": "Hosted-Pass-1"});
    let id = server
        .req("POST", "/tenant/tenants")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&body)
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first label of the Host names the tenant, whatever the platform domain and port are.
    for host in [
        format!("{label}.example.com"),
        format!("{label}.berth.test:8443"),
    ] {
        let current = server
            .req("GET", "/tenant/currentTenant")
            .header("Host", &host)
            .basic("boss", "Hosted-Pass-1")
            .send()
            .expect(200)
            .json();
        assert_eq!(current["name"], id.as_str(), "{host}");
        let options = server
            .req("GET", "/tenant/loginOptions")
            .header("Host", &host)
            .send()
            .expect(200)
            .json();
        assert!(
            options["loginOptions"][1]["initRequest"]
                .as_str()
                .unwrap()
                .ends_with(&format!("tenant_id={id}")),
            "{options}"
        );
    }
    // An unknown host means the management tenant, where boss does not exist.
    server
        .req("GET", "/tenant/currentTenant")
        .header("Host", "elsewhere.example.com")
        .basic("boss", "Hosted-Pass-1")
        .send()
        .expect(401);
    server
        .req("GET", "/tenant/currentTenant")
        .header("Host", "elsewhere.example.com")
        .basic("admin", ADMIN_PASSWORD)
        .send()
        .expect(200);
}

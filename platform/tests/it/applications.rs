//! Applications: CRUD, filters and paging, duplicates, bootstrap users.

use serde_json::json;

use crate::fixture::{Server, create_tenant, management};

#[test]
fn application_crud_filters_and_paging() {
    let server = Server::start();
    let t = create_tenant(&server, "apps");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let created = admin("POST", "/application/applications")
        .json(&json!({"name": "svc-one", "key": "svc-one-key", "type": "MICROSERVICE", "requiredRoles": ["ROLE_INVENTORY_READ"]}))
        .send()
        .expect(201);
    assert!(
        created
            .header("content-type")
            .unwrap()
            .starts_with("application/vnd.com.nsn.cumulocity.application+json")
    );
    let app = created.json();
    let id = app["id"].as_str().unwrap().to_owned();
    assert_eq!(app["type"], "MICROSERVICE");
    assert_eq!(app["availability"], "PRIVATE");
    assert_eq!(app["owner"]["tenant"]["id"], t.id.as_str());
    assert_eq!(app["requiredRoles"], json!(["ROLE_INVENTORY_READ"]));
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with(&format!("/application/applications/{id}"))
    );

    for i in 2..=7 {
        admin("POST", "/application/applications")
            .json(&json!({"name": format!("svc-{i}"), "key": format!("key-{i}"), "type": "HOSTED"}))
            .send()
            .expect(201);
    }
    let duplicates = [
        json!({"name": "svc-one", "key": "other-key", "type": "MICROSERVICE"}),
        json!({"name": "other-name", "key": "svc-one-key", "type": "MICROSERVICE"}),
    ];
    for body in duplicates {
        admin("POST", "/application/applications")
            .json(&body)
            .send()
            .expect_error(409, "applications/Duplicate");
    }
    let invalid = [
        json!({"key": "k", "type": "MICROSERVICE"}),
        json!({"name": "n", "type": "MICROSERVICE"}),
        json!({"name": "n", "key": "k"}),
        json!({"name": "n", "key": "k", "type": "SPACESHIP"}),
        json!({"name": "bad name", "key": "k", "type": "MICROSERVICE"}),
        json!({"name": "n", "key": "k", "type": "MICROSERVICE", "roles": ["not a role"]}),
    ];
    for body in invalid {
        admin("POST", "/application/applications")
            .json(&body)
            .send()
            .expect_error(422, "applications/Invalid Data");
    }

    let page1 = admin(
        "GET",
        "/application/applications?pageSize=3&withTotalPages=true&withTotalElements=true",
    )
    .send()
    .expect(200)
    .json();
    assert_eq!(page1["applications"].as_array().unwrap().len(), 3);
    assert_eq!(page1["statistics"]["totalElements"], 7);
    assert_eq!(page1["statistics"]["totalPages"], 3);
    assert!(page1["next"].as_str().unwrap().contains("currentPage=2"));
    assert!(page1.get("prev").is_none());
    let page3 = admin("GET", "/application/applications?pageSize=3&currentPage=3")
        .send()
        .expect(200)
        .json();
    assert_eq!(page3["applications"].as_array().unwrap().len(), 1);
    assert!(page3.get("next").is_none());
    assert!(page3["prev"].as_str().unwrap().contains("currentPage=2"));
    let default_page = admin("GET", "/application/applications")
        .send()
        .expect(200)
        .json();
    assert_eq!(default_page["statistics"]["pageSize"], 5);

    let filters = [
        ("name=svc-one", 1),
        ("type=MICROSERVICE", 1),
        ("type=HOSTED", 6),
        (&format!("owner={}", t.id) as &str, 7),
        (&format!("tenant={}", t.id) as &str, 7),
        (&format!("subscriber={}", t.id) as &str, 0),
    ];
    for (query, expected) in filters {
        let list = admin(
            "GET",
            &format!("/application/applications?pageSize=100&{query}"),
        )
        .send()
        .expect(200)
        .json();
        assert_eq!(
            list["applications"].as_array().unwrap().len(),
            expected,
            "{query}"
        );
    }
    // A tenant the caller does not manage (here: no tenant at all) is refused, not an empty list
    // that would read as "it has none".
    for query in [
        "tenant=t0",
        "owner=management",
        "subscriber=t0",
        "providedFor=t0",
    ] {
        admin(
            "GET",
            &format!("/application/applications?pageSize=100&{query}"),
        )
        .send()
        .expect_error(403, "security/Forbidden");
    }
    let by_name = admin("GET", "/application/applicationsByName/svc-one")
        .send()
        .expect(200)
        .json();
    assert_eq!(by_name["applications"][0]["id"], id.as_str());

    let updated = admin("PUT", &format!("/application/applications/{id}"))
        .json(&json!({"description": "the first", "availability": "MARKET"}))
        .send()
        .expect(200)
        .json();
    assert_eq!(updated["description"], "the first");
    assert_eq!(updated["availability"], "MARKET");
    admin("PUT", &format!("/application/applications/{id}"))
        .json(&json!({"key": "key-2"}))
        .send()
        .expect_error(409, "applications/Duplicate");
    admin("PUT", &format!("/application/applications/{id}"))
        .json(&json!({"type": "HOSTED"}))
        .send()
        .expect_error(422, "applications/Invalid Data");
    admin("GET", &format!("/application/applications/{id}"))
        .send()
        .expect(200);
    admin("DELETE", &format!("/application/applications/{id}"))
        .send()
        .expect(204);
    admin("GET", &format!("/application/applications/{id}"))
        .send()
        .expect_error(404, "applications/Not Found");
    admin("GET", "/application/applications/not-a-number")
        .send()
        .expect_error(404, "applications/Not Found");
}

/// Without a tenant filter a listing shows what the caller's tenant may use, as Cumulocity:
/// c8y-api's `applications.select(name=…)` from a subtenant finds the management tenant's
/// MARKET application, and the `microservice` script's `applicationsByName[0]` is the
/// caller's own when it has one. Another tenant's PRIVATE application never shows.
#[test]
fn listings_without_a_tenant_filter_show_what_the_tenant_may_use() {
    let server = Server::start();
    let (mgmt, t, u) = (
        management(),
        create_tenant(&server, "usable"),
        create_tenant(&server, "sibling"),
    );
    let create = |who: &crate::fixture::Tenant, name: &str, key: &str, availability: &str| {
        server
            .req("POST", "/application/applications")
            .basic(&who.admin_login, &who.admin_password)
            .json(&json!({"name": name, "key": key, "type": "MICROSERVICE", "availability": availability}))
            .send()
            .expect(201)
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let market = create(&mgmt, "shop", "shop-mgmt-key", "MARKET");
    let hidden = create(&mgmt, "hidden", "hidden-key", "PRIVATE");
    let shared = create(&mgmt, "parent-shared", "parent-shared-key", "SHARED");
    let sibling_market = create(&u, "u-market", "u-market-key", "MARKET");
    let sibling_shared = create(&u, "u-shared", "u-shared-key", "SHARED");
    let as_t = |p: &str| {
        server
            .req("GET", p)
            .basic(&t.admin_login, &t.admin_password)
            .send()
            .expect(200)
            .json()
    };
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["applications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // What c8y-api's and pyc8y's select(name=…) send.
    let found = as_t("/application/applications?name=shop&pageSize=5&currentPage=1");
    assert_eq!(ids(&found), [market.as_str()]);
    assert_eq!(
        found["applications"][0]["owner"]["tenant"]["id"],
        "management"
    );
    assert!(ids(&as_t("/application/applicationsByName/hidden")).is_empty());
    assert!(ids(&as_t("/application/applications?name=hidden")).is_empty());

    // Its own application of the same name comes first (created later, so a higher id).
    let own = create(&t, "shop", "shop-t-key", "PRIVATE");
    assert_eq!(
        ids(&as_t("/application/applicationsByName/shop")),
        [own.clone(), market.clone()]
    );
    let all = as_t("/application/applications?pageSize=100");
    assert_eq!(
        ids(&all),
        [own.clone(), market.clone(), shared, sibling_market]
    );
    assert!(!ids(&all).contains(&hidden) && !ids(&all).contains(&sibling_shared));
    // Paged alike: one a page, owned first.
    let first = as_t("/application/applications?pageSize=1&withTotalElements=true");
    assert_eq!(ids(&first), [own.as_str()]);
    assert_eq!(first["statistics"]["totalElements"], 4);
    assert_eq!(
        ids(&as_t("/application/applications?pageSize=1&currentPage=2")),
        [market]
    );
    // `owner` still means owned only.
    assert_eq!(
        ids(&as_t(&format!(
            "/application/applications?pageSize=100&owner={}",
            t.id
        ))),
        [own]
    );
}

#[test]
fn microservices_get_a_bootstrap_user() {
    let server = Server::start();
    let t = create_tenant(&server, "boot");
    let admin = |m: &str, p: &str| server.req(m, p).basic(&t.admin_login, &t.admin_password);
    let app = admin("POST", "/application/applications")
        .json(&json!({"name": "booted", "key": "booted-key", "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json();
    let id = app["id"].as_str().unwrap();
    let user = admin(
        "GET",
        &format!("/application/applications/{id}/bootstrapUser"),
    )
    .send()
    .expect(200)
    .json();
    assert_eq!(user["tenant"], t.id.as_str());
    assert_eq!(user["name"], "servicebootstrap_booted");
    let password = user["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 16);

    // The bootstrap user can authenticate, sees its application, and nothing else.
    let login = format!("{}/servicebootstrap_booted", t.id);
    let current = server
        .req("GET", "/application/currentApplication")
        .basic(&login, &password)
        .send()
        .expect(200)
        .json();
    assert_eq!(current["id"], id);
    server
        .req("GET", "/user/currentUser")
        .basic(&login, &password)
        .send()
        .expect(200);
    server
        .req("GET", "/application/applications")
        .basic(&login, &password)
        .send()
        .expect(403);
    admin("GET", "/application/currentApplication")
        .send()
        .expect(403);
    // The contract's deprecated self-update is not offered: a microservice's code cannot change
    // its own application (405 naming who can), and other users are refused as for GET.
    let refused = server
        .req("PUT", "/application/currentApplication")
        .basic(&login, &password)
        .json(&json!({"availability": "MARKET", "contextPath": "elsewhere"}))
        .send()
        .expect_error(405, "applications/Method Not Allowed");
    assert_eq!(refused.header("allow"), Some("GET"));
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains(&format!("PUT /application/applications/{id}")),
        "{}",
        refused.body
    );
    admin("PUT", "/application/currentApplication")
        .json(&json!({"availability": "MARKET"}))
        .send()
        .expect_error(403, "security/Forbidden");
    assert_eq!(
        admin("GET", &format!("/application/applications/{id}"))
            .send()
            .expect(200)
            .json()["availability"],
        "PRIVATE"
    );
    // It is not listed among the tenant's users.
    let users = admin("GET", &format!("/user/{}/users?pageSize=100", t.id))
        .send()
        .expect(200)
        .json();
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["userName"] != "servicebootstrap_booted")
    );

    let hosted = admin("POST", "/application/applications")
        .json(&json!({"name": "web", "key": "web-key", "type": "HOSTED"}))
        .send()
        .expect(201)
        .json();
    admin(
        "GET",
        &format!(
            "/application/applications/{}/bootstrapUser",
            hosted["id"].as_str().unwrap()
        ),
    )
    .send()
    .expect_error(400, "applications/Bad Request");

    // Deleting the application removes its bootstrap user.
    admin("DELETE", &format!("/application/applications/{id}"))
        .send()
        .expect(204);
    server
        .req("GET", "/user/currentUser")
        .basic(&login, &password)
        .send()
        .expect(401);
}

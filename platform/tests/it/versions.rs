//! The application versions API against real Docker: list, tag, activate an older version (its
//! container replaces the running one and the proxy serves it), delete a version that does not
//! run, and the refusals (the active version, bad tag characters, another tenant).

use std::time::Duration;

use serde_json::{Value, json};

use crate::fixture::{Server, Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, instances, manifest, readiness_on_health, start_server, status, subscribe,
    wait_for, wait_ready,
};
use crate::upload::{multipart, zip_of};

const DEADLINE: Duration = Duration::from_secs(60);

fn versions(server: &Server, owner: &Tenant, app: &str) -> Value {
    server
        .req(
            "GET",
            &format!("/application/applications/{app}/versions?pageSize=100"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()
}

/// `version → tags` of the listing.
fn tags_by_version(listing: &Value) -> Vec<(String, Vec<String>)> {
    listing["applicationVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let tags = v["tag"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect();
            (v["version"].as_str().unwrap().to_owned(), tags)
        })
        .collect()
}

fn with(manifest: &str, version: &str, memory: &str) -> String {
    let mut m: Value = serde_json::from_str(manifest).unwrap();
    m["version"] = json!(version);
    m["resources"]["memory"] = json!(memory);
    m.to_string()
}

fn upload(server: &Server, owner: &Tenant, app: &str, archive: &[u8], manifest: &str) {
    let zip = zip_of(&[
        ("cumulocity.json", manifest.as_bytes()),
        ("image.tar", archive),
    ]);
    let (content_type, body) = multipart("file", &zip);
    server
        .req("POST", &format!("/application/applications/{app}/binaries"))
        .basic(&owner.admin_login, &owner.admin_password)
        .raw(&content_type, body)
        .send()
        .expect(201);
}

fn image_exists(reference: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The environment the running service sees, through the proxy.
fn service_env(server: &Server, owner: &Tenant, name: &str) -> Option<Value> {
    let resp = server
        .req("GET", &format!("/service/{name}/env"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send();
    (resp.status == 200).then(|| resp.json())
}

#[test]
fn older_versions_can_be_activated_tagged_and_deleted() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "vowner");
    let other = create_tenant(&server, "vother");
    let base = manifest("MULTI_TENANT", 1, readiness_on_health());
    let v1 = with(&base, "1.0.0", "64M");
    let app = deploy(&server, &owner, &image.0, &v1);
    subscribe(&server, &owner.id, &app).expect(201);
    let first = wait_ready(&server, &owner, &app, 1);
    let first_instance = instances(&first)[0]["name"].clone();
    let name = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let env_v1 = wait_for(DEADLINE, "1.0.0 served", || {
        service_env(&server, &owner, &name)
    });

    // A second version with another memory limit (which the service sees) becomes active.
    upload(
        &server,
        &owner,
        &app,
        &image.0.archive,
        &with(&base, "2.0.0", "96M"),
    );
    let env_v2 = wait_for(DEADLINE, "2.0.0 served", || {
        let s = status(&server, &owner, &app);
        let all = instances(&s);
        let moved = all.len() == 1 && all[0]["version"] == "2.0.0" && all[0]["ready"] == true;
        if !moved {
            return None;
        }
        service_env(&server, &owner, &name).filter(|e| e["MEMORY_LIMIT"] != env_v1["MEMORY_LIMIT"])
    });
    assert_ne!(env_v1["MEMORY_LIMIT"], env_v2["MEMORY_LIMIT"]);

    // Listed newest first; `latest` marks the active version.
    let listing = versions(&server, &owner, &app);
    assert_eq!(
        tags_by_version(&listing),
        vec![
            ("2.0.0".to_owned(), vec!["latest".to_owned()]),
            ("1.0.0".to_owned(), vec![]),
        ],
        "{listing}"
    );
    let one = server
        .req(
            "GET",
            &format!("/application/applications/{app}/versions?tag=latest"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(one["version"], "2.0.0", "{one}");
    assert!(
        one["binaryId"].as_str().is_some_and(|b| !b.is_empty()),
        "{one}"
    );

    // Tags: bad characters are refused, good ones kept.
    let put_tags = |version: &str, tags: Value| {
        server
            .req(
                "PUT",
                &format!("/application/applications/{app}/versions/{version}"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .json(&json!({"tags": tags}))
            .send()
    };
    put_tags("1.0.0", json!(["good one"])).expect_error(422, "applications/Invalid Data");
    put_tags("1.0.0", json!(["a/b"])).expect(422);
    put_tags("1.0.0", json!(["known-good", "v1+b.7"])).expect(200);
    put_tags("9.9.9", json!(["x"])).expect(404);
    // The active version keeps `latest` until another version takes it.
    put_tags("2.0.0", json!(["candidate"])).expect(409);

    // Deleting the active version (by version or by the latest tag) is refused.
    let delete = |query: &str| {
        server
            .req(
                "DELETE",
                &format!("/application/applications/{app}/versions?{query}"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
    };
    delete("version=2.0.0").expect(409);
    delete("tag=latest").expect(409);
    // Another tenant sees none of it.
    server
        .req("GET", &format!("/application/applications/{app}/versions"))
        .basic(&other.admin_login, &other.admin_password)
        .send()
        .expect(404);
    server
        .req(
            "PUT",
            &format!("/application/applications/{app}/versions/1.0.0"),
        )
        .basic(&other.admin_login, &other.admin_password)
        .json(&json!({"tags": ["latest"]}))
        .send()
        .expect(404);

    // Rollback: giving `latest` to 1.0.0 activates it; its container replaces 2.0.0's and the
    // proxy serves it again.
    let activated = put_tags("1.0.0", json!(["latest", "known-good"]))
        .expect(200)
        .json();
    assert_eq!(
        activated["tag"],
        json!(["latest", "known-good"]),
        "{activated}"
    );
    let rolled = wait_for(DEADLINE, "1.0.0 serving again", || {
        let s = status(&server, &owner, &app);
        let all = instances(&s);
        let back = s["activeVersion"] == "1.0.0"
            && all.len() == 1
            && all[0]["version"] == "1.0.0"
            && all[0]["ready"] == true;
        back.then_some(s)
    });
    let instance = instances(&rolled)[0]["name"].clone();
    assert_ne!(instance, first_instance, "a new container runs 1.0.0");
    let served = wait_for(DEADLINE, "the proxy serving 1.0.0", || {
        service_env(&server, &owner, &name).filter(|e| e["MEMORY_LIMIT"] == env_v1["MEMORY_LIMIT"])
    });
    assert_eq!(served["MEMORY_LIMIT"], env_v1["MEMORY_LIMIT"]);
    let app_json = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(app_json["activeVersionId"], "1.0.0", "{app_json}");
    assert_eq!(app_json["manifest"]["version"], "1.0.0", "{app_json}");

    // The activation is in the owner's audit log.
    let audit = server
        .req(
            "GET",
            &format!("/audit/auditRecords?application={app}&type=Application&pageSize=100"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    let record = audit["auditRecords"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["activity"] == "Version activated")
        .cloned()
        .unwrap_or_else(|| panic!("no activation record: {audit}"));
    assert!(
        record["text"]
            .as_str()
            .unwrap_or_default()
            .contains("1.0.0"),
        "{record}"
    );

    // 2.0.0 no longer runs once 1.0.0 is stable: it can be deleted, with its image tag.
    let tag_of = |version: &str| {
        format!(
            "berth/{}/{}-{app}:{version}",
            server.installation(),
            owner.id.to_ascii_lowercase()
        )
    };
    assert!(image_exists(&tag_of("2.0.0")));
    wait_for(DEADLINE, "2.0.0 deletable", || {
        let resp = delete("version=2.0.0");
        (resp.status == 204).then_some(())
    });
    assert_eq!(
        tags_by_version(&versions(&server, &owner, &app)),
        vec![(
            "1.0.0".to_owned(),
            vec!["latest".to_owned(), "known-good".to_owned()]
        )]
    );
    assert!(!image_exists(&tag_of("2.0.0")));
    delete("version=2.0.0").expect(404);
}

/// `hasVersions` keeps the applications with an uploaded version (`true`) or without one
/// (`false`), in every listing scope; anything but a boolean is a 422.
#[test]
fn listings_filter_by_having_versions() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "hasver");
    let uploaded = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    let empty = crate::upload::create_microservice(&server, &owner)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids = |query: &str| -> Vec<String> {
        server
            .req("GET", &format!("/application/applications?{query}"))
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json()["applications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .filter(|id| [&uploaded, &empty].contains(&id))
            .collect()
    };
    let scope = format!("owner={}", owner.id);
    let (with, without) = (vec![uploaded.clone()], vec![empty.clone()]);
    assert_eq!(ids(&format!("{scope}&hasVersions=true")), with);
    assert_eq!(ids(&format!("{scope}&hasVersions=false")), without);
    assert_eq!(ids(&scope), [uploaded.clone(), empty.clone()]);
    let provided = format!("providedFor={}&hasVersions=true", owner.id);
    assert_eq!(ids(&provided), with);
    server
        .req("GET", "/application/applications?hasVersions=maybe")
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect_error(422, "applications/Invalid Data");
}

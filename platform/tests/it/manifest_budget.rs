//! One tenant's applications show at most 4 MiB of stored manifests: every application listing
//! and `/tenant/currentTenant` read, parse and send the active manifest of each application
//! they show, and a manifest may be 1 MiB, so without the budget 1,000 applications made each
//! such call cost a gigabyte. Uploads and activations past it are refused with 422.

use serde_json::{Value, json};

use crate::fixture::{Server, Tenant, create_tenant};
use crate::upload::{
    TestImage, berth_ref, create_microservice, image_id, upload as upload_package, zip_of,
};

/// The budget, in bytes (`apps::manifest_budget::MAX_SHOWN_BYTES`).
const BUDGET: usize = 4 << 20;
/// A manifest this large fits the 1 MiB package limit; four fit the budget, five do not.
const BIG: usize = 1_000_000;

/// A manifest of `version`, `padding` bytes longer than a small one (an unknown top-level
/// key, which Berth keeps and shows).
fn manifest(version: &str, padding: usize) -> String {
    json!({
        "apiVersion": "2",
        "version": version,
        "provider": {"name": "Berth tests"},
        "isolation": "MULTI_TENANT",
        "x-padding": "p".repeat(padding),
    })
    .to_string()
}

fn upload(
    server: &Server,
    t: &Tenant,
    id: &str,
    image: &TestImage,
    manifest: &str,
) -> crate::fixture::Resp {
    let zip = zip_of(&[
        ("cumulocity.json", manifest.as_bytes()),
        ("image.tar", &image.archive),
    ]);
    upload_package(server, t, id, "file", &zip)
}

fn listing(server: &Server, t: &Tenant, path: &str) -> Value {
    server
        .req("GET", path)
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect(200)
        .json()
}

/// Bytes of the manifests in `items` (application representations), as sent.
fn manifest_bytes<'a>(items: impl Iterator<Item = &'a Value>) -> usize {
    items.map(|a| a["manifest"].to_string().len()).sum()
}

#[test]
fn a_tenants_applications_show_at_most_4_mib_of_manifests() {
    let server = Server::start();
    let t = create_tenant(&server, "mfb");
    let image = TestImage::build(0);
    let apps: Vec<String> = (0..5)
        .map(|_| {
            create_microservice(&server, &t)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for id in &apps[..4] {
        upload(&server, &t, id, &image, &manifest("1.0.0", BIG)).expect(201);
    }
    // The fifth would take the tenant past the budget: refused before its image loads.
    let refused = upload(&server, &t, &apps[4], &image, &manifest("1.0.0", BIG))
        .expect_error(422, "applications/Invalid Data")
        .json();
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{BUDGET} bytes")) && message.contains("delete applications"),
        "{message}"
    );
    assert!(image_id(&berth_ref(&server, &t, &apps[4], "1.0.0")).is_none());

    // A manifest of the usual size still fits, and listings show every manifest as before.
    upload(&server, &t, &apps[4], &image, &manifest("1.0.0", 0)).expect(201);
    let page = listing(&server, &t, "/application/applications?pageSize=2000");
    let items = page["applications"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|a| a["manifest"]["version"] == "1.0.0"));
    let shown = manifest_bytes(items.iter());
    assert!(shown > 4 * BIG && shown <= BUDGET, "{shown}");
    let current = listing(&server, &t, "/tenant/currentTenant");
    let owned = current["ownedApplications"]["references"]
        .as_array()
        .unwrap();
    assert_eq!(
        manifest_bytes(owned.iter().map(|r| &r["application"])),
        shown
    );

    // Room one application gives back (a smaller version) another may take; activating the
    // larger version again would then take the tenant past the budget: refused, nothing changed.
    upload(&server, &t, &apps[0], &image, &manifest("2.0.0", 0)).expect(201);
    upload(&server, &t, &apps[4], &image, &manifest("2.0.0", BIG)).expect(201);
    let activate = |id: &str, version: &str| {
        server
            .req(
                "PUT",
                &format!("/application/applications/{id}/versions/{version}"),
            )
            .basic(&t.admin_login, &t.admin_password)
            .json(&json!({"tags": ["latest"]}))
            .send()
    };
    let refused = activate(&apps[0], "1.0.0")
        .expect_error(422, "applications/Invalid Data")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{BUDGET} bytes")),
        "{refused}"
    );
    let first = listing(
        &server,
        &t,
        &format!("/application/applications/{}", apps[0]),
    );
    assert_eq!(first["activeVersionId"], "2.0.0");
    // Once the room is back, the same activation goes through.
    activate(&apps[4], "1.0.0").expect(200);
    activate(&apps[0], "1.0.0").expect(200);
}

//! The storage quota charges an image what Docker unpacks it to: a gzip layer of a few KiB in
//! `image.tar` can take megabytes on Docker's disk, and a tenant could keep many such versions.
//! Versions kept by a Berth from before that count are counted again after start.

use std::time::{Duration, Instant};

use package_rules::test_support::{gzip, read, rewrite};
use serde_json::Value;

use crate::fixture::{Options, Server, Tenant, create_tenant, files_under};
use crate::upload::{
    TestImage, berth_ref, create_microservice, image_id, manifest, upload, zip_of,
};

const QUOTA: u64 = 2 << 20;

/// The `docker save` archive with every layer `manifest.json` names gzipped (Docker
/// decompresses it while loading: the image and its id are the same).
fn gzip_layers(archive: &[u8]) -> Vec<u8> {
    let (_, _, manifest) = read(archive)
        .into_iter()
        .find(|(name, ..)| name == "manifest.json")
        .expect("manifest.json");
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    rewrite(archive, |name, data| {
        Some(
            if layers.iter().any(|l| l.as_str() == Some(name.as_str())) {
                gzip(&data)
            } else {
                data
            },
        )
    })
}

fn storage_size(server: &Server, tenant: &Tenant) -> u64 {
    server
        .req("GET", "/tenant/statistics/summary")
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()["storageSize"]
        .as_u64()
        .unwrap()
}

fn versions(server: &Server, tenant: &Tenant, app: &str) -> Vec<String> {
    let listing = server
        .req("GET", &format!("/application/applications/{app}/versions"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json();
    listing["applicationVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_gzip_layer_costs_the_quota_what_docker_unpacks_it_to() {
    let server = Server::start_with(Options {
        extra_args: vec!["--tenant-storage-quota".into(), QUOTA.to_string()],
        ..Options::default()
    });
    let t = create_tenant(&server, "gzq");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let earlier = TestImage::build(0);
    let package = |version: &str, archive: &[u8]| {
        zip_of(&[
            ("cumulocity.json", manifest(version).as_bytes()),
            ("image.tar", archive),
        ])
    };
    upload(&server, &t, id, "file", &package("1.0.0", &earlier.archive)).expect(201);
    let used = storage_size(&server, &t);

    // 16 MiB of zeros in one layer: a few KiB gzipped, eight times the quota in Docker.
    let bomb = TestImage::with_padding(&vec![0; 16 << 20]);
    let archive = gzip_layers(&bomb.archive);
    assert!(archive.len() < 200 << 10, "{}", archive.len());
    let streamed = package("2.0.0", &archive);
    // image.tar first: read whole once received, not while it arrives.
    let whole = zip_of(&[
        ("image.tar", &archive),
        ("cumulocity.json", manifest("2.0.0").as_bytes()),
    ]);
    for (case, zip) in [("streamed", streamed), ("read whole", whole)] {
        assert!(used + zip.len() as u64 + archive.len() as u64 + 1024 < QUOTA);
        let files_before = files_under(&server.path("packages"));
        let body = upload(&server, &t, id, "file", &zip)
            .expect_error(413, "applications/Payload Too Large")
            .json();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("storage quota of {QUOTA} bytes")),
            "{case}: {message}"
        );
        // Nothing left behind, and the earlier version as it was.
        assert_eq!(
            files_under(&server.path("packages")),
            files_before,
            "{case}"
        );
        assert_eq!(image_id(&bomb.id), None, "{case}: the image was loaded");
        assert_eq!(
            image_id(&berth_ref(&server, &t, id, "2.0.0")),
            None,
            "{case}"
        );
        assert_eq!(versions(&server, &t, id), ["1.0.0"], "{case}");
        assert_eq!(
            image_id(&berth_ref(&server, &t, id, "1.0.0")).as_deref(),
            Some(earlier.id.as_str()),
            "{case}"
        );
        assert_eq!(storage_size(&server, &t), used, "{case}");
    }

    // One that fits is kept and charged what it unpacks to, not what its zip holds.
    let fits = TestImage::with_padding(&vec![0; 1 << 20]);
    let zip = package("3.0.0", &gzip_layers(&fits.archive));
    assert!(zip.len() < 100 << 10, "{}", zip.len());
    upload(&server, &t, id, "file", &zip).expect(201);
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, "3.0.0")).as_deref(),
        Some(fits.id.as_str())
    );
    let charged = storage_size(&server, &t) - used;
    assert!(charged > 1 << 20, "{charged}");
}

/// A Berth from before the count recorded a version at `image.tar`'s size, or recorded no cost
/// at all (measured from its package without its gzip layers): after a restart both are counted
/// again in the background, and the tenant's usage rises to what their uploads cost today.
#[test]
fn versions_kept_before_the_count_are_counted_after_start() {
    let server = Server::start();
    let t = create_tenant(&server, "gzr");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    // 1 MiB and 1.5 MiB of zeros in one gzip layer each: a few KiB in their image.tar.
    let first = TestImage::with_padding(&vec![0; 1 << 20]);
    let second = TestImage::with_padding(&vec![0; 3 << 19]);
    let mut packages = Vec::new();
    for (version, image) in [("1.0.0", &first), ("2.0.0", &second)] {
        let archive = gzip_layers(&image.archive);
        let zip = zip_of(&[
            ("cumulocity.json", manifest(version).as_bytes()),
            ("image.tar", &archive),
        ]);
        upload(&server, &t, id, "file", &zip).expect(201);
        // What the earlier Berth recorded: the zip, image.tar at its size, the manifest.
        let old = zip.len() + archive.len() + manifest(version).len();
        packages.push((version, old as i64));
    }
    let counted = storage_size(&server, &t);
    let (old_first, old_second) = (packages[0].1 as u64, packages[1].1 as u64);
    assert!(
        counted > (5 << 19) && old_first + old_second < 200 << 10,
        "{counted}, {old_first} + {old_second}"
    );

    // The rows as the earlier Berth left them: 1.0.0 at the old measure, 2.0.0 with none.
    let mut server = server;
    server.stop();
    let conn = rusqlite::Connection::open(server.path(berth::DATABASE_FILE)).unwrap();
    for (version, old) in &packages {
        let stored = (*version == "1.0.0").then_some(*old);
        let changed = conn
            .execute(
                "UPDATE application_versions SET stored_bytes = ?1, cost_counted = 0 WHERE version = ?2
                 AND application_id = ?3",
                rusqlite::params![stored, version, id.parse::<i64>().unwrap()],
            )
            .unwrap();
        assert_eq!(changed, 1, "{version}");
    }
    drop(conn);

    let server = server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let used = storage_size(&server, &t);
        if used == counted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the usage stayed at {used}, not the counted {counted}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both are marked counted, so the next start does not count them again.
    let conn = rusqlite::Connection::open(server.path(berth::DATABASE_FILE)).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM application_versions WHERE cost_counted = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

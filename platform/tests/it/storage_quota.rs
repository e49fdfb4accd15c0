//! The storage quota charges an image what Docker unpacks it to: a gzip layer of a few KiB in
//! `image.tar` can take megabytes on Docker's disk, and a tenant could keep many such versions.

use std::io::{Read, Write};

use serde_json::Value;

use crate::fixture::{Options, Server, Tenant, create_tenant, files_under};
use crate::upload::{
    TestImage, berth_ref, create_microservice, image_id, manifest, upload, zip_of,
};

const QUOTA: u64 = 2 << 20;

/// The `docker save` archive with every layer `manifest.json` names gzipped (Docker
/// decompresses it while loading: the image and its id are the same).
fn gzip_layers(archive: &[u8]) -> Vec<u8> {
    let entries: Vec<(tar::Header, String, Vec<u8>)> = tar::Archive::new(archive)
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (entry.header().clone(), name, data)
        })
        .collect();
    let (_, _, manifest) = entries
        .iter()
        .find(|(_, name, _)| name == "manifest.json")
        .expect("manifest.json");
    let manifest: Value = serde_json::from_slice(manifest).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let mut output = tar::Builder::new(Vec::new());
    for (mut header, name, data) in entries {
        let data = if layers.iter().any(|l| l.as_str() == Some(name.as_str())) {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&data).unwrap();
            encoder.finish().unwrap()
        } else {
            data
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        output.append(&header, data.as_slice()).unwrap();
    }
    output.into_inner().unwrap()
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

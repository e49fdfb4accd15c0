//! Image archives `berth-pack validate` and the platform once judged apart (its
//! `packager/tests/it/platform_agreement.rs` holds the same cases offline): on upload each gets
//! the verdict `berth-pack` gives, and what is accepted loads as Docker's loader finds it.

use std::io::Read;
use std::process::Command;

use package_rules::test_support::{self, Entry, archive, config_name, file, hard_link, symlink};
use serde_json::Value;

use crate::fixture::{Server, create_tenant, files_under};
use crate::upload::{
    TestImage, berth_ref, create_microservice, image_id, manifest, upload, zip_of,
};

/// The files of a `docker save` archive as (name, data) (its directories left out: the tar
/// crate makes none necessary), and the config's name `manifest.json` gives.
fn files_of(archive: &[u8]) -> (Vec<(String, Vec<u8>)>, String) {
    let mut files = Vec::new();
    let mut config = None;
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == "manifest.json" {
            let manifest: Value = serde_json::from_slice(&data).unwrap();
            config = manifest[0]["Config"].as_str().map(str::to_owned);
        }
        files.push((name, data));
    }
    (files, config.expect("a manifest.json naming a config"))
}

/// `files` with the config moved to `config_at` (its data replaced by `data` when given),
/// `manifest.json` naming `named`, `extra` entries before it and `drop_manifest` leaving it out.
struct Variant<'a> {
    config_at: &'a str,
    data: Option<Vec<u8>>,
    named: &'a str,
    extra: Vec<Entry>,
    drop_manifest: bool,
}

fn variant(files: &[(String, Vec<u8>)], config: &str, v: Variant<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut manifest = None;
    for (name, data) in files {
        if name == config {
            out.push(file(v.config_at, v.data.as_ref().unwrap_or(data)));
        } else if name == "manifest.json" {
            let mut parsed: Value = serde_json::from_slice(data).unwrap();
            parsed[0]["Config"] = v.named.into();
            manifest = Some(file(name, parsed.to_string()));
        } else {
            out.push(file(name, data));
        }
    }
    out.extend(v.extra);
    if !v.drop_manifest {
        out.extend(manifest);
    }
    archive(&out)
}

/// The config with a label of `bytes` bytes added.
fn with_label(config: &[u8], bytes: usize) -> Vec<u8> {
    let mut parsed: Value = serde_json::from_slice(config).unwrap();
    parsed["config"]["Labels"]["notes"] = "x".repeat(bytes).into();
    serde_json::to_vec(&parsed).unwrap()
}

/// Removes an image the test made by id.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn offline_verdicts_hold_online() {
    let server = Server::start();
    let t = create_tenant(&server, "agree");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let image = TestImage::build(0);
    let (files, config) = files_of(&image.archive);
    let original = files
        .iter()
        .find_map(|(name, data)| (*name == config).then(|| data.clone()))
        .unwrap();
    let large = with_label(&original, 2 << 20);
    let large_id = test_support::image_id(&large);
    // Named by their digests, as `docker save` names configs.
    let large_name = config_name(&large);
    let _large_image = RemoveImage(large_id.clone());
    let too_large = with_label(&original, 5 << 20);
    let too_large_name = config_name(&too_large);
    let plain = || Variant {
        config_at: &config,
        data: None,
        named: &config,
        extra: vec![],
        drop_manifest: false,
    };
    let blob = "blobs/sha256/config";
    // (case, archive, version, status, the id loaded or what the message says)
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "an OCI layout without manifest.json",
            variant(
                &files,
                &config,
                Variant {
                    extra: vec![
                        file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                        file("index.json", br#"{"manifests":[]}"#),
                    ],
                    drop_manifest: true,
                    ..plain()
                },
            ),
            "1.0.1",
            422,
            "skopeo copy oci-archive:",
        ),
        (
            "jib's config.json",
            variant(
                &files,
                &config,
                Variant {
                    config_at: "config.json",
                    named: "config.json",
                    ..plain()
                },
            ),
            "1.0.2",
            201,
            &image.id,
        ),
        (
            "a config through a symlink",
            variant(
                &files,
                &config,
                Variant {
                    config_at: blob,
                    named: "c.json",
                    extra: vec![symlink("c.json", blob)],
                    ..plain()
                },
            ),
            "1.0.3",
            201,
            &image.id,
        ),
        (
            "a config through a hard link",
            variant(
                &files,
                &config,
                Variant {
                    config_at: blob,
                    named: "c.json",
                    extra: vec![hard_link("c.json", blob)],
                    ..plain()
                },
            ),
            "1.0.4",
            201,
            &image.id,
        ),
        (
            "a 2 MiB config",
            variant(
                &files,
                &config,
                Variant {
                    data: Some(large.clone()),
                    config_at: &large_name,
                    named: &large_name,
                    ..plain()
                },
            ),
            "1.0.5",
            201,
            &large_id,
        ),
        (
            "a 5 MiB config",
            variant(
                &files,
                &config,
                Variant {
                    data: Some(too_large),
                    config_at: &too_large_name,
                    named: &too_large_name,
                    ..plain()
                },
            ),
            "1.0.6",
            422,
            "more than the 4 MiB a config may take",
        ),
    ];
    // Every row is run, and every wrong verdict reported.
    let mut wrong = Vec::new();
    for (case, archive, version, status, expected) in cases {
        let packages_before = files_under(&server.path("packages"));
        let zip = zip_of(&[
            ("cumulocity.json", manifest(version).as_bytes()),
            ("image.tar", &archive),
        ]);
        let resp = upload(&server, &t, id, "file", &zip);
        let loaded = image_id(&berth_ref(&server, &t, id, version));
        if resp.status != status {
            wrong.push(format!(
                "{case}: {}, not {status}: {}",
                resp.status, resp.body
            ));
        } else if status == 201 {
            if loaded.as_deref() != Some(expected) {
                wrong.push(format!("{case}: loaded {loaded:?}, not {expected}"));
            }
        } else {
            let body = resp
                .expect_error(status, "applications/Invalid Data")
                .json();
            let message = body["message"].as_str().unwrap();
            if !message.contains(expected) {
                wrong.push(format!("{case}: {message:?} does not say {expected:?}"));
            }
            assert_eq!(loaded, None, "{case}: a Berth tag was left");
            assert_eq!(
                files_under(&server.path("packages")),
                packages_before,
                "{case}: files changed"
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

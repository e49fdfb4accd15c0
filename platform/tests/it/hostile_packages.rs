//! Hostile packages (issue 10, items 1, 3, 9 and 11): image archives that try to tag images Berth
//! did not check, zip bombs, storage beyond the tenant's quota, duplicate or disguised zip
//! entries, and versions too long for a Docker tag. Each is refused with the Cumulocity error
//! body, leaves nothing behind, and the server keeps serving.

use std::process::Command;

use package_rules::test_support::{
    Entry, ZstdImage, file, gzip, long_name_header, raw_entry, read, rewrite, symlink, zstd_package,
};
use serde_json::{Value, json};

use crate::fixture::{Options, Server, Tenant, create_tenant, files_under, unique};
use crate::upload::{
    TestImage, berth_ref, create_microservice, image_id, manifest, upload, zip_of,
};

/// `archive` with each entry passed through `edit` (new contents, or None to drop it) and
/// `extra` appended, their names written raw (the tar crate refuses `..`).
fn tampered(
    archive: &[u8],
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    extra: Vec<Entry>,
) -> Vec<u8> {
    let mut output = rewrite(archive, |name, data| edit(name, data));
    // The extra entries go before the archive's end, its two zero blocks.
    let end = output.split_off(output.len() - 1024);
    for entry in &extra {
        output.extend(raw_entry(entry));
    }
    output.extend(end);
    output
}

/// The archive's `manifest.json` with `RepoTags` replaced.
fn manifest_tagged(archive: &[u8], tags: &[&str]) -> Vec<u8> {
    let (_, _, manifest) = read(archive)
        .into_iter()
        .find(|(name, ..)| name == "manifest.json")
        .expect("manifest.json in the archive");
    let mut manifest: Value = serde_json::from_slice(&manifest).unwrap();
    manifest[0]["RepoTags"] = json!(tags);
    manifest.to_string().into_bytes()
}

fn unchanged(_: &str, data: Vec<u8>) -> Option<Vec<u8>> {
    Some(data)
}

fn package_of(version: &str, archive: &[u8]) -> Vec<u8> {
    zip_of(&[
        ("cumulocity.json", manifest(version).as_bytes()),
        ("image.tar", archive),
    ])
}

/// Replaces every occurrence of `from` (a placeholder name) in `zip` by `to`, of equal length:
/// how a zip with names the zip writer refuses (duplicates) is made.
fn renamed(mut zip: Vec<u8>, from: &str, to: &str, only_first: bool) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut at = 0;
    while let Some(found) = zip[at..]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
    {
        let start = at + found;
        zip[start..start + to.len()].copy_from_slice(to.as_bytes());
        at = start + to.len();
        if only_first {
            break;
        }
    }
    assert!(at > 0, "{from} not found");
    zip
}

/// Removes image tags a failed test may have created.
struct RemoveTags(Vec<String>);

impl Drop for RemoveTags {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

fn assert_still_serving(server: &Server, tenant: &Tenant) {
    server
        .req("GET", "/application/applications")
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200);
}

fn usage(server: &Server, tenant: &Tenant) -> Value {
    server
        .req("GET", "/tenant/statistics/summary")
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()
}

#[test]
fn image_archives_cannot_tag_other_images() {
    let server = Server::start();
    let victim = create_tenant(&server, "victim");
    let victim_app = create_microservice(&server, &victim);
    let victim_id = victim_app["id"].as_str().unwrap();
    let victim_image = TestImage::build(0);
    // A context path of its own: it is the application's settings category, which belongs to
    // one application only (issue 10, item 4), and the attacker's packages use hello-ctx.
    let victim_manifest = manifest("1.0.0").replace("hello-ctx", "victim-ctx");
    upload(
        &server,
        &victim,
        victim_id,
        "file",
        &zip_of(&[
            ("cumulocity.json", victim_manifest.as_bytes()),
            ("image.tar", &victim_image.archive),
        ]),
    )
    .expect(201);
    let victim_tag = berth_ref(&server, &victim, victim_id, "1.0.0");
    assert_eq!(
        image_id(&victim_tag).as_deref(),
        Some(victim_image.id.as_str())
    );
    let foo = format!("berth-it-foo-{}:latest", unique(""));
    let _cleanup = RemoveTags(vec![foo.clone()]);

    let attacker = create_tenant(&server, "attacker");
    let app = create_microservice(&server, &attacker);
    let id = app["id"].as_str().unwrap();
    let image = TestImage::build(0);
    let hostile = manifest_tagged(&image.archive, &[victim_tag.as_str(), foo.as_str()]);
    let second = |name: &str| tampered(&image.archive, unchanged, vec![file(name, &hostile)]);
    // Past a header saying 2 MiB, data going on with a whole manifest.json entry: a reader of
    // the header's size would take it for the archive's next entry.
    let smuggled = {
        let mut data = vec![0u8; 2 << 20];
        data.extend(raw_entry(&file("manifest.json", &hostile)));
        data
    };
    let repositories = json!({victim_tag.rsplit_once(':').unwrap().0: {"1.0.0": image.id.trim_start_matches("sha256:")}, "berth-it-foo": {"latest": image.id.trim_start_matches("sha256:")}})
        .to_string()
        .into_bytes();
    // (case, archive, version, status, what the message names)
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "a second manifest that Docker cleans to manifest.json",
            second("x/../manifest.json"),
            "1.0.1",
            422,
            "x/../manifest.json",
        ),
        (
            "an absolute manifest",
            second("/manifest.json"),
            "1.0.2",
            422,
            "/manifest.json",
        ),
        (
            "manifest.json twice",
            second("manifest.json"),
            "1.0.3",
            422,
            "appears more than once",
        ),
        (
            "./manifest.json after manifest.json",
            second("./manifest.json"),
            "1.0.4",
            422,
            "./manifest.json",
        ),
        (
            "a manifest written through a symlinked directory",
            tampered(
                &image.archive,
                unchanged,
                vec![symlink("d", "."), file("d/manifest.json", &hostile)],
            ),
            "1.0.5",
            422,
            "outside the archive",
        ),
        (
            "a manifest.json smuggled past a header by a larger PAX size",
            tampered(
                &image.archive,
                unchanged,
                vec![
                    file("blob", &smuggled)
                        .header_size(2 << 20)
                        .pax_size(smuggled.len() as u64),
                ],
            ),
            "1.0.8",
            422,
            "PAX size",
        ),
        // Accepted, but Docker never sees the archive's tags.
        (
            "the checked manifest itself names the tags",
            tampered(
                &image.archive,
                |name, data| {
                    Some(if name == "manifest.json" {
                        hostile.clone()
                    } else {
                        data
                    })
                },
                vec![],
            ),
            "1.0.6",
            201,
            "",
        ),
        (
            "a repositories file naming them",
            tampered(
                &image.archive,
                |name, data| {
                    Some(if name == "repositories" {
                        repositories.clone()
                    } else {
                        data
                    })
                },
                vec![],
            ),
            "1.0.7",
            201,
            "",
        ),
    ];
    for (case, archive, version, status, mentions) in cases {
        let packages_before = files_under(&server.path("packages"));
        let resp = upload(
            &server,
            &attacker,
            id,
            "file",
            &package_of(version, &archive),
        );
        assert_eq!(resp.status, status, "{case}: {}", resp.body);
        assert_eq!(
            image_id(&victim_tag).as_deref(),
            Some(victim_image.id.as_str()),
            "{case}: the victim's tag moved"
        );
        assert_eq!(image_id(&foo), None, "{case}: {foo} was tagged");
        let own = image_id(&berth_ref(&server, &attacker, id, version));
        if status == 201 {
            assert_eq!(own.as_deref(), Some(image.id.as_str()), "{case}");
        } else {
            let body = resp
                .expect_error(status, "applications/Invalid Data")
                .json();
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(mentions), "{case}: {message}");
            assert_eq!(own, None, "{case}: a Berth tag was left");
            assert_eq!(
                files_under(&server.path("packages")),
                packages_before,
                "{case}: files changed"
            );
        }
        assert_still_serving(&server, &attacker);
    }
}

#[test]
fn zip_bombs_and_storage_beyond_the_quota_are_refused() {
    let server = Server::start_with(Options {
        env: vec![
            ("BERTH_IMAGE_SIZE_LIMIT".into(), "1MiB".into()),
            ("BERTH_TENANT_STORAGE_QUOTA".into(), "1MiB".into()),
        ],
        ..Options::default()
    });
    let t = create_tenant(&server, "bomb");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let empty = usage(&server, &t);
    assert_eq!(empty["storageSize"], 0, "{empty}");
    assert_eq!(empty["storageQuota"], 1 << 20, "{empty}");
    assert_eq!(empty["imageSizeLimit"], 1 << 20, "{empty}");

    // About 300 KiB of incompressible layer: one version fits the quota, two do not.
    let kept = TestImage::build(300 * 1024);
    let first = package_of("1.0.0", &kept.archive);
    upload(&server, &t, id, "file", &first).expect(201);
    let used = usage(&server, &t)["storageSize"].as_u64().unwrap();
    assert!(
        used > first.len() as u64 && used < 1 << 20,
        "{used} should count the package and its unpacked image"
    );

    let small = TestImage::build(0);
    // 16 MiB of zeros inflating from a few KiB, next to a valid image.
    let bomb = tampered(
        &small.archive,
        unchanged,
        vec![file("padding", vec![0; 16 << 20])],
    );
    let bomb_zip = package_of("2.0.0", &bomb);
    assert!(bomb_zip.len() < 200 * 1024, "{}", bomb_zip.len());
    let honest_size = package_of("2.0.0", &small.archive);
    // The same bomb with the zip headers claiming the image is small.
    let declared = (small.archive.len() as u32).to_le_bytes();
    let mut lying = bomb_zip.clone();
    let name_at = |zip: &[u8], from: usize| {
        from + zip[from..]
            .windows(9)
            .position(|w| w == b"image.tar")
            .unwrap()
    };
    let local = name_at(&lying, 0);
    let central = name_at(&lying, local + 9);
    lying[local - 30 + 22..local - 30 + 26].copy_from_slice(&declared);
    lying[central - 46 + 24..central - 46 + 28].copy_from_slice(&declared);
    // Its layer replaced: 16 MiB of zeros gzipped to a few KiB, which Docker would decompress;
    // a zstd frame, which nothing here can count.
    let layer_replaced = |layer: Vec<u8>| {
        tampered(
            &small.archive,
            |name, data| {
                Some(if name.ends_with("layer.tar") {
                    layer.clone()
                } else {
                    data
                })
            },
            vec![],
        )
    };
    let layer_bomb = package_of("5.0.0", &layer_replaced(gzip(&vec![0; 16 << 20])));
    assert!(layer_bomb.len() < 100 * 1024, "{}", layer_bomb.len());
    let mut zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd.extend_from_slice(&[0; 64]);
    let zstd_layer = package_of("5.0.1", &layer_replaced(zstd));
    // image.tar as Zstandard (`berth-pack pack --zstd`): a frame asking for a 128 MiB window,
    // and the 16 MiB bomb with headers naming the small image's size.
    let wide = zstd_package(
        manifest("5.0.2").as_bytes(),
        &ZstdImage::of(&small.archive, 27),
    );
    let zstd_lying = zstd_package(
        manifest("5.0.3").as_bytes(),
        &ZstdImage {
            size: small.archive.len() as u32,
            ..ZstdImage::of(&bomb, 21)
        },
    );
    assert!(zstd_lying.len() < 100 * 1024, "{}", zstd_lying.len());
    let other = TestImage::build(300 * 1024);
    let over_quota = package_of("3.0.0", &other.archive);
    // The database keeps each version's manifest as text: 800 KiB of it counts against the
    // quota even though it compresses to a few KiB in the zip.
    let mut wordy: serde_json::Value = serde_json::from_str(&manifest("4.0.0")).unwrap();
    wordy["notes"] = "x".repeat(800 * 1024).into();
    let wordy = zip_of(&[
        ("cumulocity.json", wordy.to_string().as_bytes()),
        ("image.tar", &small.archive),
    ]);
    assert!(wordy.len() < 100 * 1024, "{}", wordy.len());
    let too_large = "applications/Payload Too Large";
    // (case, package, version, status, error, what the message says)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a zip bomb",
            bomb_zip,
            "2.0.0",
            413,
            too_large,
            "more than 1048576 bytes, the image size limit",
        ),
        (
            "a gzip layer that unpacks beyond the limit",
            layer_bomb,
            "5.0.0",
            413,
            too_large,
            "more than 1048576 bytes, the image size limit",
        ),
        (
            "a zstd layer",
            zstd_layer,
            "5.0.1",
            422,
            "applications/Invalid Data",
            "zstd-compressed",
        ),
        (
            "a zstd frame asking for a 128 MiB window",
            wide,
            "5.0.2",
            422,
            "applications/Invalid Data",
            "asks for a window above 16 MiB",
        ),
        (
            "a zstd bomb whose headers lie",
            zstd_lying,
            "5.0.3",
            422,
            "applications/Invalid Data",
            "unpacks to more than its declared size",
        ),
        // The zip reader stops at the declared size and says so.
        (
            "a zip bomb whose headers lie",
            lying,
            "2.0.0",
            422,
            "applications/Invalid Data",
            "larger than its declared uncompressed size",
        ),
        (
            "a second version beyond the quota",
            over_quota,
            "3.0.0",
            413,
            too_large,
            "storage quota of 1048576 bytes",
        ),
        (
            "a manifest beyond the quota that compresses to almost nothing",
            wordy,
            "4.0.0",
            413,
            too_large,
            "storage quota of 1048576 bytes",
        ),
    ];
    for (case, zip, version, status, error, mentions) in cases {
        let files_before = files_under(&server.path("packages"));
        let resp = upload(&server, &t, id, "file", &zip);
        assert_eq!(resp.status, status, "{case}: {}", resp.body);
        let body = resp.expect_error(status, error).json();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{case}: {message}");
        assert_eq!(
            files_under(&server.path("packages")),
            files_before,
            "{case}"
        );
        assert_eq!(
            image_id(&berth_ref(&server, &t, id, version)),
            None,
            "{case}"
        );
        assert_eq!(image_id(&small.id), None, "{case}: the image was loaded");
        assert_eq!(image_id(&other.id), None, "{case}: the image was loaded");
        assert_eq!(usage(&server, &t)["storageSize"], used, "{case}");
        assert_still_serving(&server, &t);
    }
    // Both messages say how to raise the limit.
    let bomb = upload(&server, &t, id, "file", &package_of("2.0.0", &bomb)).body;
    assert!(bomb.contains("BERTH_IMAGE_SIZE_LIMIT"), "{bomb}");
    let quota = upload(
        &server,
        &t,
        id,
        "file",
        &package_of("3.0.0", &other.archive),
    )
    .body;
    assert!(quota.contains("BERTH_TENANT_STORAGE_QUOTA"), "{quota}");
    // A small image still fits next to the kept one.
    upload(&server, &t, id, "file", &honest_size).expect(201);
    // An image whose layer is gzipped (as containerd-backed engines and OCI exports save
    // them) loads: Docker decompresses it, and the image id is the same.
    let gzipped = TestImage::build(0);
    let gzip_layers = tampered(
        &gzipped.archive,
        |name, data| {
            Some(if name.ends_with("layer.tar") {
                gzip(&data)
            } else {
                data
            })
        },
        vec![],
    );
    upload(&server, &t, id, "file", &package_of("6.0.0", &gzip_layers)).expect(201);
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, "6.0.0")).as_deref(),
        Some(gzipped.id.as_str())
    );
}

#[test]
fn duplicate_or_disguised_zip_entries_are_refused() {
    let server = Server::start();
    let t = create_tenant(&server, "dup");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let good = TestImage::build(0);
    let other = TestImage::build(0);
    let m = manifest("1.0.0");
    let m2 = manifest("9.9.9");
    let two_images = renamed(
        zip_of(&[
            ("cumulocity.json", m.as_bytes()),
            ("image.tar", &good.archive),
            ("imagX.tar", &other.archive),
        ]),
        "imagX.tar",
        "image.tar",
        false,
    );
    let two_manifests = renamed(
        zip_of(&[
            ("cumulocity.json", m.as_bytes()),
            ("cumulocitX.json", m2.as_bytes()),
            ("image.tar", &good.archive),
        ]),
        "cumulocitX.json",
        "cumulocity.json",
        false,
    );
    // The local header says image.tar, the central directory extra.tar: streaming
    // extractors see two image.tar.
    let local_differs = renamed(
        zip_of(&[
            ("cumulocity.json", m.as_bytes()),
            ("image.tar", &good.archive),
            ("extra.tar", &other.archive),
        ]),
        "extra.tar",
        "image.tar",
        true,
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("two image.tar", two_images, "duplicate"),
        ("two cumulocity.json", two_manifests, "duplicate"),
        ("local and central names differ", local_differs, "disagree"),
        (
            "image.tar and ./image.tar",
            zip_of(&[
                ("cumulocity.json", m.as_bytes()),
                ("image.tar", &good.archive),
                ("./image.tar", &other.archive),
            ]),
            "./image.tar",
        ),
        (
            "image.tar and IMAGE.TAR",
            zip_of(&[
                ("cumulocity.json", m.as_bytes()),
                ("image.tar", &good.archive),
                ("IMAGE.TAR", &other.archive),
            ]),
            "IMAGE.TAR",
        ),
        (
            "only ./image.tar",
            zip_of(&[
                ("cumulocity.json", m.as_bytes()),
                ("./image.tar", &good.archive),
            ]),
            "./image.tar",
        ),
        (
            "image.tar/ as a directory too",
            zip_of(&[
                ("cumulocity.json", m.as_bytes()),
                ("image.tar", &good.archive),
                ("image.tar/x", b"x"),
            ]),
            "image.tar/x",
        ),
    ];
    for (case, zip, mentions) in cases {
        let files_before = files_under(&server.path("packages"));
        let resp = upload(&server, &t, id, "file", &zip);
        assert_eq!(resp.status, 422, "{case}: {}", resp.body);
        let body = resp.expect_error(422, "applications/Invalid Data").json();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{case}: {message}");
        assert_eq!(
            files_under(&server.path("packages")),
            files_before,
            "{case}"
        );
        assert_eq!(image_id(&good.id), None, "{case}");
        assert_eq!(image_id(&other.id), None, "{case}");
        assert_eq!(
            image_id(&berth_ref(&server, &t, id, "1.0.0")),
            None,
            "{case}"
        );
        assert_still_serving(&server, &t);
    }
    upload(&server, &t, id, "file", &package_of("1.0.0", &good.archive)).expect(201);
}

/// Where a zip's central directory starts, from its end record (no comment).
fn central_directory_offset(zip: &[u8]) -> usize {
    let end = zip.len() - 22;
    assert_eq!(zip[end..end + 4], [0x50, 0x4b, 0x05, 0x06], "end record");
    u32::from_le_bytes(zip[end + 16..end + 20].try_into().unwrap()) as usize
}

/// A package is read while it arrives, local headers first. One whose first local entries are
/// another cumulocity.json and image.tar than its central directory names (a second package
/// appended to a first one's entries) never loads the image only the local headers show.
#[test]
fn an_image_only_the_local_headers_show_is_never_loaded() {
    let server = Server::start();
    let t = create_tenant(&server, "smuggle");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let shown = TestImage::build(0);
    let hidden = TestImage::build(0);
    let decoy = package_of("1.0.0", &hidden.archive);
    let mut zip = decoy[..central_directory_offset(&decoy)].to_vec();
    zip.extend_from_slice(&package_of("1.0.0", &shown.archive));
    let resp = upload(&server, &t, id, "file", &zip);
    assert_eq!(image_id(&hidden.id), None, "{}", resp.body);
    let tag = berth_ref(&server, &t, id, "1.0.0");
    let _cleanup = RemoveTags(vec![tag.clone()]);
    match resp.status {
        // Read as its central directory says, as any unzip would.
        201 => assert_eq!(image_id(&tag), Some(shown.id.clone())),
        422 => assert_eq!(image_id(&tag), None),
        other => panic!("{other}: {}", resp.body),
    }
    assert_still_serving(&server, &t);
}

#[test]
fn versions_never_share_a_docker_tag() {
    let server = Server::start();
    let t = create_tenant(&server, "longv");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    // 128 characters each, the longest Docker tag; they differ only in the last one.
    let stem = format!("1.0.0-{}", "a".repeat(121));
    let (a, b) = (format!("{stem}x"), format!("{stem}y"));
    let too_long = format!("{stem}xy");
    let first = TestImage::build(0);
    let second = TestImage::build(0);
    upload(&server, &t, id, "file", &package_of(&a, &first.archive)).expect(201);
    upload(&server, &t, id, "file", &package_of(&b, &second.archive)).expect(201);
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, &a)).as_deref(),
        Some(first.id.as_str())
    );
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, &b)).as_deref(),
        Some(second.id.as_str())
    );
    let third = TestImage::build(0);
    let files_before = files_under(&server.path("packages"));
    let body = upload(
        &server,
        &t,
        id,
        "file",
        &package_of(&too_long, &third.archive),
    )
    .expect_error(422, "applications/Invalid Data")
    .json();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("128") && message.contains("shorter version"),
        "{message}"
    );
    assert_eq!(files_under(&server.path("packages")), files_before);
    assert_eq!(image_id(&third.id), None);
    assert_still_serving(&server, &t);
}

/// An image archive whose first entry is a GNU long name claiming 256 MiB of name, in a zip of
/// about 250 KiB: the tar reader would hold the whole name before looking at the entry it names
/// (a few such uploads at the default 2 GiB image limit exhaust the machine). Refused, nothing
/// kept, the server serving.
#[test]
fn an_image_archives_headers_cannot_take_the_servers_memory() {
    use std::io::Write;
    let server = Server::start();
    let t = create_tenant(&server, "longname");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let claimed: u64 = 256 << 20;
    let options = zip::write::SimpleFileOptions::default();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("cumulocity.json", options).unwrap();
    zip.write_all(manifest("1.0.0").as_bytes()).unwrap();
    zip.start_file("image.tar", options).unwrap();
    zip.write_all(&long_name_header(claimed)).unwrap();
    let name = vec![b'a'; 1 << 20];
    for _ in 0..claimed >> 20 {
        zip.write_all(&name).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    assert!(zip.len() < 1 << 20, "{} bytes", zip.len());

    let files_before = files_under(&server.path("packages"));
    let body = upload(&server, &t, id, "file", &zip)
        .expect_error(422, "applications/Invalid Data")
        .json();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("headers (long names, PAX extensions) take more than 64 KiB"),
        "{message}"
    );
    assert_eq!(files_under(&server.path("packages")), files_before);
    assert_still_serving(&server, &t);
}

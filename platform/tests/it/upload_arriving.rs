//! An upload's image is loaded while the package arrives when the package has the common shape
//! (cumulocity.json, then image.tar, sizes in the local headers) and arrives fast enough;
//! otherwise it is read whole once received, with the same outcome (issue 13, item 4). Against
//! the real engine; the server's log says which path each upload took.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use package_rules::test_support::{ZstdImage, zstd_package};

use crate::fixture::{Options, Server, create_tenant};
use crate::supervisor::wait_for;
use crate::upload::{
    TestImage, berth_ref, create_microservice, image_id, manifest, upload, zip_of, zip_with,
};

/// A zip written to a stream (as Java's `ZipOutputStream` writes): sizes after each entry's data.
fn zip_with_descriptors(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new_stream(Vec::new());
    for (name, data) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Uploads `zip` with curl at `rate` bytes per second; returns the HTTP status.
fn upload_slowly(
    server: &Server,
    login: (&str, &str),
    app_id: &str,
    zip: &[u8],
    rate: &str,
) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), zip).unwrap();
    let output = Command::new("curl")
        .args(["--http1.1", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--limit-rate", rate, "--cacert"])
        .arg(server.path("tls/cert.pem"))
        .arg("-u")
        .arg(format!("{}:{}", login.0, login.1))
        .arg("-F")
        .arg(format!(
            "file=@{};type=application/zip",
            file.path().display()
        ))
        .arg(format!(
            "{}/application/applications/{app_id}/binaries",
            server.https
        ))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `package accepted` log line of `version`.
fn accepted_line(log: &str, version: &str) -> String {
    log.lines()
        .find(|l| l.contains("package accepted") && l.contains(&format!("version={version} ")))
        .unwrap_or_else(|| panic!("no `package accepted` for {version} in:\n{log}"))
        .to_owned()
}

#[test]
fn packages_load_while_they_arrive_or_whole_with_the_same_outcome() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = Server::start_with(Options {
        log_file: Some(log.path().to_owned()),
        env: vec![("BERTH_LOG".into(), "warn,berth::apps=info".into())],
        ..Default::default()
    });
    let t = create_tenant(&server, "arrive");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let login = (t.admin_login.as_str(), t.admin_password.as_str());

    // Several MiB, so the image streams over many of the upload's writes.
    let common = TestImage::build(6 << 20);
    let m = manifest("1.0.0");
    upload(
        &server,
        &t,
        id,
        "file",
        &zip_of(&[
            ("cumulocity.json", m.as_bytes()),
            ("image.tar", &common.archive),
        ]),
    )
    .expect(201);

    let described = TestImage::build(0);
    let m = manifest("2.0.0");
    let zip = zip_with_descriptors(&[
        ("cumulocity.json", m.as_bytes()),
        ("image.tar", &described.archive),
    ]);
    upload(&server, &t, id, "file", &zip).expect(201);

    // About 1 MiB at 128 KiB/s: the load would wait for bytes longer than it may (it may hold
    // the upload lock meanwhile).
    let slow = TestImage::build(1 << 20);
    let m = manifest("3.0.0");
    // Stored (uncompressed), so its size on the wire is known.
    let zip = zip_with(
        &[
            ("cumulocity.json", m.as_bytes()),
            ("image.tar", &slow.archive),
        ],
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    );
    assert_eq!(upload_slowly(&server, login, id, &zip, "128k"), "201");

    // image.tar as Zstandard (`berth-pack pack --zstd`) streams as well.
    let m = manifest("4.0.0");
    let zip = zstd_package(m.as_bytes(), &ZstdImage::of(&common.archive, 21));
    upload(&server, &t, id, "file", &zip).expect(201);

    for (version, image) in [
        ("1.0.0", &common),
        ("2.0.0", &described),
        ("3.0.0", &slow),
        ("4.0.0", &common),
    ] {
        assert_eq!(
            image_id(&berth_ref(&server, &t, id, version)),
            Some(image.id.clone()),
            "{version}"
        );
    }
    // The log is written in batches.
    let text = wait_for(
        Duration::from_secs(30),
        "four accepted uploads in the log",
        || {
            let text = std::fs::read_to_string(log.path()).unwrap();
            (text.matches("package accepted").count() == 4).then_some(text)
        },
    );
    assert!(
        accepted_line(&text, "1.0.0").contains("arriving=true"),
        "{text}"
    );
    assert!(
        accepted_line(&text, "2.0.0").contains("arriving=false"),
        "{text}"
    );
    assert!(
        accepted_line(&text, "3.0.0").contains("arriving=false"),
        "{text}"
    );
    assert!(
        accepted_line(&text, "4.0.0").contains("arriving=true"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("application=") && l.contains("stalled=true")),
        "the slow upload gave up streaming:\n{text}"
    );
    // Nothing of the abandoned load or the temporary files is left.
    assert_eq!(
        crate::fixture::files_under(&server.path("tmp")),
        Vec::<String>::new()
    );
}

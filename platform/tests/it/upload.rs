//! Package upload: real images through Docker, version rules, and failures that leave no trace.

use std::io::{Cursor, Write};
use std::process::Command;

use package_rules::test_support::{archive, file, rewrite};
use serde_json::{Value, json};

use crate::fixture::SETTINGS_VALUES;
use crate::fixture::{
    ADMIN_PASSWORD, MGMT_ADMIN, Options, Server, Tenant, create_tenant, files_under, unique,
};

pub fn docker(args: &[&str]) -> std::process::Output {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed for these tests");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The id of a Docker image reference, or None when the engine does not have it.
pub fn image_id(reference: &str) -> Option<String> {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .expect("docker CLI");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A one-file image built from nothing (`docker import`), saved with `docker save`, then
/// removed from the engine so the upload is what brings it back. Removed again on drop.
pub struct TestImage {
    pub id: String,
    pub archive: Vec<u8>,
}

impl TestImage {
    /// With `padding` bytes of noise in a file of its own (none for 0).
    pub fn build(padding: usize) -> TestImage {
        // Incompressible bytes, so the package really is this large.
        let noise: Vec<u8> = (0..padding)
            .map(|i| (i as u64).wrapping_mul(6364136223846793005).to_be_bytes()[0] ^ (i as u8))
            .collect();
        TestImage::with_padding(&noise)
    }

    /// With `padding` in a file of its own (none when empty).
    pub fn with_padding(padding: &[u8]) -> TestImage {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs.tar");
        let mut files = vec![file("hello.txt", unique("hello-"))];
        if !padding.is_empty() {
            files.push(file("padding.bin", padding));
        }
        std::fs::write(&rootfs, archive(&files)).unwrap();
        let tag = format!("berth-it-{}:v1", unique(""));
        docker(&[
            "import",
            "--change",
            "LABEL berth.test=1",
            rootfs.to_str().unwrap(),
            &tag,
        ]);
        let id = image_id(&tag).expect("imported image");
        let saved = dir.path().join("image.tar");
        docker(&["save", "-o", saved.to_str().unwrap(), &tag]);
        docker(&["rmi", &tag]);
        assert!(
            image_id(&id).is_none(),
            "the test image must be gone before the upload"
        );
        TestImage {
            id,
            archive: std::fs::read(&saved).unwrap(),
        }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.id])
            .output();
    }
}

/// The same `docker save` archive with its layer's bytes replaced: the metadata still names the
/// image, but Docker's digest check fails during the load.
fn corrupt_layer(image: &[u8]) -> Vec<u8> {
    rewrite(image, |name, data| {
        Some(if name.ends_with("layer.tar") {
            archive(&[file("other.txt", b"other")])
        } else {
            data
        })
    })
}

pub fn manifest(version: &str) -> String {
    json!({
        "apiVersion": "2",
        "version": version,
        "provider": {"name": "Berth tests"},
        "isolation": "MULTI_TENANT",
        "contextPath": "hello-ctx",
        "requiredRoles": ["ROLE_INVENTORY_READ"],
        "roles": ["ROLE_HELLO_READ"],
    })
    .to_string()
}

/// A ZIP with the given entries, in order.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, zip::write::SimpleFileOptions::default())
}

/// A ZIP with the given entries, in order, each written with `options`.
pub fn zip_with(entries: &[(&str, &[u8])], options: zip::write::SimpleFileOptions) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn package(version: &str, image: &TestImage) -> Vec<u8> {
    zip_of(&[
        ("cumulocity.json", manifest(version).as_bytes()),
        ("image.tar", &image.archive),
    ])
}

pub fn multipart(field: &str, zip: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("berth-boundary-{}", unique(""));
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"package.zip\"\r\nContent-Type: application/zip\r\n\r\n").into_bytes();
    body.extend_from_slice(zip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn upload(
    server: &Server,
    tenant: &Tenant,
    app_id: &str,
    field: &str,
    zip: &[u8],
) -> crate::fixture::Resp {
    let (content_type, body) = multipart(field, zip);
    server
        .req(
            "POST",
            &format!("/application/applications/{app_id}/binaries"),
        )
        .basic(&tenant.admin_login, &tenant.admin_password)
        .raw(&content_type, body)
        .send()
}

pub fn create_microservice(server: &Server, tenant: &Tenant) -> Value {
    let login = (tenant.admin_login.as_str(), tenant.admin_password.as_str());
    create_microservice_as(server, login, &unique("svc-"), json!({}))
}

/// Creates a microservice application `name` as `login`, with `fields` added to the body
/// (`availability`, `requiredRoles`…); its representation.
pub fn create_microservice_as(
    server: &Server,
    login: (&str, &str),
    name: &str,
    fields: Value,
) -> Value {
    let mut body = json!({"name": name, "key": format!("{name}-key"), "type": "MICROSERVICE"});
    if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
        body.extend(fields.clone());
    }
    server
        .req("POST", "/application/applications")
        .basic(login.0, login.1)
        .json(&body)
        .send()
        .expect(201)
        .json()
}

/// Berth's tag for one version: it names the installation, so servers sharing the engine
/// never touch each other's tags.
pub fn berth_ref(server: &Server, tenant: &Tenant, app_id: &str, version: &str) -> String {
    format!(
        "berth/{}/{}-{app_id}:{version}",
        server.installation(),
        tenant.id
    )
}

#[test]
fn upload_loads_the_image_and_applies_the_version_rules() {
    let server = Server::start();
    let t = create_tenant(&server, "upl");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    // Created without one, a microservice's context path is its name (where the proxy serves it).
    assert_eq!(app["contextPath"], app["name"], "{app}");
    let first = TestImage::build(0);

    let resp = upload(&server, &t, id, "file", &package("1.0.0", &first)).expect(201);
    let body = resp.json();
    assert_eq!(body["activeVersionId"], "1.0.0");
    assert_eq!(body["manifest"]["version"], "1.0.0");
    assert_eq!(body["manifest"]["provider"]["name"], "Berth tests");
    assert_eq!(body["roles"], json!(["ROLE_HELLO_READ"]));
    assert_eq!(body["requiredRoles"], json!(["ROLE_INVENTORY_READ"]));
    assert_eq!(body["contextPath"], "hello-ctx");
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, "1.0.0")).as_deref(),
        Some(first.id.as_str()),
        "the image is in Docker under Berth's tag"
    );
    let packages = files_under(&server.path("packages"));
    assert_eq!(packages.len(), 1, "{packages:?}");

    // The identical image again (sent as field `data`, like some clients do) is accepted.
    upload(&server, &t, id, "data", &package("1.0.0", &first)).expect(201);
    // A different image under the same release version is refused before touching Docker.
    let second = TestImage::build(0);
    upload(&server, &t, id, "file", &package("1.0.0", &second))
        .expect_error(409, "applications/Duplicate");
    assert!(image_id(&second.id).is_none());
    // A new version is added and becomes active.
    let body = upload(&server, &t, id, "file", &package("1.0.1", &second))
        .expect(201)
        .json();
    assert_eq!(body["activeVersionId"], "1.0.1");
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, "1.0.1")).as_deref(),
        Some(second.id.as_str())
    );
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, "1.0.0")).as_deref(),
        Some(first.id.as_str())
    );

    // Snapshots are replaced; the replaced image goes away when nothing uses it.
    let snap_a = TestImage::build(0);
    let snap_b = TestImage::build(0);
    upload(&server, &t, id, "file", &package("2.0.0-SNAPSHOT", &snap_a)).expect(201);
    upload(&server, &t, id, "file", &package("2.0.0-SNAPSHOT", &snap_b)).expect(201);
    assert_eq!(
        image_id(&berth_ref(&server, &t, id, "2.0.0-SNAPSHOT")).as_deref(),
        Some(snap_b.id.as_str())
    );
    assert!(
        image_id(&snap_a.id).is_none(),
        "the replaced snapshot image is removed"
    );
    assert_eq!(files_under(&server.path("packages")).len(), 3);

    // Deleting the application removes its images and packages.
    server
        .req("DELETE", &format!("/application/applications/{id}"))
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect(204);
    for version in ["1.0.0", "1.0.1", "2.0.0-SNAPSHOT"] {
        assert!(
            image_id(&berth_ref(&server, &t, id, version)).is_none(),
            "{version}"
        );
    }
    assert!(files_under(&server.path("packages")).is_empty());
}

#[test]
fn failed_uploads_leave_no_trace() {
    let server = Server::start();
    let t = create_tenant(&server, "fail");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap().to_owned();
    let accepted = TestImage::build(0);
    upload(&server, &t, &id, "file", &package("1.0.0", &accepted)).expect(201);
    let fresh = TestImage::build(0);
    let manifest_ok = manifest("3.0.0");
    let no_version = json!({"apiVersion": "2", "provider": {"name": "x"}}).to_string();
    let bad_cpu = json!({"apiVersion": "2", "version": "3.0.0", "provider": {"name": "x"}, "resources": {"cpu": "lots"}}).to_string();
    let not_a_tar = b"this is not a docker save archive".to_vec();
    let corrupt = corrupt_layer(&fresh.archive);
    let app_name = app["name"].as_str().unwrap();
    let named = |name: &str| {
        let mut m: Value = serde_json::from_str(&manifest_ok).unwrap();
        m["name"] = json!(name);
        m.to_string()
    };
    let other_name = named("other-app");
    // Valid as sent, not as kept: a sealed credentials default is about a third longer, past
    // the 64 KiB a default may have (every later check reads the kept form).
    let sealed_too_long = {
        let mut m: Value = serde_json::from_str(&manifest_ok).unwrap();
        m["settings"] = json!([{"key": "credentials.token", "defaultValue": "a".repeat(49_200)}]);
        m.to_string()
    };
    let both_names = format!("\"other-app\", but it was uploaded to application \"{app_name}\"");
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "not a zip",
            b"PK but not really".to_vec(),
            422,
            "applications/Invalid Data",
            "ZIP",
        ),
        (
            "no image.tar",
            zip_of(&[("cumulocity.json", manifest_ok.as_bytes())]),
            422,
            "applications/Invalid Data",
            "image.tar",
        ),
        (
            "no manifest",
            zip_of(&[("image.tar", &fresh.archive)]),
            422,
            "applications/Invalid Data",
            "cumulocity.json",
        ),
        (
            "manifest without version",
            zip_of(&[
                ("cumulocity.json", no_version.as_bytes()),
                ("image.tar", &fresh.archive),
            ]),
            422,
            "applications/Invalid Data",
            "version",
        ),
        (
            "bad cpu",
            zip_of(&[
                ("cumulocity.json", bad_cpu.as_bytes()),
                ("image.tar", &fresh.archive),
            ]),
            422,
            "applications/Invalid Data",
            "/resources/cpu",
        ),
        (
            "path traversal entry",
            zip_of(&[
                ("cumulocity.json", manifest_ok.as_bytes()),
                ("image.tar", &fresh.archive),
                ("../../evil.sh", b"rm -rf /"),
            ]),
            422,
            "applications/Invalid Data",
            "../../evil.sh",
        ),
        (
            "image.tar not an image",
            zip_of(&[
                ("cumulocity.json", manifest_ok.as_bytes()),
                ("image.tar", &not_a_tar),
            ]),
            422,
            "applications/Invalid Data",
            "image.tar",
        ),
        (
            "layer fails Docker's check",
            zip_of(&[
                ("cumulocity.json", manifest_ok.as_bytes()),
                ("image.tar", &corrupt),
            ]),
            422,
            "applications/Invalid Data",
            "Docker",
        ),
        (
            "manifest names another application",
            zip_of(&[
                ("cumulocity.json", other_name.as_bytes()),
                ("image.tar", &fresh.archive),
            ]),
            422,
            "applications/Invalid Data",
            &both_names,
        ),
        (
            "a credentials default too long once sealed",
            zip_of(&[
                ("cumulocity.json", sealed_too_long.as_bytes()),
                ("image.tar", &fresh.archive),
            ]),
            422,
            "applications/Invalid Data",
            "as Berth keeps it",
        ),
        (
            "same version, other image",
            package("1.0.0", &fresh),
            409,
            "applications/Duplicate",
            "1.0.0",
        ),
    ];
    let before_files = files_under(&server.data_dir);
    let before_app = server
        .req("GET", &format!("/application/applications/{id}"))
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect(200)
        .json();
    for (name, zip, status, error, mentions) in cases {
        let resp = upload(&server, &t, &id, "file", &zip);
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        let body = resp.expect_error(status, error).json();
        assert!(
            body["message"].as_str().unwrap().contains(mentions),
            "{name}: message should mention {mentions}: {body}"
        );
        let after: Vec<String> = files_under(&server.data_dir)
            .into_iter()
            .filter(|f| !f.starts_with("berth.sqlite3"))
            .collect();
        let expected: Vec<String> = before_files
            .iter()
            .filter(|f| !f.starts_with("berth.sqlite3"))
            .cloned()
            .collect();
        assert_eq!(after, expected, "{name}: files changed");
        assert!(
            image_id(&fresh.id).is_none(),
            "{name}: the image was left in Docker"
        );
        assert!(
            image_id(&berth_ref(&server, &t, &id, "3.0.0")).is_none(),
            "{name}: a Berth tag was left"
        );
        let app_now = server
            .req("GET", &format!("/application/applications/{id}"))
            .basic(&t.admin_login, &t.admin_password)
            .send()
            .expect(200)
            .json();
        assert_eq!(app_now, before_app, "{name}: the application changed");
    }
    assert_eq!(
        image_id(&berth_ref(&server, &t, &id, "1.0.0")).as_deref(),
        Some(accepted.id.as_str()),
        "the accepted version is untouched"
    );
    // The manifest may name the application it is uploaded to.
    let same_name = named(app_name);
    upload(
        &server,
        &t,
        &id,
        "file",
        &zip_of(&[
            ("cumulocity.json", same_name.as_bytes()),
            ("image.tar", &fresh.archive),
        ]),
    )
    .expect(201);
}

#[test]
fn oversized_uploads_are_refused_with_413() {
    let server = Server::start_with(Options {
        extra_args: vec!["--upload-limit".into(), "64KiB".into()],
        ..Options::default()
    });
    let t = create_tenant(&server, "big");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let big = TestImage::build(512 * 1024);
    let before = files_under(&server.data_dir);
    upload(&server, &t, id, "file", &package("1.0.0", &big))
        .expect_error(413, "applications/Payload Too Large");
    assert!(image_id(&big.id).is_none());
    let after = files_under(&server.data_dir);
    assert_eq!(
        after
            .iter()
            .filter(|f| !f.starts_with("berth.sqlite3"))
            .collect::<Vec<_>>(),
        before
            .iter()
            .filter(|f| !f.starts_with("berth.sqlite3"))
            .collect::<Vec<_>>()
    );
    // Small packages still pass the same limit.
    let small = TestImage::build(0);
    upload(&server, &t, id, "file", &package("1.0.0", &small)).expect(201);
}

#[test]
fn uploads_need_application_admin_in_the_owner_tenant() {
    let server = Server::start();
    let owner = create_tenant(&server, "own");
    let other = create_tenant(&server, "oth");
    let app = create_microservice(&server, &owner);
    let id = app["id"].as_str().unwrap();
    let zip = zip_of(&[("cumulocity.json", manifest("1.0.0").as_bytes())]);
    upload(&server, &other, id, "file", &zip).expect_error(404, "applications/Not Found");
    let (content_type, body) = multipart("file", &zip);
    server
        .req("POST", &format!("/application/applications/{id}/binaries"))
        .raw(&content_type, body)
        .send()
        .expect_error(401, "security/Unauthorized");
    let hosted = server
        .req("POST", "/application/applications")
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"name": "webapp", "key": "webapp-key", "type": "HOSTED"}))
        .send()
        .expect(201)
        .json();
    upload(
        &server,
        &owner,
        hosted["id"].as_str().unwrap(),
        "file",
        &zip,
    )
    .expect_error(422, "applications/Invalid Data");
    // Not multipart at all, and multipart without a file part.
    let path = format!("/application/applications/{id}/binaries");
    server
        .req("POST", &path)
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"file": "no"}))
        .send()
        .expect_error(400, "applications/Bad Request");
    let boundary = "only-text";
    let text_only = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n--{boundary}--\r\n"
    );
    server
        .req("POST", &path)
        .basic(&owner.admin_login, &owner.admin_password)
        .raw(
            &format!("multipart/form-data; boundary={boundary}"),
            text_only.into_bytes(),
        )
        .send()
        .expect_error(422, "applications/Invalid Data");
}

/// Two installations on one engine number tenants and applications alike; each tags the
/// image under its own installation id, so deleting one's application leaves the other's tag.
#[test]
fn servers_sharing_the_engine_keep_their_own_image_tags() {
    let management = crate::fixture::management();
    let (a, b) = (Server::start(), Server::start());
    let image = TestImage::build(0);
    let uploaded: Vec<(&Server, String)> = [&a, &b]
        .into_iter()
        .map(|server| {
            let app = create_microservice(server, &management);
            let id = app["id"].as_str().unwrap().to_owned();
            upload(server, &management, &id, "file", &package("1.0.0", &image)).expect(201);
            (server, id)
        })
        .collect();
    assert_eq!(
        uploaded[0].1, uploaded[1].1,
        "fresh servers give the first application the same id"
    );
    let [tag_a, tag_b] =
        [0, 1].map(|i| berth_ref(uploaded[i].0, &management, &uploaded[i].1, "1.0.0"));
    assert_ne!(tag_a, tag_b);
    for tag in [&tag_a, &tag_b] {
        assert_eq!(image_id(tag).as_deref(), Some(image.id.as_str()), "{tag}");
    }

    a.req(
        "DELETE",
        &format!("/application/applications/{}", uploaded[0].1),
    )
    .basic(&management.admin_login, &management.admin_password)
    .send()
    .expect(204);
    assert!(
        image_id(&tag_a).is_none(),
        "{tag_a} is removed with its application"
    );
    assert_eq!(
        image_id(&tag_b).as_deref(),
        Some(image.id.as_str()),
        "the other server's tag is untouched"
    );
}

#[test]
fn deleting_a_tenant_removes_its_images_and_packages() {
    let server = Server::start();
    let t = create_tenant(&server, "gone");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap();
    let image = TestImage::build(0);
    upload(&server, &t, id, "file", &package("1.0.0", &image)).expect(201);
    assert!(image_id(&berth_ref(&server, &t, id, "1.0.0")).is_some());
    server
        .req("DELETE", &format!("/tenant/tenants/{}", t.id))
        .basic(crate::fixture::MGMT_ADMIN, crate::fixture::ADMIN_PASSWORD)
        .send()
        .expect(204);
    assert!(image_id(&berth_ref(&server, &t, id, "1.0.0")).is_none());
    assert!(image_id(&image.id).is_none());
    assert!(files_under(&server.path("packages")).is_empty());
}

/// Graceful shutdown: an upload in flight when SIGTERM arrives still completes and is kept.
#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use base64::Engine;

    let mut server = Server::start_with(Options {
        http: true,
        ..Options::default()
    });
    let t = create_tenant(&server, "graceful");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap().to_owned();
    let image = TestImage::build(256 * 1024);
    let (content_type, body) = multipart("file", &package("1.0.0", &image));
    let address = server
        .http
        .clone()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", t.admin_login, t.admin_password));
    let head = format!(
        "POST /application/applications/{id}/binaries HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let half = body.len() / 2;
    stream.write_all(&body[..half]).unwrap();
    // The server is streaming the package once its temporary file exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&server.path("tmp")).is_empty() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.terminate();
    stream.write_all(&body[half..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(server.wait_exit(), Some(0), "graceful exit");

    let server = server.restart();
    let kept = server
        .req("GET", &format!("/application/applications/{id}"))
        .basic(&t.admin_login, &t.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(kept["activeVersionId"], "1.0.0");
    assert_eq!(
        image_id(&berth_ref(&server, &t, &id, "1.0.0")).as_deref(),
        Some(image.id.as_str())
    );
    assert!(files_under(&server.path("tmp")).is_empty());
}

/// A manifest with the given `settings` (category `uploadtest`).
fn manifest_with_settings(version: &str, settings: &[Value]) -> String {
    let mut m: Value = serde_json::from_str(&manifest(version)).unwrap();
    m["settingsCategory"] = json!("uploadtest");
    m["settings"] = json!(settings);
    m.to_string()
}

/// Bootstrap credentials of an application, then the service user of `tenant` they list.
pub(crate) fn service_login(
    server: &Server,
    owner: &Tenant,
    app: &str,
    tenant: &str,
) -> (String, String) {
    let boot = server
        .req(
            "GET",
            &format!("/application/applications/{app}/bootstrapUser"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    let boot_login = format!(
        "{}/{}",
        boot["tenant"].as_str().unwrap(),
        boot["name"].as_str().unwrap()
    );
    let users = server
        .req("GET", "/application/currentApplication/subscriptions")
        .basic(&boot_login, boot["password"].as_str().unwrap())
        .send()
        .expect(200)
        .json();
    let user = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["tenant"] == tenant)
        .expect("service user of the tenant")
        .clone();
    (
        format!("{tenant}/{}", user["name"].as_str().unwrap()),
        user["password"].as_str().unwrap().to_owned(),
    )
}

/// One setting across two versions: what the subscriber (and the owner) write in between,
/// and what the subscriber's option and its service's effective setting are afterwards.
struct SettingCase {
    key: &'static str,
    v1: Option<Value>,
    owner_edit: Option<&'static str>,
    edit: Option<&'static str>,
    v2: Option<Value>,
    /// The subscriber's option after the second upload (None: no such option).
    option: Option<&'static str>,
    /// What the subscriber's service reads (None: absent).
    effective: Option<&'static str>,
}

#[test]
fn a_new_version_updates_the_subscribers_settings() {
    let server = Server::start();
    let (owner, sub) = (
        create_tenant(&server, "seto"),
        create_tenant(&server, "sets"),
    );
    let app = create_microservice(&server, &owner);
    let id = app["id"].as_str().unwrap();
    let image = TestImage::build(0);
    let keep = |default: &str| json!({"defaultValue": default, "editable": true, "overwriteOnUpdate": false});
    let cases = [
        // A value the subscriber wrote is its own: a provider's version never changes it
        // (the owner's rules for edited values, overwriteOnUpdate and editable, apply only in
        // the owner's tenant).
        SettingCase {
            key: "kept",
            v1: Some(keep("k1")),
            owner_edit: None,
            edit: Some("mine"),
            v2: Some(keep("k2")),
            option: Some("mine"),
            effective: Some("mine"),
        },
        SettingCase {
            key: "reset",
            v1: Some(json!({"defaultValue": "r1", "editable": true})),
            owner_edit: None,
            edit: Some("mine"),
            v2: Some(json!({"defaultValue": "r2", "editable": true})),
            option: Some("mine"),
            effective: Some("mine"),
        },
        // Unedited values follow the new default.
        SettingCase {
            key: "untouched",
            v1: Some(keep("u1")),
            owner_edit: None,
            edit: None,
            v2: Some(keep("u2")),
            option: Some("u2"),
            effective: Some("u2"),
        },
        SettingCase {
            key: "fixed",
            v1: Some(json!({"defaultValue": "f1"})),
            owner_edit: None,
            edit: None,
            v2: Some(json!({"defaultValue": "f2"})),
            option: Some("f2"),
            effective: Some("f2"),
        },
        SettingCase {
            key: "locked",
            v1: Some(keep("l1")),
            owner_edit: None,
            edit: Some("mine"),
            v2: Some(json!({"defaultValue": "l2"})),
            option: Some("mine"),
            effective: Some("mine"),
        },
        // Removed keys go unless the subscriber wrote them; new keys come.
        SettingCase {
            key: "gone",
            v1: Some(json!({"defaultValue": "g"})),
            owner_edit: None,
            edit: None,
            v2: None,
            option: None,
            effective: None,
        },
        SettingCase {
            key: "goneEdited",
            v1: Some(keep("g")),
            owner_edit: None,
            edit: Some("mine"),
            v2: None,
            option: Some("mine"),
            effective: Some("mine"),
        },
        SettingCase {
            key: "added",
            v1: None,
            owner_edit: None,
            edit: None,
            v2: Some(json!({"defaultValue": "a"})),
            option: Some("a"),
            effective: Some("a"),
        },
        SettingCase {
            key: "credentials.secret",
            v1: Some(json!({"defaultValue": "s1"})),
            owner_edit: None,
            edit: None,
            v2: Some(json!({"defaultValue": "s2"})),
            option: Some("<<Encrypted>>"),
            effective: Some("s2"),
        },
        // inheritFromOwner: a subscriber without its own value reads the owner's.
        SettingCase {
            key: "shared",
            v1: Some(keep("d")),
            owner_edit: Some("owner's"),
            edit: None,
            v2: Some(keep("d")),
            option: Some("d"),
            effective: Some("owner's"),
        },
        SettingCase {
            key: "sharedOwn",
            v1: Some(keep("d")),
            owner_edit: Some("owner's"),
            edit: Some("mine"),
            v2: Some(keep("d")),
            option: Some("mine"),
            effective: Some("mine"),
        },
        SettingCase {
            key: "private",
            v1: Some(
                json!({"defaultValue": "d", "editable": true, "overwriteOnUpdate": false, "inheritFromOwner": false}),
            ),
            owner_edit: Some("owner's"),
            edit: None,
            v2: Some(
                json!({"defaultValue": "d", "editable": true, "overwriteOnUpdate": false, "inheritFromOwner": false}),
            ),
            option: Some("d"),
            effective: Some("d"),
        },
    ];
    let settings = |pick: fn(&SettingCase) -> &Option<Value>| -> Vec<Value> {
        cases
            .iter()
            .filter_map(|c| {
                let mut s = pick(c).clone()?;
                s["key"] = json!(c.key);
                Some(s)
            })
            .collect()
    };
    let v1 = zip_of(&[
        (
            "cumulocity.json",
            manifest_with_settings("1.0.0", &settings(|c| &c.v1)).as_bytes(),
        ),
        ("image.tar", &image.archive),
    ]);
    upload(&server, &owner, id, "file", &v1).expect(201);
    for tenant in [&owner.id, &sub.id] {
        server
            .req("POST", &format!("/tenant/tenants/{tenant}/applications"))
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .json(&json!({"application": {"id": id}}))
            .send()
            .expect(201);
    }
    for case in &cases {
        for (tenant, value) in [(&owner, case.owner_edit), (&sub, case.edit)] {
            if let Some(value) = value {
                server
                    .req("PUT", &format!("/tenant/options/uploadtest/{}", case.key))
                    .basic(&tenant.admin_login, &tenant.admin_password)
                    .json(&json!({"value": value}))
                    .send()
                    .expect(200);
            }
        }
    }
    let v2 = zip_of(&[
        (
            "cumulocity.json",
            manifest_with_settings("1.0.1", &settings(|c| &c.v2)).as_bytes(),
        ),
        ("image.tar", &image.archive),
    ]);
    upload(&server, &owner, id, "file", &v2).expect(201);

    let options = server
        .req("GET", "/tenant/options/uploadtest")
        .basic(&sub.admin_login, &sub.admin_password)
        .send()
        .expect(200)
        .json();
    let (login, password) = service_login(&server, &owner, id, &sub.id);
    let effective = server
        .req("GET", "/application/currentApplication/settings")
        .header("Accept", SETTINGS_VALUES)
        .basic(&login, &password)
        .send()
        .expect(200)
        .json();
    for case in &cases {
        assert_eq!(
            options[case.key].as_str(),
            case.option,
            "option {}: {options}",
            case.key
        );
        let key = case.key.trim_start_matches("credentials.");
        assert_eq!(
            effective[key].as_str(),
            case.effective,
            "effective {}: {effective}",
            case.key
        );
    }
    server
        .req("DELETE", &format!("/application/applications/{id}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(204);
}

#[test]
fn a_restart_removes_images_no_version_refers_to() {
    let mut server = Server::start();
    let t = create_tenant(&server, "orph");
    let app = create_microservice(&server, &t);
    let id = app["id"].as_str().unwrap().to_owned();
    let kept = TestImage::build(0);
    upload(&server, &t, &id, "file", &package("1.0.0", &kept)).expect(201);
    let kept_ref = berth_ref(&server, &t, &id, "1.0.0");

    // Berth killed between `docker load` and the commit leaves an image under this
    // installation's name that no version refers to.
    server.crash();
    let orphan = TestImage::build(0);
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), &orphan.archive).unwrap();
    let loaded = docker(&["load", "-q", "-i", archive.path().to_str().unwrap()]);
    let loaded_tag = String::from_utf8_lossy(&loaded.stdout)
        .trim()
        .trim_start_matches("Loaded image: ")
        .to_owned();
    let orphan_ref = berth_ref(&server, &t, &id, "2.0.0");
    docker(&["tag", &orphan.id, &orphan_ref]);
    docker(&["rmi", &loaded_tag]);
    // Another installation's tags are not this server's to judge.
    let foreign_ref = format!("berth/otherinstallation/{}-{id}:1.0.0", t.id.to_lowercase());
    docker(&["tag", &kept.id, &foreign_ref]);

    let server = server.restart();
    crate::supervisor::wait_for(
        std::time::Duration::from_secs(30),
        "the orphaned image removed",
        || image_id(&orphan.id).is_none().then_some(()),
    );
    assert_eq!(
        image_id(&kept_ref).as_deref(),
        Some(kept.id.as_str()),
        "a version's image stays"
    );
    assert_eq!(
        image_id(&foreign_ref).as_deref(),
        Some(kept.id.as_str()),
        "another installation's tag stays"
    );
    docker(&["rmi", &foreign_ref]);
    drop(server);
}

/// Test images Berth loaded, removed (by id, forced) on drop whatever the test left: a failed
/// assertion must not leave them behind.
struct LoadedImages(Vec<String>);

impl Drop for LoadedImages {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

/// The images the running containers of `installation` were created from (a container
/// removed between the listing and its inspection is left out).
fn running_images(installation: &str) -> Vec<String> {
    let filter = format!("label=berth.installation={installation}");
    // Replicas carry their application's label; their network holders do not.
    let ids = crate::supervisor::docker_lines(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &filter,
        "--filter",
        "label=berth.app",
    ]);
    ids.iter()
        .filter_map(|id| {
            let output = Command::new("docker")
                .args(["inspect", "--format", "{{.Image}}", id])
                .output()
                .expect("docker CLI");
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        })
        .collect()
}

#[test]
fn a_replaced_snapshot_image_goes_once_its_containers_are_gone() {
    replaced_snapshot_image_goes(false);
}

#[test]
fn a_replaced_snapshot_image_goes_after_a_crash() {
    replaced_snapshot_image_goes(true);
}

/// Intents of `kind` not yet finished, read straight from the (stopped) server's database.
fn pending_intents_of(server: &Server, kind: &str) -> i64 {
    let conn = rusqlite::Connection::open(server.path("berth.sqlite3")).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM intents WHERE kind = ?1",
        [kind],
        |r| r.get(0),
    )
    .unwrap()
}

/// A subscribed `-SNAPSHOT` version runs; the same version is uploaded with another image
/// (`crash`: and Berth is killed right after the answer, before any retry); once the new one
/// serves alone, the replaced image must leave the engine.
fn replaced_snapshot_image_goes(crash: bool) {
    use crate::supervisor::{
        HelloImage, HelloLease, deploy, installation, readiness_on_health, start_server, subscribe,
        upload_package, wait_for, wait_ready,
    };
    use std::time::Duration;

    let hello = HelloLease::acquire();
    // Two runnable images with distinct ids (the hello image under two labels), removed after
    // the server's containers (dropped in reverse order).
    let image = |label: &str| {
        let (id, archive) = crate::crash_tools::variant(&hello.0.archive, &unique(label));
        HelloImage { id, archive }
    };
    let (old, new) = (image("snap-old"), image("snap-new"));
    let _loaded = LoadedImages(vec![old.id.clone(), new.id.clone()]);
    let (cleanup, mut server) = start_server(&[]);
    let owner = create_tenant(&server, "snapimg");
    let mut manifest: Value = serde_json::from_str(&crate::supervisor::manifest(
        "MULTI_TENANT",
        1,
        readiness_on_health(),
    ))
    .unwrap();
    manifest["version"] = json!("1.0.0-SNAPSHOT");
    let manifest = manifest.to_string();

    let app = deploy(&server, &owner, &old, &manifest);
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let installation = installation(&cleanup).to_owned();
    assert_eq!(running_images(&installation), vec![old.id.clone()]);

    // The same version with another image: the old image is still in use by the running
    // container when the upload commits, so Docker refuses to remove it then.
    upload_package(&server, &owner, &app, &new, &manifest).expect(201);
    assert_eq!(
        image_id(&berth_ref(&server, &owner, &app, "1.0.0-SNAPSHOT")).as_deref(),
        Some(new.id.as_str())
    );
    if crash {
        // Killed before the first retry: the removal is still recorded, and the next start
        // takes it up.
        server.crash();
        assert_eq!(pending_intents_of(&server, "remove_replaced_image"), 1);
        assert!(
            image_id(&old.id).is_some(),
            "refused while its container ran"
        );
        server = server.restart();
    }
    wait_for(
        Duration::from_secs(120),
        "the new image serving alone",
        || {
            let running = running_images(&installation);
            (running == [new.id.clone()]).then_some(())
        },
    );
    wait_ready(&server, &owner, &app, 1);
    // Once the old revision's container is gone, the replaced image goes too (the removal
    // is retried in the background, not given up after the refusal).
    wait_for(
        Duration::from_secs(300),
        "the replaced snapshot image removed",
        || image_id(&old.id).is_none().then_some(()),
    );
    assert_eq!(image_id(&new.id).as_deref(), Some(new.id.as_str()));
    drop(server);
}

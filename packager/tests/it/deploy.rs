//! `berth-pack deploy` and `subscribe` against a fake platform on a local socket: the request
//! sequence, the exact bytes uploaded, error messages and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::fake_platform::{self, FakePlatform, Recorded, Reply};
use crate::fixtures::{self, INVALID_MANIFEST, ImageSpec, MANIFEST, MANIFEST_WITHOUT_NAME, Run};
use crate::validate::write_package;

pub(crate) const BY_NAME: &str = "GET /application/applicationsByName/hello";
/// berth-pack's check, after a 409, that tenant t3 is subscribed.
const T3_LIST: &str = "GET /tenant/tenants/t3/applications?pageSize=2000";

/// A tenant's subscriptions list naming applications `ids` (numbers, as Cumulocity's ids are
/// strings but some servers send numbers: one of each).
fn subscriptions(ids: &[&str]) -> Reply {
    let references: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let id = if i % 2 == 0 {
                json!(id)
            } else {
                json!(id.parse::<i64>().unwrap())
            };
            json!({"application": {"id": id, "name": "x"}})
        })
        .collect();
    (200, json!({"references": references}).to_string())
}
const CREATE: &str = "POST /application/applications";

/// Variables the tool reads; cleared so the developer's environment cannot leak into a test.
const CREDENTIAL_VARIABLES: &[&str] = &[
    "BERTH_URL",
    "BERTH_USER",
    "BERTH_PASSWORD",
    "BERTH_CA_CERT",
    "C8Y_BASEURL",
    "C8Y_USER",
    "C8Y_PASSWORD",
    "C8Y_TENANT",
];

/// Runs `berth-pack` in `dir` with only the given credential variables set.
pub(crate) fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth-pack"));
    command.current_dir(dir).args(args);
    for name in CREDENTIAL_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("berth-pack runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `deploy <zip> --url <fake> --user t1/alice --password pw` plus `extra`.
pub(crate) fn deploy(dir: &Path, platform: &FakePlatform, zip: &Path, extra: &[&str]) -> Run {
    let zip = zip.to_str().unwrap();
    let mut args = vec![
        "deploy",
        zip,
        "--url",
        &platform.url,
        "--user",
        "t1/alice",
        "--password",
        "pw",
    ];
    args.extend_from_slice(extra);
    run(dir, &args, &[])
}

/// A valid package zip named `file_name` in `dir`.
pub(crate) fn package(dir: &Path, file_name: &str, manifest: &str) -> PathBuf {
    let image = fixtures::docker_save(&ImageSpec::small("team/hello:1.0"));
    let path = dir.join(file_name);
    write_package(
        &path,
        &[
            ("cumulocity.json", manifest.as_bytes()),
            ("image.tar", &image),
        ],
    );
    path
}

pub(crate) fn application(id: &str, name: &str, app_type: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "key": format!("{name}-microservice-key"),
        "type": app_type,
        "self": format!("http://fake/application/applications/{id}"),
    })
}

pub(crate) fn collection(applications: &[Value]) -> Reply {
    (200, json!({ "applications": applications }).to_string())
}

pub(crate) fn error(status: u16, error: &str, message: &str) -> Reply {
    (
        status,
        json!({"error": error, "message": message, "info": "https://x"}).to_string(),
    )
}

/// A platform where `hello` does not exist yet, then is created as id 7 and accepts uploads.
fn empty_platform(request: &Recorded) -> Reply {
    match request.line().as_str() {
        BY_NAME => collection(&[]),
        CREATE => (201, application("7", "hello", "MICROSERVICE").to_string()),
        "POST /application/applications/7/binaries" => {
            let mut body = application("7", "hello", "MICROSERVICE");
            body["activeVersionId"] = json!("70");
            (201, body.to_string())
        }
        _ => error(404, "general/notFound", "no such route"),
    }
}

/// Splits a one-file multipart body into (part headers, file bytes), checking the framing.
fn multipart_file(content_type: &str, body: &[u8]) -> (String, Vec<u8>) {
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("content type {content_type}"));
    let opening = format!("--{boundary}\r\n");
    let closing = format!("\r\n--{boundary}--\r\n");
    assert!(body.starts_with(opening.as_bytes()), "no opening boundary");
    assert!(body.ends_with(closing.as_bytes()), "no closing boundary");
    let inner = &body[opening.len()..body.len() - closing.len()];
    let split = inner
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("part headers end");
    let headers = String::from_utf8(inner[..split].to_vec()).unwrap();
    (headers, inner[split + 4..].to_vec())
}

#[test]
fn deploy_creates_the_application_then_uploads_a_well_formed_multipart_body() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    for format in ["human", "json"] {
        let platform = FakePlatform::start(empty_platform);
        let result = deploy(dir.path(), &platform, &zip, &["--format", format]);
        assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
        assert_eq!(
            platform.lines(),
            [BY_NAME, CREATE, "POST /application/applications/7/binaries"]
        );
        match format {
            "human" => {
                assert_eq!(result.stdout, "7\n");
                assert!(
                    result.stderr.contains("created application 7"),
                    "{}",
                    result.stderr
                );
            }
            _ => assert_eq!(
                result.json(),
                json!({"id": "7", "name": "hello", "version": "1.0.0", "created": true,
                       "activeVersionId": "70", "subscribed": []})
            ),
        }

        let requests = platform.requests();
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("t1/alice:pw")
        );
        for request in &requests {
            assert_eq!(
                request.header("authorization"),
                Some(expected_auth.as_str())
            );
            assert!(request.header("accept").is_some(), "{}", request.line());
        }
        assert_eq!(
            requests[1].json(),
            json!({"name": "hello", "key": "hello-microservice-key", "type": "MICROSERVICE"})
        );

        let upload = &requests[2];
        assert_eq!(upload.header("transfer-encoding"), None);
        assert_eq!(
            upload.header("content-length"),
            Some(upload.body.len().to_string().as_str())
        );
        let (headers, file) = multipart_file(upload.header("content-type").unwrap(), &upload.body);
        assert!(
            headers.contains(
                "Content-Disposition: form-data; name=\"file\"; filename=\"hello-1.0.0.zip\""
            ),
            "{headers}"
        );
        assert!(
            headers.contains("Content-Type: application/zip"),
            "{headers}"
        );
        assert!(
            file == std::fs::read(&zip).unwrap(),
            "uploaded bytes differ from the zip"
        );
    }
}

#[test]
fn deploy_reuses_an_existing_application_and_subscribes_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    let platform = FakePlatform::start(|request| match request.line().as_str() {
        BY_NAME => collection(&[
            // A server that matches loosely must not make us pick the wrong application.
            application("41", "hello-old", "MICROSERVICE"),
            application("42", "hello", "MICROSERVICE"),
        ]),
        "POST /application/applications/42/binaries" => {
            (201, application("42", "hello", "MICROSERVICE").to_string())
        }
        "POST /tenant/tenants/t2/applications" => (
            201,
            json!({"application": application("42", "hello", "MICROSERVICE")}).to_string(),
        ),
        "POST /tenant/tenants/t3/applications" => error(
            409,
            "tenants/Duplicate",
            "Application 42 is already assigned to tenant t3",
        ),
        T3_LIST => subscriptions(&["7", "42"]),
        _ => error(404, "general/notFound", "no such route"),
    });
    let result = deploy(
        dir.path(),
        &platform,
        &zip,
        &["--subscribe", "t2", "--subscribe", "t3", "--format", "json"],
    );
    assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
    let output = result.json();
    assert_eq!(output["id"], "42");
    assert_eq!(output["created"], false);
    assert_eq!(output["subscribed"], json!(["t2", "t3"]));
    assert_eq!(
        platform.lines(),
        [
            BY_NAME,
            "POST /application/applications/42/binaries",
            "POST /tenant/tenants/t2/applications",
            "POST /tenant/tenants/t3/applications",
            T3_LIST,
        ]
    );
    assert_eq!(
        platform.requests()[2].json(),
        json!({"application": {"id": "42"}})
    );
}

/// An application `owner` owns, as the platform lists it (`owner.tenant.id`).
fn owned_by(id: &str, owner: &str) -> Value {
    let mut app = application(id, "hello", "MICROSERVICE");
    app["owner"] = json!({"tenant": {"id": owner}});
    app
}

/// A platform listing, by name, what the tenant may use: the management tenant's MARKET
/// `hello` (id 5) and, once created, the tenant's own (id 7).
fn platform_with_a_market_hello(request: &Recorded, created: bool) -> Reply {
    match request.line().as_str() {
        BY_NAME if created => collection(&[owned_by("7", "t1"), owned_by("5", "management")]),
        BY_NAME => collection(&[owned_by("5", "management")]),
        "GET /tenant/currentTenant" => (200, json!({"name": "t1"}).to_string()),
        CREATE => (201, owned_by("7", "t1").to_string()),
        "POST /application/applications/7/binaries" => (201, owned_by("7", "t1").to_string()),
        "POST /tenant/tenants/t1/applications" => (
            201,
            json!({"application": owned_by("5", "management")}).to_string(),
        ),
        _ => error(404, "general/notFound", "no such route"),
    }
}

#[test]
fn deploy_uploads_only_to_an_application_of_its_own_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    // Another tenant's application of the same name is never the upload's target: the tool
    // creates its own (`tenant/user` login: the tenant is the prefix).
    let platform = FakePlatform::start(|r| platform_with_a_market_hello(r, false));
    let result = deploy(dir.path(), &platform, &zip, &[]);
    assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
    assert_eq!(
        platform.lines(),
        [BY_NAME, CREATE, "POST /application/applications/7/binaries"]
    );
    // A bare user name: the tenant is asked for, and its own application found after the other.
    let platform = FakePlatform::start(|r| platform_with_a_market_hello(r, true));
    let url = platform.url.clone();
    let zip_text = zip.to_str().unwrap();
    let args = [
        "deploy",
        zip_text,
        "--url",
        &url,
        "--user",
        "alice",
        "--password",
        "pw",
    ];
    let result = run(dir.path(), &args, &[]);
    assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
    assert_eq!(
        platform.lines(),
        [
            BY_NAME,
            "GET /tenant/currentTenant",
            "POST /application/applications/7/binaries"
        ]
    );
    // Subscribing by name takes an offered application when the tenant owns none of that name.
    let platform = FakePlatform::start(|r| platform_with_a_market_hello(r, false));
    let url = platform.url.clone();
    let args = [
        "subscribe",
        "--app",
        "hello",
        "--tenant",
        "t1",
        "--url",
        &url,
        "--user",
        "t1/alice",
        "--password",
        "pw",
    ];
    let result = run(dir.path(), &args, &[]);
    assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
    assert_eq!(
        platform.lines(),
        [BY_NAME, "POST /tenant/tenants/t1/applications"]
    );
    assert_eq!(
        platform.requests()[1].json(),
        json!({"application": {"id": "5"}})
    );
}

/// How the fake answers a deploy, and what the tool must make of it.
struct FailureCase {
    what: &'static str,
    route: fn(&Recorded) -> Reply,
    code: i32,
    stderr: &'static str,
}

#[test]
fn deploy_failures_print_the_platform_message_and_exit_by_cause() {
    let cases = [
        FailureCase {
            what: "upload rejected with 422",
            route: |request| match request.method.as_str() {
                "GET" => collection(&[application("7", "hello", "MICROSERVICE")]),
                _ => error(
                    422,
                    "applications/Invalid Data",
                    "image.tar is not a linux/amd64 image",
                ),
            },
            code: 1,
            stderr: "HTTP 422: applications/Invalid Data: image.tar is not a linux/amd64 image",
        },
        FailureCase {
            what: "uploads in progress (429): busy, not rejected",
            route: |request| match request.method.as_str() {
                "GET" => collection(&[application("7", "hello", "MICROSERVICE")]),
                _ => error(
                    429,
                    "applications/Too Many Requests",
                    "4 uploads of tenant t1 are in progress; try again when one has finished",
                ),
            },
            code: 2,
            stderr: "4 uploads of tenant t1 are in progress",
        },
        FailureCase {
            what: "bad credentials",
            route: |_| {
                error(
                    401,
                    "security/Unauthorized",
                    "Invalid credentials! : Bad credentials",
                )
            },
            code: 1,
            stderr: "Invalid credentials! : Bad credentials",
        },
        FailureCase {
            what: "create forbidden",
            route: |request| match request.method.as_str() {
                "GET" => collection(&[]),
                _ => error(403, "security/Forbidden", "Access is denied."),
            },
            code: 1,
            stderr: "creating application \"hello\": the platform answered HTTP 403",
        },
        FailureCase {
            what: "existing application of another type",
            route: |_| collection(&[application("9", "hello", "HOSTED")]),
            code: 1,
            stderr: "exists with type HOSTED",
        },
        FailureCase {
            what: "upload answered 201 without a body",
            route: |request| match request.method.as_str() {
                "GET" => collection(&[application("7", "hello", "MICROSERVICE")]),
                _ => (201, String::new()),
            },
            code: 2,
            stderr: "the upload was not confirmed with an application body",
        },
        FailureCase {
            what: "server failure",
            route: |request| match request.method.as_str() {
                "GET" => collection(&[application("7", "hello", "MICROSERVICE")]),
                _ => error(500, "general/internalError", "Internal server error"),
            },
            code: 2,
            stderr: "HTTP 500: general/internalError: Internal server error",
        },
        FailureCase {
            what: "subscription refused after the upload",
            route: |request| match request.line().as_str() {
                BY_NAME => collection(&[application("7", "hello", "MICROSERVICE")]),
                "POST /application/applications/7/binaries" => {
                    (201, application("7", "hello", "MICROSERVICE").to_string())
                }
                _ => error(404, "tenants/Not Found", "Tenant t9 not found"),
            },
            code: 1,
            stderr: "uploaded to application 7, but subscribing tenant t9",
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    for case in cases {
        let platform = FakePlatform::start(case.route);
        let result = deploy(dir.path(), &platform, &zip, &["--subscribe", "t9"]);
        assert_eq!(result.code, case.code, "{}: {}", case.what, result.stderr);
        assert!(
            result.stderr.contains(case.stderr),
            "{}: {}",
            case.what,
            result.stderr
        );
        assert_eq!(result.stdout, "", "{}: nothing on stdout", case.what);
    }
}

#[test]
fn invalid_packages_and_bad_settings_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = package(dir.path(), "invalid-1.0.0.zip", INVALID_MANIFEST);
    std::fs::write(dir.path().join("cumulocity.json"), MANIFEST).unwrap();
    std::fs::write(dir.path().join("corrupt.zip"), b"PK\x03\x04 truncated").unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
    let good = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    let good = good.to_str().unwrap();
    let platform = FakePlatform::start(empty_platform);
    let url = platform.url.as_str();
    let login = ["--url", url, "--user", "t1/a", "--password", "pw"];
    let cases: &[(&str, Vec<&str>, i32, &str)] = &[
        (
            "invalid manifest in the package",
            vec!["deploy", invalid.to_str().unwrap()],
            1,
            "the package is invalid; nothing was sent",
        ),
        (
            "a bare manifest",
            vec!["deploy", "cumulocity.json"],
            1,
            "cumulocity.json: not a package zip",
        ),
        (
            "a corrupt zip",
            vec!["deploy", "corrupt.zip"],
            1,
            "not a readable zip archive",
        ),
        (
            "missing file",
            vec!["deploy", "missing.zip"],
            2,
            "missing.zip",
        ),
        (
            "--name disagrees with the manifest",
            vec!["deploy", good, "--name", "other"],
            2,
            "--name \"other\" differs from the manifest name \"hello\"",
        ),
        (
            "unreadable CA file",
            vec!["deploy", good, "--ca-cert", "missing.pem"],
            2,
            "--ca-cert missing.pem",
        ),
        (
            "CA file without a certificate",
            vec!["deploy", good, "--ca-cert", "garbage.pem"],
            2,
            "no certificate found",
        ),
        (
            "--insecure with --ca-cert",
            vec!["deploy", good, "--insecure", "--ca-cert", "garbage.pem"],
            2,
            "cannot be used with",
        ),
    ];
    for (what, args, code, stderr) in cases {
        let mut args = args.clone();
        args.extend_from_slice(&login);
        let result = run(dir.path(), &args, &[]);
        assert_eq!(result.code, *code, "{what}: {}", result.stderr);
        assert!(result.stderr.contains(stderr), "{what}: {}", result.stderr);
    }
    let missing_url = run(
        dir.path(),
        &["deploy", good, "--user", "u", "--password", "p"],
        &[],
    );
    assert_eq!(missing_url.code, 2);
    assert!(
        missing_url
            .stderr
            .contains("no platform URL: pass --url or set BERTH_URL (or C8Y_BASEURL)"),
        "{}",
        missing_url.stderr
    );
    assert_eq!(platform.lines(), Vec::<String>::new());

    let json = run(
        dir.path(),
        &[
            &["deploy", invalid.to_str().unwrap(), "--format", "json"],
            &login[..],
        ]
        .concat(),
        &[],
    );
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["validation"]["valid"], false);
    assert_eq!(
        json.json()["validation"]["diagnostics"][0]["pointer"],
        "/resources/cpu"
    );
}

#[test]
fn an_unreachable_platform_is_a_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    // A port that was just free: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let result = run(
        dir.path(),
        &[
            "deploy",
            zip.to_str().unwrap(),
            "--url",
            &url,
            "--user",
            "t1/a",
            "--password",
            "pw",
        ],
        &[],
    );
    assert_eq!(result.code, 2, "{}", result.stderr);
    assert!(
        result.stderr.contains(&format!("cannot reach {url}")),
        "{}",
        result.stderr
    );
}

/// What the case is about, extra flags, environment, the login the server must see, the name looked up.
type CredentialCase<'a> = (
    &'a str,
    Vec<&'a str>,
    Vec<(&'a str, &'a str)>,
    &'a str,
    &'a str,
);

#[test]
fn credentials_come_from_flags_then_berth_then_c8y_variables_and_names_from_the_zip() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(
        dir.path(),
        "mysvc-2.1.0-SNAPSHOT.zip",
        MANIFEST_WITHOUT_NAME,
    );
    let zip = zip.to_str().unwrap();
    let route = |request: &Recorded| match request.line().as_str() {
        "GET /application/applicationsByName/mysvc"
        | "GET /application/applicationsByName/renamed" => {
            collection(&[application("5", "x", "MICROSERVICE")])
        }
        "POST /application/applications" => {
            (201, application("5", "x", "MICROSERVICE").to_string())
        }
        "POST /application/applications/5/binaries" => {
            (201, application("5", "x", "MICROSERVICE").to_string())
        }
        _ => error(404, "general/notFound", "no such route"),
    };
    let platform = FakePlatform::start(route);
    let url = platform.url.clone();
    let cases: &[CredentialCase] = &[
        (
            "C8Y variables, tenant prefixed",
            vec![],
            vec![
                ("C8Y_BASEURL", url.as_str()),
                ("C8Y_USER", "bob"),
                ("C8Y_PASSWORD", "c8y"),
                ("C8Y_TENANT", "t9"),
            ],
            "t9/bob:c8y",
            "mysvc",
        ),
        (
            "BERTH variables win over C8Y ones",
            vec![],
            vec![
                ("BERTH_URL", url.as_str()),
                ("BERTH_USER", "t1/carol"),
                ("BERTH_PASSWORD", "berth"),
                ("C8Y_BASEURL", "http://127.0.0.1:1"),
                ("C8Y_USER", "bob"),
                ("C8Y_PASSWORD", "c8y"),
            ],
            "t1/carol:berth",
            "mysvc",
        ),
        (
            "flags win over variables; --name names an unnamed manifest",
            vec![
                "--url",
                url.as_str(),
                "--user",
                "t2/dave",
                "--password",
                "flag",
                "--name",
                "renamed",
            ],
            vec![("BERTH_USER", "t1/carol"), ("BERTH_PASSWORD", "berth")],
            "t2/dave:flag",
            "renamed",
        ),
    ];
    for (what, flags, env, login, name) in cases {
        let before = platform.requests().len();
        let args = [&["deploy", zip][..], flags].concat();
        let result = run(dir.path(), &args, env);
        assert_eq!(result.code, 0, "{what}: {}", result.stderr);
        let requests = platform.requests();
        let lookup = &requests[before];
        assert_eq!(
            lookup.line(),
            format!("GET /application/applicationsByName/{name}"),
            "{what}"
        );
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(login)
        );
        assert_eq!(
            lookup.header("authorization"),
            Some(expected.as_str()),
            "{what}"
        );
    }
}

#[test]
fn subscribe_resolves_names_and_treats_409_as_success() {
    let dir = tempfile::tempdir().unwrap();
    let platform = FakePlatform::start(|request| match request.line().as_str() {
        BY_NAME => collection(&[application("42", "hello", "MICROSERVICE")]),
        "GET /application/applicationsByName/ghost" => collection(&[]),
        "POST /tenant/tenants/t2/applications" => (
            201,
            json!({"application": application("42", "hello", "MICROSERVICE")}).to_string(),
        ),
        "POST /tenant/tenants/t3/applications" => {
            error(409, "tenants/Duplicate", "already assigned")
        }
        T3_LIST => subscriptions(&["42"]),
        // A 409 that recorded nothing: the tenant's list does not show the application.
        "POST /tenant/tenants/t4/applications" => error(
            409,
            "tenants/Conflict",
            "User service_hello already exists in tenant t4; rename or delete it to subscribe",
        ),
        "GET /tenant/tenants/t4/applications?pageSize=2000" => subscriptions(&["7"]),
        _ => error(404, "tenants/Not Found", "Tenant t404 not found"),
    });
    // (app, tenant, exit code, stdout or stderr excerpt, requests)
    let cases: &[(&str, &str, i32, &str, &[&str])] = &[
        (
            "hello",
            "t2",
            0,
            "tenant t2 subscribed to application 42",
            &[BY_NAME, "POST /tenant/tenants/t2/applications"],
        ),
        (
            "42",
            "t3",
            0,
            "tenant t3 was already subscribed to application 42",
            &["POST /tenant/tenants/t3/applications", T3_LIST],
        ),
        (
            "42",
            "t4",
            1,
            "HTTP 409: tenants/Conflict: User service_hello already exists in tenant t4",
            &[
                "POST /tenant/tenants/t4/applications",
                "GET /tenant/tenants/t4/applications?pageSize=2000",
            ],
        ),
        (
            "42",
            "t404",
            1,
            "HTTP 404: tenants/Not Found: Tenant t404 not found",
            &["POST /tenant/tenants/t404/applications"],
        ),
        (
            "ghost",
            "t2",
            1,
            "no application named \"ghost\"",
            &["GET /application/applicationsByName/ghost"],
        ),
    ];
    for (app, tenant, code, excerpt, lines) in cases {
        let before = platform.requests().len();
        let result = run(
            dir.path(),
            &[
                "subscribe",
                "--app",
                app,
                "--tenant",
                tenant,
                "--url",
                &platform.url,
                "--user",
                "t1/a",
                "--password",
                "pw",
            ],
            &[],
        );
        assert_eq!(result.code, *code, "{app} {tenant}: {}", result.stderr);
        let output = if *code == 0 {
            &result.stdout
        } else {
            &result.stderr
        };
        assert!(output.contains(excerpt), "{app} {tenant}: {output}");
        assert_eq!(&platform.lines()[before..], *lines, "{app} {tenant}");
        if let Some(post) = platform.requests()[before..]
            .iter()
            .find(|r| r.method == "POST")
        {
            assert_eq!(post.json(), json!({"application": {"id": "42"}}));
        }
    }
}

#[test]
fn a_password_in_the_url_is_refused_without_being_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    let zip = zip.to_str().unwrap();
    // Nothing listens there: without the check, the connection error would name the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://alice:s3cret@127.0.0.1:{port}");
    let login = ["--user", "t1/a", "--password", "pw"];
    // (where the URL comes from, flags, environment)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        ("--url", vec!["--url", url.as_str()], vec![]),
        ("BERTH_URL", vec![], vec![("BERTH_URL", url.as_str())]),
        ("C8Y_BASEURL", vec![], vec![("C8Y_BASEURL", url.as_str())]),
    ];
    for (what, flags, env) in cases {
        for command in [
            vec!["deploy", zip],
            vec!["subscribe", "--app", "7", "--tenant", "t2"],
        ] {
            let args = [&command[..], &login[..], flags].concat();
            let result = run(dir.path(), &args, env);
            assert_eq!(result.code, 2, "{what}: {}", result.stderr);
            assert!(
                result
                    .stderr
                    .contains("must not contain a user name or password"),
                "{what}: {}",
                result.stderr
            );
            assert!(
                !result.stderr.contains("s3cret") && !result.stdout.contains("s3cret"),
                "{what}: {}{}",
                result.stdout,
                result.stderr
            );
        }
    }
}

#[test]
fn redirects_are_reported_with_their_target_not_followed() {
    const UPLOAD: &str = "POST /application/applications/7/binaries";
    // (request answered with the redirect, status, Location, message excerpt)
    let cases = [
        (
            BY_NAME,
            301,
            "https://berth.example/application/applicationsByName/hello",
            "HTTP 301 (a redirect) to https://berth.example/application/applicationsByName/hello; \
             berth-pack does not follow redirects: use https://berth.example as --url",
        ),
        (
            UPLOAD,
            307,
            "/login",
            "HTTP 307 (a redirect) to /login; berth-pack does not follow redirects: \
             use the platform's own address as --url",
        ),
        (
            BY_NAME,
            302,
            "https://bob:hunter2@elsewhere.example/x",
            "HTTP 302 (a redirect) to https://***@elsewhere.example/x",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    for (redirected, status, location, excerpt) in cases {
        for format in ["human", "json"] {
            let platform = FakePlatform::start_raw(move |stream, _| {
                let request = fake_platform::read_request(&stream)?;
                let _ = if request.line() == redirected {
                    fake_platform::write_raw(&stream, status, &[("Location", location)], b"")
                } else {
                    let body = json!({"applications": [application("7", "hello", "MICROSERVICE")]});
                    fake_platform::write_raw(&stream, 200, &[], body.to_string().as_bytes())
                };
                Some(request)
            });
            let result = deploy(dir.path(), &platform, &zip, &["--format", format]);
            assert_eq!(result.code, 2, "{location}: {}", result.stderr);
            assert!(
                result.stderr.contains(excerpt),
                "{location}: {}",
                result.stderr
            );
            assert!(!result.stderr.contains("hunter2"), "{}", result.stderr);
            assert!(!result.stderr.contains("WARNING"), "{}", result.stderr);
            let last = platform.lines().pop();
            assert_eq!(
                last.as_deref(),
                Some(redirected),
                "{location}: nothing followed"
            );
            if format == "json" {
                assert_eq!(result.json()["status"], status, "{location}");
            }
        }
    }
}

#[test]
fn plain_http_to_another_host_warns_before_sending_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    let zip = zip.to_str().unwrap();
    let platform = FakePlatform::start(empty_platform);
    let port = platform.url.rsplit(':').next().unwrap();
    // (URL, warned): 0.0.0.0 is no loopback address, yet Linux connects it to this host.
    let cases = [
        (format!("http://0.0.0.0:{port}"), true),
        (format!("http://127.0.0.1:{port}"), false),
        (format!("http://localhost:{port}"), false),
    ];
    for (url, warned) in cases {
        let args = [
            "deploy",
            zip,
            "--url",
            &url,
            "--user",
            "t1/a",
            "--password",
            "pw",
        ];
        let result = run(dir.path(), &args, &[]);
        assert_eq!(result.code, 0, "{url}: {}", result.stderr);
        let warning = format!("WARNING: {url} is plain http:// to another host");
        assert_eq!(
            result.stderr.contains(&warning),
            warned,
            "{url}: {}",
            result.stderr
        );
    }
}

#[test]
fn json_output_is_one_document_for_settings_errors_and_partial_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    let zip = zip.to_str().unwrap();
    let platform = FakePlatform::start(|request| match request.line().as_str() {
        BY_NAME => collection(&[application("7", "hello", "MICROSERVICE")]),
        "POST /application/applications/7/binaries" => {
            (201, application("7", "hello", "MICROSERVICE").to_string())
        }
        "POST /tenant/tenants/t2/applications" => (201, "{}".to_owned()),
        _ => error(404, "tenants/Not Found", "Tenant t9 not found"),
    });
    let url = platform.url.as_str();
    let subscribe = ["subscribe", "--app", "7", "--tenant", "t2"];
    // (what, arguments, exit code, error excerpt, status, id, subscribed)
    type Case<'a> = (&'a str, Vec<&'a str>, i32, &'a str, Value, Value, Value);
    let cases: [Case; 5] = [
        (
            "deploy without a URL",
            vec!["deploy", zip, "--user", "u", "--password", "p"],
            2,
            "no platform URL: pass --url",
            Value::Null,
            Value::Null,
            Value::Null,
        ),
        (
            "deploy with a password in the URL",
            vec![
                "deploy",
                zip,
                "--url",
                "https://a:s3cret@h",
                "--user",
                "u",
                "--password",
                "p",
            ],
            2,
            "must not contain a user name or password",
            Value::Null,
            Value::Null,
            Value::Null,
        ),
        (
            "subscribe without a password",
            [&subscribe[..], &["--url", url, "--user", "u"]].concat(),
            2,
            "no password: pass --password",
            Value::Null,
            Value::Null,
            Value::Null,
        ),
        (
            "subscribe with a malformed URL",
            [
                &subscribe[..],
                &["--url", "ftp://h", "--user", "u", "--password", "p"],
            ]
            .concat(),
            2,
            "must start with https://",
            Value::Null,
            Value::Null,
            Value::Null,
        ),
        (
            "deployed, subscribed to t2, not to t9",
            vec![
                "deploy",
                zip,
                "--url",
                url,
                "--user",
                "u",
                "--password",
                "p",
                "--subscribe",
                "t2",
                "--subscribe",
                "t9",
            ],
            1,
            "uploaded to application 7, but subscribing tenant t9",
            json!(404),
            json!("7"),
            json!(["t2"]),
        ),
    ];
    for (what, args, code, excerpt, status, id, subscribed) in cases {
        let args = [&args[..], &["--format", "json"]].concat();
        let result = run(dir.path(), &args, &[]);
        assert_eq!(result.code, code, "{what}: {}", result.stderr);
        let output = result.json();
        assert!(
            output["error"]
                .as_str()
                .unwrap_or_default()
                .contains(excerpt),
            "{what}: {output}"
        );
        assert!(!result.stdout.contains("s3cret"), "{what}: {output}");
        assert_eq!(output["status"], status, "{what}");
        assert_eq!(output["id"], id, "{what}");
        assert_eq!(output["subscribed"], subscribed, "{what}");
    }
}

//! Scenario: build the hello example with its own script, check the zip with `berth-pack`, run the image.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::command::run_ok;
use crate::docker::{Docker, DockerCleanup};
use crate::hello::{HelloPackage, build_package};
use crate::http::Http;
use crate::workspace::{Workspace, run_id};

/// A cold start of a static binary is well under a second; this only bounds a broken image.
const HEALTH_DEADLINE: Duration = Duration::from_secs(30);

/// Seconds `docker stop` waits after SIGTERM before it kills the container.
const STOP_GRACE_SECONDS: u32 = 20;

/// Variables passed with `docker run -e`, and whether `/env` must show them (platform variables only).
const INJECTED: &[(&str, &str, bool)] = &[
    ("C8Y_TENANT", "t1", true),
    ("C8Y_USER", "service_hello", true),
    ("C8Y_PASSWORD", "s3cret", true),
    ("C8Y_BOOTSTRAP_TENANT", "management", true),
    ("C8Y_BASEURL", "http://berth:8111", true),
    ("APPLICATION_NAME", "hello", true),
    ("MEMORY_LIMIT", "64M", true),
    ("TZ", "Europe/Berlin", true),
    ("UNRELATED_SECRET", "must-not-leak", false),
];

/// A request and its expected answer: path, request headers, status, JSON pointer into the body ("" = do
/// not parse the body) and the value expected there.
type RouteCase<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str, Value);

#[test]
fn hello_builds_packs_validates_and_serves() {
    let workspace = Workspace::get();
    let docker = Docker::require();
    let run = run_id();
    let image = format!("hello-e2e-{run}:1.0.0");
    let mut cleanup = DockerCleanup::new();
    cleanup.image(&image);

    let out = tempfile::tempdir().expect("temp output dir");
    let berth_pack = workspace.binary("berth-pack", "berth-pack");
    let HelloPackage { zip, build } = build_package(workspace, &berth_pack, &image, out.path());
    assert_eq!(
        build.stdout.trim(),
        zip.to_string_lossy(),
        "build.sh prints the zip path on stdout"
    );
    assert!(
        build.stderr.contains("smoke check passed"),
        "build.sh skipped its smoke check:\n{}",
        build.stderr
    );
    run_ok(Command::new(&berth_pack).arg("validate").arg(&zip));
    check_inspect(&berth_pack, &zip, &image, docker.image_layer_count(&image));

    let container =
        docker.run_detached(&mut cleanup, &format!("hello-e2e-{run}"), run_args(&image));
    let port = docker.published_port(&container, 80);
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    if let Err(err) = http.wait_for_status(&format!("{base}/health"), 200, HEALTH_DEADLINE) {
        panic!("{err}\n--- container logs ---\n{}", docker.logs(&container));
    }

    let env = http
        .get(&format!("{base}/env"), &[])
        .expect("GET /env")
        .json();
    for (name, value, shown) in INJECTED {
        let expected = shown.then(|| Value::from(*value));
        assert_eq!(
            env.get(*name).cloned(),
            expected,
            "/env entry {name} in {env}"
        );
    }

    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("t1/alice:pw")
    );
    let basic: &[(&str, &str)] = &[("Authorization", &authorization)];
    let routes: &[RouteCase] = &[
        ("/health", &[], 200, "/status", "UP".into()),
        ("/hello", basic, 200, "/tenant", "t1".into()),
        ("/hello", basic, 200, "/user", "alice".into()),
        ("/hello", &[], 200, "/tenant", Value::Null),
        ("/hello", &[], 200, "/application", "hello".into()),
        (
            "/headers?probe=1",
            &[("X-Berth-Probe", "e2e")],
            200,
            "/headers/x-berth-probe",
            "e2e".into(),
        ),
        ("/headers?probe=1", &[], 200, "/query", "probe=1".into()),
        ("/missing", &[], 404, "", Value::Null),
    ];
    for (path, headers, status, pointer, expected) in routes {
        let reply = http.get(&format!("{base}{path}"), headers).expect(path);
        assert_eq!(reply.status, *status, "GET {path}: {}", reply.body);
        if !pointer.is_empty() {
            let body = reply.json();
            assert_eq!(
                body.pointer(pointer),
                Some(expected),
                "GET {path} {pointer} in {body}"
            );
        }
    }

    // SIGTERM must drain and exit 0 well before docker's SIGKILL (which would give 137).
    let exit_code = docker.stop(&container, STOP_GRACE_SECONDS);
    let logs = docker.logs(&container);
    assert_eq!(
        exit_code, 0,
        "hello did not shut down cleanly on SIGTERM; logs:\n{logs}"
    );
    assert!(
        logs.contains("hello: stopped"),
        "no shutdown message in logs:\n{logs}"
    );
}

/// `docker run` options: the capabilities Cumulocity gives apiVersion 2 services, a random loopback port and
/// the injected environment.
fn run_args(image: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--cap-drop=ALL",
        "--cap-add=NET_BIND_SERVICE",
        "--publish",
        "127.0.0.1:0:80",
    ]
    .map(String::from)
    .into();
    for (name, value, _) in INJECTED {
        args.push("--env".into());
        args.push(format!("{name}={value}"));
    }
    args.push(image.into());
    args
}

/// `berth-pack inspect --format json` must describe the image that was packed, as the engine sees it.
fn check_inspect(berth_pack: &Path, zip: &Path, image: &str, engine_layers: usize) {
    let finished = run_ok(
        Command::new(berth_pack)
            .args(["inspect", "--format", "json"])
            .arg(zip),
    );
    let report: Value = serde_json::from_str(&finished.stdout)
        .unwrap_or_else(|err| panic!("inspect output is not JSON ({err}): {}", finished.stdout));
    let entries: Vec<&str> = report["package"]["entries"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    let checks: &[(&str, Value, Value)] = &[
        ("valid", report["valid"].clone(), Value::Bool(true)),
        (
            "manifest name",
            report["manifest"]["name"].clone(),
            "hello".into(),
        ),
        (
            "image tags",
            report["image"]["tags"].clone(),
            serde_json::json!([image]),
        ),
        (
            "architecture",
            report["image"]["architecture"].clone(),
            "amd64".into(),
        ),
        ("os", report["image"]["os"].clone(), "linux".into()),
        (
            "layer count",
            report["image"]["layer_count"].clone(),
            engine_layers.into(),
        ),
        (
            "zip entries",
            serde_json::json!(entries),
            serde_json::json!(["cumulocity.json", "image.tar"]),
        ),
    ];
    for (what, actual, expected) in checks {
        assert_eq!(
            actual, expected,
            "inspect {what} differs; full report:\n{report:#}"
        );
    }
}

//! Compatibility with the public Cumulocity Python clients, unmodified: `c8y-api` and `pyc8y`
//! (pinned in `tests/clients/requirements.txt`) drive a real Berth through the scripts in
//! `tests/clients/`, which print `N passed, N failed` last; every check must pass.
//!
//! The clients live in a virtualenv: `BERTH_C8Y_CLIENTS_VENV`, or `target/c8y-clients-venv` of
//! the workspace. `.ci/run` creates it; when it is missing or holds other pins, this test runs
//! `tests/clients/setup_venv.sh` itself (pip needs to reach PyPI) and fails saying how to create
//! it by hand if that does not work. It never passes without running the clients.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Options, Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, manifest, readiness_on_health, start_server_with, subscribe, wait_ready,
};
use crate::upload::zip_of;

/// How long one client suite may run (it uploads two packages and waits for nothing else).
const SUITE_DEADLINE: Duration = Duration::from_secs(600);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The virtualenv's python, creating the virtualenv with the pinned clients when needed.
fn client_python() -> PathBuf {
    let root = workspace();
    let venv = std::env::var_os("BERTH_C8Y_CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/c8y-clients-venv"));
    let setup = root.join("tests/clients/setup_venv.sh");
    // Idempotent: returns at once when the pins are installed.
    let output = Command::new("bash")
        .arg(&setup)
        .arg(&venv)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "the client virtualenv {} is missing and could not be created ({}): run \
         `tests/clients/setup_venv.sh {}` (needs python3 with venv and access to PyPI), or point \
         BERTH_C8Y_CLIENTS_VENV at a virtualenv holding tests/clients/requirements.txt",
        venv.display(),
        String::from_utf8_lossy(&output.stderr).trim(),
        venv.display(),
    );
    venv.join("bin/python")
}

/// Runs one suite script and returns (its output, passed, failed).
fn run_suite(python: &Path, script: &str, env: &[(&str, String)]) -> (String, u64, u64) {
    let dir = workspace().join("tests/clients");
    let mut command = Command::new(python);
    command
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CHECKS_TRACEBACK", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start the suite");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let end = Instant::now() + SUITE_DEADLINE;
    loop {
        if child.try_wait().expect("wait for the suite").is_some() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let last = output
        .lines()
        .rev()
        .find_map(summary)
        .unwrap_or_else(|| panic!("{script} printed no `N passed, N failed` line:\n{output}"));
    (output, last.0, last.1)
}

/// `N passed, N failed` → (N, N).
fn summary(line: &str) -> Option<(u64, u64)> {
    let (passed, failed) = line.trim().split_once(" passed, ")?;
    Some((
        passed.parse().ok()?,
        failed.strip_suffix(" failed")?.parse().ok()?,
    ))
}

#[test]
fn c8y_api_and_pyc8y_work_unchanged() {
    let python = client_python();
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server_with(
        &[],
        Options {
            http: true,
            ..Options::default()
        },
    );
    let tenant: Tenant = create_tenant(&server, "clients");
    let package = manifest("MULTI_TENANT", 1, readiness_on_health());
    let app = deploy(&server, &tenant, &image.0, &package);
    subscribe(&server, &tenant.id, &app).expect(201);
    wait_ready(&server, &tenant, &app, 1);
    let name = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()["name"]
        .as_str()
        .expect("name")
        .to_owned();
    // The package the suites upload to applications of their own.
    let dir = tempfile::tempdir().expect("tempdir");
    let zip = dir.path().join("hello.zip");
    std::fs::write(
        &zip,
        zip_of(&[
            ("cumulocity.json", package.as_bytes()),
            ("image.tar", &image.0.archive),
        ]),
    )
    .expect("write package");
    let env = [
        ("BERTH_HTTPS", server.https.clone()),
        ("BERTH_HTTP", server.http.clone().expect("http listener")),
        (
            "REQUESTS_CA_BUNDLE",
            server.path("tls/cert.pem").display().to_string(),
        ),
        ("MGMT_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("T_ID", tenant.id.clone()),
        ("T_PASSWORD", tenant.admin_password.clone()),
        ("APP_ID", app.clone()),
        ("APP_NAME", name),
        ("PACKAGE_ZIP", zip.display().to_string()),
    ];
    assert_eq!(tenant.admin_login, format!("{}/boss", tenant.id));
    let mut failures = Vec::new();
    for script in ["c8y_api_suite.py", "pyc8y_suite.py"] {
        let (output, passed, failed) = run_suite(&python, script, &env);
        eprintln!("--- {script} ---\n{output}");
        if failed > 0 || passed == 0 {
            // The failing checks' lines go in the panic message: CI's summary keeps the panic
            // but may cut the suites' output above it.
            let why: Vec<&str> = output.lines().filter(|l| l.starts_with("FAIL ")).collect();
            failures.push(format!(
                "{script}: {passed} passed, {failed} failed: {why:?}"
            ));
        }
    }
    // The server is still the one the suites saw (nothing crashed it).
    server
        .req("GET", "/tenant/currentTenant")
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200);
    assert!(failures.is_empty(), "client suites failed: {failures:?}");
}

#[test]
fn suite_summaries_are_read_exactly() {
    assert_eq!(summary("12 passed, 0 failed"), Some((12, 0)));
    assert_eq!(summary("3 passed, 2 failed\n"), Some((3, 2)));
    for bad in ["passed, failed", "12 passed", "x passed, 0 failed", "ok"] {
        assert_eq!(summary(bad), None, "{bad}");
    }
}

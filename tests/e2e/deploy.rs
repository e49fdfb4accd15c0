//! Scenario: build the hello package with its own script, `berth-pack deploy` it to a real `berth` over TLS
//! (trusting the certificate the platform generated), check the application the platform recorded, deploy
//! again with `--subscribe` and check the application is reused and subscribed; plus the failures a user meets
//! first (untrusted certificate, wrong password).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::command::{describe_failure, run, run_ok};
use crate::docker::{Docker, DockerCleanup, TEST_LABEL};
use crate::hello::build_package;
use crate::workspace::{Workspace, run_id};

const ADMIN_USER: &str = "management/admin";
const ADMIN_PASSWORD: &str = "E2e-Deploy-Passw0rd";
/// Startup includes generating a certificate and migrating a fresh database; this only bounds a hang.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A `berth serve` process on a temporary data directory, killed when dropped.
struct Berth {
    child: Child,
    binary: PathBuf,
    https: String,
    /// Labels (`berth.installation=<id>`) every container and network this instance creates.
    installation: String,
    cert: PathBuf,
    _data: tempfile::TempDir,
}

impl Berth {
    fn start(binary: &Path) -> Berth {
        let data = tempfile::Builder::new()
            .prefix("berth-e2e-deploy-")
            .tempdir()
            .expect("temp data dir");
        let data_dir = data.path().join("data");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--https", "127.0.0.1:0"])
            // Port 0: other platform instances (tests running in parallel) may hold the default 8111.
            .args(["--internal-api", "0.0.0.0:0"])
            .args(["--container-label", TEST_LABEL])
            .env("BERTH_ADMIN_USER", "admin")
            .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("BERTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let give_up = Instant::now() + START_DEADLINE;
        let mut seen = Vec::new();
        let mut https = None;
        let mut installation = None;
        // The management-tenant line is the last one printed before the server is ready.
        while !seen
            .last()
            .is_some_and(|line: &String| line.starts_with("berth: management tenant"))
        {
            match received.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(address) = line.strip_prefix("berth: listening on https://") {
                        https = Some(format!("https://{address}"));
                    }
                    if let Some(id) = line.strip_prefix("berth: installation ") {
                        installation = Some(id.trim().to_owned());
                    }
                    seen.push(line);
                }
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("berth did not become ready ({err}); it printed {seen:?}");
                }
            }
        }
        let https = https.unwrap_or_else(|| panic!("no https listening line in {seen:?}"));
        let installation =
            installation.unwrap_or_else(|| panic!("no installation line in {seen:?}"));
        Berth {
            child,
            binary: binary.to_owned(),
            https,
            installation,
            cert: data_dir.join("tls").join("cert.pem"),
            _data: data,
        }
    }

    /// GET `path` as the management admin over TLS, trusting only the platform's certificate.
    fn admin_get(&self, path: &str) -> (u16, Value) {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let pem = std::fs::read(&self.cert).expect("platform certificate");
        let certificate = Certificate::from_pem(&pem).expect("certificate PEM");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(vec![certificate])))
                    .build(),
            )
            .build()
            .into();
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"))
        );
        let mut response = agent
            .get(format!("{}{path}", self.https))
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .call()
            .unwrap_or_else(|err| panic!("GET {path}: {err}"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("body");
        let body = serde_json::from_str(&body)
            .unwrap_or_else(|err| panic!("GET {path} body is not JSON ({err}): {body}"));
        (status, body)
    }
}

impl Drop for Berth {
    /// Kills the server, then removes what its supervisor left running (a killed server cannot clean up).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let filter = format!("label=berth.installation={}", self.installation);
        let steps: [(&[&str], &[&str]); 2] = [
            (&["ps", "--all", "--quiet"], &["rm", "--force"]),
            (&["network", "ls", "--quiet"], &["network", "rm"]),
        ];
        // A start in flight when it died (a spare network holder's) ends first: removed
        // mid-start, a container leaves the engine counting a network endpoint no container
        // has, and that network can never be removed.
        let settle = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < settle {
            let created = run(Command::new("docker").args([
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &filter,
                "--filter",
                "status=created",
            ]));
            if created.stdout.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Its last engine calls (a network or a spare network holder being made) still complete
        // after it died: remove until a pass a second after the start finds nothing.
        let start = std::time::Instant::now();
        for _ in 0..20 {
            let mut found = false;
            for (list, remove) in steps {
                let listed = run(Command::new("docker")
                    .args(list)
                    .args(["--filter", &filter]));
                let ids = String::from_utf8_lossy(&listed.stdout).into_owned();
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if ids.is_empty() {
                    continue;
                }
                found = true;
                let removed = run(Command::new("docker").args(remove).args(&ids));
                if !removed.status.success() {
                    eprintln!(
                        "e2e cleanup: docker {remove:?} {ids:?} failed: {}",
                        String::from_utf8_lossy(&removed.stderr).trim()
                    );
                }
            }
            if !found && start.elapsed() >= std::time::Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        // Its host firewall rules outlive it by design; removed as an operator would.
        let _ = Command::new(&self.binary)
            .args(["firewall", "remove", "--installation", &self.installation])
            .output();
    }
}

/// The engine's id of `reference`, if it exists.
fn image_id(reference: &str) -> Option<String> {
    let output =
        run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference]));
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The image tag the platform adds on upload (`berth/<installation>/<tenant>-<app id>:<version>`). It names
/// this platform instance, so no other instance sharing the engine uses it; removed on drop.
struct PlatformTag {
    tag: String,
}

impl Drop for PlatformTag {
    fn drop(&mut self) {
        if image_id(&self.tag).is_some() {
            let output = run(Command::new("docker").args(["rmi", &self.tag]));
            if !output.status.success() {
                eprintln!(
                    "e2e cleanup: docker rmi {} failed: {}",
                    self.tag,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
    }
}

/// `berth-pack deploy <zip> --url … --user management/admin --password <password>` plus `extra`.
fn deploy_command(
    berth_pack: &Path,
    zip: &Path,
    berth: &Berth,
    password: &str,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(berth_pack);
    command
        .arg("deploy")
        .arg(zip)
        .args(["--url", &berth.https, "--user", ADMIN_USER, "--password"])
        .arg(password)
        .args(extra);
    for name in ["BERTH_URL", "BERTH_USER", "BERTH_PASSWORD", "BERTH_CA_CERT"] {
        command.env_remove(name);
    }
    command
}

#[test]
fn hello_deploys_to_berth_and_a_redeploy_reuses_the_application_and_subscribes() {
    let workspace = Workspace::get();
    let _docker = Docker::require();
    let image = format!("hello-deploy-e2e-{}:1.0.0", run_id());
    let mut cleanup = DockerCleanup::new();
    cleanup.image(&image);

    let berth = Berth::start(&workspace.binary("berth", "berth"));
    let berth_pack = workspace.binary("berth-pack", "berth-pack");
    let out = tempfile::tempdir().expect("temp output dir");
    let zip = build_package(workspace, &berth_pack, &image, out.path()).zip;
    let ca_cert = berth.cert.to_str().expect("UTF-8 path").to_owned();

    // Without --ca-cert the self-signed certificate is not trusted: a connection error, nothing uploaded.
    let untrusted = run(&mut deploy_command(
        &berth_pack,
        &zip,
        &berth,
        ADMIN_PASSWORD,
        &[],
    ));
    assert_eq!(
        untrusted.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("--ca-cert"),
        "the TLS failure should point at --ca-cert: {}",
        String::from_utf8_lossy(&untrusted.stderr)
    );

    // A wrong password is the platform's rejection (exit 1) with its message.
    let mut wrong = deploy_command(
        &berth_pack,
        &zip,
        &berth,
        "not-the-password",
        &["--ca-cert", &ca_cert],
    );
    let wrong_output = run(&mut wrong);
    let wrong_stderr = String::from_utf8_lossy(&wrong_output.stderr);
    assert_eq!(wrong_output.status.code(), Some(1), "{wrong_stderr}");
    assert!(wrong_stderr.contains("HTTP 401"), "{wrong_stderr}");

    let mut first = deploy_command(
        &berth_pack,
        &zip,
        &berth,
        ADMIN_PASSWORD,
        &["--ca-cert", &ca_cert, "--format", "json"],
    );
    let first_output = run(&mut first);
    assert!(
        first_output.status.success(),
        "{}",
        describe_failure(&first, &first_output)
    );
    let deployed: Value = serde_json::from_slice(&first_output.stdout).expect("deploy JSON");
    let id = deployed["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {deployed}"))
        .to_owned();
    // The platform tags the loaded image for the application (removed at the end, see `PlatformTag`).
    let platform_tag = PlatformTag {
        tag: format!("berth/{}/management-{id}:1.0.0", berth.installation),
    };
    assert_eq!(
        image_id(&platform_tag.tag),
        Some(image_id(&image).expect("the build image exists")),
        "the platform's tag {} names the deployed build",
        platform_tag.tag
    );
    assert_eq!(deployed["name"], "hello", "{deployed}");
    assert_eq!(deployed["version"], "1.0.0", "{deployed}");
    assert_eq!(deployed["created"], true, "{deployed}");

    let (status, application) = berth.admin_get(&format!("/application/applications/{id}"));
    assert_eq!(status, 200, "{application}");
    let checks: &[(&str, &str, Value)] = &[
        ("name", "/name", "hello".into()),
        ("type", "/type", "MICROSERVICE".into()),
        ("key", "/key", "hello-microservice-key".into()),
        ("manifest name", "/manifest/name", "hello".into()),
        ("manifest version", "/manifest/version", "1.0.0".into()),
        (
            "active version from the deploy output",
            "/activeVersionId",
            deployed["activeVersionId"].clone(),
        ),
    ];
    for (what, pointer, expected) in checks {
        assert_eq!(
            application.pointer(pointer),
            Some(expected),
            "{what} in {application:#}"
        );
    }
    assert!(
        application["activeVersionId"]
            .as_str()
            .is_some_and(|version| !version.is_empty()),
        "no activeVersionId after the upload: {application:#}"
    );

    // Same package again, this time with --insecure: the existing application is found and reused.
    let mut second = deploy_command(
        &berth_pack,
        &zip,
        &berth,
        ADMIN_PASSWORD,
        &["--insecure", "--subscribe", "management"],
    );
    let second_output = run(&mut second);
    assert!(
        second_output.status.success(),
        "{}",
        describe_failure(&second, &second_output)
    );
    let second_stderr = String::from_utf8_lossy(&second_output.stderr);
    assert!(
        second_stderr.contains("WARNING: --insecure"),
        "{second_stderr}"
    );
    assert!(
        second_stderr.contains(&format!("using existing application {id}")),
        "{second_stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&second_output.stdout),
        format!("{id}\n")
    );

    let (status, by_name) = berth.admin_get("/application/applicationsByName/hello");
    assert_eq!(status, 200, "{by_name}");
    let ids: Vec<&str> = by_name["applications"]
        .as_array()
        .map(|apps| apps.iter().filter_map(|app| app["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        [id.as_str()],
        "one application named hello: {by_name:#}"
    );

    // The redeploy subscribed the management tenant; subscribing again is "already subscribed", not an error.
    assert!(
        second_stderr.contains("tenant management subscribed"),
        "{second_stderr}"
    );
    let (status, references) = berth.admin_get("/tenant/tenants/management/applications");
    assert_eq!(status, 200, "{references}");
    let subscribed: Vec<&str> = references["references"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["application"]["id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        subscribed.contains(&id.as_str()),
        "application {id} not among the subscriptions: {references:#}"
    );
    let mut again = Command::new(&berth_pack);
    again
        .args(["subscribe", "--app", "hello", "--tenant", "management"])
        .args([
            "--url",
            &berth.https,
            "--user",
            ADMIN_USER,
            "--password",
            ADMIN_PASSWORD,
        ])
        .args(["--ca-cert", &ca_cert]);
    let finished = run_ok(&mut again);
    assert_eq!(
        finished.stdout,
        format!("tenant management was already subscribed to application {id}\n")
    );

    // The same build packed with --zstd as version 1.0.1: Berth unpacks the Zstandard entry,
    // loads the very image and serves it through the proxy.
    let manifest_path = workspace.example("hello").join("cumulocity.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_path).expect("hello's manifest"))
            .expect("manifest JSON");
    manifest["version"] = "1.0.1".into();
    let zstd_manifest = out.path().join("zstd-manifest.json");
    std::fs::write(&zstd_manifest, manifest.to_string()).expect("write the manifest");
    let zstd_zip = out.path().join("hello-zstd.zip");
    run_ok(
        Command::new(&berth_pack)
            .args(["pack", "--quiet", "--zstd", "--docker-image", &image])
            .arg("--manifest")
            .arg(&zstd_manifest)
            .arg("--output")
            .arg(&zstd_zip),
    );
    let inspected = run_ok(Command::new(&berth_pack).arg("inspect").arg(&zstd_zip));
    assert!(
        inspected.stdout.contains("image.tar zstd"),
        "{}",
        inspected.stdout
    );
    run_ok(&mut deploy_command(
        &berth_pack,
        &zstd_zip,
        &berth,
        ADMIN_PASSWORD,
        &["--ca-cert", &ca_cert],
    ));
    let zstd_tag = PlatformTag {
        tag: format!("berth/{}/management-{id}:1.0.1", berth.installation),
    };
    assert_eq!(
        image_id(&zstd_tag.tag),
        image_id(&image),
        "{}",
        zstd_tag.tag
    );
    let (status, application) = berth.admin_get(&format!("/application/applications/{id}"));
    assert_eq!(status, 200, "{application}");
    assert_eq!(
        application["manifest"]["version"], "1.0.1",
        "{application:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = berth.admin_get("/service/hello/health");
        if status == 200 {
            assert_eq!(body["status"], "UP", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 200 from the zstd deploy: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

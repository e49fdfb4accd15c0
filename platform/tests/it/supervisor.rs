//! Subscriptions and the container supervisor against the real Docker engine, with the hello
//! example as workload: deployments per isolation mode with the right credentials, the
//! container calling the platform, probes (restart, readiness gating), adoption after a crash,
//! cleanup on unsubscribe, limits and hardening, and network isolation between tenants.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use package_rules::test_support::{archive, file};
use serde_json::{Value, json};

use crate::fixture::SETTINGS_VALUES;
use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Options, Server, Tenant, create_tenant, unique};
use crate::upload::{multipart, zip_of};

/// How long a deployment may take to become ready (image already loaded; containers start in
/// well under a second, probes need a few periods).
const READY_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed for these tests");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub(crate) fn docker_lines(args: &[&str]) -> Vec<String> {
    docker(args)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The hello image, built once per test binary with `examples/hello/build.sh` (unique tag,
/// label `berth.test=1`), shared by the tests running at the same time and removed when the
/// last of them is done.
pub(crate) struct HelloImage {
    pub(crate) id: String,
    pub(crate) archive: Vec<u8>,
}

static HELLO: Mutex<(usize, Option<Arc<HelloImage>>)> = Mutex::new((0, None));
/// The hello image whose removal failed, retried by the next `DockerCleanup` with no lease held.
static HELLO_ORPHAN: Mutex<Option<String>> = Mutex::new(None);
/// Test image tags still used by a container when their owner dropped them: removed by a later
/// `DockerCleanup` once nothing uses them (forcing would leave the image behind untagged).
pub(crate) static PENDING_IMAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Removes a test image tag now, or once no container uses it.
pub(crate) fn remove_image_when_unused(tag: &str) {
    let removed = Command::new("docker")
        .args(["rmi", tag])
        .output()
        .is_ok_and(|o| o.status.success());
    if !removed {
        PENDING_IMAGES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tag.to_owned());
    }
}

/// A reference to the shared image; the image is removed when the last one drops.
pub(crate) struct HelloLease(pub(crate) Arc<HelloImage>);

impl HelloLease {
    pub(crate) fn acquire() -> HelloLease {
        let mut guard = HELLO.lock().unwrap_or_else(|p| p.into_inner());
        if guard.1.is_none() {
            guard.1 = Some(Arc::new(build_hello()));
        }
        guard.0 += 1;
        HelloLease(Arc::clone(guard.1.as_ref().unwrap()))
    }
}

impl Drop for HelloLease {
    fn drop(&mut self) {
        let mut guard = HELLO.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 -= 1;
        if guard.0 == 0 {
            let removed = Command::new("docker")
                .args(["rmi", "-f", &self.0.id])
                .output()
                .is_ok_and(|o| o.status.success());
            if !removed {
                *HELLO_ORPHAN.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.0.id.clone());
            }
            guard.1 = None;
        }
    }
}

fn build_hello() -> HelloImage {
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let bin_dir = berth.parent().expect("binary directory");
    let target_dir = bin_dir.parent().expect("target directory");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned();
    let out = tempfile::tempdir().unwrap();
    let tag = format!("berth-it-hello-{}:1.0.0", unique(""));
    let mut command = Command::new(workspace.join("examples/hello/build.sh"));
    command
        .env("IMAGE", &tag)
        .env("SMOKE", "0")
        .env("IMAGE_LABELS", "berth.test=1")
        .env("OUTPUT_DIR", out.path())
        .env("CARGO_TARGET_DIR", target_dir);
    // Reuse a berth-pack built in the same target directory (build.sh builds one otherwise).
    let pack = bin_dir.join("berth-pack");
    if pack.is_file() {
        command.env("BERTH_PACK", &pack);
    }
    let output = command.output().expect("run build.sh");
    assert!(
        output.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    let archive = std::fs::read(out.path().join("image.tar")).expect("image.tar");
    HelloImage { id, archive }
}

/// Removes whatever the server under test left in Docker (it runs after the server is killed).
pub(crate) struct DockerCleanup(pub(crate) String);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        crate::fixture::remove_installation_objects(&self.0);
        PENDING_IMAGES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|tag| {
                !Command::new("docker")
                    .args(["rmi", tag])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        // A hello image whose removal failed (another test's container held it) goes when the
        // last test using it is done.
        let guard = HELLO.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 == 0
            && let Some(id) = HELLO_ORPHAN
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        {
            let _ = Command::new("docker").args(["rmi", "-f", &id]).output();
        }
    }
}

/// A server with fast reconcile passes, and its Docker cleanup (dropped after the server).
pub(crate) fn start_server(extra: &[&str]) -> (DockerCleanup, Server) {
    start_server_with(extra, Options::default())
}

/// `start_server` with more options (their `extra_args` are replaced by `extra`).
pub(crate) fn start_server_with(extra: &[&str], mut options: Options) -> (DockerCleanup, Server) {
    let mut extra_args = vec!["--reconcile-interval".to_owned(), "1".to_owned()];
    extra_args.extend(extra.iter().map(|s| (*s).to_owned()));
    options.extra_args = extra_args;
    // BERTH_IT_LOG=info shows the supervisor's decisions when debugging a test.
    if let Ok(filter) = std::env::var("BERTH_IT_LOG") {
        options.env.push(("BERTH_LOG".to_owned(), filter));
    }
    let server = Server::start_with(options);
    let installation = server.installation().to_owned();
    (DockerCleanup(installation), server)
}

pub(crate) fn installation(cleanup: &DockerCleanup) -> &str {
    &cleanup.0
}

/// Polls `check` until it returns Some, or panics after `deadline` with `what`.
pub(crate) fn wait_for<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A manifest for the hello image with fast probes.
pub(crate) fn manifest(isolation: &str, replicas: u32, probes: Value) -> String {
    let mut m = json!({
        "apiVersion": "2",
        "version": "1.0.0",
        "provider": {"name": "Berth tests"},
        "isolation": isolation,
        "replicas": replicas,
        "resources": {"cpu": "0.5", "memory": "64M"},
        "settings": [
            {"key": "greeting", "defaultValue": "Hello", "editable": true},
            {"key": "credentials.token", "defaultValue": "s3cret", "editable": false}
        ],
        "requiredRoles": ["ROLE_INVENTORY_READ"],
        "roles": ["ROLE_HELLO_READ"],
    });
    for (k, v) in probes.as_object().into_iter().flatten() {
        m[k] = v.clone();
    }
    m.to_string()
}

pub(crate) fn readiness_on_health() -> Value {
    json!({"readinessProbe": {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}})
}

/// An application owned by `owner`, with the package uploaded.
pub(crate) fn deploy(
    server: &Server,
    owner: &Tenant,
    image: &HelloImage,
    manifest: &str,
) -> String {
    let name = unique("hello-");
    let app = server
        .req("POST", "/application/applications")
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"name": name, "key": format!("{name}-key"), "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json();
    let id = app["id"].as_str().unwrap().to_owned();
    upload_package(server, owner, &id, image, manifest).expect(201);
    id
}

/// Uploads `image` with `manifest` to application `id`; the caller checks the answer.
pub(crate) fn upload_package(
    server: &Server,
    owner: &Tenant,
    id: &str,
    image: &HelloImage,
    manifest: &str,
) -> crate::fixture::Resp {
    let zip = zip_of(&[
        ("cumulocity.json", manifest.as_bytes()),
        ("image.tar", &image.archive),
    ]);
    let (content_type, body) = multipart("file", &zip);
    server
        .req("POST", &format!("/application/applications/{id}/binaries"))
        .basic(&owner.admin_login, &owner.admin_password)
        .raw(&content_type, body)
        .send()
}

pub(crate) fn subscribe(server: &Server, tenant: &str, app: &str) -> crate::fixture::Resp {
    server
        .req("POST", &format!("/tenant/tenants/{tenant}/applications"))
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .json(&json!({"application": {"id": app}}))
        .send()
}

pub(crate) fn status(server: &Server, owner: &Tenant, app: &str) -> Value {
    server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["status"]
        .clone()
}

/// Waits until the application has `deployments` deployments, each with every replica ready;
/// returns the status.
pub(crate) fn wait_ready(server: &Server, owner: &Tenant, app: &str, deployments: usize) -> Value {
    wait_for(READY_DEADLINE, &format!("application {app} ready"), || {
        let status = status(server, owner, app);
        let deps = status["deployments"].as_array()?;
        let ready = deps.len() == deployments
            && deps.iter().all(|d| {
                d["active"] == d["desired"]
                    && d["instances"]
                        .as_array()
                        .is_some_and(|i| i.len() as u64 == d["desired"].as_u64().unwrap_or(0))
            });
        ready.then_some(status)
    })
}

pub(crate) fn instances(status: &Value) -> Vec<Value> {
    status["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

pub(crate) fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// GET on a container's port 80, straight to its bridge IP.
pub(crate) fn container_get(ip: &str, path: &str) -> Value {
    plain_agent()
        .get(&format!("http://{ip}:80{path}"))
        .call()
        .expect("container answers")
        .body_mut()
        .read_json()
        .expect("JSON from the container")
}

pub(crate) fn container_post(ip: &str, path: &str) {
    let response = plain_agent()
        .post(&format!("http://{ip}:80{path}"))
        .send_empty()
        .expect("container answers");
    assert_eq!(response.status(), 200);
}

/// The replicas' containers of `installation` (not the network holders they run in).
pub(crate) fn containers_of(installation: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=berth.installation={installation}"),
        "--format",
        "{{.ID}} {{.Label \"berth.holder\"}}",
    ])
    .into_iter()
    .filter_map(|line| match line.split_once(' ') {
        Some((id, holder)) if holder.trim().is_empty() => Some(id.to_owned()),
        Some(_) => None,
        None => Some(line),
    })
    .collect()
}

/// The container whose network settings a replica's are: its network holder (the container
/// whose namespace it joined), or itself.
pub(crate) fn network_container(container: &str) -> String {
    let mode = docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", container]);
    match mode.strip_prefix("container:") {
        Some(holder) => holder.to_owned(),
        None => container.to_owned(),
    }
}

/// The full ids of the deployment networks of `installation` (not its holder pool's network).
pub(crate) fn networks_of(installation: &str) -> Vec<String> {
    docker_lines(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        &format!("label=berth.installation={installation}"),
        "--format",
        "{{.ID}} {{.Name}}",
    ])
    .into_iter()
    .filter_map(|line| match line.split_once(' ') {
        Some((_, name)) if is_holder_pool(name) => None,
        Some((id, _)) => Some(id.to_owned()),
        None => Some(line),
    })
    .collect()
}

/// Whether `name` is that of an installation's holder pool network (`berth-<id>-pool`), or of
/// a holder waiting on it (`berth-<id>-pool-spare-<hex>`).
pub(crate) fn is_holder_pool(name: &str) -> bool {
    let name = name.trim_start_matches('/');
    let network = name
        .split_once("-spare-")
        .map_or(name, |(network, _)| network);
    network.starts_with("berth-") && network.split('-').count() == 3 && network.ends_with("-pool")
}

fn bootstrap_login(server: &Server, owner: &Tenant, app: &str) -> (String, String) {
    let user = server
        .req(
            "GET",
            &format!("/application/applications/{app}/bootstrapUser"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    (
        format!(
            "{}/{}",
            user["tenant"].as_str().unwrap(),
            user["name"].as_str().unwrap()
        ),
        user["password"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn isolation_modes_deploy_with_tenant_credentials_and_unsubscribe_cleans_up() {
    let image = HelloLease::acquire();
    let (cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let (a, b) = (create_tenant(&server, "ta"), create_tenant(&server, "tb"));
    let multi = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    let per = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("PER_TENANT", 1, readiness_on_health()),
    );
    let subscribed = Instant::now();
    for app in [&multi, &per] {
        for t in [&a, &b] {
            subscribe(&server, &t.id, app).expect(201);
        }
    }
    subscribe(&server, &a.id, &multi).expect_error(409, "applications/Duplicate");

    let multi_status = wait_ready(&server, &owner, &multi, 1);
    let per_status = wait_ready(&server, &owner, &per, 2);
    eprintln!(
        "figure: 2 applications, 3 deployments ready {:?} after the first subscribe",
        subscribed.elapsed()
    );
    assert_eq!(multi_status["deployments"][0]["tenant"], Value::Null);
    let tenants: BTreeSet<String> = per_status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tenants, BTreeSet::from([a.id.clone(), b.id.clone()]));

    // Subscriptions list (admin view) and the bootstrap user's view with service users.
    let refs = server
        .req("GET", &format!("/tenant/tenants/{}/applications", a.id))
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200)
        .json();
    assert_eq!(refs["references"].as_array().unwrap().len(), 2);
    let (login, password) = bootstrap_login(&server, &owner, &per);
    let users = server
        .req("GET", "/application/currentApplication/subscriptions")
        .basic(&login, &password)
        .send()
        .expect(200)
        .json();
    let service_users = users["users"].as_array().unwrap().clone();
    assert_eq!(service_users.len(), 2);
    server
        .req("GET", "/application/currentApplication/subscriptions")
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(403);
    // Settings: defaults, credentials decrypted and unprefixed.
    let settings = server
        .req("GET", "/application/currentApplication/settings")
        .header("Accept", SETTINGS_VALUES)
        .basic(&login, &password)
        .send()
        .expect(200)
        .json();
    assert_eq!(settings, json!({"greeting": "Hello", "token": "s3cret"}));

    // PER_TENANT containers carry their tenant's service user; it can log in.
    for dep in per_status["deployments"].as_array().unwrap() {
        let tenant = dep["tenant"].as_str().unwrap();
        let ip = dep["instances"][0]["ip"].as_str().unwrap();
        let env = container_get(ip, "/env");
        let expected = service_users
            .iter()
            .find(|u| u["tenant"] == tenant)
            .expect("service user of the tenant");
        assert_eq!(env["C8Y_TENANT"], expected["tenant"]);
        assert_eq!(env["C8Y_USER"], expected["name"]);
        assert_eq!(env["C8Y_PASSWORD"], expected["password"]);
        assert_eq!(env["C8Y_MICROSERVICE_ISOLATION"], "PER_TENANT");
        assert_eq!(env["C8Y_BOOTSTRAP_USER"].as_str(), login.split('/').nth(1));
        server
            .req("GET", "/user/currentUser")
            .basic(
                &format!("{tenant}/{}", expected["name"].as_str().unwrap()),
                expected["password"].as_str().unwrap(),
            )
            .send()
            .expect(200);
    }
    let multi_ip = multi_status["deployments"][0]["instances"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let env = container_get(&multi_ip, "/env");
    assert!(env.get("C8Y_TENANT").is_none(), "{env}");
    for (key, value) in [
        ("C8Y_MICROSERVICE_ISOLATION", "MULTI_TENANT"),
        ("SERVER_PORT", "80"),
        // 64M in the manifest is 64 000 000 bytes (SI), in binary units exactly 62500K.
        ("MEMORY_LIMIT", "62500K"),
        ("C8Y_BOOTSTRAP_REGISTER", "false"),
        ("LOG4J_FORMAT_MSG_NO_LOOKUPS", "true"),
    ] {
        assert_eq!(env[key], value, "{key}");
    }

    // What MEMORY_LIMIT says is what Docker enforces.
    let container = multi_status["deployments"][0]["instances"][0]["name"]
        .as_str()
        .unwrap();
    let enforced = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", container]);
    assert_eq!(
        enforced.trim(),
        (62_500u64 * 1024).to_string(),
        "{container}"
    );

    // The container reaches the platform through C8Y_BASEURL with its bootstrap credentials.
    let answer = container_get(&multi_ip, "/platform/subscriptions");
    assert_eq!(answer["status"], 200, "{answer}");
    let seen: BTreeSet<String> = answer["body"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, BTreeSet::from([a.id.clone(), b.id.clone()]));
    // The internal API refuses peers outside the container networks (here: the test itself).
    let internal = server
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("berth: internal api on http://"))
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let refused = plain_agent()
        .get(&format!(
            "http://127.0.0.1:{internal}/application/currentApplication"
        ))
        .call()
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Limits and hardening.
    let container = &containers_of(installation(&cleanup))[0];
    let inspect: Value =
        serde_json::from_str(&docker(&["inspect", container])).expect("inspect JSON");
    let host = &inspect[0]["HostConfig"];
    assert_eq!(host["Memory"], 64_000_000);
    assert_eq!(host["MemorySwap"], 64_000_000);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["PidsLimit"], 10240);
    assert_eq!(host["CapDrop"], json!(["ALL"]));
    assert_eq!(host["CapAdd"], json!(["NET_BIND_SERVICE"]));
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges:true"]));
    assert_eq!(host["Privileged"], false);
    assert_eq!(inspect[0]["Config"]["Labels"]["berth.test"], "1");
    // It runs in the network namespace of a holder on the deployment network, which carries
    // the host entry, and is as hardened (and smaller).
    let holder = network_container(container);
    assert_eq!(host["NetworkMode"], format!("container:{holder}"));
    let inspect: Value =
        serde_json::from_str(&docker(&["inspect", &holder])).expect("inspect JSON");
    let held = &inspect[0]["HostConfig"];
    assert_eq!(held["ExtraHosts"], json!(["berth-platform:host-gateway"]));
    assert!(held["NetworkMode"].as_str().unwrap().starts_with("berth-"));
    assert_eq!(held["CapDrop"], json!(["ALL"]));
    assert_eq!(held["CapAdd"], Value::Null);
    assert_eq!(held["SecurityOpt"], json!(["no-new-privileges:true"]));
    assert_eq!(held["ReadonlyRootfs"], true);
    assert_eq!(held["Memory"], 8 << 20);
    assert_eq!(inspect[0]["Config"]["User"], "65534:65534");
    assert_eq!(inspect[0]["Config"]["Labels"]["berth.test"], "1");
    assert_eq!(inspect[0]["Config"]["Labels"]["berth.app"], Value::Null);

    // A tenant's container cannot reach another tenant's container, but reaches its own.
    let ip_of = |tenant: &str| -> String {
        per_status["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["tenant"] == tenant)
            .unwrap()["instances"][0]["ip"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ip_a, ip_b) = (ip_of(&a.id), ip_of(&b.id));
    let across = container_get(&ip_a, &format!("/connect?addr={ip_b}:80"));
    assert_eq!(across["connected"], false, "{across}");
    let own = container_get(&ip_a, &format!("/connect?addr={ip_a}:80"));
    assert_eq!(own["connected"], true, "{own}");

    // Unsubscribing B removes its PER_TENANT deployment (containers and network) at once.
    let before = (
        containers_of(installation(&cleanup)).len(),
        networks_of(installation(&cleanup)).len(),
    );
    assert_eq!(before, (3, 3));
    server
        .req(
            "DELETE",
            &format!("/tenant/tenants/{}/applications/{per}", b.id),
        )
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(204);
    assert_eq!(
        (
            containers_of(installation(&cleanup)).len(),
            networks_of(installation(&cleanup)).len()
        ),
        (2, 2)
    );
    // Deleting the applications removes everything else.
    for app in [&multi, &per] {
        server
            .req("DELETE", &format!("/application/applications/{app}"))
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(204);
    }
    assert!(containers_of(installation(&cleanup)).is_empty());
    assert!(networks_of(installation(&cleanup)).is_empty());
}

#[test]
fn readiness_gates_traffic_and_failing_liveness_restarts() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let probes = json!({
        "readinessProbe": {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 4},
    });
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 2, probes),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let all = instances(&ready);
    let (victim, other) = (&all[0], &all[1]);
    let victim_name = victim["name"].as_str().unwrap().to_owned();
    assert_eq!(
        ready["deployments"][0]["upstreams"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let failed_at = Instant::now();
    container_post(victim["ip"].as_str().unwrap(), "/health/fail");
    // Readiness first: the victim leaves the routing table, the other replica stays.
    let gated = wait_for(Duration::from_secs(20), "victim unready", || {
        let s = status(&server, &owner, &app);
        let ups: Vec<String> = s["deployments"][0]["upstreams"]
            .as_array()?
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect();
        (ups.len() == 1).then_some(ups)
    });
    assert_eq!(gated, vec![other["name"].as_str().unwrap().to_owned()]);
    // Then liveness: the victim is restarted (fresh process, healthy again) and back in.
    let restarted = wait_for(READY_DEADLINE, "victim restarted and ready", || {
        let s = status(&server, &owner, &app);
        let v = instances(&s)
            .into_iter()
            .find(|i| i["name"] == victim_name.as_str())?;
        (v["restarts"].as_u64()? >= 1 && v["ready"] == true).then_some(s)
    });
    eprintln!(
        "figure: liveness failure to ready again after restart: {:?}",
        failed_at.elapsed()
    );
    let dep = &restarted["deployments"][0];
    assert!(
        dep["lastFailure"]
            .as_str()
            .unwrap_or_default()
            .contains("Liveness probe failed"),
        "{dep}"
    );
    assert_eq!(dep["upstreams"].as_array().unwrap().len(), 2);
    // Logs of an instance are served; unknown instances are 404.
    let logs = server
        .req(
            "GET",
            &format!("/application/applications/{app}/logs/{victim_name}?tail=5"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200);
    assert!(logs.body.contains("hello: listening"), "{}", logs.body);
    server
        .req("GET", &format!("/application/applications/{app}/logs/nope"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(404);
}

#[test]
fn a_crashed_berth_adopts_its_containers_removes_orphans_and_recreates_missing() {
    let image = HelloLease::acquire();
    let (cleanup, mut server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 2, json!({})),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let before = containers_of(installation(&cleanup));
    assert_eq!(before.len(), 2);

    server.crash();
    // While Berth is down: one replica disappears, and a stray container of this installation
    // (no desired deployment) appears.
    docker(&["rm", "-f", &before[1]]);
    let stray_name = unique("berth-it-stray-");
    let stray = docker(&[
        "create",
        "--name",
        &stray_name,
        "--label",
        &format!("berth.installation={}", installation(&cleanup)),
        "--label",
        "berth.deployment=999999/shared",
        "--label",
        "berth.test=1",
        &image.0.id,
    ]);
    let server = server.restart();
    let status = wait_ready(&server, &owner, &app, 1);
    let after: BTreeSet<String> = containers_of(installation(&cleanup)).into_iter().collect();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.contains(&before[0]),
        "the surviving replica is adopted"
    );
    assert!(!after.contains(&before[1]) && !after.contains(&stray));
    assert_eq!(instances(&status).len(), 2);
}

/// Uploads another version of `app` (same image, new manifest).
pub(crate) fn upload_version(
    server: &Server,
    owner: &Tenant,
    app: &str,
    image: &HelloImage,
    manifest: &str,
) {
    let zip = zip_of(&[
        ("cumulocity.json", manifest.as_bytes()),
        ("image.tar", &image.archive),
    ]);
    let (content_type, body) = multipart("file", &zip);
    server
        .req("POST", &format!("/application/applications/{app}/binaries"))
        .basic(&owner.admin_login, &owner.admin_password)
        .raw(&content_type, body)
        .send()
        .expect(201);
}

pub(crate) fn with_version(manifest: &str, version: &str) -> String {
    let mut m: Value = serde_json::from_str(manifest).unwrap();
    m["version"] = json!(version);
    m.to_string()
}

#[test]
fn upgrades_move_traffic_without_downtime_and_unready_versions_roll_back() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&["--rollout-timeout", "4"]);
    let owner = create_tenant(&server, "owner");
    let good = manifest("MULTI_TENANT", 1, readiness_on_health());
    let app = deploy(&server, &owner, &image.0, &good);
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);

    // Every status read during a rollout must show a ready upstream (zero downtime).
    let serving = |s: &Value| {
        let ups = s["deployments"][0]["upstreams"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(ups >= 1, "no upstream during a rollout: {s}");
    };
    upload_version(
        &server,
        &owner,
        &app,
        &image.0,
        &with_version(&good, "2.0.0"),
    );
    let upgraded = wait_for(READY_DEADLINE, "version 2.0.0 alone serving", || {
        let s = status(&server, &owner, &app);
        serving(&s);
        let all = instances(&s);
        (all.len() == 1 && all[0]["version"] == "2.0.0" && all[0]["ready"] == true).then_some(s)
    });
    assert_eq!(upgraded["activeVersion"], "2.0.0");

    // A version whose readiness never passes is rolled back; the old one keeps serving. Its
    // settings (a changed default, a new key) go back too.
    let never_ready = manifest(
        "MULTI_TENANT",
        1,
        json!({
            "readinessProbe": {"httpGet": {"path": "/no-such-path", "port": 80}, "periodSeconds": 1, "failureThreshold": 1},
            "settings": [
                {"key": "greeting", "defaultValue": "Hello from 3.0.0", "editable": true},
                {"key": "credentials.token", "defaultValue": "s3cret", "editable": false},
                {"key": "rolloutOnly", "defaultValue": "x"}
            ],
        }),
    );
    upload_version(
        &server,
        &owner,
        &app,
        &image.0,
        &with_version(&never_ready, "3.0.0"),
    );
    let rolled_back = wait_for(READY_DEADLINE, "rollback to 2.0.0", || {
        let s = status(&server, &owner, &app);
        serving(&s);
        let all = instances(&s);
        let done = s["rolloutMessage"].is_string()
            && s["activeVersion"] == "2.0.0"
            && all.len() == 1
            && all[0]["version"] == "2.0.0";
        done.then_some(s)
    });
    let message = rolled_back["rolloutMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("3.0.0") && message.contains("rolled back to 2.0.0"),
        "{rolled_back}"
    );
    let app_json = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(app_json["activeVersionId"], "2.0.0");
    assert_eq!(app_json["manifest"]["version"], "2.0.0");
    assert_eq!(
        app_json["manifest"]["readinessProbe"]["httpGet"]["path"],
        "/health"
    );
    // The rollback is in the owner's audit log, naming the application, both versions and why.
    let record = wait_for(READY_DEADLINE, "the rollback's audit record", || {
        let page = server
            .req(
                "GET",
                &format!("/audit/auditRecords?application={app}&type=Application"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        page["auditRecords"]
            .as_array()?
            .iter()
            .find(|r| r["activity"] == "Rolled back")
            .cloned()
    });
    assert_eq!(record["application"], app_json["name"], "{record}");
    assert_eq!(record["tenant"], owner.id.as_str(), "{record}");
    assert_eq!(record["severity"], "MAJOR", "{record}");
    assert_eq!(record["details"]["failedVersion"], "3.0.0", "{record}");
    assert_eq!(record["details"]["restoredVersion"], "2.0.0", "{record}");
    assert_eq!(record["details"]["reason"], message, "{record}");
    assert!(
        record["text"]
            .as_str()
            .unwrap_or_default()
            .contains(message),
        "{record}"
    );
    let settings = server
        .req(
            "GET",
            &format!("/tenant/options/{}", app_json["name"].as_str().unwrap()),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    assert_eq!(
        settings,
        json!({"greeting": "Hello", "credentials.token": "<<Encrypted>>"}),
        "the restored version's settings"
    );

    // A rollback that would move what another subscriber agreed to (4.0.0's settings category)
    // is refused: 4.0.0 stays active, 2.0.0 serving beside it, and the status says so, why and
    // what to do. The initial delay leaves time to subscribe before the deadline (10 + 4 s).
    server
        .req("PUT", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"availability": "MARKET"}))
        .send()
        .expect(200);
    let other = create_tenant(&server, "other");
    let moved = manifest(
        "MULTI_TENANT",
        1,
        json!({
            "readinessProbe": {"httpGet": {"path": "/no-such-path", "port": 80}, "initialDelaySeconds": 10, "periodSeconds": 1, "failureThreshold": 1},
            "settingsCategory": unique("elsewhere"),
        }),
    );
    upload_version(
        &server,
        &owner,
        &app,
        &image.0,
        &with_version(&moved, "4.0.0"),
    );
    subscribe(&server, &other.id, &app).expect(201);
    let refused = wait_for(READY_DEADLINE, "the refused rollback's message", || {
        let s = status(&server, &owner, &app);
        serving(&s);
        let message = s["rolloutMessage"].as_str().unwrap_or_default();
        message.contains("refused").then_some(s)
    });
    assert_eq!(refused["activeVersion"], "4.0.0", "{refused}");
    let message = refused["rolloutMessage"].as_str().unwrap_or_default();
    for said in [
        "version 4.0.0 did not become ready",
        "the rollback to 2.0.0 was refused",
        "other tenant(s) are subscribed",
        "4.0.0 stays active, with 2.0.0 running beside it",
        "upload or activate a version that becomes ready",
    ] {
        assert!(message.contains(said), "{said:?} in {refused}");
    }
    let record = wait_for(
        READY_DEADLINE,
        "the refused rollback's audit record",
        || {
            let page = server
                .req(
                    "GET",
                    &format!("/audit/auditRecords?application={app}&type=Application"),
                )
                .basic(&owner.admin_login, &owner.admin_password)
                .send()
                .expect(200)
                .json();
            page["auditRecords"]
                .as_array()?
                .iter()
                .find(|r| r["activity"] == "Rollback refused")
                .cloned()
        },
    );
    assert!(
        record["text"]
            .as_str()
            .unwrap_or_default()
            .contains(message),
        "{record}"
    );
}

/// An image whose entrypoint does not exist (every start fails), as a `docker save` archive.
/// Built with `docker import` from a one-file tar; removed from the engine on drop.
struct BrokenImage {
    id: String,
    archive: Vec<u8>,
}

impl BrokenImage {
    fn build() -> BrokenImage {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs.tar");
        std::fs::write(&rootfs, archive(&[file("note.txt", b"empty")])).unwrap();
        let tag = format!("berth-it-broken-{}:v1", unique(""));
        let id = docker(&[
            "import",
            "--change",
            "LABEL berth.test=1",
            "--change",
            "ENTRYPOINT [\"/no-such-binary\"]",
            rootfs.to_str().unwrap(),
            &tag,
        ]);
        let saved = dir.path().join("image.tar");
        docker(&["save", "-o", saved.to_str().unwrap(), &tag]);
        BrokenImage {
            id,
            archive: std::fs::read(&saved).unwrap(),
        }
    }
}

impl Drop for BrokenImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.id])
            .output();
    }
}

#[test]
fn a_container_that_never_starts_is_reported_as_crash_looping() {
    let image = BrokenImage::build();
    let (cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let broken = HelloImage {
        id: image.id.clone(),
        archive: image.archive.clone(),
    };
    let app = deploy(
        &server,
        &owner,
        &broken,
        &manifest("MULTI_TENANT", 1, json!({})),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let looping = wait_for(READY_DEADLINE, "CrashLoopBackOff", || {
        let s = status(&server, &owner, &app);
        (s["deployments"][0]["reason"] == "CrashLoopBackOff").then_some(s)
    });
    let dep = &looping["deployments"][0];
    assert_eq!(dep["active"], 0);
    assert_eq!(dep["upstreams"], json!([]));
    assert!(
        dep["lastFailure"].as_str().is_some_and(|f| !f.is_empty()),
        "{dep}"
    );
    // Still one container: restarts reuse it, they never pile up new ones.
    assert_eq!(containers_of(installation(&cleanup)).len(), 1);
    // The contract's alarm: no instance available is CRITICAL, in the status and the audit log.
    let alarms = looping["alarms"].as_array().unwrap();
    assert!(
        alarms
            .iter()
            .any(|a| a["type"] == "c8y_Application_Down" && a["severity"] == "CRITICAL"),
        "{looping}"
    );
    wait_for(READY_DEADLINE, "the raised alarm's record", || {
        let page = server
            .req(
                "GET",
                &format!("/audit/auditRecords?application={app}&type=c8y_Application_Down"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        let records = page["auditRecords"].as_array()?.clone();
        records
            .iter()
            .any(|r| r["activity"] == "Alarm raised" && r["severity"] == "CRITICAL")
            .then_some(())
    });
    // Failed starts are recorded with their reason and the back-off applied.
    let exits = server
        .req(
            "GET",
            &format!(
                "/audit/auditRecords?application={app}&type=ContainerStartFailure&pageSize=10"
            ),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json();
    let delays: Vec<u64> = exits["auditRecords"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["details"]["restartDelayMillis"].as_u64())
        .collect();
    assert!(
        delays.contains(&0) && delays.iter().any(|d| *d >= 200),
        "{exits}"
    );
}

/// Docker's RFC 3339 timestamps (nanoseconds) as Unix nanoseconds.
fn docker_time(text: &str) -> i128 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"))
        .unix_timestamp_nanos()
}

#[test]
fn an_oom_killed_container_is_restarted_and_the_status_says_why() {
    let image = HelloLease::acquire();
    let (cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 1, json!({})),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let ready = wait_ready(&server, &owner, &app, 1);
    let ip = instances(&ready)[0]["ip"].as_str().unwrap().to_owned();
    // The peak in the record is what the stats saw: wait for the first sample.
    wait_for(READY_DEADLINE, "a memory sample", || {
        let s = status(&server, &owner, &app);
        instances(&s)[0]["memory"]["usedBytes"]
            .as_u64()
            .filter(|b| *b > 0)
    });
    // 128 MiB against a 64M limit: the kernel kills the process mid-request.
    let _ = plain_agent()
        .post(&format!("http://{ip}:80/alloc?mb=128"))
        .send_empty();
    let restarted = wait_for(READY_DEADLINE, "restart after the OOM kill", || {
        let s = status(&server, &owner, &app);
        let i = instances(&s).into_iter().next()?;
        (i["restarts"].as_u64()? >= 1 && i["state"] == "RUNNING").then_some(s)
    });
    let failure = restarted["deployments"][0]["lastFailure"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(failure.starts_with("OOMKilled"), "{restarted}");
    let container = &containers_of(installation(&cleanup))[0];
    let times = docker(&[
        "inspect",
        "--format",
        "{{.State.FinishedAt}} {{.State.StartedAt}}",
        container,
    ]);
    let (finished, started) = times.split_once(' ').unwrap();
    let gap_ms = (docker_time(started) - docker_time(finished)) / 1_000_000;
    assert!(gap_ms >= 0, "restarted after it finished: {times}");
    eprintln!("figure: OOM kill to running again: {gap_ms} ms (Docker FinishedAt -> StartedAt)");

    // The status counts OOM kills apart from other crashes.
    let dep = &restarted["deployments"][0];
    assert!(dep["oomKills"].as_u64() >= Some(1), "{dep}");
    assert!(dep["lastOomKill"].as_str().is_some(), "{dep}");
    // The durable record: the limit, the peak seen and the last log lines before the kill.
    let record = wait_for(READY_DEADLINE, "the OOM-kill audit record", || {
        let page = server
            .req(
                "GET",
                &format!("/audit/auditRecords?application={app}&type=OomKill"),
            )
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(200)
            .json();
        page["auditRecords"].as_array()?.first().cloned()
    });
    let details = &record["details"];
    assert_eq!(record["severity"], "MAJOR", "{record}");
    assert_eq!(record["source"]["id"], app.as_str(), "{record}");
    assert_eq!(details["memoryLimitBytes"], 64_000_000, "{record}");
    assert_eq!(details["memoryLimit"], "62500K", "{record}");
    assert!(details["memoryPeakBytes"].as_u64() > Some(0), "{record}");
    let metrics = server.admin_get("/metrics").expect(200);
    for name in [
        "berth_container_oom_kills_total",
        "berth_container_restarts_total",
    ] {
        assert!(metrics.body.contains(name), "{name} in {}", metrics.body);
    }
    // Without a readiness probe the restarted instance is ready as soon as it runs, so a pass
    // may or may not have seen it down (the alarm's history is tested in `operate`); once it
    // is back, no alarm is active.
    wait_for(READY_DEADLINE, "no active alarm", || {
        (status(&server, &owner, &app)["alarms"] == json!([])).then_some(())
    });
    let lines = details["lastLogLines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("allocating 128 MiB"))),
        "{record}"
    );
}

//! Hostile tenants against the container runtime (issue 10, items 5 and 15): the same hardening
//! for every container whatever the manifest says, the image's USER honoured, operator maxima
//! per container and per tenant refused with the limit named, root images refused on request,
//! and the host unreachable from deployment networks except the internal API.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, Tenant, create_tenant, unique};
use crate::supervisor::{
    HelloImage, HelloLease, container_get, deploy, docker, installation, instances, manifest,
    readiness_on_health, start_server, status, subscribe, wait_for, wait_ready,
};
use crate::upload::{multipart, zip_of};

/// The hello image with its config's `User` set, built FROM the hello image (no registry).
struct UserImage {
    tag: String,
    image: HelloImage,
}

impl UserImage {
    fn build(base: &HelloImage, user: &str) -> UserImage {
        let tag = format!("berth-it-user-{}:1", unique(""));
        // FROM needs a name: a temporary tag on the base, removed (untagged only) after.
        let base_tag = format!("berth-it-base-{}:1", unique(""));
        docker(&["tag", &base.id, &base_tag]);
        let mut child = Command::new("docker")
            .args(["build", "-q", "--label", "berth.test=1", "-t", &tag, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build");
        let dockerfile = format!("FROM {base_tag}\nUSER {user}\n");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        docker(&["rmi", &base_tag]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
        let saved = Command::new("docker")
            .args(["save", &tag])
            .output()
            .expect("docker save");
        assert!(saved.status.success());
        UserImage {
            tag,
            image: HelloImage {
                id,
                archive: saved.stdout,
            },
        }
    }
}

impl Drop for UserImage {
    fn drop(&mut self) {
        crate::supervisor::remove_image_when_unused(&self.tag);
    }
}

fn with(base: &str, changes: Value) -> String {
    let mut m: Value = serde_json::from_str(base).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        m[k] = v.clone();
    }
    m.to_string()
}

fn create_app(server: &Server, owner: &Tenant) -> String {
    let name = unique("lim-");
    server
        .req("POST", "/application/applications")
        .basic(&owner.admin_login, &owner.admin_password)
        .json(&json!({"name": name, "key": format!("{name}-key"), "type": "MICROSERVICE"}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn upload(
    server: &Server,
    owner: &Tenant,
    app: &str,
    image: &HelloImage,
    manifest: &str,
) -> crate::fixture::Resp {
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
}

fn active_version(server: &Server, owner: &Tenant, app: &str) -> Value {
    server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["activeVersionId"]
        .clone()
}

fn subscribed_apps(server: &Server, tenant: &str) -> usize {
    server
        .req("GET", &format!("/tenant/tenants/{tenant}/applications"))
        .basic(MGMT_ADMIN, ADMIN_PASSWORD)
        .send()
        .expect(200)
        .json()["references"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn every_container_gets_the_hardening_floor_and_runs_as_its_image_user() {
    let hello = HelloLease::acquire();
    let as_1000 = UserImage::build(&hello.0, "1000:1000");
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "floor");
    // (apiVersion, image, uid the process runs as)
    let cases = [
        ("1", &*hello.0, "0"),
        ("2", &*hello.0, "0"),
        ("1", &as_1000.image, "1000"),
    ];
    for (api_version, image, uid) in cases {
        let m = with(
            &manifest("MULTI_TENANT", 1, readiness_on_health()),
            json!({"apiVersion": api_version}),
        );
        let app = deploy(&server, &owner, image, &m);
        subscribe(&server, &owner.id, &app).expect(201);
        // Ready means it serves port 80, also as uid 1000 with every capability dropped.
        let status = wait_ready(&server, &owner, &app, 1);
        let name = instances(&status)[0]["name"].as_str().unwrap().to_owned();
        let inspect: Value = serde_json::from_str(&docker(&["inspect", &name])).unwrap();
        let host = &inspect[0]["HostConfig"];
        let case = format!("apiVersion {api_version}, uid {uid}");
        assert_eq!(host["CapDrop"], json!(["ALL"]), "{case}");
        assert_eq!(host["CapAdd"], json!(["NET_BIND_SERVICE"]), "{case}");
        assert_eq!(
            host["SecurityOpt"],
            json!(["no-new-privileges:true"]),
            "{case}"
        );
        assert_eq!(host["PidsLimit"], 10240, "{case}");
        assert_eq!(host["Privileged"], false, "{case}");
        assert_eq!(host["IpcMode"], "private", "{case}");
        // The image's USER, never overridden (Docker's ps: the process's real uid).
        let top = docker(&["top", &name, "-o", "pid,uid"]);
        let uids: Vec<&str> = top
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(uids, [uid], "{case}: {top}");
    }
}

#[test]
fn uploads_and_subscriptions_over_a_maximum_are_refused_naming_it() {
    let hello = HelloLease::acquire();
    // Per-container memory and CPU maxima are the host's (the defaults: this host has a few
    // CPUs and tens of GiB); replicas and the tenant sums are set low.
    let (_cleanup, server) = start_server(&[
        "--tenant-max-memory",
        "150MiB",
        "--tenant-max-cpu",
        "1",
        "--tenant-max-containers",
        "2",
        "--max-replicas",
        "3",
    ]);
    let owner = create_tenant(&server, "limits");
    let base = manifest("MULTI_TENANT", 1, json!({}));
    let small = |replicas: u32, cpu: &str, memory: &str| {
        with(
            &base,
            json!({"replicas": replicas, "resources": {"cpu": cpu, "memory": memory}}),
        )
    };

    // Per container, at upload: nothing is recorded.
    let cases = [
        (
            json!({"resources": {"memory": "100Gi"}}),
            "max_container_memory",
        ),
        (json!({"resources": {"cpu": "64"}}), "max_container_cpu"),
        (json!({"replicas": 4}), "max_replicas"),
    ];
    for (changes, setting) in cases {
        let app = create_app(&server, &owner);
        let body = upload(
            &server,
            &owner,
            &app,
            &hello.0,
            &with(&base, changes.clone()),
        )
        .expect_error(422, "applications/Invalid Data")
        .json();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(setting), "{changes}: {message}");
        assert_eq!(active_version(&server, &owner, &app), Value::Null);
    }

    // Per tenant: a MULTI_TENANT service is charged to its owner once subscribed.
    let a = create_app(&server, &owner);
    upload(&server, &owner, &a, &hello.0, &small(2, "0.25", "64M")).expect(201);
    subscribe(&server, &owner.id, &a).expect(201);
    // At subscription: 128 MB + 64 MB is over 150 MiB.
    let b = create_app(&server, &owner);
    upload(&server, &owner, &b, &hello.0, &small(1, "0.1", "64M")).expect(201);
    let refused = subscribe(&server, &owner.id, &b)
        .expect_error(403, "applications/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("tenant_max_memory"),
        "{refused}"
    );
    assert_eq!(subscribed_apps(&server, &owner.id), 1);
    // At upload of a new version of a subscribed service: 3 × 64 MB.
    let bigger = with(&small(3, "0.25", "32M"), json!({"version": "2.0.0"}));
    let refused = upload(&server, &owner, &a, &hello.0, &bigger)
        .expect_error(403, "applications/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("tenant_max_containers"),
        "{refused}"
    );
    assert_eq!(active_version(&server, &owner, &a), "1.0.0");
    let hungrier = with(&small(2, "0.75", "32M"), json!({"version": "2.0.0"}));
    let refused = upload(&server, &owner, &a, &hello.0, &hungrier)
        .expect_error(403, "applications/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("tenant_max_cpu"),
        "{refused}"
    );
    assert_eq!(active_version(&server, &owner, &a), "1.0.0");
    // Within every maximum, the same upload goes through.
    let fits = with(&small(2, "0.5", "70M"), json!({"version": "2.0.0"}));
    upload(&server, &owner, &a, &hello.0, &fits).expect(201);
    assert_eq!(active_version(&server, &owner, &a), "2.0.0");
    // A subscription made before the first upload costs nothing until that upload, which is
    // then where the cost arises (the tenant is at its 1 CPU).
    let c = create_app(&server, &owner);
    subscribe(&server, &owner.id, &c).expect(201);
    let refused = upload(&server, &owner, &c, &hello.0, &small(1, "0.1", "16M"))
        .expect_error(403, "applications/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("tenant_max_cpu"),
        "{refused}"
    );
    assert_eq!(active_version(&server, &owner, &c), Value::Null);
}

/// The versions of an application's instances, sorted (old revisions included).
fn instance_versions(server: &Server, owner: &Tenant, app: &str) -> Vec<String> {
    let mut versions: Vec<String> = instances(&status(server, owner, app))
        .iter()
        .map(|i| i["version"].as_str().unwrap_or_default().to_owned())
        .collect();
    versions.sort();
    versions
}

#[test]
fn a_rollout_is_charged_for_the_stable_version_it_keeps_running() {
    let hello = HelloLease::acquire();
    // 100 MB + 100 MB is over 150 MiB; 100 MB + 16 MB is not. The rollout timeout only has to
    // outlast the few requests between an upload and the refused subscription.
    let (_cleanup, server) =
        start_server(&["--tenant-max-memory", "150MiB", "--rollout-timeout", "30"]);
    let owner = create_tenant(&server, "rollout");
    let sized = |version: &str, memory: &str, probes: Value| {
        let base = manifest("MULTI_TENANT", 1, probes);
        with(
            &base,
            json!({"version": version, "resources": {"cpu": "0.1", "memory": memory}}),
        )
    };
    let never_ready = || json!({"readinessProbe": {"httpGet": {"path": "/no-such-path", "port": 80}, "periodSeconds": 1, "failureThreshold": 1}});

    // A runs 1.0.0 at 100 MB, ready everywhere: the stable version.
    let a = create_app(&server, &owner);
    upload(
        &server,
        &owner,
        &a,
        &hello.0,
        &sized("1.0.0", "100M", readiness_on_health()),
    )
    .expect(201);
    subscribe(&server, &owner.id, &a).expect(201);
    wait_ready(&server, &owner, &a, 1);
    wait_for(Duration::from_secs(60), "1.0.0 stable", || {
        (status(&server, &owner, &a)["stableVersion"] == "1.0.0").then_some(())
    });

    // A tiny 2.0.0 that never becomes ready: 1.0.0 keeps running beside it.
    upload(
        &server,
        &owner,
        &a,
        &hello.0,
        &sized("2.0.0", "16M", never_ready()),
    )
    .expect(201);
    wait_for(Duration::from_secs(60), "2.0.0 beside 1.0.0", || {
        (instance_versions(&server, &owner, &a) == ["1.0.0", "2.0.0"]).then_some(())
    });
    // Another tiny version during the rollout replaces 2.0.0, which never served, instead of
    // joining it.
    upload(
        &server,
        &owner,
        &a,
        &hello.0,
        &sized("3.0.0", "16M", never_ready()),
    )
    .expect(201);
    wait_for(Duration::from_secs(60), "3.0.0 in place of 2.0.0", || {
        (instance_versions(&server, &owner, &a) == ["1.0.0", "3.0.0"]).then_some(())
    });

    // B at 100 MB has no room while A's 1.0.0 runs, though A's active version is 16 MB.
    let b = create_app(&server, &owner);
    upload(
        &server,
        &owner,
        &b,
        &hello.0,
        &sized("1.0.0", "100M", json!({})),
    )
    .expect(201);
    let refused = subscribe(&server, &owner.id, &b)
        .expect_error(403, "applications/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("tenant_max_memory"),
        "{refused}"
    );
    assert_eq!(
        active_version(&server, &owner, &a),
        "3.0.0",
        "the rollout should still be in progress when B is refused; raise --rollout-timeout"
    );
    assert_eq!(subscribed_apps(&server, &owner.id), 1);

    // The failed rollout goes back to 1.0.0, alone; B still has no room.
    let rolled_back = wait_for(Duration::from_secs(120), "rollback to 1.0.0", || {
        let s = status(&server, &owner, &a);
        let done = s["activeVersion"] == "1.0.0"
            && s["rolloutMessage"].is_string()
            && instance_versions(&server, &owner, &a) == ["1.0.0"];
        done.then_some(s)
    });
    let message = rolled_back["rolloutMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("3.0.0") && message.contains("rolled back to 1.0.0"),
        "{rolled_back}"
    );
    subscribe(&server, &owner.id, &b).expect_error(403, "applications/Forbidden");
    assert_eq!(subscribed_apps(&server, &owner.id), 1);
}

#[test]
fn a_maximum_beyond_the_host_stops_the_server_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, stderr) = run_until_exit(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--https",
            "127.0.0.1:0",
            "--internal-api",
            "127.0.0.1:0",
            "--max-container-cpu",
            "100000",
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(stderr.contains("max_container_cpu"), "{stderr}");
}

#[test]
fn root_images_are_refused_when_the_operator_says_so() {
    let hello = HelloLease::acquire();
    let users = ["0", "root", "0:1000", "1000:1000"];
    let images: Vec<UserImage> = users
        .iter()
        .map(|u| UserImage::build(&hello.0, u))
        .collect();
    let (_cleanup, server) = start_server(&["--refuse-root-images"]);
    let owner = create_tenant(&server, "rootless");
    let m = manifest("MULTI_TENANT", 1, json!({}));
    // (image, accepted): no USER at all is root too.
    let mut cases: Vec<(&HelloImage, &str, bool)> = vec![(&*hello.0, "(none)", false)];
    for (user, image) in users.iter().zip(&images) {
        cases.push((&image.image, user, *user == "1000:1000"));
    }
    for (image, user, accepted) in cases {
        let app = create_app(&server, &owner);
        let response = upload(&server, &owner, &app, image, &m);
        if accepted {
            response.expect(201);
            continue;
        }
        let body = response
            .expect_error(422, "applications/Invalid Data")
            .json();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("refuse_root_images") && message.contains("USER"),
            "{user}: {message}"
        );
        assert_eq!(active_version(&server, &owner, &app), Value::Null, "{user}");
        // Berth's tag for the refused version was never kept.
        let tags = docker(&[
            "images",
            "-q",
            "--filter",
            &format!("reference=berth/*/{}-{app}", owner.id.to_ascii_lowercase()),
        ]);
        assert!(tags.is_empty(), "{user}: {tags}");
    }
}

/// The gateway (host side) of a container's deployment network and of Docker's default bridge
/// (where `berth-platform` points).
fn gateways(container: &str) -> Vec<String> {
    // A replica's network settings and hosts file are its network holder's.
    let container = &crate::supervisor::network_container(container);
    let own = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
        container,
    ]);
    // berth-platform as the container resolves it (host-gateway, from its hosts file).
    let hosts = std::fs::read_to_string(docker(&[
        "inspect",
        "--format",
        "{{.HostsPath}}",
        container,
    ]))
    .expect("the container's hosts file");
    let platform = hosts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("berth-platform"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let found = vec![own, platform];
    assert!(found.iter().all(|g| !g.is_empty()), "{found:?}");
    found
}

#[test]
fn deployment_containers_reach_the_internal_api_and_no_other_host_port() {
    let hello = HelloLease::acquire();
    let (cleanup, server) = start_server(&[]);
    // A host service on every address, as a database or an admin UI would be.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let internal_port: u16 = std::fs::read_to_string(server.path("internal-port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let owner = create_tenant(&server, "fw");
    let app = deploy(
        &server,
        &owner,
        &hello.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let status = wait_ready(&server, &owner, &app, 1);
    let instance = &instances(&status)[0];
    let ip = instance["ip"].as_str().unwrap();
    let name = instance["name"].as_str().unwrap();
    let mut addresses = gateways(name);
    addresses.extend(host_addresses());
    for address in &addresses {
        // (port, reachable)
        for (port, reachable) in [(internal_port, true), (host_port, false)] {
            let outcome = container_get(ip, &format!("/connect?addr={address}:{port}"));
            assert_eq!(
                outcome["connected"], reachable,
                "{address}:{port} from the container: {outcome}"
            );
        }
    }
    // Installed once per installation, not per network.
    let rules = input_rules();
    let marker = format!("berth installation {}", installation(&cleanup));
    assert_eq!(rules.matches(&marker).count(), 1, "{rules}");
    drop(listener);
}

/// A link-local address answering on port 80 off the host, as a cloud's instance metadata
/// service does: a network namespace holding the address, reached through a veth pair and a
/// host route, with a listener inside. 169.254.77.77, not .169.254: the machine running the
/// tests may use that one for its own metadata.
struct MetadataService {
    netns: String,
    host_end: String,
    /// The namespace's own (not link-local) address, where the listener answers too.
    routed: String,
    listener: std::process::Child,
}

const METADATA_ADDR: &str = "169.254.77.77";

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)")
}

impl MetadataService {
    fn start() -> MetadataService {
        let n = std::process::id() % 100_000;
        let (netns, host_end, ns_end) = (format!("bmd{n}"), format!("bmdh{n}"), format!("bmdn{n}"));
        // (Left over from a killed run.)
        ip(&["netns", "del", &netns]);
        ip(&["link", "del", &host_end]);
        let net = format!("10.254.{}", n % 250);
        for args in [
            vec!["netns", "add", &netns],
            vec![
                "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
            ],
            vec!["link", "set", &ns_end, "netns", &netns],
        ] {
            let out = ip(&args);
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        let (host_ip, ns_ip) = (format!("{net}.1/30"), format!("{net}.2/30"));
        let gateway = format!("{net}.1");
        let via = format!("{net}.2");
        let metadata = format!("{METADATA_ADDR}/32");
        for args in [
            vec!["addr", "add", &host_ip, "dev", &host_end],
            vec!["link", "set", &host_end, "up"],
            vec!["-n", &netns, "addr", "add", &ns_ip, "dev", &ns_end],
            vec!["-n", &netns, "addr", "add", &metadata, "dev", "lo"],
            vec!["-n", &netns, "link", "set", "lo", "up"],
            vec!["-n", &netns, "link", "set", &ns_end, "up"],
            vec!["-n", &netns, "route", "add", "default", "via", &gateway],
            vec!["route", "add", &metadata, "via", &via],
        ] {
            let out = ip(&args);
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        let listener = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "python3",
                "-m",
                "http.server",
                "80",
            ])
            .args(["--bind", "0.0.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server in the namespace");
        let service = MetadataService {
            netns,
            host_end,
            routed: via.clone(),
            listener,
        };
        // The host reaches it (its own traffic is not forwarded): it is listening.
        wait_for(Duration::from_secs(20), "the metadata listener", || {
            std::net::TcpStream::connect_timeout(
                &format!("{METADATA_ADDR}:80").parse().unwrap(),
                Duration::from_secs(1),
            )
            .ok()
        });
        service
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        ip(&["route", "del", &format!("{METADATA_ADDR}/32")]);
        ip(&["link", "del", &self.host_end]);
        ip(&["netns", "del", &self.netns]);
    }
}

#[test]
fn deployment_containers_cannot_reach_link_local_metadata() {
    let hello = HelloLease::acquire();
    let metadata = MetadataService::start();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "imds");
    let app = deploy(
        &server,
        &owner,
        &hello.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let status = wait_ready(&server, &owner, &app, 1);
    let ip = instances(&status)[0]["ip"].as_str().unwrap().to_owned();
    // (address, reachable): link-local is refused, the same listener on a routed address
    // (as anything on the internet) is not.
    for (address, reachable) in [(METADATA_ADDR, false), (metadata.routed.as_str(), true)] {
        let outcome = container_get(&ip, &format!("/connect?addr={address}:80"));
        assert_eq!(outcome["connected"], reachable, "{outcome}");
    }
    drop(metadata);
}

/// The host's IPv4 addresses (loopback aside, as `hostname -I` gives them) but those of swarm labs' bridges (`swl-…`): the Swarm tests bring
/// labs up and down meanwhile, so such an address may vanish between listing and connecting.
fn host_addresses() -> Vec<String> {
    let listing = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "3: eth0    inet 10.0.0.5/24 brd … scope global eth0\ …"
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let interface = words.nth(1)?;
            let address = words.nth(1)?.split('/').next()?;
            (interface != "lo" && !interface.starts_with("swl-")).then(|| address.to_owned())
        })
        .collect()
}

/// Runs `berth` expecting it to exit before serving; a server still running at the deadline is
/// killed (exit None), so a server that wrongly starts fails the test instead of hanging it.
fn run_until_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(args)
        .env_remove("BERTH_ADMIN_PASSWORD")
        .env("BERTH_ADMIN_PASSWORD", crate::fixture::ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn berth");
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (code, stderr)
}

fn input_rules() -> String {
    let out = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .expect("iptables");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_host_firewall_that_cannot_be_installed_stops_the_server_and_says_how_to_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--https",
        "127.0.0.1:0",
        "--internal-api",
        "127.0.0.1:0",
    ];
    // No iptables on PATH. A server that starts anyway is killed at the deadline and fails.
    let (code, stderr) = run_until_exit(&args, &[("PATH", "/nonexistent")]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("host firewall") && stderr.contains("host_firewall = false"),
        "{stderr}"
    );
}

/// `iptables -S` lines of `chain` carrying the installation's comment.
fn commented_rules(tool: &str, chain: &str, installation: &str) -> Vec<String> {
    let out = Command::new(tool)
        .args(["-w", "-S", chain])
        .output()
        .expect("iptables");
    let comment = format!("\"berth installation {installation}\"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&comment))
        .map(str::to_owned)
        .collect()
}

/// Runs `berth firewall remove` with `args`: (exit code, stdout, stderr).
fn firewall_remove(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["firewall", "remove"])
        .args(args)
        .output()
        .expect("run berth firewall remove");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rules outlive the server by design (its containers keep running); an operator
/// uninstalling Berth takes them out with one command, by data directory or id.
#[test]
fn firewall_remove_takes_out_an_installations_rules_and_nothing_else() {
    let server = Server::start();
    let other = Server::start();
    let installation = server.installation().to_owned();
    let forward = if Command::new("iptables")
        .args(["-w", "-n", "-L", "DOCKER-USER"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    let jumps = commented_rules("iptables", "INPUT", &installation);
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    let chain = jumps[0].rsplit(' ').next().expect("jump target").to_owned();
    assert!(chain.starts_with("BERTH-HOST-"), "{chain}");
    assert_eq!(commented_rules("iptables", forward, &installation).len(), 1);
    // A restart rewrites the chain in place (new rules on top, then the old ones deleted):
    // the same three rules after it, no more.
    let chain_rules = |tool: &str| {
        let out = Command::new(tool)
            .args(["-w", "-S", &chain])
            .output()
            .expect("iptables");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = chain_rules("iptables");
    assert_eq!(before.len(), 3, "{before:?}");
    let mut server = server.restart();
    assert_eq!(server.installation(), installation);
    assert_eq!(chain_rules("iptables").len(), 3);
    assert_eq!(commented_rules("iptables", "INPUT", &installation).len(), 1);
    server.stop();

    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let (code, stdout, stderr) = firewall_remove(&["--data-dir", &data_dir]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let removed: usize = stdout
        .strip_prefix("berth: removed ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    // The IPv4 jump, chain and link-local rule, and the IPv6 jump and chain where there is IPv6.
    assert!(removed >= 3, "{stdout}");
    for tool in ["iptables", "ip6tables"] {
        assert!(commented_rules(tool, "INPUT", &installation).is_empty());
        let listed = Command::new(tool)
            .args(["-w", "-n", "-L", &chain])
            .output()
            .expect("iptables");
        assert!(!listed.status.success(), "{tool} still has {chain}");
    }
    assert!(commented_rules("iptables", forward, &installation).is_empty());
    // Another installation's rules stay.
    assert_eq!(
        commented_rules("iptables", "INPUT", other.installation()).len(),
        1
    );
    assert_eq!(
        commented_rules("iptables", forward, other.installation()).len(),
        1
    );

    // Again, by id: nothing left to remove is no failure.
    let (code, stdout, _) = firewall_remove(&["--installation", &installation]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("berth: removed 0 "), "{stdout}");

    // Nothing to go on: refused, saying what to give.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = firewall_remove(&["--data-dir", empty.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("holds no installation id"), "{stderr}");
    let (code, _, stderr) = firewall_remove(&["--installation", "a b"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not an installation id"), "{stderr}");
}

#[test]
fn a_deployment_network_made_before_the_firewall_is_replaced_with_its_containers() {
    let hello = HelloLease::acquire();
    let (cleanup, mut server) = start_server(&[]);
    let owner = create_tenant(&server, "oldnet");
    let app = deploy(
        &server,
        &owner,
        &hello.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let status = wait_ready(&server, &owner, &app, 1);
    let old = instances(&status)[0]["name"].as_str().unwrap().to_owned();
    let network = docker(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
        &crate::supervisor::network_container(&old),
    ]);
    // What an earlier Berth left: the same network with Docker's default bridge name.
    server.crash();
    let labels = docker(&[
        "network",
        "inspect",
        "--format",
        "{{json .Labels}}",
        &network,
    ]);
    let labels: std::collections::BTreeMap<String, String> = serde_json::from_str(&labels).unwrap();
    // Its replica's network holder and the spare holder are on it.
    let attached = docker(&[
        "network",
        "inspect",
        "--format",
        "{{range $k, $v := .Containers}}{{$k}} {{end}}",
        &network,
    ]);
    for container in attached.split_whitespace() {
        docker(&["network", "disconnect", "-f", &network, container]);
    }
    docker(&["network", "rm", &network]);
    let mut create = vec!["network".to_owned(), "create".to_owned()];
    for (k, v) in &labels {
        create.push("--label".to_owned());
        create.push(format!("{k}={v}"));
    }
    create.push(network.clone());
    docker(&create.iter().map(String::as_str).collect::<Vec<_>>());
    docker(&[
        "network",
        "connect",
        &network,
        &crate::supervisor::network_container(&old),
    ]);
    let bridge_of = |network: &str| {
        docker(&[
            "network",
            "inspect",
            "--format",
            "{{index .Options \"com.docker.network.bridge.name\"}}",
            network,
        ])
    };
    assert!(!bridge_of(&network).starts_with("bt"));

    let server = server.restart();
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let status = wait_for(Duration::from_secs(60), "a replacement container", || {
        let status = wait_ready(&server, &owner, &app, 1);
        (instances(&status)[0]["name"] != old.as_str()).then_some(status)
    });
    assert!(
        bridge_of(&network).starts_with("bt"),
        "{}",
        bridge_of(&network)
    );
    let ip = instances(&status)[0]["ip"].as_str().unwrap().to_owned();
    let name = instances(&status)[0]["name"].as_str().unwrap().to_owned();
    for address in gateways(&name) {
        let outcome = container_get(&ip, &format!("/connect?addr={address}:{host_port}"));
        assert_eq!(outcome["connected"], false, "{address}: {outcome}");
    }
    assert!(!crate::supervisor::containers_of(installation(&cleanup)).contains(&old));
}

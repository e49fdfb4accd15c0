//! Crash trials: Berth stopped at a named point of a long operation (`BERTH_TEST_PAUSE_AT`),
//! then killed (SIGKILL) and restarted on the same data dir, or left by its client. Afterwards
//! the API, the database, the data dir and Docker must agree: nothing the operation made or
//! should have removed is left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{Options, Server, Tenant, create_tenant, files_under};
use crate::supervisor::{
    DockerCleanup, HelloLease, deploy, manifest, readiness_on_health, subscribe, wait_for,
    wait_ready,
};
use crate::upload::{TestImage, berth_ref, create_microservice, image_id, zip_of};

/// How long a trial may take to settle after the fault (a restart, a load, a pass).
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Berth is killed with SIGKILL at the point and started again on the same data dir.
    Kill,
    /// The client drops its connection while Berth waits at the point.
    ClientLeaves,
}

/// A pause point armed for one server: the files the server and the test meet at.
pub(crate) struct Pause {
    dir: tempfile::TempDir,
    point: &'static str,
    /// Armed only between [`Pause::arm`] and [`Pause::disarm`], not from the start.
    on_demand: bool,
}

impl Pause {
    pub(crate) fn new(point: &'static str) -> Pause {
        Pause {
            dir: tempfile::tempdir().unwrap(),
            point,
            on_demand: false,
        }
    }

    /// A point the server passes often (every verification, say): armed only from
    /// [`Pause::arm`] to [`Pause::disarm`], so it holds just the operation started between.
    pub(crate) fn on_demand(point: &'static str) -> Pause {
        Pause {
            on_demand: true,
            ..Pause::new(point)
        }
    }

    pub(crate) fn arm(&self) {
        assert!(self.on_demand, "armed from the start");
        std::fs::write(self.file("armed"), b"").unwrap();
    }

    /// Later passes go on; one already waiting at the point waits for [`Pause::release`].
    pub(crate) fn disarm(&self) {
        std::fs::remove_file(self.file("armed")).unwrap();
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let at = if self.on_demand { "*" } else { self.point };
        vec![
            ("BERTH_TEST_PAUSE_AT".to_owned(), at.to_owned()),
            (
                "BERTH_TEST_PAUSE_DIR".to_owned(),
                self.dir.path().display().to_string(),
            ),
        ]
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.path().join(format!("{}.{suffix}", self.point))
    }

    pub(crate) fn wait_reached(&self) {
        wait_for(SETTLE, &format!("fault point {}", self.point), || {
            self.file("reached").exists().then_some(())
        });
    }

    /// Lets the paused operation (and any later one) go on.
    pub(crate) fn release(&self) {
        std::fs::write(self.file("release"), b"").unwrap();
    }

    /// Arms the point again for the next operation.
    pub(crate) fn rearm(&self) {
        let _ = std::fs::remove_file(self.file("release"));
        let _ = std::fs::remove_file(self.file("reached"));
    }
}

/// A request through `curl`, as a process the test can kill to drop the connection.
pub(crate) fn curl(
    server: &Server,
    login: (&str, &str),
    method: &str,
    path: &str,
    file: Option<&Path>,
) -> Child {
    let mut command = Command::new("curl");
    command
        // HTTP/1.1: actix runs HTTP/2 handlers as tasks of their own, so only over HTTP/1.1
        // does a client leaving drop the handler.
        .args([
            "--http1.1",
            "-s",
            "-o",
            "/dev/null",
            "-X",
            method,
            "--cacert",
        ])
        .arg(server.path("tls/cert.pem"))
        .arg("-u")
        .arg(format!("{}:{}", login.0, login.1));
    if let Some(file) = file {
        command
            .arg("-F")
            .arg(format!("file=@{};type=application/zip", file.display()));
    }
    command
        .arg(format!("{}{path}", server.https))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the curl CLI must be installed for these tests")
}

/// Applies the fault to a server paused at the point; returns the server to check.
fn strike(mut server: Server, pause: &Pause, mut client: Child, fault: Fault) -> Server {
    pause.wait_reached();
    match fault {
        Fault::Kill => {
            server.crash();
            let _ = client.wait();
            pause.release();
            server = server.restart();
        }
        Fault::ClientLeaves => {
            let _ = client.kill();
            let _ = client.wait();
            pause.release();
        }
    }
    server
}

/// Rows of intents not yet finished, read straight from the database.
fn pending_intents(server: &Server) -> i64 {
    let conn = rusqlite::Connection::open(server.path("berth.sqlite3")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM intents", [], |r| r.get(0))
        .unwrap()
}

pub(crate) fn get_app(server: &Server, tenant: &Tenant, id: &str) -> crate::fixture::Resp {
    server
        .req("GET", &format!("/application/applications/{id}"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
}

fn package_zip(version: &str, image: &TestImage) -> Vec<u8> {
    zip_of(&[
        (
            "cumulocity.json",
            crate::upload::manifest(version).as_bytes(),
        ),
        ("image.tar", &image.archive),
    ])
}

#[test]
fn an_interrupted_upload_leaves_nothing_in_the_engine() {
    // (point, fault, a snapshot of the same version uploaded before): at the load the image is
    // in the engine untagged; once kept, Berth's tag and the package exist too, and for a
    // snapshot the tag had pointed at the earlier image.
    let trials = [
        ("upload-loaded", Fault::Kill, false),
        ("upload-kept", Fault::Kill, false),
        ("upload-kept", Fault::Kill, true),
        ("upload-loaded", Fault::ClientLeaves, false),
        ("upload-kept", Fault::ClientLeaves, true),
    ];
    for (point, fault, snapshot) in trials {
        let what = format!("{point} {fault:?} snapshot={snapshot}");
        let pause = Pause::new(point);
        let server = Server::start_with(Options {
            env: pause.env(),
            ..Options::default()
        });
        let t = create_tenant(&server, "intr");
        let id = create_microservice(&server, &t)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let version = if snapshot { "1.0.0-SNAPSHOT" } else { "1.0.0" };
        let earlier = snapshot.then(|| {
            let image = TestImage::build(0);
            pause.release();
            crate::upload::upload(&server, &t, &id, "file", &package_zip(version, &image))
                .expect(201);
            pause.rearm();
            image
        });
        let image = TestImage::build(0);
        let zip = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(zip.path(), package_zip(version, &image)).unwrap();
        let client = curl(
            &server,
            (&t.admin_login, &t.admin_password),
            "POST",
            &format!("/application/applications/{id}/binaries"),
            Some(zip.path()),
        );
        let server = strike(server, &pause, client, fault);
        let tag = berth_ref(&server, &t, &id, version);

        // Settled: either the upload was undone (its image and package gone, the tag back
        // where it was) or carried through (recorded, the tag on its image, a replaced
        // snapshot's image and package gone); in both cases the intent is finished. The
        // clean-up steps follow one another, so the whole state is waited for.
        let before = earlier.as_ref().map(|e| e.id.clone());
        let settled = Instant::now() + SETTLE;
        let completed = loop {
            let app = get_app(&server, &t, &id).expect(200).json();
            let active = app["activeVersionId"].as_str().map(str::to_owned);
            let target = image_id(&tag);
            let loaded = image_id(&image.id).is_some();
            let earlier_loaded = earlier.as_ref().is_some_and(|e| image_id(&e.id).is_some());
            let packages = files_under(&server.path("packages"));
            let intents = pending_intents(&server);
            let undone = !loaded && target == before && packages.len() == usize::from(snapshot);
            let carried = active.as_deref() == Some(version)
                && target.as_ref() == Some(&image.id)
                && !earlier_loaded
                && packages.len() == 1;
            if intents == 0 && (undone || carried) {
                break carried;
            }
            let seen = format!(
                "active {active:?}, tag on {target:?}, image loaded {loaded}, earlier image loaded {earlier_loaded}, packages {packages:?}, pending intents {intents}"
            );
            assert!(Instant::now() < settled, "{what}: not settled: {seen}");
            std::thread::sleep(Duration::from_millis(200));
        };
        if fault == Fault::Kill {
            assert!(!completed, "{what}: a killed upload is never recorded");
        }
        assert!(
            files_under(&server.path("tmp")).is_empty(),
            "{what}: no temporary file left"
        );
        drop(server);
    }
}

#[test]
fn a_start_removes_package_files_nothing_refers_to() {
    let mut server = Server::start();
    let t = create_tenant(&server, "sweep");
    let id = create_microservice(&server, &t)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = TestImage::build(0);
    crate::upload::upload(&server, &t, &id, "file", &package_zip("1.0.0", &image)).expect(201);
    let kept = files_under(&server.path("packages"));
    assert_eq!(kept.len(), 1);
    // Left by a Berth from before intents: a package next to a version's, the package and
    // the empty directory of applications deleted long ago.
    server.crash();
    let packages = server.path("packages");
    std::fs::write(packages.join(format!("{}/{id}/stray.zip", t.id)), b"zip").unwrap();
    std::fs::create_dir_all(packages.join(format!("{}/999", t.id))).unwrap();
    std::fs::write(packages.join(format!("{}/999/old.zip", t.id)), b"zip").unwrap();
    std::fs::create_dir_all(packages.join("t0/998")).unwrap();

    let server = server.restart();
    assert_eq!(files_under(&server.path("packages")), kept);
    for gone in [format!("{}/999", t.id), "t0".to_owned()] {
        assert!(!packages.join(&gone).exists(), "{gone} is removed");
    }
    // The kept version still deploys from its package's image: nothing it needs went.
    assert_eq!(
        get_app(&server, &t, &id).expect(200).json()["activeVersionId"],
        "1.0.0"
    );
}

/// An application deployed from the hello image, subscribed by its owner (so it has a
/// container, a network and settings options), plus an option the owner wrote itself in the
/// same category.
struct Deployed {
    owner: Tenant,
    /// Another tenant subscribed to it (with its own option in the category too).
    subscriber: Tenant,
    id: String,
    name: String,
}

fn deploy_subscribed(server: &Server, hello: &HelloLease, subscribed: bool) -> Deployed {
    let owner = create_tenant(server, "del");
    let id = deploy(
        server,
        &owner,
        &hello.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    let name = get_app(server, &owner, &id).expect(200).json()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let subscriber = create_tenant(server, "delsub");
    if subscribed {
        for t in [&owner, &subscriber] {
            subscribe(server, &t.id, &id).expect(201);
        }
        wait_ready(server, &owner, &id, 1);
        for t in [&owner, &subscriber] {
            assert_eq!(
                options_of(server, t, &name)["greeting"],
                "Hello",
                "the subscription seeded the manifest's settings"
            );
        }
    }
    for t in [&owner, &subscriber] {
        server
            .req("POST", "/tenant/options")
            .basic(&t.admin_login, &t.admin_password)
            .json(&json!({"category": name, "key": "mine", "value": "kept"}))
            .send()
            .expect(201);
    }
    Deployed {
        owner,
        subscriber,
        id,
        name,
    }
}

fn options_of(server: &Server, tenant: &Tenant, category: &str) -> Value {
    server
        .req("GET", &format!("/tenant/options/{category}"))
        .basic(&tenant.admin_login, &tenant.admin_password)
        .send()
        .expect(200)
        .json()
}

/// The names of `installation`'s containers and networks, but its holder pool's, which serves
/// every deployment and none in particular.
fn berth_objects(installation: &str) -> Vec<String> {
    let filter = format!("label=berth.installation={installation}");
    let mut objects = Vec::new();
    for args in [
        vec![
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            filter.as_str(),
        ],
        vec![
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            filter.as_str(),
        ],
    ] {
        let out = Command::new("docker").args(&args).output().unwrap();
        objects.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|name| !crate::supervisor::is_holder_pool(name))
                .map(str::to_owned),
        );
    }
    objects
}

/// Everything the application owned is gone; what the tenant wrote itself stays. None when
/// something is still there (with what).
fn deletion_done(server: &Server, installation: &str, d: &Deployed) -> Result<(), String> {
    if get_app(server, &d.owner, &d.id).status != 404 {
        return Err("the application still answers".into());
    }
    let objects = berth_objects(installation);
    if !objects.is_empty() {
        return Err(format!("containers/networks left: {objects:?}"));
    }
    let tag = berth_ref(server, &d.owner, &d.id, "1.0.0");
    if image_id(&tag).is_some() {
        return Err(format!("image tag {tag} left"));
    }
    let dir = server.path(&format!("packages/{}/{}", d.owner.id, d.id));
    if dir.exists() {
        return Err(format!("package dir left: {:?}", files_under(&dir)));
    }
    for t in [&d.owner, &d.subscriber] {
        let options = options_of(server, t, &d.name);
        if options != json!({"mine": "kept"}) {
            return Err(format!("options left in {}: {options}", t.id));
        }
    }
    let bootstrap = server
        .req(
            "GET",
            &format!("/user/{}/users/servicebootstrap_{}", d.owner.id, d.name),
        )
        .basic(&d.owner.admin_login, &d.owner.admin_password)
        .send();
    if bootstrap.status != 404 {
        return Err("the bootstrap user is left".into());
    }
    if pending_intents(server) != 0 {
        return Err("the deletion intent is still pending".into());
    }
    Ok(())
}

#[test]
fn an_interrupted_delete_is_finished() {
    let hello = HelloLease::acquire();
    for fault in [Fault::Kill, Fault::ClientLeaves] {
        let pause = Pause::new("delete-committed");
        // Only pokes start passes: the deletion must not rely on the periodic one.
        let server = Server::start_with(Options {
            env: pause.env(),
            extra_args: vec!["--reconcile-interval".into(), "3600".into()],
            ..Options::default()
        });
        let cleanup = DockerCleanup(server.installation().to_owned());
        let d = deploy_subscribed(&server, &hello, true);
        let client = curl(
            &server,
            (&d.owner.admin_login, &d.owner.admin_password),
            "DELETE",
            &format!("/application/applications/{}", d.id),
            None,
        );
        let server = strike(server, &pause, client, fault);
        let settled = Instant::now() + SETTLE;
        while let Err(left) = deletion_done(&server, &cleanup.0, &d) {
            assert!(
                Instant::now() < settled,
                "{fault:?}: the deletion was not finished: {left}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(server);
        drop(cleanup);
    }
}

/// Everything a deleted tenant owned is gone, also from the tenants subscribed to its
/// application (their settings options and service users, hidden from the API, so read from
/// the database); what they wrote themselves stays.
fn tenant_deletion_done(server: &Server, installation: &str, d: &Deployed) -> Result<(), String> {
    let tenant = server.admin_get(&format!("/tenant/tenants/{}", d.owner.id));
    if tenant.status != 404 {
        return Err(format!("the tenant still answers {}", tenant.status));
    }
    let objects = berth_objects(installation);
    if !objects.is_empty() {
        return Err(format!("containers/networks left: {objects:?}"));
    }
    let tag = berth_ref(server, &d.owner, &d.id, "1.0.0");
    if image_id(&tag).is_some() {
        return Err(format!("image tag {tag} left"));
    }
    let dir = server.path(&format!("packages/{}", d.owner.id));
    if dir.exists() {
        return Err(format!("package dir left: {:?}", files_under(&dir)));
    }
    let options = options_of(server, &d.subscriber, &d.name);
    if options != json!({"mine": "kept"}) {
        return Err(format!("options left in the subscriber: {options}"));
    }
    let conn = rusqlite::Connection::open(server.path("berth.sqlite3")).unwrap();
    let service_users: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM users WHERE tenant_id = ?1 AND kind = 'SERVICE'",
            [&d.subscriber.id],
            |r| r.get(0),
        )
        .unwrap();
    if service_users != 0 {
        return Err("the subscriber's service user is left".into());
    }
    let references = server
        .admin_get(&format!("/tenant/tenants/{}/applications", d.subscriber.id))
        .expect(200)
        .json();
    if references["references"] != json!([]) {
        return Err(format!("the subscription is left: {references}"));
    }
    if pending_intents(server) != 0 {
        return Err("a deletion intent is still pending".into());
    }
    Ok(())
}

#[test]
fn an_interrupted_tenant_deletion_is_finished() {
    let hello = HelloLease::acquire();
    for fault in [Fault::Kill, Fault::ClientLeaves] {
        let pause = Pause::new("tenant-delete-committed");
        let server = Server::start_with(Options {
            env: pause.env(),
            extra_args: vec!["--reconcile-interval".into(), "3600".into()],
            ..Options::default()
        });
        let cleanup = DockerCleanup(server.installation().to_owned());
        let d = deploy_subscribed(&server, &hello, true);
        let client = curl(
            &server,
            (crate::fixture::MGMT_ADMIN, crate::fixture::ADMIN_PASSWORD),
            "DELETE",
            &format!("/tenant/tenants/{}", d.owner.id),
            None,
        );
        let server = strike(server, &pause, client, fault);
        let settled = Instant::now() + SETTLE;
        while let Err(left) = tenant_deletion_done(&server, &cleanup.0, &d) {
            assert!(
                Instant::now() < settled,
                "{fault:?}: the tenant's deletion was not finished: {left}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(server);
        drop(cleanup);
    }
}

#[test]
fn deleting_an_application_removes_everything_it_owned_at_once() {
    let hello = HelloLease::acquire();
    let log = tempfile::NamedTempFile::new().unwrap();
    // An hour between periodic passes: the delete must act on its own poke, also when no
    // container changes (no event pokes the supervisor then).
    let server = Server::start_with(Options {
        extra_args: vec!["--reconcile-interval".into(), "3600".into()],
        log_file: Some(log.path().to_owned()),
        ..Options::default()
    });
    let cleanup = DockerCleanup(server.installation().to_owned());
    for subscribed in [true, false] {
        let d = deploy_subscribed(&server, &hello, subscribed);
        let started = Instant::now();
        server
            .req("DELETE", &format!("/application/applications/{}", d.id))
            .basic(&d.owner.admin_login, &d.owner.admin_password)
            .send()
            .expect(204);
        eprintln!(
            "figure: delete (subscribed: {subscribed}) answered after {:?}",
            started.elapsed()
        );
        // No waiting: the answer comes when everything is gone.
        if let Err(left) = deletion_done(&server, &cleanup.0, &d) {
            panic!("subscribed {subscribed}, after the 204: {left}");
        }
    }
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !log.contains("containers not yet removed"),
        "a delete waited for the supervisor in vain: {log}"
    );
}

/// Figures for the issue: unsubscribes that change no container (a multi-tenant service other
/// tenants still use) and deletes of applications without subscriptions, one after the other.
#[test]
#[ignore = "measurement: prints figures, run by hand"]
fn measure_unsubscribe_and_delete() {
    let hello = HelloLease::acquire();
    let server = Server::start_with(Options::default());
    let _cleanup = DockerCleanup(server.installation().to_owned());
    let owner = create_tenant(&server, "meas");
    let n = 10;
    let app = deploy(
        &server,
        &owner,
        &hello.0,
        &manifest("MULTI_TENANT", 1, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    wait_ready(&server, &owner, &app, 1);
    let tenants: Vec<Tenant> = (0..n).map(|_| create_tenant(&server, "sub")).collect();
    for t in &tenants {
        subscribe(&server, &t.id, &app).expect(201);
    }
    let started = Instant::now();
    for t in &tenants {
        server
            .req(
                "DELETE",
                &format!("/tenant/tenants/{}/applications/{app}", t.id),
            )
            .basic(crate::fixture::MGMT_ADMIN, crate::fixture::ADMIN_PASSWORD)
            .send()
            .expect(204);
    }
    eprintln!("figure: {n} unsubscribes took {:?}", started.elapsed());
    let apps: Vec<String> = (0..n)
        .map(|_| {
            create_microservice(&server, &owner)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let started = Instant::now();
    for id in &apps {
        server
            .req("DELETE", &format!("/application/applications/{id}"))
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .expect(204);
    }
    eprintln!("figure: {n} deletes took {:?}", started.elapsed());
}

//! Crash trials: each long operation (upload, subscribe, unsubscribe, upgrade, rollback,
//! application deletion, tenant deletion) is interrupted at a random point: Berth killed with
//! SIGKILL and started again on the same data dir, or the client leaving, either at a named
//! fault point (`BERTH_TEST_PAUSE_AT=*`, armed per trial) or after a random delay. Then one
//! invariant ([`crate::consistency::check`]) must hold once Berth settles.
//!
//! Trials are drawn from a seeded generator: `BERTH_CRASH_SEED` replays a run,
//! `BERTH_CRASH_TRIALS` sets how many (default one per operation, for CI),
//! `BERTH_CRASH_ONLY=<n>` runs only trial n of the seed, `BERTH_CRASH_MINUTES` starts no trial
//! after that many minutes. `bench/crash_trials.sh` runs the long
//! series whose figures are in `docs/faults.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::consistency::{Known, check};
use crate::crash_scale::{load_url, scale_manifest, window_kept};
use crate::crash_tools::{Client, Request, Rng, env_u64, variant};
use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Options, Server, Tenant, create_tenant};
use crate::supervisor::{DockerCleanup, HelloLease, manifest, readiness_on_health};
use crate::upload::{multipart, zip_of};

/// How long Berth may take to settle (restart, adopt or replace, converge, roll back).
const SETTLE: Duration = Duration::from_secs(120);
/// How long a paused operation may take to reach its point.
const REACH: Duration = Duration::from_secs(60);
/// The rollout timeout of the trial server: a never-ready version is rolled back after it.
const ROLLOUT_TIMEOUT_SECS: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Upload,
    Subscribe,
    Unsubscribe,
    Upgrade,
    Rollback,
    DeleteApplication,
    DeleteTenant,
    /// The autoscaler scaling a deployment up under CPU load.
    Scale,
}

const OPERATIONS: [Operation; 8] = [
    Operation::Upload,
    Operation::Subscribe,
    Operation::Unsubscribe,
    Operation::Upgrade,
    Operation::Rollback,
    Operation::DeleteApplication,
    Operation::DeleteTenant,
    Operation::Scale,
];

impl Operation {
    /// The fault points on its path, and how long after the request it may still be acting.
    fn points_and_window(self) -> (&'static [&'static str], u64) {
        match self {
            Operation::Upload => (&["upload-loaded", "upload-kept"], 3000),
            Operation::Subscribe => (&["subscribe-committed"], 1500),
            Operation::Unsubscribe => (&["unsubscribe-committed"], 2000),
            Operation::Upgrade => (&["upload-loaded", "upload-kept"], 5000),
            // The upload, then the rollout that fails and is rolled back.
            Operation::Rollback => (
                &["upload-loaded", "upload-kept"],
                4000 + ROLLOUT_TIMEOUT_SECS * 1000,
            ),
            Operation::DeleteApplication => (&["delete-committed"], 2500),
            Operation::DeleteTenant => (&["tenant-delete-committed"], 2500),
            // The load's first decisions (a second apart), the new replica's start.
            Operation::Scale => (&["scale-decided"], 8000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Strike {
    /// Berth is killed with SIGKILL and started again.
    Kill,
    /// The client drops its connection; Berth goes on.
    ClientLeaves,
}

#[derive(Debug, Clone, PartialEq)]
enum When {
    /// While paused at the named point.
    At(&'static str),
    /// This long after the request was sent.
    After(Duration),
}

/// What one trial did, for the figures.
struct Outcome {
    operation: Operation,
    strike: Strike,
    at_point: bool,
    /// The client had its answer before the fault (the operation was done).
    answered: Option<u16>,
    settle: Duration,
}

/// One server for a whole run; every trial makes its own tenants and applications and deletes
/// them afterwards.
struct Run {
    server: Option<Server>,
    installation: String,
    /// Taken in `drop`, after the server and before the images.
    cleanup: Option<DockerCleanup>,
    pause: tempfile::TempDir,
    hello: HelloLease,
    tenants: HashMap<String, Tenant>,
    images: BTreeSet<String>,
    work: tempfile::TempDir,
    /// When the last strike fell.
    struck: time::OffsetDateTime,
    /// The owner and application of a scaling trial, and its running containers at the strike.
    scaling: Option<(Tenant, String)>,
    running_at_strike: usize,
}

impl Run {
    fn start() -> Run {
        let hello = HelloLease::acquire();
        let pause = tempfile::tempdir().unwrap();
        let server = Server::start_with(Options {
            extra_args: ["--rollout-timeout", &ROLLOUT_TIMEOUT_SECS.to_string()]
                .into_iter()
                .chain(crate::crash_scale::SERVER_ARGS)
                .map(str::to_owned)
                .collect(),
            env: vec![
                ("BERTH_TEST_PAUSE_AT".into(), "*".into()),
                (
                    "BERTH_TEST_PAUSE_DIR".into(),
                    pause.path().display().to_string(),
                ),
            ],
            ..Options::default()
        });
        let installation = server.installation().to_owned();
        Run {
            server: Some(server),
            cleanup: Some(DockerCleanup(installation.clone())),
            installation,
            pause,
            hello,
            tenants: HashMap::new(),
            images: BTreeSet::new(),
            work: tempfile::tempdir().unwrap(),
            struck: time::OffsetDateTime::now_utc(),
            scaling: None,
            running_at_strike: 0,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn pause_file(&self, point: &str, suffix: &str) -> PathBuf {
        self.pause.path().join(format!("{point}.{suffix}"))
    }

    fn tenant(&mut self, label: &str) -> Tenant {
        let t = create_tenant(self.server(), label);
        self.tenants.insert(t.id.clone(), t.clone());
        t
    }

    /// A package of the hello image (a variant of its own) with `manifest`.
    fn package(&mut self, manifest: &str) -> Vec<u8> {
        let (id, archive) = variant(&self.hello.0.archive, &crate::fixture::unique("t"));
        self.images.insert(id);
        zip_of(&[
            ("cumulocity.json", manifest.as_bytes()),
            ("image.tar", &archive),
        ])
    }

    fn create_app(&self, owner: &Tenant) -> String {
        let name = crate::fixture::unique("ct-");
        self.server()
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

    fn upload(&self, owner: &Tenant, app: &str, zip: &[u8]) {
        let (content_type, body) = multipart("file", zip);
        self.server()
            .req("POST", &format!("/application/applications/{app}/binaries"))
            .basic(&owner.admin_login, &owner.admin_password)
            .raw(&content_type, body)
            .send()
            .expect(201);
    }

    fn subscribe(&self, tenant: &Tenant, app: &str) {
        crate::supervisor::subscribe(self.server(), &tenant.id, app).expect(201);
    }

    fn write_zip(&self, zip: &[u8]) -> PathBuf {
        let path = self
            .work
            .path()
            .join(format!("{}.zip", crate::fixture::unique("p")));
        std::fs::write(&path, zip).unwrap();
        path
    }

    /// Waits for the invariant; Err with the last disagreement when it never holds.
    fn settled(&self) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let known = Known {
                installation: &self.installation,
                tenants: &self.tenants,
                images: &self.images,
            };
            match check(self.server(), &known) {
                Ok(()) => return Ok(started.elapsed()),
                Err(e) if started.elapsed() > SETTLE => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Waits until the scaling trial's application made a decision after the strike, settles
    /// on it, and kept the window ([`window_kept`]).
    fn window_kept(&self, owner: &Tenant, app: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let kept = || {
            window_kept(
                self.server(),
                owner,
                app,
                self.struck,
                self.running_at_strike,
            )
        };
        while let Err(e) = kept() {
            if started.elapsed() > SETTLE {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.settled()?;
        kept()?;
        Ok(started.elapsed())
    }

    /// Makes what `operation` acts on and returns the request that performs it.
    fn prepare(&mut self, operation: Operation, rng: &mut Rng) -> Request {
        let isolation = ["MULTI_TENANT", "PER_TENANT"][rng.below(2) as usize];
        let good = manifest(isolation, 1, readiness_on_health());
        let owner = self.tenant("ct-own");
        let app = self.create_app(&owner);
        let owner_login = (owner.admin_login.clone(), owner.admin_password.clone());
        let mgmt = (MGMT_ADMIN.to_owned(), ADMIN_PASSWORD.to_owned());
        if operation == Operation::Upload {
            let zip = self.package(&good);
            return Request {
                method: "POST",
                path: format!("/application/applications/{app}/binaries"),
                login: owner_login,
                zip: Some(self.write_zip(&zip)),
                json: None,
                load: None,
            };
        }
        if operation == Operation::Scale {
            let zip = self.package(&scale_manifest(isolation));
            self.upload(&owner, &app, &zip);
            self.subscribe(&owner, &app);
            if let Err(e) = self.settled() {
                panic!("the autoscaled application never settled: {e}");
            }
            let request = Request {
                method: "GET",
                path: String::new(),
                login: owner_login,
                zip: None,
                json: None,
                load: Some(load_url(self.server(), &owner, &app)),
            };
            self.scaling = Some((owner, app));
            return request;
        }
        let zip = self.package(&good);
        self.upload(&owner, &app, &zip);
        let subscriber = self.tenant("ct-sub");
        if operation == Operation::Subscribe {
            return Request {
                method: "POST",
                path: format!("/tenant/tenants/{}/applications", subscriber.id),
                login: mgmt,
                zip: None,
                json: Some(json!({"application": {"id": app}}).to_string()),
                load: None,
            };
        }
        self.subscribe(&owner, &app);
        self.subscribe(&subscriber, &app);
        match operation {
            Operation::Unsubscribe => Request {
                method: "DELETE",
                path: format!("/tenant/tenants/{}/applications/{app}", subscriber.id),
                login: mgmt,
                zip: None,
                json: None,
                load: None,
            },
            Operation::Upgrade | Operation::Rollback => {
                let probes = if operation == Operation::Upgrade {
                    readiness_on_health()
                } else {
                    json!({"readinessProbe": {"httpGet": {"path": "/no-such-path", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}})
                };
                let mut next: Value =
                    serde_json::from_str(&manifest(isolation, 1, probes)).unwrap();
                next["version"] = json!("2.0.0");
                let zip = self.package(&next.to_string());
                Request {
                    method: "POST",
                    path: format!("/application/applications/{app}/binaries"),
                    login: owner_login,
                    zip: Some(self.write_zip(&zip)),
                    json: None,
                    load: None,
                }
            }
            Operation::DeleteApplication => Request {
                method: "DELETE",
                path: format!("/application/applications/{app}"),
                login: owner_login,
                zip: None,
                json: None,
                load: None,
            },
            Operation::DeleteTenant => Request {
                method: "DELETE",
                path: format!("/tenant/tenants/{}", owner.id),
                login: mgmt,
                zip: None,
                json: None,
                load: None,
            },
            Operation::Upload | Operation::Subscribe | Operation::Scale => unreachable!(),
        }
    }

    /// Sends the request and strikes; returns the status the client got before (if any).
    fn strike(&mut self, request: &Request, strike: Strike, when: &When) -> Option<u16> {
        if let When::At(point) = when {
            for suffix in ["release", "reached"] {
                let _ = std::fs::remove_file(self.pause_file(point, suffix));
            }
            std::fs::write(self.pause_file(point, "armed"), b"").unwrap();
        }
        let mut client = Client::start(self.server(), request);
        let mut finished = None;
        match when {
            When::At(point) => {
                let reached = self.pause_file(point, "reached");
                let deadline = Instant::now() + REACH;
                while !reached.exists() {
                    finished = client.finished();
                    if finished.is_some() {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{point} never reached");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            When::After(delay) => {
                std::thread::sleep(*delay);
                finished = client.finished();
            }
        }
        self.struck = time::OffsetDateTime::now_utc();
        if let Some((_, app)) = &self.scaling {
            self.running_at_strike = crate::crash_scale::running(&self.installation, app);
        }
        match strike {
            Strike::Kill => {
                let mut server = self.server.take().unwrap();
                server.crash();
                client.leave();
                if let When::At(point) = when {
                    let _ = std::fs::remove_file(self.pause_file(point, "armed"));
                }
                self.server = Some(server.restart());
            }
            Strike::ClientLeaves => {
                client.leave();
                if let When::At(point) = when {
                    std::fs::write(self.pause_file(point, "release"), b"").unwrap();
                    let _ = std::fs::remove_file(self.pause_file(point, "armed"));
                }
            }
        }
        finished
    }

    /// Deletes the tenants a trial made (those the operation left).
    fn tear_down(&mut self, made: &[String]) {
        for id in made {
            let answer = self
                .server()
                .req("DELETE", &format!("/tenant/tenants/{id}"))
                .basic(MGMT_ADMIN, ADMIN_PASSWORD)
                .send();
            assert!(
                [204, 404].contains(&answer.status),
                "deleting {id}: {} {}",
                answer.status,
                answer.body
            );
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The server, then its containers (which hold images), then the packages' images: the
        // run's own, each a variant made for one package.
        drop(self.server.take());
        drop(self.cleanup.take());
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

#[test]
fn crash_trials_leave_api_database_data_dir_and_docker_agreeing() {
    let seed = env_u64("BERTH_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let trials = env_u64("BERTH_CRASH_TRIALS").unwrap_or(OPERATIONS.len() as u64);
    let only = env_u64("BERTH_CRASH_ONLY");
    // A time box for long runs: no trial starts after it (the run still reports and cleans up).
    let time_box = env_u64("BERTH_CRASH_MINUTES").map(|m| Duration::from_secs(m * 60));
    eprintln!("crash trials: BERTH_CRASH_SEED={seed} BERTH_CRASH_TRIALS={trials}");
    let mut run = Run::start();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for n in (0..trials).filter(|n| only.is_none_or(|o| o == *n)) {
        if time_box.is_some_and(|t| started.elapsed() > t) {
            eprintln!("crash trials: time box reached after {n} trials");
            break;
        }
        let mut rng = Rng::for_trial(seed, n);
        let operation = OPERATIONS[(n % OPERATIONS.len() as u64) as usize];
        let before: BTreeSet<String> = run.tenants.keys().cloned().collect();
        let request = run.prepare(operation, &mut rng);
        let made: Vec<String> = run
            .tenants
            .keys()
            .filter(|t| !before.contains(*t))
            .cloned()
            .collect();
        let (points, window) = operation.points_and_window();
        let when = if rng.below(2) == 0 {
            When::At(points[rng.below(points.len() as u64) as usize])
        } else {
            When::After(Duration::from_millis(rng.below(window)))
        };
        let strike = if rng.below(4) == 0 {
            Strike::ClientLeaves
        } else {
            Strike::Kill
        };
        let replay = format!(
            "trial {n} ({operation:?}, {strike:?} {when:?}); replay with BERTH_CRASH_SEED={seed} BERTH_CRASH_ONLY={n}"
        );
        // The state the operation starts from holds the invariant too.
        if let Err(e) = run.settled() {
            panic!("before {replay}: {e}");
        }
        let answered = run.strike(&request, strike, &when);
        let mut settle = run
            .settled()
            .unwrap_or_else(|e| panic!("after {replay}: {e}"));
        if let Some((owner, app)) = run.scaling.take() {
            settle += run
                .window_kept(&owner, &app)
                .unwrap_or_else(|e| panic!("after {replay}: {e}"));
        }
        eprintln!(
            "crash trial {n}: {operation:?} {strike:?} {when:?}: answered {answered:?}, settled in {settle:?}"
        );
        outcomes.push(Outcome {
            operation,
            strike,
            at_point: matches!(when, When::At(_)),
            answered,
            settle,
        });
        run.tear_down(&made);
        for t in made {
            run.tenants.remove(&t);
        }
    }
    if let Err(e) = run.settled() {
        panic!("after the last tear-down: {e}");
    }
    report(&outcomes, started.elapsed(), seed);
}

/// Prints the figures of the run, one line per operation.
fn report(outcomes: &[Outcome], took: Duration, seed: u64) {
    let mut by_op: BTreeMap<Operation, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_op.entry(o.operation).or_default().push(o);
    }
    eprintln!(
        "figure: crash trials: seed {seed}, {} trials, 0 failures, {took:?}",
        outcomes.len()
    );
    for (op, list) in by_op {
        let count = |f: &dyn Fn(&&Outcome) -> bool| list.iter().filter(|o| f(o)).count();
        let slowest = list.iter().map(|o| o.settle).max().unwrap_or_default();
        eprintln!(
            "figure: {op:?}: {} trials: {} kill at a point, {} kill after a delay, {} client left, \
             {} answered before the fault; slowest settle {slowest:?}",
            list.len(),
            count(&|o| o.strike == Strike::Kill && o.at_point),
            count(&|o| o.strike == Strike::Kill && !o.at_point),
            count(&|o| o.strike == Strike::ClientLeaves),
            count(&|o| o.answered.is_some()),
        );
    }
}

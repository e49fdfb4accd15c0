//! The crash trials' tools: a seeded generator per trial, a distinct image per package, and
//! the interrupted request as a `curl` process the trial can kill.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use package_rules::test_support::{config_name, image_id, read, rewrite};
use serde_json::{Value, json};

use crate::fixture::Server;

/// SplitMix64: small, seedable, and the same on every machine.
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// The generator of trial `n` of a run: each trial can be replayed on its own.
    pub(crate) fn for_trial(seed: u64, n: u64) -> Rng {
        let mut rng = Rng(seed ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03));
        rng.next();
        rng
    }
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

/// The hello image under a label of its own: a distinct image id per package, so the check can
/// tell whether the engine still holds what an upload brought. Built by rewriting the `docker
/// save` archive's config (its digest is the image id), without tags.
pub(crate) fn variant(archive: &[u8], label: &str) -> (String, Vec<u8>) {
    let entries = read(archive);
    let data = |name: &str| &entries.iter().find(|e| e.0 == name).unwrap().2;
    let mut manifest: Value = serde_json::from_slice(data("manifest.json")).unwrap();
    let old_name = manifest[0]["Config"].as_str().unwrap().to_owned();
    let mut config: Value = serde_json::from_slice(data(&old_name)).unwrap();
    config["config"]["Labels"]["berth.trial"] = json!(label);
    let config = serde_json::to_vec(&config).unwrap();
    let new_name = config_name(&config);
    manifest[0]["Config"] = json!(new_name);
    manifest[0]["RepoTags"] = Value::Null;
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let rewritten = rewrite(archive, |name, data| {
        if *name == old_name {
            *name = new_name.clone();
            Some(config.clone())
        } else if name == "manifest.json" {
            Some(manifest.clone())
        } else {
            (name != "repositories").then_some(data)
        }
    });
    (image_id(&config), rewritten)
}

/// A request the trial interrupts.
pub(crate) struct Request {
    pub method: &'static str,
    pub path: String,
    pub login: (String, String),
    /// A package to upload as multipart, or a JSON body.
    pub zip: Option<PathBuf>,
    pub json: Option<String>,
    /// Not a request but CPU load on this URL of a replica (`GET /burn`), until the strike:
    /// what makes the autoscaler scale.
    pub load: Option<String>,
}

/// What the trial interrupts: the request's `curl`, or the load.
pub(crate) enum Client {
    Curl(Child),
    Load {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Client {
    pub(crate) fn start(server: &Server, request: &Request) -> Client {
        let Some(url) = request.load.clone() else {
            return Client::Curl(curl(server, request));
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let agent = crate::supervisor::plain_agent();
            while !flag.load(Ordering::Relaxed) {
                let _ = agent.get(&url).call();
            }
        });
        Client::Load {
            stop,
            thread: Some(thread),
        }
    }

    /// The status the client got, once it has (a load never finishes).
    pub(crate) fn finished(&mut self) -> Option<u16> {
        match self {
            Client::Curl(child) => match child.try_wait() {
                Ok(Some(_)) => Some(read_status(child)),
                _ => None,
            },
            Client::Load { .. } => None,
        }
    }

    /// Drops the connection, or stops the load.
    pub(crate) fn leave(&mut self) {
        match self {
            Client::Curl(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Client::Load { stop, thread } => {
                stop.store(true, Ordering::Relaxed);
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

/// A request through `curl`, as a process the trial can kill to drop the connection.
pub(crate) fn curl(server: &Server, request: &Request) -> Child {
    let mut command = Command::new("curl");
    // HTTP/1.1: only there does a client leaving drop the handler (actix runs HTTP/2 handlers
    // as tasks of their own).
    command
        .args(["--http1.1", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-X", request.method, "--cacert"])
        .arg(server.path("tls/cert.pem"))
        .arg("-u")
        .arg(format!("{}:{}", request.login.0, request.login.1));
    if let Some(zip) = &request.zip {
        command
            .arg("-F")
            .arg(format!("file=@{};type=application/zip", zip.display()));
    }
    if let Some(body) = &request.json {
        command
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(body);
    }
    command
        .arg(format!("{}{}", server.https, request.path))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the curl CLI must be installed for these tests")
}

pub(crate) fn read_status(client: &mut Child) -> u16 {
    let mut out = String::new();
    if let Some(stdout) = client.stdout.as_mut() {
        let _ = stdout.read_to_string(&mut out);
    }
    out.trim().parse().unwrap_or(0)
}

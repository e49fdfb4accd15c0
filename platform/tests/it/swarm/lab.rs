//! A Swarm lab per test: `swarm-lab up` under a name of its own, `down` in `Drop` (so a failed
//! test leaves nothing), and the commands that hurt nodes. The lab script is
//! `$SWARM_LAB`, else `/work/shared/lab/swarm-lab`.
//!
//! The name is chosen so the lab's bridge (`10.213.<idx>.0/24`, idx from the name) stays clear of
//! the blocks concurrent local-engine tests take for deployment networks (Berth's default pool
//! `10.213.0.0/16` hands out /28s from near the bottom, each installation starting at one of the
//! first 64: idx >= 100 is 1600 networks away) and of
//! every other lab on the machine, and so its Swarm's own address pool (`10.<idx + 20>.0.0/16`)
//! is not the pool Berth's overlays come from in these tests ([`OVERLAY_POOL`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crate::fixture::Server;
use crate::supervisor::{DockerCleanup, HelloImage, start_server};

/// Berth's overlay pool in the lab tests.
pub const OVERLAY_POOL: &str = "10.214.0.0/16";

pub struct Lab {
    pub name: String,
    script: PathBuf,
    pub env: HashMap<String, String>,
}

/// Whether lab tests can run here; says loudly why not.
pub fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        eprintln!(
            "\n!!!! SKIPPED: the Swarm lab needs root (network namespaces, dockerd per node) !!!!\n"
        );
    }
    root
}

fn script() -> PathBuf {
    let path = std::env::var_os("SWARM_LAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/lab/swarm-lab"));
    assert!(
        path.is_file(),
        "the Swarm lab script {} is missing (set SWARM_LAB to its path)",
        path.display()
    );
    path
}

/// The bridge index `swarm-lab` derives from a name (`cksum % 200 + 20`).
fn index_of(name: &str) -> u32 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' {name} | cksum"))
        .output()
        .expect("cksum");
    let text = String::from_utf8_lossy(&out.stdout);
    let sum: u64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("cksum output");
    u32::try_from(sum % 200).unwrap() + 20
}

fn addresses_in_use() -> String {
    Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Lab {
    /// Brings up a lab of `nodes` nodes; panics with the script's output on failure.
    pub fn up(nodes: u32) -> Lab {
        let script = script();
        let name = loop {
            let candidate = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..7]);
            let idx = index_of(&candidate);
            let taken = addresses_in_use().contains(&format!(" 10.213.{idx}."));
            if idx >= 100 && idx + 20 != 214 && !taken {
                break candidate;
            }
        };
        let mut lab = Lab {
            name,
            script,
            env: HashMap::new(),
        };
        let out = lab.run(&["up", "--nodes", &nodes.to_string()]);
        for line in out.lines() {
            if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                lab.env.insert(k.to_owned(), v.to_owned());
            }
        }
        assert!(
            lab.env.contains_key("LAB_DOCKER_HOST"),
            "swarm-lab up printed no env: {out}"
        );
        lab
    }

    fn run(&self, args: &[&str]) -> String {
        let mut command = Command::new(&self.script);
        command
            .arg(args[0])
            .args(["--name", &self.name])
            .args(&args[1..]);
        let out = command.output().expect("run swarm-lab");
        assert!(
            out.status.success(),
            "swarm-lab {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }

    /// The manager's socket path (without `unix://`).
    pub fn manager_socket(&self) -> PathBuf {
        PathBuf::from(self.var("LAB_DOCKER_HOST").trim_start_matches("unix://"))
    }

    /// `--swarm-node-engines`: every node's address and its engine's socket.
    pub fn node_engines(&self) -> String {
        (1..)
            .map_while(|k| {
                let ip = self.env.get(&format!("LAB_NODE{k}_IP"))?;
                let host = self.env.get(&format!("LAB_NODE{k}_HOST"))?;
                Some(format!("{ip}={host}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill(&self, node: u32) {
        self.run(&["kill", &node.to_string()]);
    }

    pub fn cut(&self, node: u32) {
        self.run(&["cut", &node.to_string()]);
    }

    pub fn heal(&self, node: u32) {
        self.run(&["heal", &node.to_string()]);
    }

    /// `docker` against node `k`'s engine; its stdout, trimmed (empty on failure).
    pub fn docker(&self, node: u32, args: &[&str]) -> String {
        let host = self.var(&format!("LAB_NODE{node}_HOST")).to_owned();
        let out = Command::new("docker")
            .arg("-H")
            .arg(host)
            .args(args)
            .output()
            .expect("docker");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The hello example as a `docker save` archive, built on the manager's engine (not the
    /// machine's shared one, whose images other tests' clean-ups may remove meanwhile) from the
    /// static binary `examples/hello/build.sh` makes, and removed from the manager again.
    pub fn hello_archive(&self) -> Vec<u8> {
        self.hello_archive_with("[\"/hello\"]")
    }

    /// The hello binary whose entrypoint is `hello check /`: nobody listens in its own
    /// container, so it exits non-zero at once, every time (a crash loop).
    pub fn crashing_archive(&self) -> Vec<u8> {
        self.hello_archive_with("[\"/hello\", \"check\", \"/\"]")
    }

    /// [`Lab::hello_archive`] with another `ENTRYPOINT` (JSON form).
    fn hello_archive_with(&self, entrypoint: &str) -> Vec<u8> {
        let target = PathBuf::from(env!("CARGO_BIN_EXE_berth"))
            .parent()
            .and_then(|p| p.parent())
            .unwrap()
            .to_owned();
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned();
        let triple = "x86_64-unknown-linux-gnu";
        let out = Command::new("cargo")
            .args(["build", "--release", "--target", triple, "-p", "hello"])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&workspace)
            .output()
            .expect("cargo build hello");
        assert!(
            out.status.success(),
            "hello: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy(
            target.join(triple).join("release/hello"),
            ctx.path().join("hello"),
        )
        .unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM scratch\nCOPY hello /hello\nUSER 65534:65534\nENTRYPOINT {entrypoint}\n"),
        )
        .unwrap();
        let tag = format!(
            "berth-it-hello-{}-{}:1.0.0",
            self.name,
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let manager = self.var("LAB_DOCKER_HOST").to_owned();
        let docker = |args: &[&str]| {
            let out = Command::new("docker")
                .arg("-H")
                .arg(&manager)
                .args(args)
                .env("DOCKER_BUILDKIT", "0")
                .output()
                .expect("docker");
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        docker(&["build", "-q", "-t", &tag, &ctx.path().display().to_string()]);
        let archive = docker(&["save", &tag]);
        docker(&["rmi", &tag]);
        archive
    }

    /// Builds the relay image on the manager and pushes it to the lab's registry.
    pub fn push_relay_image(&self) -> String {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned();
        let image = format!("{}/berth-swarm-relay:test", self.var("LAB_REGISTRY"));
        let target = PathBuf::from(env!("CARGO_BIN_EXE_berth"))
            .parent()
            .and_then(|p| p.parent())
            .unwrap()
            .to_owned();
        let out = Command::new(workspace.join("swarm-relay/build.sh"))
            .env("IMAGE", &image)
            .env("PUSH", "1")
            .env("DOCKER_HOST", self.var("LAB_DOCKER_HOST"))
            .env("CARGO_TARGET_DIR", target)
            .output()
            .expect("swarm-relay/build.sh");
        assert!(
            out.status.success(),
            "relay image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }
}

/// Berth on this lab's Swarm (manager engine, registry, relay image pushed, platform address,
/// [`OVERLAY_POOL`]), with `extra` arguments after those, and the hello image as the lab
/// builds it.
pub fn serve_on(lab: &Lab, extra: &[&str]) -> (HelloImage, DockerCleanup, Server) {
    let hello = HelloImage {
        id: String::new(),
        archive: lab.hello_archive(),
    };
    let relay = lab.push_relay_image();
    let manager = lab.manager_socket().display().to_string();
    let mut args = vec![
        "--runtime",
        "swarm",
        "--docker-socket",
        &manager,
        "--registry",
        lab.var("LAB_REGISTRY"),
        "--swarm-relay-image",
        &relay,
        "--swarm-platform-address",
        lab.var("LAB_HOST_IP"),
        "--network-pool",
        OVERLAY_POOL,
    ];
    args.extend_from_slice(extra);
    let (cleanup, server) = start_server(&args);
    (hello, cleanup, server)
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new(&self.script)
            .args(["down", "--name", &self.name])
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("swarm-lab down --name {} failed", self.name);
        }
    }
}

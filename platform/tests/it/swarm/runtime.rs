//! The Swarm runtime against a real 3-node lab: images pushed to the registry, a deployment as
//! one service spread over the nodes and reached only through the relays, tenants' overlay
//! networks isolated, and a node's loss.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use berth::runtime::swarm::{SwarmRuntime, SwarmSettings};
use berth::runtime::{InstanceInfo, InstanceSpec, NetworkSpec, Runtime};

use super::lab::Lab;

const INSTALLATION: &str = "swarmit01";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `GET path` on `ip:80` with a plain HTTP/1.1 client: status and body.
fn get(ip: IpAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&(ip, 80).into(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

fn spec(deployment: &str, network: &str, image: &str, replicas: u32, replica: u32) -> InstanceSpec {
    InstanceSpec {
        name: format!("{deployment}-{replica}"),
        deployment: deployment.to_owned(),
        revision: "r1".to_owned(),
        replica,
        replicas,
        image: image.to_owned(),
        env: vec![format!("C8Y_TENANT={deployment}")],
        labels: HashMap::from([
            ("berth.installation".to_owned(), INSTALLATION.to_owned()),
            ("berth.deployment".to_owned(), deployment.to_owned()),
            ("berth.test".to_owned(), "1".to_owned()),
            ("berth.replica".to_owned(), replica.to_string()),
        ]),
        network: network.to_owned(),
        memory_bytes: 64 << 20,
        nano_cpus: 200_000_000,
        pids_limit: 256,
    }
}

fn net(name: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.to_owned(),
        bridge: String::new(),
        labels: HashMap::from([
            ("berth.installation".to_owned(), INSTALLATION.to_owned()),
            ("berth.test".to_owned(), "1".to_owned()),
        ]),
        subnet: subnet.to_owned(),
    }
}

async fn running(rt: &SwarmRuntime, deployment: &str) -> Vec<InstanceInfo> {
    rt.instances(&[("berth.deployment", deployment)])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.running)
        .collect()
}

/// Polls until `deployment` has `n` running instances that answer `/health` through their
/// tunnel addresses; panics at the deadline with what it saw.
async fn wait_serving(
    rt: &SwarmRuntime,
    deployment: &str,
    n: usize,
    within: Duration,
) -> Vec<InstanceInfo> {
    let deadline = Instant::now() + within;
    loop {
        let up = running(rt, deployment).await;
        let serving = up
            .iter()
            .filter(|i| {
                let ip = i.ip.unwrap();
                std::thread::scope(|s| s.spawn(|| get(ip, "/health")).join().unwrap())
                    .is_ok_and(|(status, _)| status == 200)
            })
            .count();
        if up.len() == n && serving == n {
            return up;
        }
        assert!(
            Instant::now() < deadline,
            "{deployment}: {serving} of {n} serving; instances: {:?}",
            rt.instances(&[("berth.deployment", deployment)]).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The lab node number (1..=3) of each task Swarm wants running for `service`.
fn task_nodes(lab: &Lab, service: &str) -> Vec<u32> {
    let ids = lab.docker(
        1,
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            service,
        ],
    );
    ids.lines()
        .filter_map(|task| {
            let node = lab.docker(1, &["inspect", "--format", "{{.NodeID}}", task]);
            let addr = lab.docker(
                1,
                &["node", "inspect", "--format", "{{.Status.Addr}}", &node],
            );
            (1..=3).find(|k| lab.var(&format!("LAB_NODE{k}_IP")) == addr)
        })
        .collect()
}

/// Whether lab node `k` is ready as the manager sees it.
fn node_ready(lab: &Lab, k: u32) -> bool {
    let nodes = lab.docker(1, &["node", "ls", "-q"]);
    nodes.lines().any(|node| {
        lab.docker(
            1,
            &[
                "node",
                "inspect",
                "--format",
                "{{.Status.Addr}} {{.Status.State}}",
                node,
            ],
        ) == format!("{} ready", lab.var(&format!("LAB_NODE{k}_IP")))
    })
}

/// Calls `remove` until it succeeds and the network `name` is gone: Swarm refuses a
/// network's removal until its tasks have let go of it (the supervisor's next pass tries
/// again), and the manager may list a removed network a moment longer.
async fn gone<F, Fut>(rt: &SwarmRuntime, name: &str, remove: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), berth::runtime::RuntimeError>>,
{
    let started = Instant::now();
    let mut refused = 0;
    loop {
        match remove().await {
            Ok(()) if rt.network(name).await.unwrap().is_none() => break,
            Ok(()) => {}
            Err(e) => {
                refused += 1;
                if refused == 1 {
                    eprintln!("swarm: removing {name} refused at first: {e}");
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "network {name} stays"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "swarm: {name} gone after {:?} ({refused} refusals)",
        started.elapsed()
    );
}

/// The overlay address of `service`'s task on its node, found on the node's own engine.
fn task_ip(lab: &Lab, service: &str, network: &str) -> Option<String> {
    (1..=3).find_map(|k| {
        let id = lab.docker(
            k,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
            ],
        );
        let id = id.lines().next()?.to_owned();
        let ip = lab.docker(
            k,
            &[
                "inspect",
                "--format",
                &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
                &id,
            ],
        );
        (!ip.is_empty()).then_some(ip)
    })
}

#[test]
fn swarm_runs_a_deployment_spread_isolated_and_survives_a_node_loss() {
    if !super::lab::can_run() {
        return;
    }
    let lab = Lab::up(3);
    let hello = lab.hello_archive();
    let relay_image = lab.push_relay_image();
    let settings = SwarmSettings {
        registry: lab.var("LAB_REGISTRY").to_owned(),
        registry_credentials: None,
        relay_image,
        platform_address: lab.var("LAB_HOST_IP").parse().unwrap(),
        node_engines: std::collections::HashMap::new(),
    };
    block_on(async {
        let rt = SwarmRuntime::connect(&lab.manager_socket(), settings)
            .await
            .unwrap();
        rt.identify(
            INSTALLATION.to_owned(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
            // No gateway here (no Berth): the relays' platform path is tested in `serve`.
            format!("{}:9", lab.var("LAB_HOST_IP")).parse().unwrap(),
        );

        // Upload: loaded on the manager, tagged, pushed; the registry has the tag.
        let archive = hello.clone();
        let stream = futures_util::stream::once(async move { Ok(bytes::Bytes::from(archive)) });
        let loaded = rt.load_image(Box::pin(stream)).await.unwrap();
        let image = rt
            .image_id(loaded.first().expect("a loaded image"))
            .await
            .unwrap()
            .expect("the loaded image's id");
        let repo = format!("berth/{INSTALLATION}/t1-1");
        rt.tag(&image, &repo, "1.0.0").await.unwrap();
        let tags = ureq::get(&format!(
            "http://{}/v2/{repo}/tags/list",
            lab.var("LAB_REGISTRY")
        ))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
        assert!(tags.contains("1.0.0"), "registry tags: {tags}");

        // Two tenants' deployments, each on its own overlay network.
        let a = rt
            .create_network(&net("swit-a", "10.214.0.0/26"))
            .await
            .unwrap();
        let b = rt
            .create_network(&net("swit-b", "10.214.0.64/26"))
            .await
            .unwrap();
        assert_eq!(a.subnets, vec!["10.214.0.0/26".to_owned()]);
        // A retry after a failure past the network's creation asks for another block: the
        // network keeps its own (Docker answers 409), and its relay must admit that one.
        let again = rt
            .create_network(&net("swit-a", "10.214.0.128/26"))
            .await
            .unwrap();
        assert_eq!(again.subnets, a.subnets);
        let relay_env = lab.docker(
            1,
            &[
                "service",
                "inspect",
                "--format",
                "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
                &berth::runtime::swarm::services::relay_name("swit-a"),
            ],
        );
        assert!(
            relay_env.contains("BERTH_RELAY_ALLOW=10.214.0.0/26"),
            "{relay_env}"
        );
        let started = Instant::now();
        for replica in 0..3 {
            rt.create_instance(&spec("1/a", "swit-a", &image, 3, replica))
                .await
                .unwrap();
        }
        rt.create_instance(&spec("1/b", "swit-b", &image, 1, 0))
            .await
            .unwrap();
        let up = wait_serving(&rt, "1/a", 3, Duration::from_secs(120)).await;
        eprintln!(
            "swarm: 3 replicas serving {:?} after create",
            started.elapsed()
        );
        wait_serving(&rt, "1/b", 1, Duration::from_secs(60)).await;

        // Spread: the 3 replicas run on 3 nodes.
        let service = up[0].id.rsplit_once('/').unwrap().0.to_owned();
        let nodes: HashSet<u32> = task_nodes(&lab, &service).into_iter().collect();
        assert_eq!(nodes.len(), 3, "tasks on {nodes:?}");

        // The environment contract reached the replicas; each answers through its address.
        for i in &up {
            let (status, body) = get(i.ip.unwrap(), "/env").unwrap();
            assert_eq!(status, 200);
            assert!(body.contains("1/a"), "{body}");
        }

        // Isolation: a replica of tenant a cannot reach tenant b's replica on its overlay
        // address, while b's own relay can (the address is right).
        let b_service = rt.instances(&[("berth.deployment", "1/b")]).await.unwrap()[0]
            .id
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        let b_ip = task_ip(&lab, &b_service, "swit-b").expect("b's task address");
        let (status, body) = get(up[0].ip.unwrap(), &format!("/connect?addr={b_ip}:80")).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("\"connected\":false"), "a reached b: {body}");

        // No replica port is published anywhere: nothing listens on a node's address but
        // the relays, and a relay refuses a client without the token.
        let published = lab.docker(
            1,
            &[
                "service",
                "inspect",
                &service,
                "--format",
                "{{json .Endpoint.Ports}}",
            ],
        );
        assert!(
            published == "null" || published == "[]",
            "published: {published}"
        );

        // Node loss: kill a node that runs a replica of a; routing drops it at once the
        // manager sees the node down, and the slot comes back on the remaining nodes.
        let victim = task_nodes(&lab, &service)
            .into_iter()
            .find(|k| *k != 1)
            .expect("a replica on a worker");
        let killed = Instant::now();
        lab.kill(victim);
        let mut dropped = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now = running(&rt, "1/a").await;
            if dropped.is_none() && now.len() < 3 {
                dropped = Some(killed.elapsed());
            }
            let on_victim = task_nodes(&lab, &service).contains(&victim);
            if dropped.is_some() && now.len() == 3 && !on_victim {
                break;
            }
            assert!(Instant::now() < deadline, "no recovery: {now:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let restored = wait_serving(&rt, "1/a", 3, Duration::from_secs(60)).await;
        eprintln!(
            "swarm: node {victim} killed; its replica left routing after {:?}, 3 replicas serving again after {:?}",
            dropped.unwrap(),
            killed.elapsed()
        );
        assert_eq!(restored.len(), 3);

        // Partition: cut the other worker off. Its replica leaves routing once the manager
        // loses it, and the slot comes back on the manager (the only node left).
        let cut = task_nodes(&lab, &service)
            .into_iter()
            .find(|k| *k != 1 && *k != victim)
            .expect("a replica on the other worker");
        let severed = Instant::now();
        lab.cut(cut);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let on_cut = task_nodes(&lab, &service).contains(&cut);
            if !on_cut && running(&rt, "1/a").await.len() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "no recovery from the partition");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_serving(&rt, "1/a", 3, Duration::from_secs(60)).await;
        eprintln!(
            "swarm: node {cut} cut off; 3 replicas serving again after {:?}",
            severed.elapsed()
        );
        lab.heal(cut);
        // What follows removes networks, which Swarm refuses while a task on them is not known
        // to be shut down: the healed node's stale tasks count until the node reports again.
        let healed = Instant::now();
        while !node_ready(&lab, cut) {
            assert!(
                healed.elapsed() < Duration::from_secs(120),
                "node {cut} not ready again after its heal"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "swarm: node {cut} ready again {:?} after its heal",
            healed.elapsed()
        );

        // A service whose tasks no node can run (here: none has the memory it reserves) is
        // listed as unplaced, with the scheduler's reason; removing its network, as the
        // supervisor does once nothing desired is on it, removes the service too.
        rt.create_network(&net("swit-c", "10.214.0.192/26"))
            .await
            .unwrap();
        let unplaceable = InstanceSpec {
            memory_bytes: 1 << 40,
            ..spec("1/c", "swit-c", &image, 1, 0)
        };
        rt.create_instance(&unplaceable).await.unwrap();
        let on_c = || {
            lab.docker(
                1,
                &[
                    "service",
                    "ls",
                    "-q",
                    "--filter",
                    "label=berth.swarm.network=swit-c",
                ],
            )
        };
        assert!(!on_c().trim().is_empty(), "no service on swit-c");
        // The scheduler's reason shows on the slot, which never ran (no exit to count).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = rt.instances(&[("berth.deployment", "1/c")]).await.unwrap();
            if let [one] = listed.as_slice()
                && one.unplaced.is_some()
            {
                assert!(!one.running && one.finished_at.is_none(), "{one:?}");
                let why = one.unplaced.as_deref().unwrap_or_default();
                assert!(why.contains("no suitable node"), "{one:?}");
                break;
            }
            assert!(Instant::now() < deadline, "1/c unplaced: {listed:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        gone(&rt, "swit-c", || rt.remove_network("swit-c")).await;
        assert_eq!(on_c().trim(), "", "a service stays on the removed network");

        // Removing every slot removes the service; the network goes with its relay.
        for replica in (0..3).rev() {
            rt.remove_instance(&format!("{service}/{replica}"))
                .await
                .unwrap();
        }
        assert!(running(&rt, "1/a").await.is_empty());
        gone(&rt, "swit-a", || rt.remove_network("swit-a")).await;
        gone(&rt, "swit-b", || rt.remove_network_and_instances(&b.id)).await;
        rt.remove_image(&format!("{repo}:1.0.0")).await.unwrap();
        let tags = ureq::get(&format!(
            "http://{}/v2/{repo}/tags/list",
            lab.var("LAB_REGISTRY")
        ))
        .call()
        .map(|r| r.into_body().read_to_string().unwrap_or_default())
        .unwrap_or_default();
        assert!(
            !tags.contains("1.0.0"),
            "the registry kept the version: {tags}"
        );
    });
}

//! Streaming through the proxy to real hello containers: 100 MiB up and down with flat proxy
//! memory, server-sent events arriving one by one, a WebSocket echo (hand-rolled client over
//! rustls), round-robin over two replicas and failover when one is stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fixture::{Server, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, docker, instances, manifest, readiness_on_health, start_server, subscribe,
    wait_for, wait_ready,
};

const BIG: u64 = 100 << 20;

/// hello's `/download` byte at position `i`.
fn download_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// A reader producing `len` deterministic bytes without holding them.
struct Generated {
    pos: u64,
    len: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((self.pos + i as u64) % 253) as u8;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn proxy_streams_bodies_events_and_websockets_and_balances_replicas() {
    let image = HelloLease::acquire();
    let (_cleanup, server) = start_server(&[]);
    let owner = create_tenant(&server, "owner");
    let app = deploy(
        &server,
        &owner,
        &image.0,
        &manifest("MULTI_TENANT", 2, readiness_on_health()),
    );
    subscribe(&server, &owner.id, &app).expect(201);
    let status = wait_ready(&server, &owner, &app, 1);
    let name = server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .expect(200)
        .json()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("{}/service/{name}", server.https);
    let agent = server.agent(None);
    let auth = owner.basic();
    let pid = server.pid().expect("server running");

    // Warm up (TLS, credential cache, pools), then 100 MiB each way with flat memory.
    agent
        .get(&format!("{base}/hello"))
        .header("Authorization", &auth)
        .call()
        .unwrap();
    let before = vm_hwm_kib(pid);
    let mut expected = Sha256::new();
    let mut generated = Generated { pos: 0, len: BIG };
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = generated.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        expected.update(&chunk[..n]);
    }
    let mut up = agent
        .post(&format!("{base}/upload"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/octet-stream")
        .send(ureq::SendBody::from_owned_reader(Generated {
            pos: 0,
            len: BIG,
        }))
        .unwrap();
    assert_eq!(up.status(), 200);
    let answer: Value = up.body_mut().read_json().unwrap();
    assert_eq!(answer["bytes"], BIG);
    assert_eq!(answer["sha256"], hex::encode(expected.finalize()));
    let mut down = agent
        .get(&format!("{base}/download?bytes={BIG}"))
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(down.status(), 200);
    let mut reader = down.body_mut().with_config().limit(BIG + 1).reader();
    let (mut got, mut position, mut mismatch) = (0u64, 0u64, None);
    loop {
        let n = reader.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        for b in &chunk[..n] {
            if mismatch.is_none() && *b != download_byte(position) {
                mismatch = Some(position);
            }
            position += 1;
        }
        got += n as u64;
    }
    assert_eq!((got, mismatch), (BIG, None));
    let after = vm_hwm_kib(pid);
    // VmHWM is max(recorded peak, current RSS), and the recorded peak is updated lazily: pages
    // the allocator gave back since `before` can make it read lower. Lower is no growth.
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "figure: berth peak RSS {} -> {} MiB (+{grown_mib}) for 100 MiB up + 100 MiB down",
        before / 1024,
        after / 1024
    );
    assert!(grown_mib < 40, "proxy buffered the body: +{grown_mib} MiB");

    // Server-sent events arrive one by one: the first is read before the last was sent.
    let mut sse = agent
        .get(&format!("{base}/sse?n=3&gap_ms=300"))
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(
        sse.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut lines = BufReader::new(sse.body_mut().as_reader()).lines();
    let mut events = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        if let Some(data) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap();
            events.push((now_ms(), event));
        }
    }
    assert_eq!(events.len(), 3);
    let last_sent: u128 = events[2].1["sent_at_ms"].as_str().unwrap().parse().unwrap();
    assert!(
        events[0].0 < last_sent,
        "first event was only delivered after the last was sent: {events:?}"
    );

    // WebSocket echo through the proxy.
    websocket_echo(&server, &name, &auth);

    // Round-robin: consecutive requests alternate between the two replicas.
    let whoami = |agent: &ureq::Agent| -> String {
        let mut r = agent
            .get(&format!("{base}/whoami"))
            .header("Authorization", &auth)
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.body_mut().read_json::<Value>().unwrap()["hostname"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let seen: Vec<String> = (0..6).map(|_| whoami(&agent)).collect();
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "replicas alternate: {seen:?}");
    }

    // Failover: one replica stopped, requests keep succeeding on the other.
    let victim = instances(&status)[0]["name"].as_str().unwrap().to_owned();
    docker(&["stop", "-t", "1", &victim]);
    for _ in 0..6 {
        whoami(&agent);
    }
    wait_for(
        Duration::from_secs(30),
        "the stopped replica replaced",
        || {
            let s = crate::supervisor::status(&server, &owner, &app);
            (s["deployments"][0]["upstreams"].as_array()?.len() == 2).then_some(())
        },
    );
}

/// Hand-rolled WebSocket client: TLS to the proxy, upgrade, one masked text frame, its echo,
/// then a close handshake.
fn websocket_echo(server: &Server, name: &str, auth: &str) {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let pem = std::fs::read(server.path("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = server.https.trim_start_matches("https://").to_owned();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let key = STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
    write!(
        tls,
        "GET /service/{name}/ws HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let accept = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    let accept = STANDARD.encode(accept.as_ref());
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            accept.to_ascii_lowercase()
        )),
        "{head}"
    );
    let send = |tls: &mut rustls::StreamOwned<_, _>, opcode: u8, payload: &[u8]| {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tls.write_all(&frame).unwrap();
        tls.flush().unwrap();
    };
    let receive = |tls: &mut rustls::StreamOwned<_, _>| -> (u8, Vec<u8>) {
        let mut header = [0u8; 2];
        tls.read_exact(&mut header).unwrap();
        let len = usize::from(header[1] & 0x7f);
        assert!(len < 126, "short frames only");
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).unwrap();
        (header[0] & 0x0f, payload)
    };
    send(&mut tls, 0x1, b"hello through berth");
    assert_eq!(receive(&mut tls), (0x1, b"hello through berth".to_vec()));
    send(&mut tls, 0x9, b"ping");
    assert_eq!(receive(&mut tls), (0xA, b"ping".to_vec()));
    send(&mut tls, 0x8, &[0x03, 0xe8]);
    assert_eq!(receive(&mut tls).0, 0x8);
}

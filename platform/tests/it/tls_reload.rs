//! Certificate renewal without a restart: the files are replaced under load (new TLS
//! connection per request, as clients after a renewal make them) and no request fails; the
//! server serves the new certificate within a few seconds, and SIGHUP (which would kill a
//! process without a handler) makes it look again instead.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, agent_trusting};
use crate::supervisor::wait_for;

/// The end-entity certificate (DER) a new handshake gets.
fn served_certificate(server: &Server, pems: &[Vec<u8>]) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        roots
            .add(CertificateDer::from_pem_slice(pem).unwrap())
            .unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(server.https.trim_start_matches("https://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn a_renewed_certificate_is_served_under_load_without_a_failed_request() {
    let server = Server::start();
    let old_pem = std::fs::read(server.path("tls/cert.pem")).unwrap();
    let renewed =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let new_pem = renewed.cert.pem().into_bytes();
    let pems = vec![old_pem.clone(), new_pem.clone()];
    let url = format!("{}/tenant/currentTenant", server.https);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, pems, url) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                pems.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                let auth = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{MGMT_ADMIN}:{ADMIN_PASSWORD}"))
                );
                while !stop.load(Ordering::Relaxed) {
                    // A new agent: a new connection and handshake for every request.
                    let result = agent_trusting(&pems, None)
                        .get(&url)
                        .header("Authorization", &auth)
                        .call();
                    match result {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status())),
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    let old_der = {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(&old_pem).unwrap().to_vec()
    };
    assert_eq!(served_certificate(&server, &pems), old_der);
    // The renewal: key first, then the certificate, each renamed over the old file.
    let dir = server.path("tls");
    std::fs::write(dir.join("key.pem.new"), renewed.signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
    std::fs::write(dir.join("cert.pem.new"), &new_pem).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    let new_der = renewed.cert.der().to_vec();
    wait_for(
        Duration::from_secs(30),
        "the renewed certificate served",
        || (served_certificate(&server, &pems) == new_der).then_some(()),
    );
    let before_hangup = ok.load(Ordering::Relaxed);
    // SIGHUP asks for a reload; it must not end the process.
    let pid = server.pid().expect("server running");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for(Duration::from_secs(30), "requests after SIGHUP", || {
        (ok.load(Ordering::Relaxed) > before_hangup + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(served_certificate(&server, &pems), new_der);
    // Still running after SIGHUP (the fixture's own client trusts only the old certificate).
    let status = agent_trusting(&pems, None)
        .get(&url)
        .header(
            "Authorization",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{MGMT_ADMIN}:{ADMIN_PASSWORD}"))
            ),
        )
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

//! Test hooks for the platform's probes, limits and network isolation: a runtime health switch
//! (`POST /health/fail`, `POST /health/pass`), `POST /alloc?mb=N` (allocates and keeps N MiB,
//! to get the container OOM-killed), and `GET /connect?addr=IP:PORT`, which reports whether
//! this container can open a TCP connection to an address within one second.

use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

/// Whether `/health` fails; starts from `HELLO_FAIL_HEALTH` and can be flipped at runtime.
#[derive(Debug, Default)]
pub struct HealthSwitch(AtomicBool);

impl HealthSwitch {
    pub fn new(failing: bool) -> Self {
        HealthSwitch(AtomicBool::new(failing))
    }

    pub fn failing(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub async fn fail(switch: web::Data<HealthSwitch>) -> HttpResponse {
    switch.0.store(true, Ordering::Relaxed);
    HttpResponse::Ok().json(json!({"status": "DOWN"}))
}

pub async fn pass(switch: web::Data<HealthSwitch>) -> HttpResponse {
    switch.0.store(false, Ordering::Relaxed);
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// How long `/connect` waits for a TCP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn connect(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let Some(text) = query.get("addr") else {
        return HttpResponse::BadRequest()
            .json(json!({"error": "query parameter addr=IP:PORT is required"}));
    };
    let Ok(addr) = text.parse::<SocketAddr>() else {
        return HttpResponse::BadRequest()
            .json(json!({"error": format!("addr={text:?} is not IP:PORT")}));
    };
    let outcome = web::block(move || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)).await;
    match outcome {
        Ok(Ok(_)) => HttpResponse::Ok().json(json!({"addr": text, "connected": true})),
        Ok(Err(e)) => HttpResponse::Ok()
            .json(json!({"addr": text, "connected": false, "error": e.to_string()})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

/// Memory held by `/alloc`, so it stays resident until the process dies.
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Largest single `/alloc` request, in MiB.
const MAX_ALLOC_MB: usize = 4096;

/// Allocates `mb` MiB and touches every page, so the memory really counts against the limit.
pub async fn alloc(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let mb = match query.get("mb").map(|v| v.parse::<usize>()) {
        Some(Ok(mb)) if (1..=MAX_ALLOC_MB).contains(&mb) => mb,
        _ => {
            return HttpResponse::BadRequest()
                .json(json!({"error": format!("query parameter mb must be 1..={MAX_ALLOC_MB}")}));
        }
    };
    // Logged first: when this request gets the container OOM-killed, it is its last line.
    eprintln!("hello: allocating {mb} MiB");
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..mb {
        // Non-zero bytes: zero pages could stay shared with the zero page and not count.
        held.push(vec![0xA5; 1 << 20]);
    }
    let total: usize = held.iter().map(Vec::len).sum();
    eprintln!("hello: allocated {mb} MiB, holding {} MiB", total >> 20);
    HttpResponse::Ok().json(json!({"heldMiB": total >> 20}))
}

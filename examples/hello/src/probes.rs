//! Test hooks for the platform's probes and network isolation: a runtime health switch
//! (`POST /health/fail`, `POST /health/pass`) and `GET /connect?addr=IP:PORT`, which reports
//! whether this container can open a TCP connection to an address within one second.

use std::net::{SocketAddr, TcpStream};
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

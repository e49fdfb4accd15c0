//! `GET /burn?ms=N`: keeps one CPU busy for N milliseconds (on a blocking thread, so the
//! server keeps answering probes), to drive the platform's CPU autoscaler.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde_json::json;

/// Longest single burn, in milliseconds.
const MAX_BURN_MS: u64 = 60_000;

pub async fn burn(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
    let ms = match query.get("ms").map(|v| v.parse::<u64>()) {
        Some(Ok(ms)) if (1..=MAX_BURN_MS).contains(&ms) => ms,
        _ => {
            return HttpResponse::BadRequest()
                .json(json!({"error": format!("query parameter ms must be 1..={MAX_BURN_MS}")}));
        }
    };
    let spun = web::block(move || {
        let until = Instant::now() + Duration::from_millis(ms);
        let mut rounds: u64 = 0;
        while Instant::now() < until {
            // Arithmetic the optimiser cannot drop.
            rounds = std::hint::black_box(rounds.wrapping_mul(6_364_136_223_846_793_005) + 1);
        }
        rounds
    })
    .await;
    match spun {
        Ok(rounds) => HttpResponse::Ok().json(json!({"burnedMs": ms, "rounds": rounds})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

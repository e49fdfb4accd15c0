//! `GET /application/applications/{id}/usageHistory` (Berth's own): each running instance's CPU
//! and memory over the last 15 minutes, one sample per 2 s, from the supervisor's in-memory
//! ring, so the console's charts are full when a page opens.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::applications::{Access, authorized_id, own_application};
use super::error::ApiError;
use super::{AppState, media};
use crate::auth::principal::Principal;
use crate::supervisor::usage::{HISTORY_SPAN, HISTORY_STEP};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/applications/{id}/usageHistory",
        web::get().to(history),
    );
}

async fn history(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = authorized_id(&principal, Access::Read, &path)?;
    own_application(&state, &principal, id).await?;
    let instances: Vec<_> = state
        .supervisor
        .usage_history(id)
        .into_iter()
        .map(|(name, points)| {
            json!({
                "name": name,
                "samples": points.iter().map(|p| json!({
                    "time": p.unix_ms,
                    "cpuCores": p.cpu_cores,
                    "memoryBytes": p.memory_bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(media::ok(
        "applicationUsageHistory",
        &json!({
            "stepSeconds": HISTORY_STEP.as_secs(),
            "spanSeconds": HISTORY_SPAN.as_secs(),
            "instances": instances,
        }),
    ))
}

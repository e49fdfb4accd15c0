//! `POST /application/autoscaler/dryRun`: what the CPU autoscaler would decide with the given
//! numbers, with the rule and its explanation (the same function the supervisor runs).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, media};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::supervisor::autoscale::{self, Policy};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/application/autoscaler/dryRun", web::post().to(dry_run));
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DryRun {
    /// Per-replica CPU as a fraction of its limit (null = no metric, e.g. not ready).
    cpu: Vec<Option<f64>>,
    current_replicas: Option<u32>,
    target: Option<f64>,
    tolerance: Option<f64>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    /// Earlier recommendations within the scale-down window, oldest first.
    #[serde(default)]
    recommendations: Vec<u32>,
}

async fn dry_run(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<DryRun>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::APPLICATION_MANAGEMENT_READ,
        roles::APPLICATION_MANAGEMENT_ADMIN,
    ])?;
    let body = body.into_inner();
    let invalid = |m: &str| ApiError::invalid("application", m);
    if body.cpu.is_empty() {
        return Err(invalid(
            "cpu must list one value (or null) per current replica",
        ));
    }
    if let Some(n) = body.current_replicas
        && n as usize != body.cpu.len()
    {
        return Err(invalid(&format!(
            "currentReplicas is {n} but cpu has {} values: give one per replica",
            body.cpu.len()
        )));
    }
    if body
        .cpu
        .iter()
        .flatten()
        .any(|c| !c.is_finite() || *c < 0.0)
    {
        return Err(invalid(
            "cpu values must be fractions ≥ 0 (1.0 = the full CPU limit)",
        ));
    }
    let config = &state.config;
    let policy = Policy {
        target: body.target.unwrap_or(config.autoscale_target),
        tolerance: body.tolerance.unwrap_or(crate::supervisor::TOLERANCE),
        min_replicas: body.min_replicas.unwrap_or(1),
        max_replicas: body.max_replicas.unwrap_or(config.autoscale_max_replicas),
    };
    if !(policy.target > 0.0 && policy.target.is_finite()) {
        return Err(invalid("target must be a fraction > 0 (0.8 = 80 %)"));
    }
    if !(0.0..1.0).contains(&policy.tolerance) {
        return Err(invalid("tolerance must be a fraction from 0 to below 1"));
    }
    if policy.min_replicas == 0 || policy.min_replicas > policy.max_replicas {
        return Err(invalid("minReplicas must be ≥ 1 and ≤ maxReplicas"));
    }
    let decision = autoscale::decide(&policy, &body.cpu, &body.recommendations);
    Ok(media::ok(
        "autoscalerDecision",
        &json!({"policy": policy, "decision": decision}),
    ))
}

//! `GET /tenant/health`: whether the platform's API can serve, as Cumulocity answers it. The Java
//! SDK's platform health indicator reads it (its `detailsPath`) and reports a microservice `DOWN`
//! when it fails, which a manifest's `/health` probe turns into restarts. Open like
//! `loginOptions`: the answer says up or down and nothing else.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/health", web::get().to(health));
}

/// Up when the store answers a query: every API call but the static ones needs it.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store = state
        .store
        .run(|c| Ok(c.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?))
        .await;
    match store {
        Ok(_) => HttpResponse::Ok().json(json!({"status": "UP"})),
        Err(e) => {
            tracing::warn!(error = %e, "health: the store does not answer");
            HttpResponse::ServiceUnavailable().json(json!({"status": "DOWN"}))
        }
    }
}

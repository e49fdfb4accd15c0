//! `GET /metrics`: the proxy's Prometheus metrics (`proxy::metrics`), for management-tenant
//! operators (ROLE_TENANT_MANAGEMENT_READ or _ADMIN).

use std::collections::HashSet;

use actix_web::{HttpResponse, web};

use super::AppState;
use super::error::ApiError;
use crate::auth::principal::Principal;
use crate::auth::roles;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(render));
}

async fn render(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !principal.is_management() {
        return Err(ApiError::forbidden());
    }
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_READ,
        roles::TENANT_MANAGEMENT_ADMIN,
    ])?;
    let applications = state
        .store
        .run(|conn| {
            let mut stmt = conn.prepare("SELECT name FROM applications")?;
            let names = stmt
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<HashSet<String>, _>>()?;
            Ok(names)
        })
        .await
        .map_err(ApiError::store("metrics"))?;
    let text = crate::proxy::metrics::render(&applications)
        .ok_or_else(|| ApiError::internal("metrics recorder not installed"))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

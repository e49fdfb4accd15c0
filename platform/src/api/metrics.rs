//! `GET /metrics`: Berth's Prometheus metrics (`series`), for management-tenant
//! operators (ROLE_TENANT_MANAGEMENT_READ or _ADMIN).

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
    // Series of applications deleted since the last sweep go first, so none is shown.
    crate::series::sweep(&state.store)
        .await
        .map_err(ApiError::store("metrics"))?;
    Ok(HttpResponse::Ok()
        .content_type(crate::series::CONTENT_TYPE)
        .body(crate::series::render()))
}

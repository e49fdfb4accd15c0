//! `GET /tenant/statistics/summary`: the caller's tenant usage in Cumulocity's
//! `tenantUsageStatisticsSummary` shape. Berth fills `storageSize` (bytes its kept versions
//! account for, see [`crate::storage`]) and adds the limits that apply to it: `storageQuota`,
//! `imageSizeLimit` and `uploadLimit`, so a client can see how close a tenant is before uploading.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, media};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::storage;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/statistics/summary", web::get().to(summary));
}

async fn summary(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::APPLICATION_MANAGEMENT_READ,
        roles::APPLICATION_MANAGEMENT_ADMIN,
    ])?;
    let data_dir = state.config.data_dir.clone();
    let tenant = principal.tenant.clone();
    let kept = super::db(&state, "applications", move |c| {
        crate::store::artifacts::kept_packages(c, &tenant)
    })
    .await?;
    let used = tokio::task::spawn_blocking(move || storage::kept_bytes(&data_dir, &kept))
        .await
        .map_err(|e| ApiError::internal(&e.to_string()))?
        .map_err(|e| ApiError::internal(&format!("measuring the tenant's storage: {e}")))?;
    let body = json!({
        "storageSize": used,
        "storageQuota": state.config.tenant_storage_quota,
        "imageSizeLimit": state.config.image_size_limit,
        "uploadLimit": state.config.upload_limit,
    });
    Ok(media::ok("tenantUsageStatisticsSummary", &body))
}

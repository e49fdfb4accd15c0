//! `GET /audit/auditRecords`: the caller tenant's audit log (uploads, subscriptions, scaling,
//! restarts, OOM kills, alarms, deletions) in Cumulocity's `auditRecords` shape, newest first,
//! filtered by `application` (id) and `type`, paged like every collection;
//! `GET /audit/auditRecords/{id}`: one record of the caller's tenant.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::error::ApiError;
use super::paging::PageRequest;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::store::audit::{self, Filter, NewRecord, Record};

pub const AUDIT_READ: &str = "ROLE_AUDIT_READ";
pub const AUDIT_ADMIN: &str = "ROLE_AUDIT_ADMIN";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit/auditRecords", web::get().to(list))
        .route("/audit/auditRecords/{id}", web::get().to(get));
}

/// Records a user's action on an application in each of `tenants` (e.g. the subscriber and
/// the owner). The write runs on its own task: the action already happened, and a failure to
/// record it is logged rather than failing the request.
pub fn record_action(
    state: &AppState,
    principal: &Principal,
    tenants: &[&str],
    application: (i64, &str),
    record_type: &str,
    activity: &str,
    text: String,
) {
    tracing::info!(user = %principal.user, tenant = %principal.tenant, application = application.1, "{text}");
    let mut seen: Vec<&str> = Vec::new();
    for tenant in tenants {
        if seen.contains(tenant) {
            continue;
        }
        seen.push(tenant);
        let record = NewRecord {
            tenant: (*tenant).to_owned(),
            application: Some((application.0, application.1.to_owned())),
            record_type: record_type.to_owned(),
            activity: activity.to_owned(),
            text: text.clone(),
            severity: audit::INFORMATION,
            user: format!("{}/{}", principal.tenant, principal.user),
            details: json!({}),
        };
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.run(move |c| audit::append(c, &record)).await {
                tracing::warn!(error = %e, "cannot write an audit record");
            }
        });
    }
}

/// ROLE_AUDIT_READ/_ADMIN, or an administrator of the management tenant.
fn require_audit_read(principal: &Principal) -> Result<(), ApiError> {
    let management_admin =
        principal.is_management() && principal.require(roles::TENANT_MANAGEMENT_ADMIN).is_ok();
    if management_admin {
        return Ok(());
    }
    principal.require_any(&[AUDIT_READ, AUDIT_ADMIN])
}

pub fn record_json(base: &str, r: &Record) -> Value {
    json!({
        "id": r.id.to_string(),
        "self": format!("{base}/audit/auditRecords/{}", r.id),
        "type": r.record_type,
        "activity": r.activity,
        "text": r.text,
        "time": r.time,
        "creationTime": r.time,
        "severity": r.severity,
        "source": {"id": r.application.as_ref().map(|(id, _)| id.to_string())},
        "application": r.application.as_ref().map(|(_, name)| name.clone()),
        "user": r.user,
        "tenant": r.tenant,
        "details": r.details,
    })
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    require_audit_read(&principal)?;
    let page = PageRequest::from_query(&query)?;
    let application = match query.get("application").or_else(|| query.get("source")) {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "audit",
                &format!("application must be an application id, got {text:?}"),
            )
        })?),
    };
    let filter = Filter {
        application,
        record_type: query.get("type").cloned(),
    };
    let tenant = principal.tenant.clone();
    let (records, total) = db(&state, "audit", move |c| {
        audit::list(c, &tenant, &filter, page.window())
    })
    .await?;
    let base = media::base_url(&req);
    let items = records.iter().map(|r| record_json(&base, r)).collect();
    Ok(media::ok(
        "auditRecordCollection",
        &page.collection(&req, "auditRecords", items, total),
    ))
}

async fn get(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_audit_read(&principal)?;
    let text = path.into_inner();
    // Ids are numbers; any other text names no record, as an unknown number does.
    let id = text.parse::<i64>().map_err(|_| {
        ApiError::not_found(
            "audit",
            &format!("Audit record {text:?} does not exist: ids are numbers."),
        )
    })?;
    let tenant = principal.tenant.clone();
    let record = db(&state, "audit", move |c| audit::get(c, &tenant, id)).await?;
    Ok(media::ok(
        "auditRecord",
        &record_json(&media::base_url(&req), &record),
    ))
}

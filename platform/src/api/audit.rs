//! `GET /audit/auditRecords`: the caller tenant's audit log (uploads, subscriptions, scaling,
//! restarts, OOM kills, alarms, deletions, changes to users, groups, options and tenants) in
//! Cumulocity's `auditRecords` shape, newest first, filtered by `application` (name, or id),
//! `source`, `type`, `user`, `dateFrom` and `dateTo`, paged like every collection;
//! `GET /audit/auditRecords/{id}`: one record of the caller's tenant; `POST /audit/auditRecords`:
//! a record a client writes.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::paging::PageRequest;
use super::{AppState, db, media};
use crate::audit::Event;
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::store::audit::{self, Filter, NewRecord, Record};

pub const AUDIT_READ: &str = "ROLE_AUDIT_READ";
pub const AUDIT_ADMIN: &str = "ROLE_AUDIT_ADMIN";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit/auditRecords", web::get().to(list))
        .route("/audit/auditRecords", web::post().to(create))
        .route("/audit/auditRecords/{id}", web::get().to(get));
}

/// Records a change a user made that concerns no application (types `User`, `Group`, `Option`,
/// `Tenant`) in each of `tenants`, through the one audit writer ([`crate::audit`]): the change
/// already happened, and a failure to record it is logged rather than failing the request.
/// (A user's action on an application is recorded by its flow, [`crate::apps::Apps::record`].)
pub fn record_change(
    state: &AppState,
    principal: &Principal,
    tenants: &[&str],
    record_type: &str,
    activity: &str,
    text: String,
) {
    state.audit.record(Event::ByUser {
        tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
        user: principal.user.clone(),
        actor_tenant: principal.tenant.clone(),
        application: None,
        record_type: record_type.to_owned(),
        activity: activity.to_owned(),
        text,
    });
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
    let filter = filter_of(&query)?;
    // Records are written behind the request that caused them; waiting for the queue lets a
    // client read its own change back at once (clients change an option, then look for it).
    state.audit.flush().await;
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
    state.audit.flush().await;
    let tenant = principal.tenant.clone();
    let record = db(&state, "audit", move |c| audit::get(c, &tenant, id)).await?;
    Ok(media::ok(
        "auditRecord",
        &record_json(&media::base_url(&req), &record),
    ))
}

/// The listing's filters from the query: an unreadable `source`, `dateFrom` or `dateTo` is a
/// 422 naming it, never ignored (a filter silently dropped returns records the client excluded).
fn filter_of(query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let source = match query.get("source") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "audit",
                &format!("source must be the id of an object (a number), got {text:?}"),
            )
        })?),
    };
    let date = |name: &str| -> Result<Option<String>, ApiError> {
        query
            .get(name)
            .map(|text| {
                parse_date(text).ok_or_else(|| {
                    ApiError::invalid(
                        "audit",
                        &format!(
                            "{name} must be a date (2026-01-31) or a date and time with its \
                             offset (2026-01-31T12:00:00.000Z), got {text:?}"
                        ),
                    )
                })
            })
            .transpose()
    };
    Ok(Filter {
        application: query.get("application").cloned(),
        source,
        record_type: query.get("type").cloned(),
        user: query.get("user").cloned(),
        date_from: date("dateFrom")?,
        date_to: date("dateTo")?,
    })
}

/// A query date as RFC 3339 in UTC: a date and time with its offset, or a bare date (its
/// midnight, UTC). A time without an offset is refused: it would mean a different instant
/// on every server.
pub fn parse_date(text: &str) -> Option<String> {
    let instant = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .or_else(|| {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(text.trim(), &format)
                .ok()
                .map(|d| d.midnight().assume_utc())
        })?;
    instant
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .ok()
}

/// The body of `POST /audit/auditRecords`, as Cumulocity takes it.
#[derive(Debug, Deserialize)]
struct RecordBody {
    #[serde(rename = "type")]
    record_type: Option<String>,
    time: Option<String>,
    text: Option<String>,
    activity: Option<String>,
    source: Option<Map<String, Value>>,
    severity: Option<String>,
    application: Option<String>,
    /// Cumulocity's list of changed attributes; kept with the record.
    changes: Option<Value>,
}

/// Longest `type`, `activity` and `application` of a record a client creates, in characters.
const MAX_LABEL: usize = 256;
/// Longest `text`, in characters.
const MAX_TEXT: usize = 4096;
/// Largest `changes`, as JSON text. What a tenant stores is bounded by
/// [`audit::MAX_RECORDS_PER_TENANT`] and [`audit::MAX_BYTES_PER_TENANT`] whatever the sizes.
const MAX_CHANGES: usize = 16 * 1024;

/// 422 for a field over its bound, naming it and the bound.
fn check_sizes(body: &RecordBody) -> Result<(), ApiError> {
    let labels = [
        ("type", body.record_type.as_deref()),
        ("activity", body.activity.as_deref()),
        ("application", body.application.as_deref()),
    ];
    for (name, value) in labels {
        if value.is_some_and(|v| v.chars().count() > MAX_LABEL) {
            return Err(ApiError::invalid(
                "audit",
                &format!("{name} may be at most {MAX_LABEL} characters long"),
            ));
        }
    }
    if body
        .text
        .as_deref()
        .is_some_and(|t| t.chars().count() > MAX_TEXT)
    {
        return Err(ApiError::invalid(
            "audit",
            &format!("text may be at most {MAX_TEXT} characters long"),
        ));
    }
    if body
        .changes
        .as_ref()
        .is_some_and(|c| c.to_string().len() > MAX_CHANGES)
    {
        return Err(ApiError::invalid(
            "audit",
            &format!("changes may be at most {MAX_CHANGES} bytes of JSON"),
        ));
    }
    Ok(())
}

const SEVERITIES: &[&str] = &[
    audit::INFORMATION,
    audit::WARNING,
    "MINOR",
    audit::MAJOR,
    audit::CRITICAL,
];

/// `POST /audit/auditRecords` (ROLE_AUDIT_ADMIN): `type`, `time`, `text`, `activity` and
/// `source.id` (a number: Berth's records concern applications, and Cumulocity ids are
/// numbers) are required; the user is the caller, whatever the body says.
async fn create(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<RecordBody>,
) -> Result<HttpResponse, ApiError> {
    principal.require(AUDIT_ADMIN)?;
    let body = body.into_inner();
    let record_type = super::required("audit", "type", &body.record_type)?.to_owned();
    let text = super::required("audit", "text", &body.text)?.to_owned();
    let activity = super::required("audit", "activity", &body.activity)?.to_owned();
    check_sizes(&body)?;
    let time_text = super::required("audit", "time", &body.time)?;
    let time = OffsetDateTime::parse(time_text, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "audit",
                &format!(
                    "time must be a date and time with its offset (2026-01-31T12:00:00.000Z), got {time_text:?}"
                ),
            )
        })?;
    let source = body
        .source
        .as_ref()
        .and_then(|s| s.get("id"))
        .and_then(|id| match id {
            Value::String(text) => text.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::invalid(
                "audit",
                "source must be {\"id\": \"<object id, a number>\"}",
            )
        })?;
    let severity = match body.severity.as_deref().map(str::to_ascii_uppercase) {
        None => audit::INFORMATION,
        Some(s) => SEVERITIES
            .iter()
            .copied()
            .find(|k| *k == s)
            .ok_or_else(|| {
                ApiError::invalid(
                    "audit",
                    &format!(
                        "severity must be one of {}, got {s:?}",
                        SEVERITIES.join(", ")
                    ),
                )
            })?,
    };
    let tenant = principal.tenant.clone();
    let named = body.application.clone();
    let record = NewRecord {
        tenant: tenant.clone(),
        application: Some((source, named.clone().unwrap_or_default())),
        record_type,
        activity,
        text,
        severity,
        user: principal.user.clone(),
        details: body
            .changes
            .map_or_else(|| json!({}), |c| json!({"changes": c})),
        by_other_tenant: false,
    };
    let stored = db(&state, "audit", move |c| {
        // Without a name in the body, the source application of the caller's tenant names it.
        let mut record = record;
        if named.is_none()
            && let Ok(app) = crate::store::applications::get(c, &tenant, source)
        {
            record.application = Some((source, app.name));
        }
        let id = audit::append_at(c, &record, &time)?;
        audit::get(c, &tenant, id)
    })
    .await?;
    let base = media::base_url(&req);
    Ok(media::created(
        &req,
        "auditRecord",
        &format!("{base}/audit/auditRecords/{}", stored.id),
        &record_json(&base, &stored),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    #[test]
    fn query_dates_are_instants_or_refused() {
        let cases = [
            ("2026-01-31", Some("2026-01-31T00:00:00Z")),
            ("2026-01-31T12:00:00.000Z", Some("2026-01-31T12:00:00Z")),
            ("2026-01-31T12:00:00+02:00", Some("2026-01-31T10:00:00Z")),
            ("2026-01-31T12:00:00", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date(text).as_deref(), expected, "{text:?}");
        }
    }
}

//! `/tenant/tenants/{tenantId}/applications…`: subscribe, list, unsubscribe. The flows are
//! [`crate::apps::subscriptions`]; these handlers parse, call and render.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::applications::application_json;
use super::error::ApiError;
use super::paging::PageRequest;
use super::{AppState, db, media};
use crate::apps::subscriptions as flow;
use crate::auth::principal::Principal;
use crate::auth::roles;
use crate::store::applications::{self, Application};
use crate::store::subscriptions;
use crate::store::tenants;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenant/tenants/{tenant}/applications", web::get().to(list))
        .route(
            "/tenant/tenants/{tenant}/applications",
            web::post().to(subscribe),
        )
        .route(
            "/tenant/tenants/{tenant}/applications/{id}",
            web::delete().to(unsubscribe),
        );
}

#[derive(Debug, Deserialize)]
struct ReferenceBody {
    application: Option<Map<String, Value>>,
}

impl ReferenceBody {
    /// The application id from `{"application":{"id":…}}` or `{"application":{"self":…}}`.
    fn application_id(&self) -> Result<i64, ApiError> {
        let bad = || {
            ApiError::invalid(
                "applications",
                "body must be {\"application\": {\"id\": \"<id>\"}} or {\"application\": {\"self\": \"<application URL>\"}}",
            )
        };
        let app = self.application.as_ref().ok_or_else(bad)?;
        let text = match (app.get("id"), app.get("self")) {
            (Some(Value::String(id)), _) => id.clone(),
            (Some(Value::Number(id)), _) => id.to_string(),
            (_, Some(Value::String(url))) => url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => return Err(bad()),
        };
        text.parse().map_err(|_| {
            ApiError::not_found(
                "applications",
                &format!("Could not find application by ID {text}"),
            )
        })
    }
}

fn reference_json(base: &str, tenant: &str, app: &Application) -> Value {
    json!({
        "self": format!("{base}/tenant/tenants/{tenant}/applications/{}", app.id),
        "application": application_json(base, app),
    })
}

async fn subscribe(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ReferenceBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let target = flow::managed_tenant(&state.apps, &principal, &tenant).await?;
    let id = body.application_id()?;
    let app = flow::subscribe(&state.apps, principal, &target, id).await?;
    let base = media::base_url(&req);
    let body = reference_json(&base, &tenant, &app);
    Ok(media::created(
        &req,
        "applicationReference",
        &format!("{base}/tenant/tenants/{tenant}/applications/{}", app.id),
        &body,
    ))
}

async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let id = tenant.clone();
    let found = db(&state, "tenants", move |c| tenants::get(c, &id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("tenants", &format!("There is no tenant with id = {tenant}"))
        })?;
    if found.id == principal.tenant {
        principal.require_any(&[
            roles::APPLICATION_MANAGEMENT_READ,
            roles::APPLICATION_MANAGEMENT_ADMIN,
            roles::TENANT_MANAGEMENT_READ,
            roles::TENANT_MANAGEMENT_ADMIN,
        ])?;
    } else if principal.is_management()
        || found.parent.as_deref() == Some(principal.tenant.as_str())
    {
        principal.require_any(&[
            roles::TENANT_MANAGEMENT_READ,
            roles::TENANT_MANAGEMENT_ADMIN,
        ])?;
    } else {
        return Err(ApiError::forbidden());
    }
    let page = PageRequest::from_query(&query)?;
    let t = tenant.clone();
    let (apps, total) = db(&state, "applications", move |c| {
        let (ids, total) = subscriptions::of_tenant(c, &t, page.window())?;
        let apps = ids
            .into_iter()
            .map(|id| applications::get_any(c, id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((apps, total))
    })
    .await?;
    let base = media::base_url(&req);
    let items = apps
        .iter()
        .map(|a| reference_json(&base, &tenant, a))
        .collect();
    Ok(media::ok(
        "applicationReferenceCollection",
        &page.collection(&req, "references", items, total),
    ))
}

async fn unsubscribe(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id_text) = path.into_inner();
    flow::managed_tenant(&state.apps, &principal, &tenant).await?;
    let id: i64 = id_text.parse().map_err(|_| {
        ApiError::not_found(
            "applications",
            &format!("Could not find application by ID {id_text}"),
        )
    })?;
    flow::unsubscribe(&state.apps, principal, tenant, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
